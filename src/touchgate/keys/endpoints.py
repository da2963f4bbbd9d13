"""``/api-keys``: create (the key shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response

from ..api.deps import CtxDep, ListOf, PageDep
from ..api.guard import api_router
from ..auth import ANY_KEY, KEY_ADMIN, requires
from ..models.base import utcnow
from . import service
from .schemas import KeyCreate, KeyCreated, KeyIdentity, KeyOut

router = api_router(tags=["team access"])
KeyId = Annotated[int, Path(description="The key's id (from the list).")]


@router.post("/api-keys", status_code=201, response_model=KeyCreated)
@requires(KEY_ADMIN)
def create_key(body: KeyCreate, ctx: CtxDep) -> KeyCreated:
    """A new key with at most the caller's reach; ``key`` is in this answer only."""
    with ctx.runtime.tx() as session:
        row, key = service.create_key(session, ctx.principal, body, utcnow())
        return KeyCreated(**KeyOut.model_validate(row).model_dump(), key=key)


@router.get("/api-keys", response_model=ListOf[KeyOut])
@requires(KEY_ADMIN)
def list_keys(ctx: CtxDep, page: PageDep) -> ListOf[KeyOut]:
    """Keys within the caller's reach, with when each was last used (to the minute)."""
    with ctx.runtime.tx() as session:
        rows, total = service.list_keys(session, ctx.principal, page.limit, page.offset)
        return ListOf[KeyOut](items=[KeyOut.model_validate(r) for r in rows], total=total)


@router.get("/api-keys/current", response_model=KeyIdentity)
@requires(ANY_KEY)
def current_key(ctx: CtxDep) -> KeyIdentity:
    """The key making this call: its name, role, project and spaces."""
    p = ctx.principal
    spaces = sorted(p.space_ids) if p.space_ids is not None else None
    return KeyIdentity.model_validate(
        {
            "id": p.key_id,
            "name": p.name,
            "role": p.role,
            "project_id": p.project_id,
            "space_ids": spaces,
        }
    )


@router.delete("/api-keys/{key_id}", status_code=204, response_class=Response)
@requires(KEY_ADMIN)
def revoke_key(key_id: KeyId, ctx: CtxDep) -> Response:
    """Revoke a key: its next request fails with 401."""
    with ctx.runtime.tx() as session:
        service.revoke_key(session, ctx.principal, key_id, utcnow())
    return Response(status_code=204)
