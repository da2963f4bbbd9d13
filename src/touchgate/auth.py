"""API keys, and what a caller may do.

A key has a role (``admin`` manages; ``operator`` works; ``viewer`` reads) and
optionally a project and a set of spaces. The admin key from
``TOUCHGATE_ADMIN_TOKEN`` is stored (hashed) at start.

Every route declares what it needs with :func:`requires` (an :class:`Access`:
a scope — the whole service, the project in the path, or the space in the
path — and the least role). :class:`touchgate.api.guard.GuardedRoute` checks the
declaration before the body is read, so no route can forget it and a viewer
posting a bad body gets 403, not 422.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .crypto import hash_api_key
from .errors import Forbidden, NotFound, Unauthorized
from .models import ApiKey, Space

BOOTSTRAP_KEY_NAME = "bootstrap-admin"
# ``last_used_at`` is a hint for people, not a log: refreshing it at most once a
# minute keeps authentication from writing on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Ids are 32-bit in both databases; a larger one in a path is simply unknown.
MAX_ID = 2**31 - 1


class Role(IntEnum):
    """Roles in order of reach: each may do what the ones below it may."""

    viewer = 1
    operator = 2
    admin = 3


ROLES = tuple(r.name for r in Role)


class Scope(StrEnum):
    key = "key"  # any valid key (what it then sees is filtered by its reach)
    service = "service"  # the whole service: only keys bound to no project
    project = "project"  # the project ``{pid}`` in the path
    space = "space"  # the space ``{sid}`` of project ``{pid}`` in the path


@dataclass(frozen=True)
class Access:
    """What a route needs: a scope and the least role there."""

    scope: Scope
    role: Role

    def describe(self) -> str:
        return f"{self.scope.value}:{self.role.name}"


# The declarations routes use (``@requires(PROJECT_ADMIN)``).
ANY_KEY = Access(Scope.key, Role.viewer)
KEY_ADMIN = Access(Scope.key, Role.admin)  # any admin; the route narrows to its reach
SERVICE_ADMIN = Access(Scope.service, Role.admin)
PROJECT_READ = Access(Scope.project, Role.viewer)
PROJECT_WRITE = Access(Scope.project, Role.operator)
PROJECT_ADMIN = Access(Scope.project, Role.admin)
SPACE_READ = Access(Scope.space, Role.viewer)
SPACE_WRITE = Access(Scope.space, Role.operator)

ACCESS_ATTRIBUTE = "__touchgate_access__"
F = TypeVar("F", bound=Callable[..., Any])


def requires(access: Access) -> Callable[[F], F]:
    """Declare a route's access; put it right under the ``@router.<method>`` line."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, ACCESS_ATTRIBUTE, access)
        return endpoint

    return mark


def declared_access(endpoint: Callable[..., Any]) -> Access | None:
    access = getattr(endpoint, ACCESS_ATTRIBUTE, None)
    return access if isinstance(access, Access) else None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id, name, role and reach."""

    key_id: int | None
    role: str
    project_id: int | None = None
    space_ids: frozenset[int] | None = None
    name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin.name

    @property
    def rank(self) -> Role:
        return Role[self.role]

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden(
                "This action needs an admin key.",
                params={"reason": "role", "role": Role.admin.name},
            )

    def require_role(self, role: Role) -> None:
        if self.rank < role:
            raise Forbidden(
                f"This action needs a key with the role {role.name} or higher.",
                params={"reason": "role", "role": role.name},
            )

    def require_project(self, project_id: int) -> None:
        if self.project_id is not None and self.project_id != project_id:
            raise Forbidden(
                f"This key has no access to project {project_id}.",
                params={"reason": "project", "project_id": project_id},
            )

    def require_space(self, project_id: int, space_id: int, *, write: bool = False) -> None:
        self.require_project(project_id)
        if write:
            self.require_role(Role.operator)
        if self.is_admin:
            return
        if self.space_ids is not None and space_id not in self.space_ids:
            raise Forbidden(
                f"This key has no access to space {space_id}.",
                params={"reason": "space", "space_id": space_id},
            )

    def sees_space(self, space_id: int) -> bool:
        return self.is_admin or self.space_ids is None or space_id in self.space_ids


# A stand-in for work done from the command line on the service's own machine.
COMMAND_LINE = Principal(key_id=None, role=Role.admin.name, name="command line")


def ensure_bootstrap_key(session: Session, token: str | None) -> None:
    """Store (or refresh) the admin key given by ``TOUCHGATE_ADMIN_TOKEN``."""
    if not token:
        return
    digest = hash_api_key(token)
    existing = session.scalars(select(ApiKey).where(ApiKey.name == BOOTSTRAP_KEY_NAME)).first()
    if existing is None:
        session.add(ApiKey(name=BOOTSTRAP_KEY_NAME, key_hash=digest, role="admin"))
    elif not hmac.compare_digest(existing.key_hash, digest) or existing.revoked_at is not None:
        existing.key_hash = digest
        existing.revoked_at = None


def authenticate(session: Session, authorization: str | None, now: datetime) -> Principal:
    """The caller of a request; revoked and expired keys fail at once."""
    if not authorization:
        raise Unauthorized(
            "Missing Authorization header; send 'Authorization: Bearer <key>'.",
            params={"reason": "missing"},
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "The Authorization header must be 'Bearer <key>'.", params={"reason": "missing"}
        )
    row = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(key.strip()))
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("Unknown or revoked API key.", params={"reason": "unknown"})
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized(
            "This API key has expired.",
            params={"reason": "expired", "expired_at": row.expires_at.isoformat()},
        )
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Principal(
        key_id=row.id,
        role=row.role,
        project_id=row.project_id,
        space_ids=frozenset(row.space_ids) if row.space_ids is not None else None,
        name=row.name,
    )


def _path_id(path_params: Mapping[str, Any], name: str) -> int | None:
    """An id from the path, or None when it is not a valid id (the route then
    answers 404 or 422 itself, but only after the key was checked)."""
    raw = str(path_params.get(name, ""))
    if not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def authorize(
    session: Session, principal: Principal, access: Access, path_params: Mapping[str, Any]
) -> None:
    """Refuse the call unless ``principal`` has ``access`` to the path's project and space."""
    principal.require_role(access.role)
    if access.scope is Scope.service and principal.project_id is not None:
        raise Forbidden(
            "This action concerns the whole service; this key is bound to a project.",
            params={"reason": "service"},
        )
    if access.scope not in (Scope.project, Scope.space):
        return
    project_id = _path_id(path_params, "pid")
    if principal.project_id is not None and project_id != principal.project_id:
        raise Forbidden(
            f"This key has no access to project {path_params.get('pid')}.",
            params={"reason": "project", "project_id": str(path_params.get("pid"))},
        )
    if access.scope is Scope.space:
        space_id = _path_id(path_params, "sid")
        space = session.get(Space, space_id) if space_id is not None else None
        if space is None or project_id is None or space.project_id != project_id:
            raise NotFound(
                f"Space {path_params.get('sid')} does not exist in project "
                f"{path_params.get('pid')}.",
                params={"space_id": str(path_params.get("sid"))},
            )
        if not principal.sees_space(space.id):
            raise Forbidden(
                f"This key has no access to space {space.id}.",
                params={"reason": "space", "space_id": space.id},
            )
