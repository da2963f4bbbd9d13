"""Recording writes. Routes call :func:`record` inside the transaction of the
write they audit, so an entry exists exactly when the write committed.

Values are compared as JSON (``model_dump(mode="json")`` of what the API shows
before and after); secrets never reach the log: a field named in
``SECRET_FIELDS`` or passed as ``secrets`` shows as ``"***"``.

Each entry is also a sentence the console says in the reader's language: its
text is chosen by ``(resource_type, action)`` (``audit.entry.<type>.<action>`` in
the console's i18n files) and filled from ``params``, which :func:`sentence_params`
builds here from what the caller already gives (the id, the resource's name in
its state, the changed fields) plus the few values only the caller knows (counts).
The English ``summary`` stays for scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from ..auth import Principal
from ..models import AuditEntry
from ..touchpoints import repository as touchpoints
from . import repository as repo

SECRET = "***"
# ("key" is not here: an attribute's key is its name; API keys are audited without theirs.)
SECRET_FIELDS = frozenset({"token", "signing_secret", "secret", "key_hash", "password"})
SUMMARY_LENGTH = 300

State = Mapping[str, Any]

# The values a sentence names, per resource type: param → field of the resource's
# state (after the write, else before). Other types are named by their "name".
_NAMED: Mapping[str, Mapping[str, str]] = {
    "attribute": {"name": "name", "attribute_key": "key"},
    "plugin": {"name": "name", "version": "version"},
    "api_key": {"name": "name", "role": "role"},
    "order": {"new_order": "order_no", "users": "user_count"},
}
_BY_NAME: Mapping[str, str] = {"name": "name"}
# Changed by every write: listing it would not say what the write changed.
_UNNAMED_FIELDS = frozenset({"updated_at"})


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


def sentence_params(
    session: Session,
    project_id: int | None,
    resource_type: str,
    resource_id: int | str,
    before: State | None,
    after: State | None,
    changed: Iterable[str],
    extra: Mapping[str, Any],
    secrets: frozenset[str],
) -> dict[str, Any]:
    """The values the entry's sentence names: ``id``; the resource's name (and the
    like, see ``_NAMED``); ``fields``, what an edit changed (both states given);
    then ``extra`` from the caller. Secrets are never among them."""
    params: dict[str, Any] = {"id": str(resource_id)}
    shown = after if after is not None else before
    for param, field in _NAMED.get(resource_type, _BY_NAME).items():
        if shown is not None and field in shown:
            params[param] = shown[field]
    if "name" not in params and resource_type == "touchpoint" and project_id is not None:
        # A test send or a protection change passes no touchpoint state; the
        # touchpoint is loaded in this session already.
        row = touchpoints.get(session, project_id, int(resource_id))
        if row is not None:
            params["name"] = row.name
    if before is not None and after is not None:
        params["fields"] = [name for name in changed if name not in _UNNAMED_FIELDS]
    params.update(extra)
    return {name: _masked(name, value, secrets) for name, value in params.items()}


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
    params: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add the entry for a write; ``params``: values of its sentence that no state
    holds (counts, a file name), merged into :func:`sentence_params`."""
    changed = changes(before, after, secrets=secrets)
    entry = AuditEntry(
        project_id=project_id,
        time=now,
        key_id=actor.key_id,
        key_name=actor.name[:100],
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        summary=summary[:SUMMARY_LENGTH],
        params=sentence_params(
            session,
            project_id,
            resource_type,
            resource_id,
            before,
            after,
            changed,
            params or {},
            frozenset(secrets),
        ),
        changes=changed,
    )
    repo.add(session, entry)
    return entry
