"""A touchpoint's request rate: the slot arithmetic, the gate a worker waits at (on a
fake clock and an in-memory timeline), the reservation SQL on both databases, and
real workers (threads, and processes on PostgreSQL) against a real endpoint."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

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
    wait_for,
)
from touchgate.delivery import rate_repository
from touchgate.delivery import repository as delivery_repository
from touchgate.delivery.rate_gate import AHEAD_SECONDS, LATE_RETRIES, LONG_WAIT_SECONDS, RateGate
from touchgate.delivery.ratelimit import (
    MAX_GROUP_SECONDS,
    STALE_SECONDS,
    Reservation,
    group_size,
    late_allowance,
    send_times,
    usable,
)
from touchgate.delivery.receipts import TouchpointConfig
from touchgate.models import Order
from touchgate.models.protection import TouchpointProtection
from touchgate.runtime import Runtime

# --- the arithmetic ---------------------------------------------------------------------


def test_a_group_covers_the_waiting_requests_within_bounds() -> None:
    assert group_size(3, 5) == 3
    assert group_size(12, 5) == 5  # at most one second's worth
    assert group_size(1, 5) == 1
    assert group_size(1, 0.2) == 1 and group_size(9, 0.2) == 1  # slower than 1/s: one
    assert group_size(1, 1000) == 100  # at least 0.1 s worth on a fast touchpoint
    assert group_size(5000, 1000) == int(1000 * MAX_GROUP_SECONDS)


def test_send_times_follow_the_database_clock_not_the_local_one() -> None:
    # The database answered at its 1000.0; its first slot for us is 0.5 s later.
    r = Reservation(first_slot=1000.5, count=3, database_now=1000.0)
    # Locally the answer arrived at monotonic 7.0: the slots are 7.5, 7.75, 8.0.
    assert send_times(r, 4, local_now=7.0) == [7.5, 7.75, 8.0]
    now = Reservation(first_slot=1000.0, count=1, database_now=1000.0)
    assert send_times(now, 4, local_now=7.0) == [7.0]  # a free timeline: at once


def test_a_slot_passed_by_more_than_a_moment_is_stale() -> None:
    # Fast: a few milliseconds late at most.
    assert usable(10.0, 10.0, 1000)
    assert usable(10.0, 10.0 + STALE_SECONDS / 2, 1000)
    assert not usable(10.0, 10.0 + 2 * STALE_SECONDS, 1000)
    # Slow: up to half a slot interval late (0.1 s at 5/s).
    assert late_allowance(5) == pytest.approx(0.1)
    assert usable(10.0, 10.09, 5) and not usable(10.0, 10.11, 5)


# --- the gate, on a fake clock ------------------------------------------------------------


class FakeClock:
    """Time stands still unless a test moves it; ``sleep`` records when the
    sleeper would wake (the time its request would start) and returns."""

    def __init__(self) -> None:
        self.now = 100.0
        self.wakes: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.wakes.append(self.now + seconds)
        await asyncio.sleep(0)


class Timeline:
    """The shared slot row in memory, on the same clock (one machine)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.next = 0.0
        self.calls: list[int] = []
        self.removed = False
        self.fail = False
        self.others = 0.0  # seconds other processes reserve before each of ours

    def reserve(self, touchpoint_id: int, count: int, rps: float) -> Reservation | None:
        if self.fail:
            raise ConnectionError("database unreachable")
        if self.removed:
            return None
        self.calls.append(count)
        if self.others:
            self.next = max(self.next, self.clock.now) + self.others
        first = max(self.next, self.clock.now)
        self.next = first + count / rps
        return Reservation(first, count, self.clock.now)


def _tp(rps: float | None, tid: int = 1) -> TouchpointConfig:
    return TouchpointConfig(
        id=tid,
        project_id=1,
        transport="http",
        url="http://127.0.0.1:9/touch",
        token=None,
        signing_secrets=(),
        timeout_seconds=5,
        retry_schedule=None,
        max_in_flight=None,
        receipt_mode="sync",
        receipt_url=None,
        poll_seconds=30,
        timeout_minutes=60,
        plugin_id=None,
        plugin_config=None,
        requests_per_second=rps,
    )


def test_a_touchpoint_without_a_limit_never_waits() -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)

    async def main() -> None:
        await asyncio.gather(*(gate.turn(_tp(None)) for _ in range(20)))

    asyncio.run(main())
    assert timeline.calls == [] and clock.wakes == []


def test_waiting_requests_share_reservations_and_start_one_slot_apart() -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)

    async def main() -> None:
        await asyncio.gather(*(gate.turn(_tp(5)) for _ in range(12)))

    asyncio.run(main())
    # The first asks alone; the 11 that came meanwhile share reservations of at
    # most one second's worth (5 slots at 5/s), not one round trip each.
    assert timeline.calls == [1, 5, 5, 1]
    # The first slot is now (no sleep); the other 11 sleep until theirs.
    assert len(clock.wakes) == 11
    starts = [100.0, *sorted(clock.wakes)]
    assert starts == pytest.approx([100.0 + i * 0.2 for i in range(12)])


def test_two_gates_on_one_timeline_never_share_a_slot() -> None:
    # Two worker processes: each has its own gate, the timeline is shared.
    clock = FakeClock()
    timeline = Timeline(clock)
    a = RateGate(timeline.reserve, clock=clock)
    b = RateGate(timeline.reserve, clock=clock)

    async def main() -> None:
        turns = [g.turn(_tp(10)) for _ in range(8) for g in (a, b)]
        await asyncio.gather(*turns)

    asyncio.run(main())
    starts = sorted([100.0, *clock.wakes])
    assert len(starts) == 16
    gaps = [y - x for x, y in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.1)
    assert starts[-1] == pytest.approx(101.5)  # no slot wasted either


def test_slots_left_over_go_stale_and_are_not_used_late() -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)

    async def one() -> None:
        await gate.turn(_tp(100))

    asyncio.run(one())
    assert timeline.calls == [10]  # 0.1 s worth for one request; 9 slots kept
    clock.now += 0.05
    asyncio.run(one())  # uses a kept slot: no new reservation
    assert timeline.calls == [10]
    clock.now += 5
    asyncio.run(one())  # the kept slots have passed: dropped, a fresh reservation
    assert timeline.calls == [10, 10]
    assert not clock.wakes or max(clock.wakes) <= clock.now


def test_a_request_woken_too_late_takes_a_fresh_slot() -> None:
    class SleepyClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            self.wakes.append(self.now + seconds)
            self.now += seconds + 1.0  # the loop was busy: a second late

    clock = SleepyClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)
    timeline.next = 100.5  # another process holds the timeline until 100.5

    asyncio.run(gate.turn(_tp(5)))
    # Slot 100.5, woken at 101.5: too late to use it; a fresh slot at 101.5 (now).
    assert timeline.calls == [1, 1]
    assert clock.wakes == [100.5] and clock.now == 101.5

    # A loop late every time still sends in the end (after LATE_RETRIES fresh slots).
    timeline.others = 0.5
    asyncio.run(gate.turn(_tp(5)))
    assert timeline.calls == [1, 1] + [1] * (LATE_RETRIES + 1)


def test_a_long_wait_is_worth_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)
    timeline.next = clock.now + 2 * LONG_WAIT_SECONDS  # others hold two minutes

    async def main() -> None:
        await asyncio.gather(*(gate.turn(_tp(0.1, tid=3)) for _ in range(3)))

    with caplog.at_level("WARNING", logger="touchgate.delivery.ratelimit"):
        asyncio.run(main())
    assert len(clock.wakes) == 3
    [record] = caplog.records  # one line, not one per request
    assert "touchpoint 3" in record.getMessage() and "0.1/s" in record.getMessage()


def test_a_limit_removed_meanwhile_lets_the_request_go() -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    timeline.removed = True
    gate = RateGate(timeline.reserve, clock=clock)
    asyncio.run(gate.turn(_tp(1)))
    assert clock.wakes == []


def test_no_request_starts_while_the_database_is_unreachable() -> None:
    clock = FakeClock()
    timeline = Timeline(clock)
    timeline.fail = True
    gate = RateGate(timeline.reserve, clock=clock)
    with pytest.raises(ConnectionError):
        asyncio.run(gate.turn(_tp(5)))
    timeline.fail = False
    asyncio.run(gate.turn(_tp(5)))  # the lane is not stuck
    assert timeline.calls == [1]
    assert gate.backlogged() == []  # nothing is waiting any more


def test_a_worker_claims_no_more_of_a_touchpoint_it_is_far_behind_on() -> None:
    release = asyncio.Event()

    class HeldClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await release.wait()  # requests hold their slots until the test lets go

    clock = HeldClock()
    timeline = Timeline(clock)
    gate = RateGate(timeline.reserve, clock=clock)

    async def settle_down(reservations: int) -> None:
        # Reservations run in a thread: wait for them, then for their requests
        # to reach their (held) sleep.
        for _ in range(1000):
            if len(timeline.calls) >= reservations:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)

    async def main() -> tuple[list[int], list[int]]:
        # 0.5 requests/s: the first request goes at once, the second waits for its
        # slot 2 s away (the timeline then ends 4 s ahead).
        tasks = [asyncio.create_task(gate.turn(_tp(0.5, tid=7))) for _ in range(2)]
        tasks.append(asyncio.create_task(gate.turn(_tp(50, tid=8))))
        await settle_down(3)
        early = gate.backlogged()
        # A third: its slot is 4 s away, the timeline ends 6 s ahead.
        tasks.append(asyncio.create_task(gate.turn(_tp(0.5, tid=7))))
        await settle_down(4)
        later = gate.backlogged()
        release.set()
        await asyncio.gather(*tasks)
        assert gate.backlogged() == []
        return early, later

    assert 4 < AHEAD_SECONDS <= 6
    assert asyncio.run(main()) == ([], [7])


# --- the SQL, on both databases -----------------------------------------------------------


def _limited(runtime: Runtime, rps: float | None) -> int:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch")
    with runtime.tx() as s:
        limit = {"requests_per_second": rps} if rps is not None else None
        s.add(TouchpointProtection(touchpoint_id=tp.id, rate_limit=limit))
    return tp.id


def test_reservations_are_consecutive_and_start_no_earlier_than_now(runtime: Runtime) -> None:
    tid = _limited(runtime, 4)
    with runtime.tx() as s:
        first = rate_repository.reserve_slots(s, tid, 3, 4)
        second = rate_repository.reserve_slots(s, tid, 2, 4)
    assert first is not None and second is not None
    # A fresh timeline starts at the database's now.
    assert first.first_slot == pytest.approx(first.database_now, abs=0.005)
    # The next group starts where the first ended (3 slots of 0.25 s).
    assert second.first_slot == pytest.approx(first.first_slot + 0.75, abs=1e-6)
    assert (first.count, second.count) == (3, 2)
    # A timeline that ended in the past restarts at now (idle time is not credit).
    with runtime.tx() as s:
        s.get_one(TouchpointProtection, tid).next_request_at = 1.0
    with runtime.tx() as s:
        again = rate_repository.reserve_slots(s, tid, 1, 4)
    assert again is not None
    assert again.first_slot == pytest.approx(again.database_now, abs=0.005)
    with runtime.tx() as s:
        assert rate_repository.reserve_slots(s, tid + 999, 1, 4) is None  # no row


def test_the_limits_are_read_for_the_touchpoints_that_have_one(runtime: Runtime) -> None:
    limited = _limited(runtime, 2.5)
    removed = _limited(runtime, None)
    plain = make_touchpoint(runtime, "http://127.0.0.1:9/touch").id
    with runtime.tx() as s:
        versions = delivery_repository.touchpoint_versions(s, [limited, removed, plain])
        assert delivery_repository.touchpoint_versions(s, []) == {}
    assert {tid: rps for tid, (_c, _u, rps) in versions.items()} == {
        limited: 2.5,
        removed: None,
        plain: None,
    }


def test_concurrent_reservations_never_overlap(runtime: Runtime) -> None:
    # Several threads (think: worker processes) reserving at once, each in its own
    # transaction: every slot goes to exactly one of them.
    tid = _limited(runtime, 1000)
    got: list[Reservation] = []
    errors: list[BaseException] = []

    def reserve_many() -> None:
        try:
            for _ in range(15):
                with runtime.tx() as s:
                    r = rate_repository.reserve_slots(s, tid, 2, 1000)
                assert r is not None
                got.append(r)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reserve_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    slots = sorted(r.first_slot + i / 1000 for r in got for i in range(r.count))
    assert len(slots) == 120
    gaps = [y - x for x, y in itertools.pairwise(slots)]
    assert min(gaps) >= 0.001 - 1e-6


# --- end to end: real workers, a real endpoint ---------------------------------------------


def _busiest_second(times: list[float]) -> int:
    """The most requests that started within any one second (a sliding window)."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))


def _limited_run(runtime: Runtime, endpoint: Endpoint, rps: float, orders: int) -> list[str]:
    tp = make_touchpoint(runtime, endpoint.url, batch_size=1)
    with runtime.tx() as s:
        s.add(TouchpointProtection(touchpoint_id=tp.id, rate_limit={"requests_per_second": rps}))
    add_users(runtime, tp.project_id, range(1, orders + 1))
    return enqueue(runtime, tp, list(range(1, orders + 1)))


def _check(runtime: Runtime, endpoint: Endpoint, nos: list[str], rps: int) -> None:
    times = [s.at for s in endpoint.of("touch")]
    assert len(times) == len(nos)  # each order once
    # Never more than the limit in any second, give or take one (slots are exactly
    # 1/rps apart, so jitter of a few ms puts rps + 1 in some window); one more
    # for a loaded machine, where a request arrives up to 80 ms after its slot.
    # Unlimited, these 30 requests arrive within a blink (30 in a second).
    assert _busiest_second(times) <= rps + 2, sorted(t - min(times) for t in times)
    # …and the limit is used, not wasted: 30 slots at 10/s span 2.9 s.
    span = max(times) - min(times)
    assert (len(nos) - 1) / rps - 0.1 <= span <= (len(nos) - 1) / rps + 2.0, span
    assert {st for st, _, _ in results(runtime, nos).values()} == {"TOU_SUCC"}


def test_a_worker_keeps_to_the_touchpoints_rate(runtime: Runtime, endpoint: Endpoint) -> None:
    nos = _limited_run(runtime, endpoint, rps=10, orders=30)
    worker = WorkerThread(runtime, concurrency=16)
    try:
        wait_for(lambda: all_done(runtime, nos), timeout=30, what="all settled")
    finally:
        worker.close()
    _check(runtime, endpoint, nos, rps=10)


def test_two_workers_share_one_rate(runtime: Runtime, endpoint: Endpoint) -> None:
    nos = _limited_run(runtime, endpoint, rps=10, orders=30)
    workers = [WorkerThread(runtime, concurrency=8), WorkerThread(runtime, concurrency=8)]
    try:
        wait_for(lambda: all_done(runtime, nos), timeout=30, what="all settled")
    finally:
        for w in workers:
            w.close()
    assert all(w.worker.sent_orders > 0 for w in workers), "both workers sent"
    _check(runtime, endpoint, nos, rps=10)


def test_receipt_polls_count_towards_the_rate(runtime: Runtime, endpoint: Endpoint) -> None:
    gid_of: dict[str, int] = {}

    def handler(kind: str, doc: dict[str, Any], n: int) -> Reply:
        if kind == "touch":  # accepted, statuses to follow by receipt
            gid_of[doc["orderNo"]] = doc["dataList"][0]["gid"]
            return Reply(body={"code": 0, "sendStatusList": []})
        gid = gid_of[doc["orderNo"]]
        return Reply(body={"code": 0, "sendStatusList": [{"gid": gid, "status": "TOU_SUCC"}]})

    endpoint.handler = handler
    tp = make_touchpoint(
        runtime,
        endpoint.url,
        batch_size=1,
        receipt={"mode": "async", "poll_seconds": 1, "url": endpoint.receipt_url},
    )
    with runtime.tx() as s:
        s.add(TouchpointProtection(touchpoint_id=tp.id, rate_limit={"requests_per_second": 5}))
    add_users(runtime, tp.project_id, range(1, 11))
    nos = enqueue(runtime, tp, list(range(1, 11)))
    worker = WorkerThread(runtime)
    try:
        wait_for(lambda: all_done(runtime, nos), timeout=30, what="all settled")
    finally:
        worker.close()
    assert len(endpoint.of("touch")) == 10 and len(endpoint.of("receipt")) == 10
    times = [s.at for s in endpoint.seen]
    # Deliveries and polls together: 20 requests at 5/s take about 4 s.
    assert _busiest_second(times) <= 5 + 1, sorted(t - min(times) for t in times)
    assert max(times) - min(times) >= 19 / 5 - 0.1
    assert {st for st, _, _ in results(runtime, nos).values()} == {"TOU_SUCC"}


def _worker_process(runtime: Runtime, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": runtime.settings.database_url,
        "TOUCHGATE_SECRET_KEY": runtime.settings.secret_key or "",
        "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    exe = Path(sys.executable).parent / "touchgate"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(exe), "worker", "--id", name, "--concurrency", "8", "--no-scheduler"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_two_worker_processes_share_one_rate(
    runtime: Runtime, endpoint: Endpoint, tmp_path: Path
) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("several worker processes are the PostgreSQL setup")
    nos = _limited_run(runtime, endpoint, rps=10, orders=30)
    owners: set[str] = set()

    def done() -> bool:
        with runtime.tx() as s:
            owners.update(o for o in s.scalars(select(Order.lease_owner)) if o is not None)
        return all_done(runtime, nos)

    procs = [_worker_process(runtime, f"w{i}", tmp_path / f"w{i}.log") for i in range(2)]
    try:
        wait_for(done, timeout=60, what="all settled")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    assert owners == {"w0", "w1"}, "both processes sent"
    _check(runtime, endpoint, nos, rps=10)
