"""Recording writes. Routes call :func:`record` inside the transaction of the
write they audit, so an entry exists exactly when the write committed.

Values are compared as JSON (``model_dump(mode="json")`` of what the API shows
before and after); secrets never reach the log: a field named in
``SECRET_FIELDS`` or passed as ``secrets`` shows as ``"***"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from ..auth import Principal
from ..models import AuditEntry
from . import repository as repo

SECRET = "***"
SECRET_FIELDS = frozenset({"token", "signing_secret", "secret", "key", "key_hash", "password"})
SUMMARY_LENGTH = 300

State = Mapping[str, Any]


def state(model: BaseModel) -> dict[str, Any]:
    """What the API shows of a resource, as JSON values (the before/after of a change)."""
    return model.model_dump(mode="json")


def _masked(name: str, value: Any, secrets: frozenset[str]) -> Any:
    if value is None or (name not in secrets and name not in SECRET_FIELDS):
        return value
    return SECRET


def changes(
    before: State | None, after: State | None, *, secrets: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """``{field: {"old", "new"}}`` for every field that differs; a secret written
    (named in ``secrets``) is listed even when its masked value looks the same."""
    hidden = frozenset(secrets)
    old = dict(before or {})
    new = dict(after or {})
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name), new.get(name)
        if was != now or name in hidden:
            out[name] = {"old": _masked(name, was, hidden), "new": _masked(name, now, hidden)}
    for name in sorted(hidden - out.keys()):
        out[name] = {"old": None if before is None else SECRET, "new": SECRET}
    return out


def record(
    session: Session,
    actor: Principal,
    *,
    project_id: int | None,
    action: str,
    resource_type: str,
    resource_id: int | str,
    summary: str,
    now: datetime,
    before: State | None = None,
    after: State | None = None,
    secrets: Iterable[str] = (),
) -> AuditEntry:
    entry = AuditEntry(
        project_id=project_id,
        time=now,
        key_id=actor.key_id,
        key_name=actor.name[:100],
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        summary=summary[:SUMMARY_LENGTH],
        changes=changes(before, after, secrets=secrets),
    )
    repo.add(session, entry)
    return entry
