"""Touchpoint health, the circuit breaker: the rules on their own, then a worker
against a real endpoint that fails and recovers (on a controllable clock), and
the reset route."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

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
from touchgate import metrics
from touchgate.delivery import breaker
from touchgate.delivery.breaker import CLOSED, HALF_OPEN, OPEN, Health, RequestResult, Rules
from touchgate.models import OrderResult
from touchgate.models.base import utcnow
from touchgate.runtime import Runtime
from touchgate.touchpoints import service as touchpoints

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAIL = RequestResult(True, "connection refused")
OK = RequestResult(False)


def test_requests_that_count_as_failures() -> None:
    assert breaker.request_failed(None, "refused")
    assert breaker.request_failed(None, "timeout")
    assert breaker.request_failed(503, None)
    assert not breaker.request_failed(None, "blocked")  # configuration, not an outage
    assert not breaker.request_failed(200, None)
    assert not breaker.request_failed(404, None)  # the endpoint answers: it is up
    assert not breaker.request_failed(429, None)


def test_repeated_failures_open_it_and_a_success_in_between_resets_the_count() -> None:
    rules = Rules(failures_to_open=3)
    h = breaker.after_requests(breaker.CLOSED_HEALTH, [FAIL, FAIL, OK, FAIL, FAIL], T0, rules)
    assert (h.state, h.failures) == (CLOSED, 2)
    h = breaker.after_requests(h, [FAIL], T0, rules)
    assert (h.state, h.since, h.failures) == (OPEN, T0, 3)
    assert h.reason == "3 failed requests in a row; the last: connection refused"
    # Late answers of requests that were in flight change nothing while open.
    assert breaker.after_requests(h, [OK, FAIL], T0 + timedelta(seconds=1), rules) == h


def test_one_probe_after_the_cool_down_closes_or_reopens() -> None:
    rules = Rules(failures_to_open=1, cool_down_seconds=30, probe_timeout_seconds=60)
    opened = Health(OPEN, T0, "x", 1)
    assert not breaker.may_probe(opened, T0 + timedelta(seconds=29), rules)
    assert breaker.may_probe(opened, T0 + timedelta(seconds=30), rules)
    probing = breaker.probing(opened, "w1", T0 + timedelta(seconds=30))
    assert (probing.state, probing.probe_owner) == (HALF_OPEN, "w1")
    # Another worker does not probe too, unless the first one vanished.
    assert not breaker.may_probe(probing, T0 + timedelta(seconds=89), rules)
    assert breaker.may_probe(probing, T0 + timedelta(seconds=90), rules)
    later = T0 + timedelta(seconds=31)
    closed = breaker.after_requests(probing, [OK], later, rules)
    assert (closed.state, closed.since, closed.failures) == (CLOSED, later, 0)
    again = breaker.after_requests(probing, [FAIL], later, rules)
    assert (again.state, again.since) == (OPEN, later)
    assert again.reason == "the probe failed: connection refused"
    assert not breaker.may_probe(breaker.CLOSED_HEALTH, later, rules)


class FakeClock:
    """The worker's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def _health(runtime: Runtime, pid: int, tid: int) -> dict[str, object]:
    with runtime.tx() as s:
        return dict(touchpoints.show_touchpoint(s, pid, tid)["health"])


def test_a_failing_endpoint_pauses_its_deliveries_until_a_probe_succeeds(
    runtime: Runtime, endpoint: Endpoint
) -> None:
    down = True
    endpoint.handler = lambda kind, doc, n: Reply(status=503) if down else Reply()
    tp = make_touchpoint(
        runtime, endpoint.url, batch_size=1, retry_schedule=[1] * 10, max_in_flight=1
    )
    add_users(runtime, tp.project_id, range(1, 11))
    nos = enqueue(runtime, tp, list(range(1, 11)))
    clock = FakeClock()
    rules = Rules(failures_to_open=3, cool_down_seconds=30)
    w = WorkerThread(runtime, concurrency=1, breaker_rules=rules, clock=clock)
    try:
        wait_for(lambda: _health(runtime, tp.project_id, tp.id)["state"] == OPEN, what="open")
        health = _health(runtime, tp.project_id, tp.id)
        assert str(health["reason"]).startswith("3 failed requests in a row; the last: HTTP 503")
        # Operators see it on /metrics too.
        assert (
            f'touchgate_touchpoint_paused{{project_id="{tp.project_id}",'
            f'touchpoint_id="{tp.id}",state="open"}} 1'
        ) in metrics.render(runtime).splitlines()
        sent = len(endpoint.of("touch"))
        # The third failure opens it; one more request may have started while
        # that answer was being settled (claims do not wait for settlements).
        assert 3 <= sent <= 4
        time.sleep(0.5)  # the worker keeps polling: nothing of this touchpoint goes out
        assert len(endpoint.of("touch")) == sent
        # Paused, not failed: every user still waits.
        assert {st for st, _, _ in results(runtime, nos).values()} == {"pending"}

        down = False
        clock.offset = timedelta(seconds=31)  # the cool-down is over: one probe
        wait_for(lambda: all_done(runtime, nos), what="delivered after the probe")
    finally:
        w.close()
    assert _health(runtime, tp.project_id, tp.id)["state"] == CLOSED
    exposition = metrics.render(runtime).splitlines()
    assert not [line for line in exposition if line.startswith("touchgate_touchpoint_paused{")]
    assert 'touchgate_order_users{status="TOU_SUCC"} 10' in exposition
    assert 'touchgate_order_users{status="pending"} 0' in exposition
    assert {st for st, _, _ in results(runtime, nos).values()} == {"TOU_SUCC"}
    # The probe went alone: nothing else was sent until it had been answered.
    probe = endpoint.of("touch")[sent]
    later = [s.at for s in endpoint.of("touch")[sent + 1 :]]
    assert later and min(later) >= probe.at


def test_the_probe_failing_keeps_it_open(runtime: Runtime, endpoint: Endpoint) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(status=502)
    tp = make_touchpoint(runtime, endpoint.url, batch_size=1, retry_schedule=[1] * 10)
    add_users(runtime, tp.project_id, range(1, 6))
    nos = enqueue(runtime, tp, list(range(1, 6)))
    clock = FakeClock()
    rules = Rules(failures_to_open=2, cool_down_seconds=30)
    w = WorkerThread(runtime, concurrency=1, breaker_rules=rules, clock=clock)
    try:
        wait_for(lambda: _health(runtime, tp.project_id, tp.id)["state"] == OPEN, what="open")
        first = _health(runtime, tp.project_id, tp.id)
        sent = len(endpoint.of("touch"))
        clock.offset = timedelta(seconds=31)
        wait_for(
            lambda: (
                _health(runtime, tp.project_id, tp.id)["since"] != first["since"]
                and _health(runtime, tp.project_id, tp.id)["state"] == OPEN
            ),
            what="open again after the probe",
        )
        time.sleep(0.3)
        assert len(endpoint.of("touch")) == sent + 1  # exactly one probe
    finally:
        w.close()
    assert _health(runtime, tp.project_id, tp.id)["reason"] == "the probe failed: HTTP 502"
    with runtime.tx() as s:
        failed = s.scalar(
            select(func.count()).select_from(OrderResult).where(OrderResult.status == "TOU_FAIL")
        )
    assert failed == 0
    assert not all_done(runtime, nos)
