"""Settlement without a sender: typed outcomes written by ``settle`` at a given time.

The plan is pure (outcome + state → writes); ``settle`` writes one result row per
user, logs every attempt (late ones too) and feeds the campaign deliveries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from test_engine_support import (  # noqa: F401  (fixtures)
    add_users,
    engine_database_fixture,
    enqueue,
    make_touchpoint,
    results,
    runtime_fixture,
    touch_events,
)
from touchgate.campaigns import repository as campaigns_repo
from touchgate.delivery import orders
from touchgate.delivery import repository as repo
from touchgate.delivery.outcomes import (
    AttemptRecord,
    ClaimedOrder,
    Delivered,
    Failed,
    ReceiptPending,
    ReceiptPolicy,
    ReceiptTimedOut,
    Retryable,
)
from touchgate.delivery.settlement import LEASE_LOST, plan, settle
from touchgate.models import Attempt, OrderResult
from touchgate.models.base import utcnow
from touchgate.runtime import Runtime

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=utcnow().tzinfo)


def _order(
    state: str = "sending", attempts: int = 0, deadline: datetime | None = None
) -> ClaimedOrder:
    payload = b'[{"gid":1,"temData":{}},{"gid":2,"temData":{}},{"gid":3,"temData":{}}]'
    return ClaimedOrder(
        id=1, order_no="o1", project_id=1, touchpoint_id=1, campaign_id=None, run_id=None,
        step_id=None, state=state, payload=payload, user_count=3, attempt_count=attempts,
        receipt_deadline=deadline, replay_of=None, context=None, last_error=None,
    )  # fmt: skip


def _attempt(kind: str = "delivery", status: int | None = 200) -> AttemptRecord:
    return AttemptRecord("receipt" if kind == "receipt" else "delivery", T0, 12, status)


def test_the_plan_of_each_outcome() -> None:
    order = _order()
    # A retry is due per the schedule (±20 % jitter); nobody settles.
    p = plan(Retryable(order, _attempt(status=503), "HTTP 503", (100,)), "sending", [1, 2, 3], T0)
    assert (p.state, p.attempt_count, p.finals, p.last_error) == ("sending", 1, {}, "HTTP 503")
    assert T0 + timedelta(seconds=80) <= p.next_attempt_at <= T0 + timedelta(seconds=120)
    # Retries exhausted: every user fails with the reason.
    p = plan(Retryable(order, _attempt(status=503), "HTTP 503", ()), "sending", [1, 2, 3], T0)
    assert p.state == "done"
    assert p.finals == {g: ("TOU_FAIL", "retries exhausted: HTTP 503") for g in (1, 2, 3)}
    p = plan(Failed(order, _attempt(status=404), "HTTP 404"), "sending", [1, 2, 3], T0)
    assert (p.state, p.finals) == ("done", {g: ("TOU_FAIL", "HTTP 404") for g in (1, 2, 3)})
    # Async mode: the listed users settle, the others wait for receipts.
    policy = ReceiptPolicy("async", poll_seconds=60, timeout_minutes=10)
    got = Delivered(order, _attempt(), {1: ("TOU_SUCC", "")}, policy)
    p = plan(got, "sending", [1, 2, 3], T0)
    assert (p.state, p.finals) == ("polling", {1: ("TOU_SUCC", "")})
    assert p.next_attempt_at == T0 + timedelta(seconds=60)
    assert p.receipt_deadline == T0 + timedelta(minutes=10)
    # A receipt poll: results for some, nothing usable, then the deadline.
    polling = _order("polling", attempts=1, deadline=T0 + timedelta(minutes=10))
    got = Delivered(
        polling, _attempt("receipt"), {2: ("TOU_FAIL", "x"), 9: ("TOU_SUCC", "")}, policy
    )
    p = plan(got, "polling", [2, 3], T0)
    assert (p.state, p.finals, p.attempt_count) == ("polling", {2: ("TOU_FAIL", "x")}, 1)
    p = plan(
        ReceiptPending(polling, _attempt("receipt", 500), "HTTP 500", policy), "polling", [3], T0
    )
    assert (p.state, p.finals, p.last_error) == ("polling", {}, "HTTP 500")
    p = plan(ReceiptTimedOut(polling, T0), "polling", [3], T0)
    assert (p.state, p.finals) == ("done", {3: ("TOU_FAIL", "receipt timeout")})


def _claim(runtime: Runtime, owner: str, at: datetime, seconds: float = 30) -> list[ClaimedOrder]:
    with runtime.tx() as s:
        rows = repo.claim_due(s, owner, at, at + timedelta(seconds=seconds), 10)
        return [ClaimedOrder(**r._asdict()) for r in rows]


def _success(order: ClaimedOrder, at: datetime) -> Delivered:
    statuses = {g: ("TOU_SUCC", "") for g in order.batch_gids()}
    return Delivered(order, AttemptRecord("delivery", at, 5, 200), statuses)


def test_a_late_attempt_is_logged_and_settles_nothing(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=5)
    add_users(runtime, tp.project_id, range(1, 4))
    [no] = enqueue(runtime, tp, [1, 2, 3])
    now = utcnow()
    [a] = _claim(runtime, "worker-a", now)
    # A's lease runs out; B takes the order and settles it first.
    [b] = _claim(runtime, "worker-b", now + timedelta(seconds=31))
    with runtime.tx() as s:
        assert settle(s, "worker-b", [_success(b, now + timedelta(seconds=32))]) == 3
    with runtime.tx() as s:
        assert settle(s, "worker-a", [_success(a, now + timedelta(seconds=1))]) == 0
    assert results(runtime, [no]) == {g: ("TOU_SUCC", "", 1) for g in (1, 2, 3)}
    assert len(touch_events(runtime, tp.project_id)) == 3
    with runtime.tx() as s:
        log = orders.order_detail(s, tp.project_id, no)["attempts"]
    # Both requests reached the endpoint: both are in the attempt log.
    assert [(x["http_status"], x["error"]) for x in log] == [(200, None), (200, LEASE_LOST)]


def test_a_lost_lease_before_anyone_settles(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=5)
    add_users(runtime, tp.project_id, range(1, 3))
    [no] = enqueue(runtime, tp, [1, 2])
    now = utcnow()
    [a] = _claim(runtime, "worker-a", now)
    _claim(runtime, "worker-b", now + timedelta(seconds=31))
    failed = Retryable(a, AttemptRecord("delivery", now, 30, None, "timeout"), "timeout")
    with runtime.tx() as s:
        assert settle(s, "worker-a", [failed]) == 0
        assert s.scalar(select(Attempt.error)) == f"{LEASE_LOST} (timeout)"
        assert s.scalar(select(func.count()).select_from(OrderResult)) == 0
    assert results(runtime, [no]) == {1: ("pending", None, 0), 2: ("pending", None, 0)}


def test_a_user_has_one_result_per_order(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=5)
    add_users(runtime, tp.project_id, range(1, 3))
    enqueue(runtime, tp, [1, 2])
    [a] = _claim(runtime, "w", utcnow())
    row = repo.SettledGroup(a.id, a.project_id, "TOU_SUCC", "", 1, "{}", [1])
    with runtime.tx() as s:
        repo.insert_results(s, utcnow(), [row])
    # COPY on PostgreSQL raises the driver's error, SQLite's executemany SQLAlchemy's.
    with pytest.raises((IntegrityError, psycopg.errors.IntegrityError)), runtime.tx() as s:
        repo.insert_results(s, utcnow(), [row])
        s.flush()


def test_followups_run_with_the_settlement(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=5)
    add_users(runtime, tp.project_id, range(1, 3))
    enqueue(runtime, tp, [1, 2], campaign_id=3, step_id="s")
    [a] = _claim(runtime, "w", utcnow())
    seen: list[tuple[int | None, list[tuple[int, str, str, int]]]] = []
    with runtime.tx() as s:
        settle(
            s,
            "w",
            [_success(a, utcnow())],
            followups=[lambda _s, info, res: seen.append((info.campaign_id, res))],
        )
    assert seen == [(3, [(1, "TOU_SUCC", "", 1), (2, "TOU_SUCC", "", 1)])]


def test_campaign_deliveries_list_pending_users(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=3)
    add_users(runtime, tp.project_id, range(1, 7))
    first, second = enqueue(runtime, tp, [1, 2, 3, 4, 5, 6], campaign_id=9, step_id="s", run_id=1)
    claimed = {o.order_no: o for o in _claim(runtime, "w", utcnow())}
    o1 = claimed[first]
    statuses = {1: ("TOU_SUCC", ""), 2: ("TOU_FAIL", "blocked"), 3: ("TOU_SUCC", "")}
    got = Delivered(o1, AttemptRecord("delivery", utcnow(), 5, 200), statuses)
    with runtime.tx() as s:
        assert settle(s, "w", [got]) == 3
    flt = campaigns_repo.DeliveryFilter
    with runtime.tx() as s:
        items, total = campaigns_repo.list_deliveries(s, 9, flt(), limit=100, offset=0)
        assert total == 6
        assert [(i["gid"], i["status"]) for i in items] == [
            (1, "TOU_SUCC"), (2, "TOU_FAIL"), (3, "TOU_SUCC"),
            (4, "pending"), (5, "pending"), (6, "pending"),
        ]  # fmt: skip
        assert {i["order_no"] for i in items[3:]} == {second}
        items, total = campaigns_repo.list_deliveries(
            s, 9, flt(status="pending"), limit=2, offset=1
        )
        assert (total, [i["gid"] for i in items]) == (3, [5, 6])
        items, total = campaigns_repo.list_deliveries(s, 9, flt(), limit=2, offset=2)
        assert (total, [i["gid"] for i in items]) == (6, [3, 4])
        items, total = campaigns_repo.list_deliveries(s, 9, flt(gid=5), limit=10, offset=0)
        assert (total, [(i["gid"], i["status"]) for i in items]) == (1, [(5, "pending")])
        # The export pages through the same rows.
        seen: list[int] = []
        after = None
        while True:
            rows, after = campaigns_repo.deliveries_page(s, 9, flt(), after, 2)
            seen += [r["gid"] for r in rows]
            if after is None:
                break
        assert seen == [1, 2, 3, 4, 5, 6]
