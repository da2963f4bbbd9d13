"""FastAPI dependencies: the runtime, the caller, list paging."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ..audit import service as audit
from ..auth import MAX_ID, Principal
from ..models.base import utcnow
from ..runtime import Runtime
from .guard import request_principal

T = TypeVar("T")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_principal(request: Request) -> Principal:
    """The caller, authenticated and checked by the route class before the body was read."""
    return request_principal(request)


@dataclass
class Ctx:
    """What a route needs: the runtime (for a transaction) and who is calling."""

    runtime: Runtime
    principal: Principal

    def audit(
        self,
        session: Session,
        *,
        project_id: int | None,
        action: str,
        resource_type: str,
        resource_id: int | str,
        summary: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        secrets: Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Log this caller's write in the write's transaction (``session``);
        ``params``: values its sentence names that no state holds (counts)."""
        audit.record(
            session,
            self.principal,
            project_id=project_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            summary=summary,
            now=utcnow(),
            before=before,
            after=after,
            secrets=secrets,
            params=params,
        )


def get_ctx(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    principal: Annotated[Principal, Depends(get_principal)],
) -> Ctx:
    return Ctx(runtime=runtime, principal=principal)


CtxDep = Annotated[Ctx, Depends(get_ctx)]


def audit_created(
    ctx: Ctx,
    session: Session,
    project_id: int,
    resource: tuple[str, int | str],
    summary: str,
    created: BaseModel,
) -> None:
    """Log the creation of ``resource`` (type, id), shown as the API shows it."""
    ctx.audit(
        session,
        project_id=project_id,
        action="create",
        resource_type=resource[0],
        resource_id=resource[1],
        summary=summary,
        after=created.model_dump(mode="json"),
    )


@dataclass
class Page:
    limit: int
    offset: int


# Offsets and ids fit a signed 32-bit integer on both databases; larger values
# are refused as input instead of overflowing in the driver.
MAX_OFFSET = 2**31 - 1
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def get_page(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(get_page)]


class ListOf(BaseModel, Generic[T]):
    items: list[T]
    total: int
