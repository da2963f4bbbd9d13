"""Orders: enqueueing users for delivery, settling results, replaying failures.

Services take a session and never commit: ``enqueue_delivery`` joins the
caller's transaction (a campaign run), ``settle`` runs in the worker's.

Life of an order::

    sending ──(attempt: retryable)──► sending (later, per the retry schedule)
       │  ├──(failed / sync results / retries exhausted)──► done
       │  └──(async mode, code 0, some users unlisted)──► polling
    polling ──(receipt poll)──► polling … ──(all settled / receipt timeout)──► done

Every user of an order is ``pending`` while the order is ``sending``; each
becomes ``TOU_SUCC`` or ``TOU_FAIL`` exactly once, in the same transaction
that writes its ``$ma_channel_touch`` event and calls the settlement
listeners.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NotFound
from ..models import Order, Touchpoint
from ..models.base import utcnow
from . import protocol
from . import repository as repo
from .hooks import OrderInfo, UserResult, notify_settled
from .protocol import FAIL, SUCC, Verdict
from .retry import retry_delay, schedule_of

log = logging.getLogger("touchgate.delivery")

TOUCH_EVENT = repo.TOUCH_EVENT
# Users read from the store per query while enqueueing: bounded memory, few round trips.
ENQUEUE_CHUNK = 5000
EXCERPT_BYTES = 2048
DEFAULT_POLL_SECONDS = 300
MIN_POLL_SECONDS = 30
DEFAULT_RECEIPT_TIMEOUT_MINUTES = 1440


@dataclass(frozen=True)
class EnqueueResult:
    order_nos: list[str]
    user_count: int


def _chunks(it: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(it)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def enqueue_delivery(
    session: Session,
    *,
    touchpoint: Touchpoint,
    gids: Iterable[int] | None = None,
    users: Iterable[tuple[int, dict[str, Any]]] | None = None,
    tem_data: dict[str, Any],
    campaign_id: int | None = None,
    run_id: int | None = None,
    step_id: str | None = None,
    context: dict[str, Any] | None = None,
    replay_of: str | None = None,
) -> EnqueueResult:
    """Group users into orders of at most the touchpoint's batch size and queue them.

    Give either ``gids`` (attributes are read from the store in chunks; a gid
    that is not in the store is still sent, with ``null`` attributes) or
    ``users`` as ``(gid, attributes)`` pairs. Both are consumed as streams and
    should hold distinct gids (a repeat within one batch is dropped; across
    batches the caller must not repeat a user).
    Each order's ``dataList`` is rendered and encoded once, here: every retry
    resends exactly these bytes under the same ``orderNo``.
    """
    if (gids is None) == (users is None):
        raise ValueError("give exactly one of gids or users")
    batch = max(1, min(int(touchpoint.batch_size or 500), 500))
    chunk_size = batch * max(1, ENQUEUE_CHUNK // batch)
    dynamic_keys = list(touchpoint.user_attributes or [])
    text_keys = protocol.placeholder_keys(touchpoint.template_params or [], tem_data)
    tem = dict(tem_data)
    project_id = touchpoint.project_id
    now = utcnow()
    order_nos: list[str] = []
    total = 0

    def pairs() -> Iterator[list[tuple[int, Mapping[str, Any]]]]:
        if users is not None:
            yield from _chunks(users, chunk_size)
            return
        assert gids is not None
        empty: dict[str, Any] = {}
        for chunk in _chunks(gids, chunk_size):
            attrs = repo.user_attributes(session, project_id, chunk)
            yield [(int(g), attrs.get(g, empty)) for g in chunk]

    dumps = orjson.dumps
    for chunk in pairs():
        order_rows: list[dict[str, Any]] = []
        order_gids: list[list[int]] = []
        for start in range(0, len(chunk), batch):
            part = chunk[start : start + batch]
            gids_of_order = [g for g, _ in part]
            if len(set(gids_of_order)) != len(part):
                # A gid twice in one batch would be one user sent twice under one
                # orderNo (and collide on the per-user result): keep the first.
                unique: dict[int, Mapping[str, Any]] = {}
                for g, a in part:
                    unique.setdefault(g, a)
                part = list(unique.items())
                gids_of_order = list(unique)
            if text_keys:
                entries = [protocol.data_entry(g, a, dynamic_keys, tem, text_keys) for g, a in part]
            else:
                # temData is the same object for everyone; orjson encodes the
                # whole batch in one C call.
                entries = [
                    {"gid": g, "temData": tem, "dynamicData": {k: a.get(k) for k in dynamic_keys}}
                    for g, a in part
                ]
            payload = dumps(entries)
            order_no = protocol.new_order_no()
            order_nos.append(order_no)
            order_gids.append(gids_of_order)
            order_rows.append(
                {
                    "order_no": order_no,
                    "project_id": project_id,
                    "touchpoint_id": touchpoint.id,
                    "campaign_id": campaign_id,
                    "run_id": run_id,
                    "step_id": step_id,
                    "state": "sending",
                    "payload": payload,
                    "user_count": len(part),
                    "attempt_count": 0,
                    "next_attempt_at": now,
                    "replay_of": replay_of,
                    "context": context,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            total += len(part)
        ids = repo.insert_orders(session, order_rows)
        repo.insert_pending_users(
            session,
            [(oid, g) for oid, gs in zip(ids, order_gids, strict=True) for g in gs],
        )
    return EnqueueResult(order_nos=order_nos, user_count=total)


# --- the orders API ---------------------------------------------------------------


def get_order(session: Session, project_id: int, order_no: str) -> Order:
    order = repo.get_order(session, project_id, order_no)
    if order is None:
        raise NotFound(f"Order {order_no!r} does not exist in project {project_id}.")
    return order


def order_detail(session: Session, project_id: int, order_no: str) -> dict[str, Any]:
    order = get_order(session, project_id, order_no)
    users = repo.order_users(session, order.id)
    counts = {"pending": 0, SUCC: 0, FAIL: 0}
    for u in users:
        counts[u.status] = counts.get(u.status, 0) + 1
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
        "pending": counts["pending"],
        "users": [
            {"gid": u.gid, "status": u.status, "error_msg": u.error_msg, "attempts": u.attempts}
            for u in users
        ],
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


ORDER_STATES = ("sending", "polling", "done")


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
            "pending": counts[o.id].get("pending", 0),
            "last_error": o.last_error,
            "replay_of": o.replay_of,
            "created_at": o.created_at,
        }
        for o in rows
    ]
    return items, total


def replay(session: Session, order_no: str, *, project_id: int | None = None) -> str:
    """Re-send the failed users of an order as a new order; returns its order_no.

    The new order carries exactly the failed users' frozen ``dataList`` entries
    (same values as the first time) under a fresh ``orderNo``.
    """
    order = (
        get_order(session, project_id, order_no)
        if project_id is not None
        else repo.get_order_any(session, order_no)
    )
    if order is None:
        raise NotFound(f"Order {order_no!r} does not exist.")
    failed = set(repo.failed_gids(session, order.id))
    if not failed:
        raise Conflict(
            f"Order {order_no} has no failed users to replay.",
            code="nothing_to_replay",
        )
    entries = [e for e in orjson.loads(order.payload) if e.get("gid") in failed]
    new_no = protocol.new_order_no()
    now = utcnow()
    [new_id] = repo.insert_orders(
        session,
        [
            {
                "order_no": new_no,
                "project_id": order.project_id,
                "touchpoint_id": order.touchpoint_id,
                "campaign_id": order.campaign_id,
                "run_id": order.run_id,
                "step_id": order.step_id,
                "state": "sending",
                "payload": protocol.encode_data_list(entries),
                "user_count": len(entries),
                "attempt_count": 0,
                "next_attempt_at": now,
                "replay_of": order.order_no,
                "context": order.context,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    repo.insert_pending_users(session, [(new_id, e["gid"]) for e in entries])
    return new_no


# --- settlement ---------------------------------------------------------------------


# Every dataList entry starts with its gid, then temData (we encode it so);
# inside JSON strings a quote is escaped, so this cannot match string content.
_ENTRY_GID = re.compile(rb'\{"gid":(-?\d+),"temData":')


def protocol_gids(payload: bytes) -> list[int]:
    """The gids of a frozen dataList, in order, without decoding the whole batch."""
    return [int(g) for g in _ENTRY_GID.findall(payload)]


@dataclass
class ClaimedOrder:
    """An order leased to a worker, with what sending it needs."""

    id: int
    order_no: str
    project_id: int
    touchpoint_id: int
    campaign_id: int | None
    run_id: int | None
    step_id: str | None
    state: str
    payload: bytes
    user_count: int
    attempt_count: int
    receipt_deadline: datetime | None
    replay_of: str | None
    context: dict[str, Any] | None
    last_error: str | None

    @property
    def info(self) -> OrderInfo:
        return OrderInfo(
            order_id=self.id,
            order_no=self.order_no,
            project_id=self.project_id,
            touchpoint_id=self.touchpoint_id,
            campaign_id=self.campaign_id,
            run_id=self.run_id,
            step_id=self.step_id,
            replay_of=self.replay_of,
            context=self.context,
        )

    def batch_gids(self) -> list[int]:
        return protocol_gids(self.payload)


@dataclass
class Outcome:
    """What one attempt (a delivery or a receipt poll) produced, to be settled.

    ``verdict`` is the protocol reading; ``TIMEOUT`` (``None`` verdict with
    ``receipt_timeout``) means the receipt deadline passed without a request.
    """

    order: ClaimedOrder
    kind: str  # delivery | receipt
    mode: str  # sync | async
    at: datetime
    verdict: Verdict | None
    reason: str = ""
    statuses: dict[int, tuple[str, str]] = field(default_factory=dict)
    batch_gids: list[int] = field(default_factory=list)
    duration_ms: int = 0
    http_status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    headers: Mapping[str, str] | None = None
    retry_schedule: Sequence[int] | None = None
    poll_seconds: int = DEFAULT_POLL_SECONDS
    timeout_minutes: int = DEFAULT_RECEIPT_TIMEOUT_MINUTES
    receipt_timeout: bool = False
    record_attempt: bool = True


def excerpt_of(body: bytes | None) -> str | None:
    if not body:
        return None
    return body[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def poll_interval(receipt: Mapping[str, Any] | None) -> int:
    seconds = int((receipt or {}).get("poll_seconds") or DEFAULT_POLL_SECONDS)
    return max(MIN_POLL_SECONDS, seconds)


def receipt_timeout_minutes(receipt: Mapping[str, Any] | None) -> int:
    minutes = int((receipt or {}).get("timeout_minutes") or DEFAULT_RECEIPT_TIMEOUT_MINUTES)
    return max(1, min(minutes, 7 * 24 * 60))


@dataclass
class _Plan:
    """The writes one outcome turns into."""

    state: str
    attempt_count: int
    next_attempt_at: datetime
    receipt_deadline: datetime | None
    last_error: str | None
    all_same: tuple[str, str] | None = None  # every pending user gets this
    per_user: dict[int, tuple[str, str]] = field(default_factory=dict)
    user_attempts: int = 0


def _plan(o: Outcome, db_state: str, pending: list[int], now: datetime) -> _Plan:
    order = o.order
    deadline = order.receipt_deadline
    if o.kind == "delivery" and db_state == "sending":
        made = order.attempt_count + 1
        p = _Plan("done", made, now, deadline, o.reason or None, user_attempts=made)
        if o.verdict is Verdict.RETRY:
            delay = retry_delay(
                schedule_of(o.retry_schedule),
                made,
                status=o.http_status,
                headers=o.headers,
                now=now,
            )
            if delay is None:
                p.all_same = (FAIL, f"retries exhausted: {o.reason}")
            else:
                p.state = "sending"
                p.next_attempt_at = now + timedelta(seconds=delay)
        elif o.verdict is Verdict.FAIL_ALL:
            p.all_same = (FAIL, o.reason)
        else:
            pend = set(pending)
            p.per_user = {g: st for g, st in o.statuses.items() if g in pend}
            if o.mode == "async" and len(p.per_user) < len(pend):
                p.state = "polling"
                p.receipt_deadline = now + timedelta(minutes=o.timeout_minutes)
                p.next_attempt_at = min(now + timedelta(seconds=o.poll_seconds), p.receipt_deadline)
        return p
    # A receipt poll (or its deadline) on an order waiting for receipts.
    p = _Plan(
        "polling",
        order.attempt_count,
        now,
        deadline,
        order.last_error,
        user_attempts=order.attempt_count,
    )
    if o.receipt_timeout:
        p.state = "done"
        p.all_same = (FAIL, "receipt timeout")
        return p
    if o.verdict is Verdict.RESULTS:
        pend = set(pending)
        p.per_user = {g: st for g, st in o.statuses.items() if g in pend}
        if len(p.per_user) >= len(pend):
            p.state = "done"
            return p
    else:
        p.last_error = o.reason or p.last_error
    nxt = now + timedelta(seconds=o.poll_seconds)
    p.next_attempt_at = min(nxt, deadline) if deadline is not None else nxt
    return p


def settle(session: Session, owner: str, outcomes: Sequence[Outcome]) -> int:
    """Write the outcomes of many attempts in one transaction; returns users settled.

    Only orders still leased to ``owner`` are touched (a worker that lost its
    lease settles nothing). Final results, their ``$ma_channel_touch`` events,
    the attempt log rows, the orders' next state and the settlement listeners
    all commit together.
    """
    if not outcomes:
        return 0
    now = utcnow()
    owned = repo.lock_owned(session, [o.order.id for o in outcomes], owner)
    live = [o for o in outcomes if o.order.id in owned]
    if len(live) < len(outcomes):
        lost = [o.order.order_no for o in outcomes if o.order.id not in owned]
        log.warning("lease lost before settling %d order(s): %s", len(lost), lost[:5])
    polling_ids = [o.order.id for o in live if owned[o.order.id] != "sending"]
    pending_of = repo.pending_gids(session, polling_ids)
    all_same_rows: list[dict[str, Any]] = []
    per_user_rows: list[dict[str, Any]] = []
    order_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    listener_calls: list[tuple[OrderInfo, list[UserResult]]] = []
    settled = 0
    events: list[tuple[int, int, str]] = []
    for o in live:
        order = o.order
        db_state = owned[order.id]
        if db_state == "done":
            continue
        pending = o.batch_gids if db_state == "sending" else pending_of.get(order.id, [])
        plan = _plan(o, db_state, pending, now)
        results: list[UserResult] = []
        n = plan.user_attempts
        if plan.all_same is not None:
            st, msg = plan.all_same
            all_same_rows.append(
                {"o_id": order.id, "status": st, "error_msg": msg, "attempts": n, "settled_at": now}
            )
            results = [(g, st, msg, n) for g in pending]
        elif plan.per_user:
            values = set(plan.per_user.values())
            if len(plan.per_user) == len(pending) and len(values) == 1:
                st, msg = next(iter(values))
                all_same_rows.append(
                    {
                        "o_id": order.id,
                        "status": st,
                        "error_msg": msg,
                        "attempts": n,
                        "settled_at": now,
                    }
                )
            else:
                per_user_rows.extend(
                    {
                        "o_id": order.id,
                        "u_gid": g,
                        "status": st,
                        "error_msg": msg,
                        "attempts": n,
                        "settled_at": now,
                    }
                    for g, (st, msg) in plan.per_user.items()
                )
            results = [(g, st, msg, n) for g, (st, msg) in plan.per_user.items()]
        order_rows.append(
            {
                "o_id": order.id,
                "state": plan.state,
                "attempt_count": plan.attempt_count,
                "next_attempt_at": plan.next_attempt_at,
                "receipt_deadline": plan.receipt_deadline,
                "last_error": plan.last_error,
                "updated_at": now,
            }
        )
        if o.record_attempt:
            attempt_rows.append(
                {
                    "order_id": order.id,
                    "kind": o.kind,
                    "at": o.at,
                    "duration_ms": o.duration_ms,
                    "http_status": o.http_status,
                    "error": o.error,
                    "response_excerpt": o.excerpt,
                }
            )
        if results:
            settled += len(results)
            base = {
                "campaign_id": order.campaign_id,
                "step_id": order.step_id,
                "touchpoint_id": order.touchpoint_id,
                "order_no": order.order_no,
            }
            pid = order.project_id
            # Users of one order mostly share a result: encode each distinct
            # properties object once.
            encoded: dict[tuple[str, str, int], str] = {}
            for g, st, msg, k in results:
                props = encoded.get((st, msg, k))
                if props is None:
                    props = encoded[(st, msg, k)] = orjson.dumps(
                        {**base, "status": st, "error_msg": msg, "attempts": k}
                    ).decode()
                events.append((pid, g, props))
            listener_calls.append((order.info, results))
    repo.settle_all_pending(session, all_same_rows)
    repo.settle_users(session, per_user_rows)
    repo.update_orders(session, order_rows)
    repo.insert_attempts(session, attempt_rows)
    repo.insert_touch_events(session, now, events)
    for info, results in listener_calls:
        notify_settled(session, info, results)
    return settled
