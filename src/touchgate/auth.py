"""API keys and what a caller may do.

A key has a role (``admin`` manages everything; ``operator`` works in its
spaces; ``viewer`` reads) and optionally a project and a set of spaces. The
admin key from ``TOUCHGATE_ADMIN_TOKEN`` is stored (hashed) at start.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .crypto import hash_api_key
from .errors import Forbidden, Unauthorized
from .models import ApiKey

ROLES = ("admin", "operator", "viewer")
BOOTSTRAP_KEY_NAME = "bootstrap-admin"


@dataclass(frozen=True)
class Principal:
    key_id: int
    role: str
    project_id: int | None = None
    space_ids: frozenset[int] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("This action needs an admin key.")

    def require_project(self, project_id: int) -> None:
        if self.project_id is not None and self.project_id != project_id:
            raise Forbidden(f"This key has no access to project {project_id}.")

    def require_space(self, project_id: int, space_id: int, *, write: bool = False) -> None:
        self.require_project(project_id)
        if self.is_admin:
            return
        if write and self.role == "viewer":
            raise Forbidden("This key can only read.")
        if self.space_ids is not None and space_id not in self.space_ids:
            raise Forbidden(f"This key has no access to space {space_id}.")


def ensure_bootstrap_key(session: Session, token: str | None) -> None:
    """Store (or refresh) the admin key given by ``TOUCHGATE_ADMIN_TOKEN``."""
    if not token:
        return
    digest = hash_api_key(token)
    existing = session.scalars(select(ApiKey).where(ApiKey.name == BOOTSTRAP_KEY_NAME)).first()
    if existing is None:
        session.add(ApiKey(name=BOOTSTRAP_KEY_NAME, key_hash=digest, role="admin"))
    elif not hmac.compare_digest(existing.key_hash, digest):
        existing.key_hash = digest


def authenticate(session: Session, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("Missing Authorization header; send 'Authorization: Bearer <key>'.")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
    row = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(key.strip()))
    ).first()
    if row is None:
        raise Unauthorized("Unknown API key.")
    return Principal(
        key_id=row.id,
        role=row.role,
        project_id=row.project_id,
        space_ids=frozenset(row.space_ids) if row.space_ids is not None else None,
    )
