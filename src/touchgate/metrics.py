"""Prometheus text exposition of delivery counters, read from the database."""

from __future__ import annotations

from sqlalchemy import func, select

from .models import Order, OrderResult, Touchpoint, TouchpointHealth
from .runtime import Runtime


def render(runtime: Runtime) -> str:
    lines = [
        "# HELP touchgate_orders Orders by state.",
        "# TYPE touchgate_orders gauge",
    ]
    with runtime.tx() as session:
        for state, count in session.execute(
            select(Order.state, func.count()).group_by(Order.state)
        ):
            lines.append(f'touchgate_orders{{state="{state}"}} {count}')
        lines += [
            "# HELP touchgate_order_users Users of orders by result: pending (no result yet) "
            "or final.",
            "# TYPE touchgate_order_users gauge",
        ]
        users = session.scalar(select(func.coalesce(func.sum(Order.user_count), 0))) or 0
        # (A Result has keys(): dict() would read it as a mapping; take its rows.)
        final: dict[str, int] = dict(
            session.execute(select(OrderResult.status, func.count()).group_by(OrderResult.status))
            .tuples()
            .all()
        )
        pending = max(0, int(users) - sum(final.values()))
        for status, count in [("pending", pending), *sorted(final.items())]:
            lines.append(f'touchgate_order_users{{status="{status}"}} {count}')
        lines += [
            "# HELP touchgate_touchpoint_paused Touchpoints whose circuit breaker is not "
            "closed (deliveries paused: open, or one probe out: half_open).",
            "# TYPE touchgate_touchpoint_paused gauge",
        ]
        for pid, tid, state in session.execute(
            select(Touchpoint.project_id, TouchpointHealth.touchpoint_id, TouchpointHealth.state)
            .join(Touchpoint, Touchpoint.id == TouchpointHealth.touchpoint_id)
            .where(TouchpointHealth.state != "closed", Touchpoint.deleted_at.is_(None))
            .order_by(TouchpointHealth.touchpoint_id)
        ):
            lines.append(
                f'touchgate_touchpoint_paused{{project_id="{pid}",touchpoint_id="{tid}",'
                f'state="{state}"}} 1'
            )
    return "\n".join(lines) + "\n"
