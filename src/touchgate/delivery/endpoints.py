"""The orders API (one order per batch request)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from ..api.deps import CtxDep, IdQuery, ListOf, PageDep
from ..api.guard import api_router
from ..auth import PROJECT_ADMIN, requires
from ..projects.service import get_project
from . import enqueue, orders
from .schemas import OrderOut, OrderSummary, ReplayOut

router = api_router(tags=["orders"])


@router.get("/projects/{pid}/orders", response_model=ListOf[OrderSummary])
@requires(PROJECT_ADMIN)
def list_orders(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    touchpoint_id: IdQuery = None,
    campaign_id: IdQuery = None,
    state: Annotated[Literal["sending", "polling", "done"] | None, Query()] = None,
) -> ListOf[OrderSummary]:
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        items, total = orders.list_orders(
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
@requires(PROJECT_ADMIN)
def get_order(pid: int, order_no: str, ctx: CtxDep) -> OrderOut:
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        return OrderOut.model_validate(orders.order_detail(session, pid, order_no))


@router.post("/projects/{pid}/orders/{order_no}/replay", status_code=201, response_model=ReplayOut)
@requires(PROJECT_ADMIN)
def replay_order(pid: int, order_no: str, ctx: CtxDep) -> ReplayOut:
    with ctx.runtime.tx() as session:
        get_project(session, pid)
        new_no = enqueue.replay(session, order_no, project_id=pid)
        new = orders.get_order(session, pid, new_no)
        out = ReplayOut(order_no=new_no, replay_of=order_no, user_count=new.user_count)
        ctx.audit(
            session,
            project_id=pid,
            action="replay",
            resource_type="order",
            resource_id=order_no,
            summary=f"Replayed the {out.user_count} failed users of order {order_no} "
            f"as order {new_no}",
            after=out.model_dump(mode="json"),
        )
        return out
