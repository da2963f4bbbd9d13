"""The SQL of a touchpoint's request rate (see ``ratelimit``): reading the limits
and reserving request slots on the timeline every worker process shares."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from ..db import dialect_name
from .ratelimit import Reservation

# The database's own clock, in seconds since the epoch, read when the row is
# written (after any wait for its lock): every process measures slots against
# the same clock, wherever it runs.
_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    # SQLite's 'now' is fixed for one statement; julianday keeps the milliseconds.
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_LATER = {"postgresql": "GREATEST", "sqlite": "max"}


def rate_of(limit: object) -> float | None:
    """Requests per second of a stored ``rate_limit`` (None: no limit; a removed
    limit may be stored as JSON null)."""
    rps = limit.get("requests_per_second") if isinstance(limit, dict) else None
    if isinstance(rps, int | float) and rps > 0:
        return float(rps)
    return None


def reserve_slots(
    session: Session, touchpoint_id: int, count: int, requests_per_second: float
) -> Reservation | None:
    """Reserve ``count`` consecutive request slots of the touchpoint, starting now or
    where the last reservation (of any process) ended, whichever is later.

    One statement: PostgreSQL's row lock (SQLite's write lock) makes concurrent
    reservations take turns, so every slot goes to exactly one request. ``None``
    when the touchpoint has no protection row (its limit was removed meanwhile).
    """
    dialect = dialect_name(session)
    now, later = _NOW[dialect], _LATER[dialect]
    row = session.execute(
        text(
            "UPDATE touchpoint_protection "
            f"SET next_request_at = {later}(COALESCE(next_request_at, 0), {now}) + :span "
            "WHERE touchpoint_id = :touchpoint_id "
            f"RETURNING next_request_at - :span, {now}"
        ),
        {"touchpoint_id": touchpoint_id, "span": count / requests_per_second},
    ).first()
    if row is None:
        return None
    return Reservation(first_slot=float(row[0]), count=count, database_now=float(row[1]))
