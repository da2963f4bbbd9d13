"""Waiting for a rate-limited touchpoint's next request slot, in one worker process.

``await gate.turn(touchpoint)`` returns when the request may start: at once for a
touchpoint without a rate limit; otherwise at the time of a slot reserved for it on
the touchpoint's shared timeline (``ratelimit``). Requests waiting together share
one reservation (one short transaction, in a thread), so a busy touchpoint costs a
few round trips a second, not one per request. Nothing waits inside a
transaction: the reservation commits before anyone sleeps.

If the database cannot be reached, ``turn`` raises: no request starts that the
limit cannot account for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..runtime import Runtime
from . import rate_repository
from .ratelimit import Reservation, group_size, send_times, usable
from .receipts import TouchpointConfig

# A worker stops claiming a touchpoint's orders while it already holds this much
# of the touchpoint's time (its requests waiting for slots here, or the shared
# timeline reserved this far ahead by every process): orders it could not send
# soon would sit on their leases while other workers could take them.
AHEAD_SECONDS = 5.0
# A request waiting longer than this for its slot is worth a warning: the worker
# holds the order's lease meanwhile (too many workers, or too many orders claimed,
# for a very low rate).
LONG_WAIT_SECONDS = 60.0
# A request woken too late for its slot takes a fresh one, at most this often.
LATE_RETRIES = 2


class Clock(Protocol):
    """The local clock the gate waits on (a fake one in tests)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


log = logging.getLogger("touchgate.delivery.ratelimit")

Reserve = Callable[[int, int, float], Reservation | None]
"""(touchpoint id, count, requests per second) → the reservation; blocking."""


@dataclass
class _Lane:
    """One touchpoint's slots in this process."""

    slots: deque[float] = field(default_factory=deque)  # local send times, in order
    waiting: int = 0  # requests without a slot yet
    holding: int = 0  # requests with a slot, waiting for its time
    horizon: float = 0.0  # local time where the shared timeline ended at our last look
    rps: float = 0.0  # the limit last seen
    warned: float = float("-inf")  # local time of the last long-wait warning
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reservation at a time


def reserve_in(runtime: Runtime) -> Reserve:
    """Reservations in the runtime's database, one short transaction each."""

    def reserve(touchpoint_id: int, count: int, requests_per_second: float) -> Reservation | None:
        with runtime.tx() as session:
            return rate_repository.reserve_slots(session, touchpoint_id, count, requests_per_second)

    return reserve


class RateGate:
    """The rate limits of every touchpoint, as seen by one worker process."""

    def __init__(self, reserve: Reserve, *, clock: Clock | None = None) -> None:
        self._reserve = reserve
        self._clock: Clock = clock or SystemClock()
        self._lanes: dict[int, _Lane] = {}

    async def turn(self, touchpoint: TouchpointConfig) -> None:
        """Wait until the touchpoint may receive one more request."""
        rps = touchpoint.requests_per_second
        if rps is None:
            return
        lane = self._lanes.setdefault(touchpoint.id, _Lane())
        lane.rps = rps
        for _ in range(LATE_RETRIES + 1):
            lane.waiting += 1
            try:
                at = await self._slot(touchpoint.id, rps, lane)
            finally:
                lane.waiting -= 1
            if at is None:  # the limit was removed meanwhile
                return
            lane.holding += 1
            try:
                now = self._clock.monotonic()
                delay = at - now
                if delay > LONG_WAIT_SECONDS and now - lane.warned > LONG_WAIT_SECONDS:
                    lane.warned = now
                    log.warning(
                        "touchpoint %d: a request waits %.0f s for its slot (rate limit %g/s); "
                        "its order stays leased meanwhile",
                        touchpoint.id,
                        delay,
                        rps,
                    )
                if delay > 0:
                    await self._clock.sleep(delay)
            finally:
                lane.holding -= 1
            # Woken late (a busy loop): going now could crowd the next slots of
            # other processes; take a fresh slot instead.
            if usable(at, self._clock.monotonic(), rps):
                return
        # Late every time (an overloaded process): go rather than never.

    async def _slot(self, touchpoint_id: int, rps: float, lane: _Lane) -> float | None:
        while True:
            now = self._clock.monotonic()
            while lane.slots and not usable(lane.slots[0], now, rps):
                lane.slots.popleft()
            if lane.slots:
                return lane.slots.popleft()
            async with lane.lock:
                if lane.slots:  # another request reserved for us meanwhile
                    continue
                count = group_size(lane.waiting, rps)
                reservation = await asyncio.to_thread(self._reserve, touchpoint_id, count, rps)
                if reservation is None:
                    return None
                times = send_times(reservation, rps, self._clock.monotonic())
                lane.slots.extend(times)
                lane.horizon = times[-1] + 1.0 / rps

    def backlogged(self) -> list[int]:
        """Touchpoints this process should claim no more orders of for now: its
        requests waiting here cover ``AHEAD_SECONDS`` of the touchpoint's time (at
        least one request), or every process together has reserved that far ahead."""
        now = self._clock.monotonic()
        out = []
        for touchpoint_id, lane in self._lanes.items():
            pending = lane.waiting + lane.holding
            if not pending:
                continue
            if pending >= max(1.0, lane.rps * AHEAD_SECONDS) or lane.horizon - now >= AHEAD_SECONDS:
                out.append(touchpoint_id)
        return out
