"""FastAPI dependencies: the runtime, the caller, list paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Header, Query, Request
from pydantic import BaseModel

from ..auth import Principal, authenticate
from ..runtime import Runtime

T = TypeVar("T")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_principal(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    with runtime.tx() as session:
        return authenticate(session, authorization)


@dataclass
class Ctx:
    """What a route needs: the runtime (for a transaction) and who is calling."""

    runtime: Runtime
    principal: Principal


def get_ctx(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    principal: Annotated[Principal, Depends(get_principal)],
) -> Ctx:
    return Ctx(runtime=runtime, principal=principal)


CtxDep = Annotated[Ctx, Depends(get_ctx)]


@dataclass
class Page:
    limit: int
    offset: int


def get_page(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(get_page)]


class ListOf(BaseModel, Generic[T]):
    items: list[T]
    total: int
