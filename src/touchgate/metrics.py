"""Prometheus text exposition of delivery counters, read from the database."""

from __future__ import annotations

from sqlalchemy import func, select

from .models import Order, OrderUser
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
            "# HELP touchgate_order_users Per-user results by status.",
            "# TYPE touchgate_order_users gauge",
        ]
        for status, count in session.execute(
            select(OrderUser.status, func.count()).group_by(OrderUser.status)
        ):
            lines.append(f'touchgate_order_users{{status="{status}"}} {count}')
    return "\n".join(lines) + "\n"
