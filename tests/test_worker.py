"""Leases, the settlement fence and several workers on one database."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from test_engine_support import (  # noqa: F401  (fixtures)
    Endpoint,
    Reply,
    WorkerThread,
    add_users,
    all_done,
    endpoint_fixture,
    engine_database_fixture,
    enqueue,
    make_touchpoint,
    results,
    runtime_fixture,
    touch_events,
    wait_for,
)
from touchgate.delivery import repository as repo
from touchgate.delivery.enqueue import enqueue_delivery
from touchgate.delivery.outcomes import AttemptRecord, ClaimedOrder, Delivered, Outcome, Retryable
from touchgate.delivery.settlement import settle
from touchgate.delivery.worker import Worker
from touchgate.models import Order
from touchgate.models.base import utcnow
from touchgate.runtime import Runtime


def _claim(
    runtime: Runtime, owner: str, seconds: float, now_offset: float = 0
) -> list[ClaimedOrder]:
    now = utcnow() + timedelta(seconds=now_offset)
    with runtime.tx() as s:
        rows = repo.claim_due(s, owner, now, now + timedelta(seconds=seconds), 10)
        return [ClaimedOrder(**r._asdict()) for r in rows]


def _success(order: ClaimedOrder) -> Outcome:
    gids = order.batch_gids()
    attempt = AttemptRecord("delivery", utcnow(), http_status=200)
    return Delivered(order, attempt, {g: ("TOU_SUCC", "") for g in gids})


def test_leases_and_the_settlement_fence(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=5)
    add_users(runtime, tp.project_id, range(1, 4))
    [no] = enqueue(runtime, tp, [1, 2, 3])
    [a] = _claim(runtime, "worker-a", seconds=30)
    assert a.order_no == no and a.state == "sending" and a.attempt_count == 0
    assert _claim(runtime, "worker-b", seconds=30) == []  # leased: nobody else gets it
    # 31 s later A's lease has expired (A was killed, or is slow): B takes the order.
    [b] = _claim(runtime, "worker-b", seconds=30, now_offset=31)
    assert b.order_no == no
    with runtime.tx() as s:
        assert settle(s, "worker-a", [_success(a)]) == 0  # fenced off
    assert results(runtime, [no]) == {g: ("pending", None, 0) for g in (1, 2, 3)}
    with runtime.tx() as s:
        assert settle(s, "worker-b", [_success(b)]) == 3
    assert results(runtime, [no]) == {g: ("TOU_SUCC", "", 1) for g in (1, 2, 3)}
    with runtime.tx() as s:
        order = s.scalar(select(Order).where(Order.order_no == no))
        assert order is not None
        assert (order.state, order.lease_owner, order.lease_until) == ("done", None, None)
        # Settling the same outcome again changes nothing (the order is done).
        assert settle(s, "worker-b", [_success(b)]) == 0
    assert len(touch_events(runtime, tp.project_id)) == 3
    assert _claim(runtime, "worker-c", seconds=30, now_offset=3600) == []


def test_committed_orders_wake_this_process_worker(runtime: Runtime) -> None:
    """``Runtime.tx`` wakes the worker's loop once a unit of work that queued orders
    has committed; one that rolled back, or queued nothing, does not."""
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch")
    add_users(runtime, tp.project_id, range(1, 3))

    async def woken_by(work: Callable[[], object]) -> bool:
        event = asyncio.Event()
        unlisten = runtime.orders_queued.listen(event)
        try:
            with contextlib.suppress(RuntimeError):
                await asyncio.to_thread(work)
            await asyncio.sleep(0.05)  # call_soon_threadsafe's callback runs
            return event.is_set()
        finally:
            unlisten()

    def rolled_back() -> None:
        with runtime.tx() as s:
            enqueue_delivery(s, touchpoint=tp, gids=[1], tem_data={})
            raise RuntimeError("the unit of work fails")

    def nothing_queued() -> None:
        with runtime.tx() as s:
            s.execute(select(Order.id)).all()

    assert asyncio.run(woken_by(rolled_back)) is False
    assert asyncio.run(woken_by(nothing_queued)) is False
    assert asyncio.run(woken_by(lambda: enqueue(runtime, tp, [2]))) is True


def test_a_postgresql_claim_is_one_statement(runtime: Runtime) -> None:
    """On PostgreSQL the worker claims on its own connection in autocommit, with one
    statement that leases, reads the payloads and the touchpoints' versions: what
    it claims is what the transaction of ``claim_due`` gives, and it holds the
    lease (nobody else gets the order)."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite claims in a transaction: BEGIN IMMEDIATE is its write lock")
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=2)
    other = make_touchpoint(
        runtime, "http://127.0.0.1:9/other", project_id=tp.project_id, name="other"
    )
    add_users(runtime, tp.project_id, range(1, 6))
    nos = enqueue(runtime, tp, [1, 2, 3, 4])
    enqueue(runtime, other, [5])
    worker = Worker(runtime, worker_id="w")
    worker._unhealthy_read = time.monotonic()  # the breakers were just read
    statements: list[tuple[Any, str]] = []

    def count(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append((conn, statement))

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        connection = worker._connection()  # checked out (and pinged) once, kept
        statements.clear()
        claimed, kept = worker._claim_now(connection, 1, Counter({other.id: 9}), None)
        # One statement on the claims' connection; the touchpoint, new to the
        # worker's cache, was loaded in a transaction of its own.
        assert [c for c, _ in statements].count(connection) == 1
        statements.clear()
        more, _ = worker._claim_now(connection, 5, Counter({other.id: 9}), None)
        assert len(statements) == 1  # its version is current: nothing else is read
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
        worker._close_connection()
    assert kept is None and claimed is not None and more is not None
    got = [order for order, _ in claimed + more]
    assert [o.order_no for o in got] == nos  # the other touchpoint is at its limit
    assert {cached.config.id for _, cached in claimed + more} == {tp.id}
    with runtime.tx() as s:
        owners = dict(s.execute(select(Order.order_no, Order.lease_owner)).tuples().all())
    assert owners == {nos[0]: "w", nos[1]: "w", **{n: None for n in owners if n not in nos}}
    assert _claim(runtime, "x", seconds=30, now_offset=0)[:1] != got[:1]  # leased to w
    # Given back, the same orders come out of claim_due's transaction alike.
    with runtime.tx() as s:
        repo.release_leases(s, "w", [o.id for o in got])
    assert _claim(runtime, "x", seconds=30)[:2] == got


def test_not_yet_due_orders_wait(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch")
    add_users(runtime, tp.project_id, range(1, 2))
    [no] = enqueue(runtime, tp, [1])
    [a] = _claim(runtime, "w", seconds=30)
    retry = Retryable(a, AttemptRecord("delivery", utcnow(), http_status=503), "HTTP 503", (600,))
    with runtime.tx() as s:
        assert settle(s, "w", [retry]) == 0
    assert _claim(runtime, "w", seconds=30) == []  # due in ~10 minutes
    [again] = _claim(runtime, "w", seconds=30, now_offset=721)
    assert again.order_no == no and again.attempt_count == 1
    assert again.last_error == "HTTP 503"


def test_two_workers_share_the_work(runtime: Runtime, endpoint: Endpoint) -> None:
    tp = make_touchpoint(runtime, endpoint.url, batch_size=10)
    add_users(runtime, tp.project_id, range(1, 1001))
    nos = enqueue(runtime, tp, list(range(1, 1001)))
    workers = [WorkerThread(runtime, concurrency=4), WorkerThread(runtime, concurrency=4)]
    try:
        wait_for(lambda: all_done(runtime, nos), timeout=60, what="all settled")
    finally:
        for w in workers:
            w.close()
    assert all(w.worker.sent_orders > 0 for w in workers), "both workers took orders"
    sent = Counter(s.doc["orderNo"] for s in endpoint.of("touch"))
    assert set(sent) == set(nos) and set(sent.values()) == {1}
    assert {st for st, _, _ in results(runtime, nos).values()} == {"TOU_SUCC"}
    assert len(touch_events(runtime, tp.project_id)) == 1000


def test_a_bare_worker_process_gets_the_settlement_followups() -> None:
    # `touchgate worker --no-scheduler` never imports the API or the campaigns
    # package itself; the first_success fallback must still run in its settlements:
    # the runtime hands the campaigns' follow-up to the worker.
    code = (
        "from touchgate.runtime import default_followups; "
        "print([f.__qualname__ for f in default_followups()])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "CampaignSettlementSink.on_settled" in out


def test_a_slow_touchpoint_does_not_hold_up_the_others(
    runtime: Runtime, endpoint: Endpoint
) -> None:
    slow = Endpoint()
    try:
        slow.handler = lambda kind, doc, n: Reply(delay=1.5)
        slow_tp = make_touchpoint(runtime, slow.url, batch_size=1, max_in_flight=1, name="slow")
        fast_tp = make_touchpoint(
            runtime, endpoint.url, project_id=slow_tp.project_id, batch_size=1, name="fast"
        )
        add_users(runtime, slow_tp.project_id, range(1, 10))
        slow_nos = enqueue(runtime, slow_tp, list(range(1, 9)))
        time.sleep(0.01)  # the slow orders are due first
        fast_nos = enqueue(runtime, fast_tp, [9])
        w = WorkerThread(runtime, concurrency=4)
        try:
            wait_for(lambda: all_done(runtime, fast_nos), timeout=5, what="the fast order")
            with runtime.tx() as s:
                open_slow = s.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.order_no.in_(slow_nos), Order.state != "done")
                )
            assert open_slow is not None and open_slow >= 6
            # At most its limit (1) plus a small ready queue is parked for the slow one.
            assert len(slow.seen) <= 2
        finally:
            w.close()
    finally:
        slow.close()
