"""Creating, listing and revoking API keys.

An admin bound to a project manages that project's keys only, and a key can
never reach further than the key that creates it: a project-bound admin cannot
create a key of another project or of every project. Admin keys are never
limited to spaces (an admin manages the whole project).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from ..audit import service as audit
from ..auth import BOOTSTRAP_KEY_NAME, Principal
from ..crypto import hash_api_key
from ..errors import Conflict, FieldErrors, Forbidden, NotFound
from ..models import ApiKey
from ..projects import repository as projects
from . import repository as repo
from .schemas import KeyCreate, KeyOut

KEY_PREFIX = "tg_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _project_of_new_key(creator: Principal, data: KeyCreate) -> int | None:
    if "project_id" not in data.model_fields_set:
        return creator.project_id
    if creator.project_id is not None and data.project_id != creator.project_id:
        raise Forbidden(
            f"This key is bound to project {creator.project_id}; it can only create keys "
            "of that project.",
            params={"reason": "project", "project_id": creator.project_id},
        )
    return data.project_id


def create_key(
    session: Session, creator: Principal, data: KeyCreate, now: datetime
) -> tuple[ApiKey, str]:
    """The new row and the key itself (returned this once; only its hash is stored)."""
    creator.require_admin()
    project_id = _project_of_new_key(creator, data)
    errors = FieldErrors()
    if data.name == BOOTSTRAP_KEY_NAME:
        errors.add(
            "name",
            f"{BOOTSTRAP_KEY_NAME!r} is reserved for the service's own key",
            code="reserved",
            name=BOOTSTRAP_KEY_NAME,
        )
    if project_id is not None and projects.get_project(session, project_id) is None:
        errors.add(
            "project_id", f"project {project_id} does not exist", code="not_found", id=project_id
        )
    if data.space_ids is not None:
        if data.role == "admin":
            errors.add(
                "space_ids",
                "an admin key manages the whole project; leave it null",
                code="admin_spaces",
            )
        elif project_id is None:
            errors.add(
                "space_ids",
                "spaces belong to a project: give project_id too",
                code="spaces_need_project",
            )
        elif not errors:
            known = repo.space_ids_in_project(session, project_id, data.space_ids)
            for i, sid in enumerate(data.space_ids):
                if sid not in known:
                    errors.add(
                        f"space_ids[{i}]",
                        f"space {sid} is not in project {project_id}",
                        code="not_found",
                        id=sid,
                    )
    if data.expires_at is not None and data.expires_at <= now:
        errors.add("expires_at", "must be in the future", code="in_past")
    errors.raise_if_any("The key cannot be created.")
    key = new_key()
    row = ApiKey(
        name=data.name,
        key_hash=hash_api_key(key),
        role=data.role,
        project_id=project_id,
        space_ids=sorted(set(data.space_ids)) if data.space_ids is not None else None,
        created_at=now,
        expires_at=data.expires_at,
    )
    repo.add(session, row)
    _audit(session, creator, "create", row, now)
    return row, key


def list_keys(
    session: Session, viewer: Principal, limit: int, offset: int
) -> tuple[Sequence[ApiKey], int]:
    """The keys within the caller's reach (never the keys themselves)."""
    viewer.require_admin()
    return repo.list_active(session, viewer.project_id, limit, offset)


def revoke_key(session: Session, revoker: Principal, key_id: int, now: datetime) -> ApiKey:
    """Revoke a key within the caller's reach; it fails on its next request."""
    revoker.require_admin()
    row = repo.get_active(session, key_id)
    if row is None or (revoker.project_id is not None and row.project_id != revoker.project_id):
        raise NotFound(f"API key {key_id} does not exist.", params={"id": key_id})
    if row.name == BOOTSTRAP_KEY_NAME and row.project_id is None:
        # It is restored from TOUCHGATE_ADMIN_TOKEN at every start, so revoking it
        # here would only seem to work.
        raise Conflict(
            "The bootstrap admin key comes from TOUCHGATE_ADMIN_TOKEN; change or unset "
            "that variable and restart to retire it.",
            code="bootstrap_key",
        )
    row.revoked_at = now
    session.flush()
    _audit(session, revoker, "revoke", row, now)
    return row


def _audit(session: Session, actor: Principal, action: str, row: ApiKey, now: datetime) -> None:
    """Key writes are audited here, for the API and the command line alike."""
    shown = KeyOut.model_validate(row).model_dump(mode="json", exclude={"last_used_at"})
    audit.record(
        session,
        actor,
        project_id=row.project_id,
        action=action,
        resource_type="api_key",
        resource_id=row.id,
        summary=f"{action.capitalize()} {row.role} key {row.name!r}",
        now=now,
        before=shown if action == "revoke" else None,
        after=shown if action == "create" else None,
    )
