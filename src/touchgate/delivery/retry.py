"""When to try a batch again (wire-protocol.md §4).

The schedule lists the delays after the first attempt; each delay gets ±20 %
jitter so many batches failing together do not come back together. A
``Retry-After`` on 429/503 wins when it asks for longer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_SCHEDULE: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600)
JITTER = 0.2
# Never wait longer than this for a Retry-After, whatever the server asks.
MAX_RETRY_AFTER_SECONDS = 24 * 3600


def schedule_of(retry_schedule: Sequence[int] | None) -> Sequence[int]:
    """The touchpoint's schedule; ``None`` means the default (``[]`` means no retries)."""
    if retry_schedule is None:
        return DEFAULT_SCHEDULE
    return retry_schedule


def next_delay(
    schedule: Sequence[int], attempts_made: int, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempts_made + 1``; ``None`` when exhausted."""
    index = attempts_made - 1
    if index < 0 or index >= len(schedule):
        return None
    base = float(schedule[index])
    r = rng.random() if rng is not None else random.random()
    return base * (1 - JITTER + 2 * JITTER * r)


def retry_after_seconds(
    status: int | None, headers: Mapping[str, str] | None, now: datetime
) -> float | None:
    """A 429/503 ``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date)."""
    if status not in (429, 503) or not headers:
        return None
    raw = None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value.strip()
            break
    if not raw:
        return None
    if raw.isdigit():
        return float(min(int(raw), MAX_RETRY_AFTER_SECONDS))
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    if seconds <= 0:
        return None
    return min(seconds, float(MAX_RETRY_AFTER_SECONDS))


def retry_delay(
    schedule: Sequence[int],
    attempts_made: int,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """The wait before the next attempt, honouring a longer Retry-After; ``None`` = exhausted."""
    delay = next_delay(schedule, attempts_made, rng)
    if delay is None:
        return None
    after = retry_after_seconds(status, headers, now or datetime.now(UTC))
    if after is not None and after > delay:
        return after
    return delay
