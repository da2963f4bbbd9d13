"""Settlement: writing what attempts produced, many orders in one transaction.

Life of an order::

    sending ──(Retryable)──► sending (later, per the retry schedule)
       │  ├──(Failed / Delivered in sync mode / retries exhausted)──► done
       │  └──(Delivered in async mode, some users unlisted)──► polling
    polling ──(receipt poll)──► polling … ──(all settled / ReceiptTimedOut)──► done

A user of an order is pending until its final result is written: ONE
``order_results`` row (``TOU_SUCC`` or ``TOU_FAIL``, exactly once — the primary
key refuses a second) in the same transaction as its ``$ma_channel_touch``
event, the order's next state, the attempt log and the settlement follow-ups.

``plan`` is pure (outcome + the order's state in the database → the writes);
``settle`` does the I/O. Services never commit: the worker's transaction does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.orm import Session

from ..models.base import utcnow
from . import repository as repo
from .hooks import Followups, OrderInfo, UserResult
from .outcomes import (
    DEFAULT_POLL_SECONDS,
    AttemptRecord,
    Delivered,
    Failed,
    Outcome,
    ReceiptPending,
    ReceiptTimedOut,
    Retryable,
)
from .protocol import FAIL
from .retry import retry_delay, schedule_of

log = logging.getLogger("touchgate.delivery")

LEASE_LOST = "settled late: lease lost"
ALREADY_DONE = "settled late: the order was already done"


@dataclass(frozen=True)
class Plan:
    """The writes one outcome turns into: the order's next state and the users
    that become final (``finals``: gid → (status, error message))."""

    state: str
    attempt_count: int
    next_attempt_at: datetime
    receipt_deadline: datetime | None
    last_error: str | None
    finals: Mapping[int, tuple[str, str]]


def _all(gids: Sequence[int], status: str, msg: str) -> dict[int, tuple[str, str]]:
    result = (status, msg)
    return dict.fromkeys(gids, result)


def _finals(
    statuses: Mapping[int, tuple[str, str]], pending: set[int]
) -> Mapping[int, tuple[str, str]]:
    """The final statuses of the users still pending (usually all of them: then
    the answer's own mapping, checked in one set operation)."""
    if statuses.keys() <= pending:
        return statuses
    return {g: st for g, st in statuses.items() if g in pending}


def plan(o: Outcome, db_state: str, pending: Sequence[int], now: datetime) -> Plan:
    """What settling ``o`` does to an order in ``db_state`` whose users ``pending``
    have no result yet (pure)."""
    order = o.order
    deadline = order.receipt_deadline
    if db_state == "sending" and not isinstance(o, ReceiptTimedOut | ReceiptPending):
        made = order.attempt_count + 1
        if isinstance(o, Retryable):
            delay = retry_delay(
                schedule_of(o.retry_schedule),
                made,
                status=o.attempt.http_status,
                headers=o.attempt.headers,
                now=now,
            )
            if delay is not None:
                due = now + timedelta(seconds=delay)
                return Plan("sending", made, due, deadline, o.reason or None, {})
            finals: Mapping[int, tuple[str, str]] = _all(
                pending, FAIL, f"retries exhausted: {o.reason}"
            )
            return Plan("done", made, now, deadline, o.reason or None, finals)
        if isinstance(o, Failed):
            return Plan(
                "done", made, now, deadline, o.reason or None, _all(pending, FAIL, o.reason)
            )
        pend = set(pending)
        finals = _finals(o.statuses, pend)
        if o.receipt.mode == "async" and len(finals) < len(pend):
            until = now + timedelta(minutes=o.receipt.timeout_minutes)
            due = min(now + timedelta(seconds=o.receipt.poll_seconds), until)
            return Plan("polling", made, due, until, o.note or None, finals)
        return Plan("done", made, now, deadline, o.note or None, finals)
    # A receipt poll (or its deadline) on an order waiting for receipts.
    made = order.attempt_count
    if isinstance(o, ReceiptTimedOut):
        return Plan(
            "done", made, now, deadline, order.last_error, _all(pending, FAIL, "receipt timeout")
        )
    finals = {}
    last_error = order.last_error
    if isinstance(o, Delivered):
        pend = set(pending)
        finals = _finals(o.statuses, pend)
        if len(finals) >= len(pend):
            return Plan("done", made, now, deadline, last_error, finals)
        poll_seconds = o.receipt.poll_seconds
    elif isinstance(o, ReceiptPending):
        last_error = o.reason or last_error
        poll_seconds = o.receipt.poll_seconds
    else:  # a delivery outcome on an order that is not sending any more
        last_error = getattr(o, "reason", "") or last_error
        poll_seconds = DEFAULT_POLL_SECONDS
    nxt = now + timedelta(seconds=poll_seconds)
    return Plan(
        "polling", made, min(nxt, deadline) if deadline else nxt, deadline, last_error, finals
    )


def _by_result(finals: Mapping[int, tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    """The users of each distinct result (one set pass when all share one)."""
    results = set(finals.values())
    if len(results) == 1:
        return {results.pop(): list(finals)}
    by_result: dict[tuple[str, str], list[int]] = {}
    for g, result in finals.items():
        by_result.setdefault(result, []).append(g)
    return by_result


def _attempt_row(order_id: int, a: AttemptRecord, late: str | None = None) -> dict[str, Any]:
    error = a.error
    if late is not None:
        error = f"{late} ({error})" if error else late
    return {
        "order_id": order_id,
        "kind": a.kind,
        "at": a.at,
        "duration_ms": a.duration_ms,
        "http_status": a.http_status,
        "error": error,
        "response_excerpt": a.excerpt,
    }


def settle(
    session: Session,
    owner: str,
    outcomes: Sequence[Outcome],
    *,
    followups: Followups = (),
    now: datetime | None = None,
) -> int:
    """Write the outcomes of many attempts in one transaction; returns users settled.

    Only orders still leased to ``owner`` move on (a worker that lost its lease
    settles nothing: the fence). Every request that was made is still logged:
    an attempt on an order leased to someone else, or already done, gets its
    attempt row marked "settled late". Final results, their ``$ma_channel_touch``
    events, the attempt log, the orders' next state and the ``followups`` all
    commit together.
    """
    if not outcomes:
        return 0
    now = now or utcnow()
    owned = repo.lock_owned(session, [o.order.id for o in outcomes], owner)
    attempt_rows: list[dict[str, Any]] = []
    lost = [o for o in outcomes if o.order.id not in owned]
    if lost:
        log.warning(
            "lease lost before settling %d order(s): %s",
            len(lost),
            [o.order.order_no for o in lost[:5]],
        )
        still = repo.existing_order_ids(
            session, [o.order.id for o in lost if o.attempt is not None]
        )
        attempt_rows.extend(
            _attempt_row(o.order.id, o.attempt, LEASE_LOST)
            for o in lost
            if o.attempt is not None and o.order.id in still
        )
    live = [o for o in outcomes if o.order.id in owned]
    polling_ids = [o.order.id for o in live if owned[o.order.id] == "polling"]
    settled_of = repo.settled_gids(session, polling_ids)
    groups: list[repo.SettledGroup] = []
    order_rows: list[dict[str, Any]] = []
    followup_calls: list[tuple[OrderInfo, list[UserResult]]] = []
    settled = 0
    for o in live:
        order = o.order
        db_state = owned[order.id]
        if db_state == "done":
            if o.attempt is not None:
                attempt_rows.append(_attempt_row(order.id, o.attempt, ALREADY_DONE))
            continue
        gids = order.batch_gids()
        if db_state == "polling":
            done = settled_of.get(order.id, set())
            pending: Sequence[int] = [g for g in gids if g not in done]
        else:
            pending = gids
        p = plan(o, db_state, pending, now)
        order_rows.append(
            {
                "o_id": order.id,
                "state": p.state,
                "attempt_count": p.attempt_count,
                "next_attempt_at": p.next_attempt_at,
                "receipt_deadline": p.receipt_deadline,
                "last_error": p.last_error,
                "updated_at": now,
            }
        )
        if o.attempt is not None:
            attempt_rows.append(_attempt_row(order.id, o.attempt))
        if not p.finals:
            continue
        n = p.attempt_count
        base = {
            "campaign_id": order.campaign_id,
            "step_id": order.step_id,
            "touchpoint_id": order.touchpoint_id,
            "order_no": order.order_no,
        }
        # Users of one order mostly share a result: one group per distinct result.
        by_result = _by_result(p.finals)
        for (status, error_msg), group in by_result.items():
            props = {**base, "status": status, "error_msg": error_msg, "attempts": n}
            groups.append(
                repo.SettledGroup(
                    order.id,
                    order.project_id,
                    status,
                    error_msg,
                    n,
                    orjson.dumps(props).decode(),
                    group,
                )
            )
        settled += len(p.finals)
        if followups:
            results = [(g, st, msg, n) for g, (st, msg) in p.finals.items()]
            followup_calls.append((order.info, results))
    repo.insert_results(session, now, groups)
    repo.update_orders(session, order_rows)
    repo.insert_attempts(session, attempt_rows)
    for info, results in followup_calls:
        for followup in followups:
            followup(session, info, results)
    return settled
