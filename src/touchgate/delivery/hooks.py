"""Settlement follow-ups: code that must run in the same transaction as a settlement.

The campaigns domain supplies one (``campaigns.settlement.settlement_followups``)
to enqueue the ``first_success`` fallback and ``next`` steps atomically with the
results that trigger them: if the settlement rolls back (a crashed worker, a
lost lease), so does the follow-up. They are passed in explicitly:
``settle(session, owner, outcomes, followups=runtime.followups)``; the delivery
package never imports a caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # Set on a replay (the order_no it re-sends): follow-ups may skip fallbacks for it.
    replay_of: str | None = None
    context: dict[str, Any] | None = field(default=None, hash=False, compare=False)


# ``fn(session, order_info, results)``, called inside every settlement transaction.
# ``results`` holds only the users that became final in this settlement. An
# exception rolls the whole settlement back (it is retried when the order's lease
# expires), so follow-ups must be deterministic.
SettlementFollowup = Callable[[Session, OrderInfo, list[UserResult]], None]
Followups = Sequence[SettlementFollowup]
