"""The retry schedule, its jitter and Retry-After (wire-protocol.md §4)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from touchgate.delivery.retry import (
    DEFAULT_SCHEDULE,
    next_delay,
    retry_after_seconds,
    retry_delay,
    schedule_of,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_default_schedule() -> None:
    assert schedule_of(None) == (5, 30, 120, 600, 1800, 3600)
    assert schedule_of([]) == []
    assert schedule_of([1, 2]) == [1, 2]


def test_jitter_stays_within_twenty_percent() -> None:
    rng = random.Random(7)
    for made, base in enumerate(DEFAULT_SCHEDULE, start=1):
        delays = [next_delay(DEFAULT_SCHEDULE, made, rng) for _ in range(500)]
        assert all(d is not None and base * 0.8 <= d <= base * 1.2 for d in delays)
        spread = [d for d in delays if d is not None]
        assert max(spread) - min(spread) > base * 0.3  # really jittered


def test_exhausted_after_the_last_step() -> None:
    assert next_delay([5, 30], 1) is not None
    assert next_delay([5, 30], 2) is not None
    assert next_delay([5, 30], 3) is None
    assert next_delay([], 1) is None


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_seconds(429, {"retry-after": "120"}, NOW) == 120
    assert retry_after_seconds(503, {"Retry-After": "7"}, NOW) == 7
    date = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(503, {"retry-after": date}, NOW) == 90
    past = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(503, {"retry-after": past}, NOW) is None
    assert retry_after_seconds(500, {"retry-after": "120"}, NOW) is None  # only 429/503
    assert retry_after_seconds(429, {"retry-after": "soon"}, NOW) is None
    assert retry_after_seconds(429, {}, NOW) is None


def test_retry_after_wins_only_when_longer() -> None:
    rng = random.Random(1)
    longer = retry_delay([5], 1, status=429, headers={"retry-after": "60"}, now=NOW, rng=rng)
    assert longer == 60
    shorter = retry_delay([5], 1, status=429, headers={"retry-after": "1"}, now=NOW, rng=rng)
    assert shorter is not None and 4 <= shorter <= 6
    assert retry_delay([5], 2, status=429, headers={"retry-after": "60"}, now=NOW) is None
