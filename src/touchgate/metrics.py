"""Prometheus text exposition of delivery counters, read from the database."""

from __future__ import annotations

from sqlalchemy import func, select

from .models import Order, OrderResult
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
        final = dict(
            session.execute(
                select(OrderResult.status, func.count()).group_by(OrderResult.status)
            ).tuples()
        )
        pending = max(0, int(users) - sum(final.values()))
        for status, count in [("pending", pending), *sorted(final.items())]:
            lines.append(f'touchgate_order_users{{status="{status}"}} {count}')
    return "\n".join(lines) + "\n"
