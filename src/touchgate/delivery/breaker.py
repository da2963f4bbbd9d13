"""Touchpoint health, the circuit breaker: pure rules, no I/O.

A touchpoint is ``closed`` (deliveries flow). After ``FAILURES_TO_OPEN``
failed requests in a row (no response: refused, timeout, reset…; or a 5xx
answer) it goes ``open``: workers claim none of its orders, so nothing is
marked failed while it is down — the orders wait. After ``COOL_DOWN_SECONDS``
one worker takes it ``half_open`` and sends a single order as a probe; a
response that is not a failure closes it, a failure opens it again for another
cool-down. ``POST …/health/reset`` closes it by hand.

The state lives in the ``touchpoint_health`` table so every worker process
sees the same breaker; the worker applies ``after_requests`` in the
transaction that settles the requests' outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

FAILURES_TO_OPEN = 5
COOL_DOWN_SECONDS = 30.0
# A probe whose worker vanished (killed while half_open) is handed to another
# worker after this long.
PROBE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Rules:
    """When a breaker opens and how long it stays open (tests use short ones)."""

    failures_to_open: int = FAILURES_TO_OPEN
    cool_down_seconds: float = COOL_DOWN_SECONDS
    probe_timeout_seconds: float = PROBE_TIMEOUT_SECONDS


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Health:
    state: str
    since: datetime | None
    reason: str | None = None
    failures: int = 0
    probe_owner: str | None = None


@dataclass(frozen=True)
class RequestResult:
    """One request that reached (or tried to reach) the touchpoint."""

    failed: bool
    reason: str | None = None


CLOSED_HEALTH = Health(CLOSED, None)


def request_failed(http_status: int | None, error_kind: str | None) -> bool:
    """Does this request count against the touchpoint's health?

    No response at all (connection refused, timeout, reset, DNS) or a 5xx.
    A refused address (``blocked``) is a configuration problem, not an outage.
    """
    if http_status is None:
        return error_kind != "blocked"
    return http_status >= 500


def after_requests(
    health: Health,
    results: Sequence[RequestResult],
    now: datetime,
    rules: Rules = DEFAULT_RULES,
) -> Health:
    """The health after these requests finished (in the order they finished)."""
    h = health
    for r in results:
        if h.state == CLOSED:
            if not r.failed:
                if h.failures:
                    h = replace(h, failures=0)
                continue
            failures = h.failures + 1
            if failures >= rules.failures_to_open:
                reason = f"{failures} failed requests in a row; the last: {r.reason or 'failed'}"
                h = Health(OPEN, now, reason, failures)
            else:
                h = replace(h, failures=failures)
        elif h.state == HALF_OPEN:
            if r.failed:
                h = Health(OPEN, now, f"the probe failed: {r.reason or 'failed'}", h.failures)
            else:
                h = Health(CLOSED, now, None, 0)
        # OPEN: answers of requests that were in flight when it opened change nothing.
    return h


def may_probe(health: Health, now: datetime, rules: Rules = DEFAULT_RULES) -> bool:
    """Can a worker take this touchpoint half-open and send a probe now?"""
    if health.since is None:
        return False
    if health.state == OPEN:
        return now - health.since >= timedelta(seconds=rules.cool_down_seconds)
    if health.state == HALF_OPEN:
        return now - health.since >= timedelta(seconds=rules.probe_timeout_seconds)
    return False


def probing(health: Health, owner: str, now: datetime) -> Health:
    return Health(HALF_OPEN, now, health.reason, health.failures, owner)


def reset(now: datetime) -> Health:
    return Health(CLOSED, now, None, 0)


def public(health: Health | None) -> dict[str, object]:
    """The ``health`` object of touchpoint API responses."""
    h = health or CLOSED_HEALTH
    return {"state": h.state, "since": h.since, "reason": h.reason}
