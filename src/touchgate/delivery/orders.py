"""The orders read API: one order with its users and attempts, and order lists.

Pending users have no row: they are the users of the order's frozen payload
without a result.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..errors import InvalidInput, NotFound
from ..models import Order
from . import repository as repo
from .outcomes import protocol_gids
from .protocol import FAIL, PENDING, SUCC

ORDER_STATES = ("sending", "polling", "done")


def get_order(session: Session, project_id: int, order_no: str) -> Order:
    order = repo.get_order(session, project_id, order_no)
    if order is None:
        raise NotFound(f"Order {order_no!r} does not exist in project {project_id}.")
    return order


def order_detail(session: Session, project_id: int, order_no: str) -> dict[str, Any]:
    order = get_order(session, project_id, order_no)
    final = {r.gid: r for r in repo.order_results(session, order.id)}
    gids = sorted(set(protocol_gids(repo.payload_of(session, order.order_no))) | set(final))
    users: list[dict[str, Any]] = []
    counts = {PENDING: 0, SUCC: 0, FAIL: 0}
    for gid in gids:
        r = final.get(gid)
        if r is None:
            users.append({"gid": gid, "status": PENDING, "error_msg": None, "attempts": 0})
        else:
            users.append(
                {"gid": gid, "status": r.status, "error_msg": r.error_msg, "attempts": r.attempts}
            )
        status = PENDING if r is None else r.status
        counts[status] = counts.get(status, 0) + 1
    return {
        "order_no": order.order_no,
        "touchpoint_id": order.touchpoint_id,
        "campaign_id": order.campaign_id,
        "step_id": order.step_id,
        "run_id": order.run_id,
        "status": order.state,
        "user_count": order.user_count,
        "attempt_count": order.attempt_count,
        "next_attempt_at": order.next_attempt_at if order.state != "done" else None,
        "last_error": order.last_error,
        "replay_of": order.replay_of,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "succeeded": counts[SUCC],
        "failed": counts[FAIL],
        "pending": counts[PENDING],
        "users": users,
        "attempts": [
            {
                "kind": a.kind,
                "at": a.at,
                "duration_ms": a.duration_ms,
                "http_status": a.http_status,
                "error": a.error,
                "response_excerpt": a.response_excerpt,
            }
            for a in repo.order_attempts(session, order.id)
        ],
    }


def list_orders(
    session: Session,
    project_id: int,
    *,
    touchpoint_id: int | None,
    campaign_id: int | None,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    if state is not None and state not in ORDER_STATES:
        raise InvalidInput(
            f"Unknown order state {state!r}; use one of {', '.join(ORDER_STATES)}.",
            field="state",
        )
    rows, total = repo.list_orders(
        session,
        project_id,
        touchpoint_id=touchpoint_id,
        campaign_id=campaign_id,
        state=state,
        limit=limit,
        offset=offset,
    )
    counts = repo.user_counts(session, [o.id for o in rows])
    items = [
        {
            "order_no": o.order_no,
            "touchpoint_id": o.touchpoint_id,
            "campaign_id": o.campaign_id,
            "step_id": o.step_id,
            "status": o.state,
            "user_count": o.user_count,
            "attempt_count": o.attempt_count,
            "succeeded": counts[o.id].get(SUCC, 0),
            "failed": counts[o.id].get(FAIL, 0),
            "pending": max(0, o.user_count - counts[o.id].get(SUCC, 0) - counts[o.id].get(FAIL, 0)),
            "last_error": o.last_error,
            "replay_of": o.replay_of,
            "created_at": o.created_at,
        }
        for o in rows
    ]
    return items, total
