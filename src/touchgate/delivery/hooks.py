"""Settlement listeners: code that must run in the same transaction as a settlement.

The campaigns domain registers one to enqueue the ``first_success`` fallback and
``next`` steps atomically with the results that trigger them: if the settlement
rolls back (a crashed worker, a lost lease), so does the follow-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

# (gid, status, error_msg, attempts) — status is TOU_SUCC or TOU_FAIL.
UserResult = tuple[int, str, str, int]


@dataclass(frozen=True)
class OrderInfo:
    """The order a batch of final results belongs to."""

    order_id: int
    order_no: str
    project_id: int
    touchpoint_id: int
    campaign_id: int | None
    run_id: int | None
    step_id: str | None
    # Set on a replay (the order_no it re-sends): listeners may skip fallbacks for it.
    replay_of: str | None = None
    context: dict[str, Any] | None = field(default=None, hash=False, compare=False)


SettlementListener = Callable[[Session, OrderInfo, list[UserResult]], None]

_listeners: list[SettlementListener] = []

# Modules that register listeners when imported. A worker process imports them
# before settling anything, so a ``touchgate worker`` started without the API
# (or without the scheduler) still runs every follow-up in the settlement.
LISTENER_MODULES = ("touchgate.campaigns.runner",)


def load_listener_modules() -> None:
    import importlib

    for name in LISTENER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise


def register_settlement_listener(fn: SettlementListener) -> None:
    """Call ``fn(session, order_info, results)`` inside every settlement transaction.

    ``results`` holds only the users that became final in this settlement. An
    exception raised by ``fn`` rolls the whole settlement back (it is retried
    when the order's lease expires), so listeners must be deterministic.
    """
    if fn not in _listeners:
        _listeners.append(fn)


def unregister_settlement_listener(fn: SettlementListener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def notify_settled(session: Session, order: OrderInfo, results: list[UserResult]) -> None:
    if not results:
        return
    for fn in list(_listeners):
        fn(session, order, results)
