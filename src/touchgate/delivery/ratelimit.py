"""A touchpoint's request rate, shared by every worker process: the slot arithmetic.

A rate-limited touchpoint has one timeline of request slots, ``1 / rps`` seconds
apart, kept in the database (``touchpoint_protection.next_request_at``, seconds
since the epoch on the database's clock). A worker reserves a group of
consecutive slots in one atomic statement (``rate_repository.reserve_slots``),
so no two requests of any process share a slot, and sends each request at its
slot's time: at most ``rps`` requests start in any second, whichever process
sends them.

Everything here is pure: the database's answer and the local clock go in, local
send times come out. ``rate_gate.RateGate`` does the waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A group reserved at once covers at most this much time: a worker never holds
# slots far ahead that another worker could have used.
MAX_GROUP_SECONDS = 1.0
# …and at least this much, so a fast touchpoint (hundreds of requests a second)
# costs a few reservations a second, not one per request.
MIN_GROUP_SECONDS = 0.1
# A slot is used at most this late (or half a slot interval, if longer): a late
# request starts close to the next slot, perhaps another process's. Requests that
# start within ``late_allowance`` of their slots keep any one second at ``rps``
# requests, give or take one.
STALE_SECONDS = 0.01


@dataclass(frozen=True)
class Reservation:
    """What the database answered: the first slot of the group and its own time
    when it answered (both seconds since the epoch on the database's clock)."""

    first_slot: float
    count: int
    database_now: float


def group_size(waiting: int, requests_per_second: float) -> int:
    """How many slots to reserve for ``waiting`` requests: all of them, but no more
    than ``MAX_GROUP_SECONDS`` worth, and at least ``MIN_GROUP_SECONDS`` worth (at
    least one)."""
    most = max(1, math.floor(requests_per_second * MAX_GROUP_SECONDS))
    least = max(1, math.floor(requests_per_second * MIN_GROUP_SECONDS))
    return min(most, max(least, waiting))


def interval(requests_per_second: float) -> float:
    """Seconds between two consecutive slots."""
    return 1.0 / requests_per_second


def send_times(
    reservation: Reservation, requests_per_second: float, local_now: float
) -> list[float]:
    """The local (monotonic) times at which the reserved slots may be used.

    ``local_now`` is the local clock when the answer arrived: a slot ``d`` seconds
    after the database's ``now`` is used ``d`` seconds after the answer, so clocks
    of different machines never need to agree (and a slot is never early: the
    answer arrives after the database looked at its clock).
    """
    step = interval(requests_per_second)
    offset = local_now - reservation.database_now
    return [reservation.first_slot + i * step + offset for i in range(reservation.count)]


def late_allowance(requests_per_second: float) -> float:
    """How long after its time a slot may still be used."""
    return max(STALE_SECONDS, 0.5 / requests_per_second)


def usable(send_time: float, local_now: float, requests_per_second: float) -> bool:
    """Whether a slot can still be used at ``local_now`` (not passed by more than
    ``late_allowance``)."""
    return send_time >= local_now - late_allowance(requests_per_second)
