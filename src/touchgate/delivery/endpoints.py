"""The orders API (one order per batch request) and the worker's lifecycle hooks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ..api.deps import CtxDep, ListOf, PageDep
from ..projects.service import get_project
from . import service, worker
from .schemas import OrderOut, OrderSummary, ReplayOut

router = APIRouter(tags=["orders"])


@router.get("/projects/{pid}/orders", response_model=ListOf[OrderSummary])
def list_orders(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    touchpoint_id: Annotated[int | None, Query()] = None,
    campaign_id: Annotated[int | None, Query()] = None,
    state: Annotated[Literal["sending", "polling", "done"] | None, Query()] = None,
) -> ListOf[OrderSummary]:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        items, total = service.list_orders(
            session,
            pid,
            touchpoint_id=touchpoint_id,
            campaign_id=campaign_id,
            state=state,
            limit=page.limit,
            offset=page.offset,
        )
        return ListOf[OrderSummary](
            items=[OrderSummary.model_validate(i) for i in items], total=total
        )


@router.get("/projects/{pid}/orders/{order_no}", response_model=OrderOut)
def get_order(pid: int, order_no: str, ctx: CtxDep) -> OrderOut:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        return OrderOut.model_validate(service.order_detail(session, pid, order_no))


@router.post("/projects/{pid}/orders/{order_no}/replay", status_code=201, response_model=ReplayOut)
def replay_order(pid: int, order_no: str, ctx: CtxDep) -> ReplayOut:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        new_no = service.replay(session, order_no, project_id=pid)
        new = service.get_order(session, pid, new_no)
        return ReplayOut(order_no=new_no, replay_of=order_no, user_count=new.user_count)


def register_hooks(hooks: list[tuple[Any, Any]]) -> None:
    """Run a delivery worker on the server's loop when ``settings.run_worker``."""
    hooks.append((worker.start_in_app, worker.stop_in_app))
