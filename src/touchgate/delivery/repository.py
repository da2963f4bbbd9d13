"""SQL for orders, per-user results and attempts.

The hot paths (enqueue, claim, settle) use Core statements with executemany
(or COPY) and never build an ORM object per user; reading a single order for
the API uses the ORM. Per user, the only write is its final result
(``order_results``, plus its ``$ma_channel_touch`` event) at settlement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import Connection, Row, Table, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from ..db import dialect_name, pg_bigint_array
from ..models import Attempt, Order, OrderPayload, OrderResult, Touchpoint
from ..models.health import TouchpointHealth
from ..models.protection import TouchpointProtection
from .breaker import CLOSED, HALF_OPEN, Health
from .rate_repository import rate_of

ACTIVE_STATES = ("sending", "polling")
TOUCH_EVENT = "$ma_channel_touch"
_orders: Table = Order.__table__  # type: ignore[assignment]
_payloads: Table = OrderPayload.__table__  # type: ignore[assignment]
_results: Table = OrderResult.__table__  # type: ignore[assignment]
_attempts: Table = Attempt.__table__  # type: ignore[assignment]


# --- enqueue -----------------------------------------------------------------


def insert_orders(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert orders, each row with its ``payload``, in two executemany (the
    payloads in their own table; no ids returned: nobody needs them, and
    returning them in order costs a sort of the batch)."""
    if rows:
        session.execute(insert(_orders), [_without_payload(row) for row in rows])
        session.execute(
            insert(_payloads),
            [{"order_no": row["order_no"], "payload": row["payload"]} for row in rows],
        )
        session.info[_ORDERS_QUEUED] = True


# Marks a session that inserted orders (``queued_orders``).
_ORDERS_QUEUED = "touchgate.delivery.orders_queued"


def queued_orders(session: Session) -> bool:
    """Whether this unit of work inserted orders: once it has committed, this
    process's delivery worker is woken for them (``Runtime.tx``)."""
    return bool(session.info.get(_ORDERS_QUEUED))


def _without_payload(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    del out["payload"]
    return out


def payload_of(session: Session, order_no: str) -> bytes:
    """An order's frozen ``dataList`` (empty if it has none)."""
    stmt = select(_payloads.c.payload).where(_payloads.c.order_no == order_no)
    return session.scalar(stmt) or b""


# --- reading -----------------------------------------------------------------


def get_order(session: Session, project_id: int, order_no: str) -> Order | None:
    return session.scalar(
        select(Order).where(Order.project_id == project_id, Order.order_no == order_no)
    )


def get_order_any(session: Session, order_no: str) -> Order | None:
    return session.scalar(select(Order).where(Order.order_no == order_no))


def order_results(session: Session, order_id: int) -> Sequence[Row[int, str, str | None, int]]:
    """The final results of an order's users, by gid (pending users have none)."""
    stmt = (
        select(_results.c.gid, _results.c.status, _results.c.error_msg, _results.c.attempts)
        .where(_results.c.order_id == order_id)
        .order_by(_results.c.gid)
    )
    return session.execute(stmt).all()


def order_attempts(session: Session, order_id: int) -> Sequence[Attempt]:
    return session.scalars(
        select(Attempt).where(Attempt.order_id == order_id).order_by(Attempt.id)
    ).all()


def user_counts(session: Session, order_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """``{order_id: {status: count}}`` of final results (pending = user_count − both)."""
    out: dict[int, dict[str, int]] = {oid: {} for oid in order_ids}
    if not order_ids:
        return out
    stmt = (
        select(_results.c.order_id, _results.c.status, func.count())
        .where(_results.c.order_id.in_(order_ids))
        .group_by(_results.c.order_id, _results.c.status)
    )
    for oid, status, n in session.execute(stmt):
        out[oid][status] = n
    return out


def list_orders(
    session: Session,
    project_id: int,
    *,
    touchpoint_id: int | None,
    campaign_id: int | None,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Order], int]:
    conds = [Order.project_id == project_id]
    if touchpoint_id is not None:
        conds.append(Order.touchpoint_id == touchpoint_id)
    if campaign_id is not None:
        conds.append(Order.campaign_id == campaign_id)
    if state is not None:
        conds.append(Order.state == state)
    total = session.scalar(select(func.count()).select_from(Order).where(*conds)) or 0
    rows = session.scalars(
        select(Order).where(*conds).order_by(Order.id.desc()).limit(limit).offset(offset)
    ).all()
    return rows, total


def failed_gids(session: Session, order_id: int) -> list[int]:
    stmt = (
        select(_results.c.gid)
        .where(_results.c.order_id == order_id, _results.c.status == "TOU_FAIL")
        .order_by(_results.c.gid)
    )
    return list(session.scalars(stmt))


# --- the worker ----------------------------------------------------------------

CLAIM_COLUMNS = (
    _orders.c.id,
    _orders.c.order_no,
    _orders.c.project_id,
    _orders.c.touchpoint_id,
    _orders.c.campaign_id,
    _orders.c.run_id,
    _orders.c.step_id,
    _orders.c.state,
    _payloads.c.payload,
    _orders.c.user_count,
    _orders.c.attempt_count,
    _orders.c.receipt_deadline,
    _orders.c.replay_of,
    _orders.c.context,
    _orders.c.last_error,
)


def claim_due(
    session: Session,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    *,
    skip_touchpoints: Sequence[int] = (),
) -> Sequence[Row[Any]]:
    """Lease up to ``limit`` due orders to ``owner`` and return them.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent workers take disjoint
    orders without waiting; SQLite: the write lock taken by BEGIN IMMEDIATE
    serialises claims. An order whose lease has expired is due again.
    ``skip_touchpoints``: touchpoints this worker has enough of in flight.
    """
    conds = [
        _orders.c.state.in_(ACTIVE_STATES),
        _orders.c.next_attempt_at <= now,
        (_orders.c.lease_until.is_(None)) | (_orders.c.lease_until < now),
    ]
    if skip_touchpoints:
        conds.append(_orders.c.touchpoint_id.not_in(list(skip_touchpoints)))
    due = select(_orders.c.id).where(*conds).order_by(_orders.c.next_attempt_at).limit(limit)
    if dialect_name(session) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return _lease(session, due, owner, lease_until)


def _lease(session: Session, due: Any, owner: str, lease_until: datetime) -> Sequence[Row[Any]]:
    """Lease the orders ``due`` selects; returns them with their payloads (SQLite's
    RETURNING names only the updated table, so the payloads are a second read)."""
    stmt = (
        update(_orders)
        .where(_orders.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=lease_until)
        .returning(_orders.c.id)
    )
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    claimed = (
        select(*CLAIM_COLUMNS)
        .join_from(_orders, _payloads, _payloads.c.order_no == _orders.c.order_no)
        .where(_orders.c.id.in_(ids))
        .order_by(_orders.c.next_attempt_at, _orders.c.id)
    )
    return cast(Sequence[Row[Any]], session.execute(claimed).all())


Version = tuple[datetime, datetime, float | None]  # touchpoint created, updated, rate limit


def _version(created_at: datetime, updated_at: datetime, rate_limit: object) -> Version:
    return created_at, updated_at, rate_of(rate_limit)


@dataclass(frozen=True)
class Claimed:
    """A leased order (``CLAIM_COLUMNS`` by name) and the version of its touchpoint
    (None: the touchpoint row is gone)."""

    fields: dict[str, Any]
    version: Version | None


_CLAIM_NAMES = [c.name for c in CLAIM_COLUMNS]
_touchpoints: Table = Touchpoint.__table__  # type: ignore[assignment]
_protection: Table = TouchpointProtection.__table__  # type: ignore[assignment]
# One statement: lease the due orders, then read them with their payloads and
# their touchpoints' versions. Typed by the tables' own columns (aware UTC times).
_PG_CLAIM = text(
    "WITH due AS (SELECT id FROM orders"
    f" WHERE state IN ({', '.join(repr(s) for s in ACTIVE_STATES)})"
    " AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until < :now)"
    " AND touchpoint_id <> ALL(CAST(:skip AS bigint[]))"
    " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED), "
    "l AS (UPDATE orders SET lease_owner = :owner, lease_until = :until"
    " FROM due WHERE orders.id = due.id RETURNING orders.*) SELECT "
    + ", ".join(f"p.{c.name}" if c.table is _payloads else f"l.{c.name}" for c in CLAIM_COLUMNS)
    + ", t.created_at, t.updated_at, tp.rate_limit"
    " FROM l JOIN order_payloads p ON p.order_no = l.order_no"
    " LEFT JOIN touchpoints t ON t.id = l.touchpoint_id"
    " LEFT JOIN touchpoint_protection tp ON tp.touchpoint_id = l.touchpoint_id"
    " ORDER BY l.next_attempt_at, l.id"
).columns(
    *CLAIM_COLUMNS,
    _touchpoints.c.created_at,
    _touchpoints.c.updated_at,
    _protection.c.rate_limit,
)


def claim_due_now(
    connection: Connection,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    *,
    skip_touchpoints: Sequence[int] = (),
) -> list[Claimed]:
    """PostgreSQL, on a connection in autocommit: :func:`claim_due` as one statement
    that also reads the payloads and the touchpoints' versions (what the worker's
    cache is checked against), so a claim is one round trip instead of six
    (connection check, BEGIN, lease, payloads, versions, COMMIT). The leases are
    committed when the statement ends, as by :func:`claim_due`'s transaction."""
    rows = connection.execute(
        _PG_CLAIM,
        {
            "now": now,
            "until": lease_until,
            "owner": owner,
            "limit": limit,
            "skip": pg_bigint_array(skip_touchpoints),
        },
    )
    return [
        Claimed(
            {name: row._mapping[name] for name in _CLAIM_NAMES},
            None
            if row.created_at is None
            else _version(row.created_at, row.updated_at, row.rate_limit),
        )
        for row in rows
    ]


def touchpoints_by_id(session: Session, ids: Iterable[int]) -> Sequence[Touchpoint]:
    return session.scalars(select(Touchpoint).where(Touchpoint.id.in_(list(ids)))).all()


def lock_owned(session: Session, order_ids: Sequence[int], owner: str) -> dict[int, str]:
    """Lock the orders still leased to ``owner``; returns ``{id: state}``.

    This is the fence that keeps a worker whose lease expired (and whose order
    another worker took) from settling anything twice.
    """
    if not order_ids:
        return {}
    stmt = select(_orders.c.id, _orders.c.state).where(
        _orders.c.id.in_(order_ids), _orders.c.lease_owner == owner
    )
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    return {oid: state for oid, state in session.execute(stmt)}


def settled_gids(session: Session, order_ids: Sequence[int]) -> dict[int, set[int]]:
    """The users of these orders that already have their final result."""
    out: dict[int, set[int]] = {oid: set() for oid in order_ids}
    if not order_ids:
        return out
    stmt = select(_results.c.order_id, _results.c.gid).where(_results.c.order_id.in_(order_ids))
    for oid, gid in session.execute(stmt):
        out[oid].add(gid)
    return out


def existing_order_ids(session: Session, order_ids: Sequence[int]) -> set[int]:
    if not order_ids:
        return set()
    return set(session.scalars(select(_orders.c.id).where(_orders.c.id.in_(order_ids))))


@dataclass(frozen=True)
class SettledGroup:
    """Users of one order that settle with the same result (all of an order's
    users, in the common all-success case): their result rows and their
    ``$ma_channel_touch`` events are written from this one value."""

    order_id: int
    project_id: int
    status: str
    error_msg: str
    attempts: int
    properties: str  # the events' properties, JSON text
    gids: Sequence[int]


def insert_results(session: Session, at: datetime, groups: Sequence[SettledGroup]) -> None:
    """Write final results (one row per settled user) and their ``$ma_channel_touch``
    events (the rows ``datastore.repository.insert_events`` writes), all at ``at``.

    These are the writes per user of a delivery, so they go at driver level, with
    each group's values (its properties, its time) given and parsed once, not once
    per user: PostgreSQL gets one statement that unnests the gids of every group
    and inserts both tables (COPY's text format parsed the JSON properties and the
    time of every row: twice the server time per user); SQLite one ``INSERT …
    SELECT … FROM json_each`` per group and table (the rows are made in C from the
    group's gids). A second result for the same user of the same order violates
    the primary key and rolls the settlement back.
    """
    if not groups:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        raw = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        # Every group's gids, and beside each the group's number (1-based).
        gids = pg_bigint_array(chain.from_iterable(g.gids for g in groups))
        group_of = pg_bigint_array(
            chain.from_iterable(repeat(n, len(g.gids)) for n, g in enumerate(groups, 1))
        )
        with raw.cursor() as cur:
            cur.execute(
                "WITH g AS (SELECT * FROM unnest("
                "%s::bigint[], %s::int[], %s::text[], %s::text[], %s::int[], %s::jsonb[]"
                ") WITH ORDINALITY AS g(order_id, project_id, status, error_msg, attempts,"
                " properties, n)), "
                "u AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS u(gid, n)), "
                "r AS (INSERT INTO order_results"
                " (order_id, gid, status, error_msg, attempts, settled_at)"
                " SELECT g.order_id, u.gid, g.status, g.error_msg, g.attempts, %s"
                " FROM u JOIN g USING (n)) "
                "INSERT INTO events (project_id, name, gid, time, properties)"
                " SELECT g.project_id, %s, u.gid, %s, g.properties FROM u JOIN g USING (n)",
                (
                    [g.order_id for g in groups],
                    [g.project_id for g in groups],
                    [g.status for g in groups],
                    [g.error_msg for g in groups],
                    [g.attempts for g in groups],
                    [g.properties for g in groups],
                    gids,
                    group_of,
                    at,
                    TOUCH_EVENT,
                    at,
                ),
            )
        return
    stamp = _sqlite_stamp(at)
    dumps = orjson.dumps
    gid_lists = [dumps(list(g.gids)).decode() for g in groups]
    conn.exec_driver_sql(
        "INSERT INTO order_results (order_id, gid, status, error_msg, attempts, settled_at) "
        f"SELECT ?, value, ?, ?, ?, '{stamp}' FROM json_each(?)",
        [
            (g.order_id, g.status, g.error_msg, g.attempts, gids)
            for g, gids in zip(groups, gid_lists, strict=True)
        ],
    )
    conn.exec_driver_sql(
        "INSERT INTO events (project_id, name, gid, time, properties) "
        f"SELECT ?, '{TOUCH_EVENT}', value, '{stamp}', ? FROM json_each(?)",
        [(g.project_id, g.properties, gids) for g, gids in zip(groups, gid_lists, strict=True)],
    )


def _sqlite_stamp(at: datetime) -> str:
    """SQLite keeps naive UTC in SQLAlchemy's own DateTime text format."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def update_orders(session: Session, rows: list[dict[str, Any]]) -> None:
    """Move orders on and release their leases.

    ``rows``: ``{"o_id", "state", "attempt_count", "next_attempt_at",
    "receipt_deadline", "last_error", "updated_at"}``.
    """
    if not rows:
        return
    stmt = (
        update(_orders)
        .where(_orders.c.id == bindparam("o_id"))
        .values(
            state=bindparam("state"),
            attempt_count=bindparam("attempt_count"),
            next_attempt_at=bindparam("next_attempt_at"),
            receipt_deadline=bindparam("receipt_deadline"),
            last_error=bindparam("last_error"),
            updated_at=bindparam("updated_at"),
            lease_owner=None,
            lease_until=None,
        )
    )
    session.connection().execute(stmt, rows)


def insert_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    """``rows``: ``{"order_id", "kind", "at", "duration_ms", "http_status", "error",
    "response_excerpt"}``."""
    if rows:
        session.execute(insert(_attempts), rows)


# --- leases and touchpoint health (the worker's heartbeat and circuit breaker) --

_health: Table = TouchpointHealth.__table__  # type: ignore[assignment]


def renew_leases(
    session: Session | Connection, owner: str, order_ids: Sequence[int], lease_until: datetime
) -> set[int]:
    """The heartbeat: extend the leases of the orders ``owner`` still holds, in one
    UPDATE; returns the ids still held.

    A lease that expired while nobody else claimed the order (an outage, a long
    pause) is renewed too: ``lease_owner`` is the fence, not the clock.
    """
    if not order_ids:
        return set()
    stmt = (
        update(_orders)
        .where(_orders.c.id.in_(list(order_ids)), _orders.c.lease_owner == owner)
        .values(lease_until=lease_until)
        .returning(_orders.c.id)
    )
    return {oid for (oid,) in session.execute(stmt)}


def release_leases(session: Session | Connection, owner: str, order_ids: Sequence[int]) -> None:
    """Give orders back unsent (claimed beyond a touchpoint's free slots)."""
    if order_ids:
        session.execute(
            update(_orders)
            .where(_orders.c.id.in_(list(order_ids)), _orders.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def claim_one_of(
    session: Session, owner: str, touchpoint_id: int, now: datetime, lease_until: datetime
) -> Sequence[Row[Any]]:
    """Lease the most overdue order of one touchpoint (a circuit breaker's probe)."""
    due = (
        select(_orders.c.id)
        .where(
            _orders.c.touchpoint_id == touchpoint_id,
            _orders.c.state.in_(ACTIVE_STATES),
            _orders.c.next_attempt_at <= now,
            (_orders.c.lease_until.is_(None)) | (_orders.c.lease_until < now),
        )
        .order_by(_orders.c.next_attempt_at)
        .limit(1)
    )
    if dialect_name(session) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return _lease(session, due, owner, lease_until)


def _health_of(row: Any) -> Health:
    return Health(row.state, row.since, row.reason, row.failures, row.probe_owner)


def unhealthy(session: Session | Connection) -> dict[int, Health]:
    """Every touchpoint whose breaker is not closed or counts recent failures
    (a handful of rows: read on every claim)."""
    stmt = select(_health).where((_health.c.state != CLOSED) | (_health.c.failures > 0))
    return {r.touchpoint_id: _health_of(r) for r in session.execute(stmt)}


def health_of(session: Session, touchpoint_ids: Iterable[int]) -> dict[int, Health]:
    ids = list(touchpoint_ids)
    if not ids:
        return {}
    stmt = select(_health).where(_health.c.touchpoint_id.in_(ids))
    return {r.touchpoint_id: _health_of(r) for r in session.execute(stmt)}


def lock_health(
    session: Session, touchpoint_ids: Iterable[int], now: datetime
) -> dict[int, Health]:
    """Lock (creating them closed if missing) the health rows of these touchpoints,
    in id order so that workers never deadlock on them."""
    ids = sorted(set(touchpoint_ids))
    if not ids:
        return {}
    rows = [
        {"touchpoint_id": t, "state": CLOSED, "since": now, "reason": None, "failures": 0}
        for t in ids
    ]
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(_health).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(_health).on_conflict_do_nothing(), rows)
    stmt = select(_health).where(_health.c.touchpoint_id.in_(ids)).order_by(_health.c.touchpoint_id)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    return {r.touchpoint_id: _health_of(r) for r in session.execute(stmt)}


def save_health(session: Session, changed: dict[int, Health]) -> None:
    if not changed:
        return
    stmt = (
        update(_health)
        .where(_health.c.touchpoint_id == bindparam("t_id"))
        .values(
            state=bindparam("state"),
            since=bindparam("since"),
            reason=bindparam("reason"),
            failures=bindparam("failures"),
            probe_owner=bindparam("probe_owner"),
        )
    )
    session.connection().execute(
        stmt,
        [
            {
                "t_id": t,
                "state": h.state,
                "since": h.since,
                "reason": h.reason,
                "failures": h.failures,
                "probe_owner": h.probe_owner,
            }
            for t, h in sorted(changed.items())
        ],
    )


def take_probe(
    session: Session, touchpoint_id: int, expected: Health, owner: str, now: datetime
) -> bool:
    """Move a touchpoint to ``half_open`` with ``owner`` probing, if nobody else
    changed its row since ``expected`` was read (first worker wins)."""
    stmt = (
        update(_health)
        .where(
            _health.c.touchpoint_id == touchpoint_id,
            _health.c.state == expected.state,
            _health.c.since == expected.since,
        )
        .values(state=HALF_OPEN, since=now, probe_owner=owner)
    )
    return (session.execute(stmt).rowcount or 0) == 1  # type: ignore[attr-defined]


def touchpoint_versions(session: Session, ids: Iterable[int]) -> dict[int, Version]:
    """``{id: (created_at, updated_at, requests per second)}`` in one query: whether
    a cached touchpoint is current, and its rate limit (None: none)."""
    t, p = _touchpoints, _protection
    stmt = (
        select(t.c.id, t.c.created_at, t.c.updated_at, p.c.rate_limit)
        .join_from(t, p, p.c.touchpoint_id == t.c.id, isouter=True)
        .where(t.c.id.in_(list(ids)))
    )
    return {
        tid: _version(created, updated, limit)
        for tid, created, updated, limit in session.execute(stmt)
    }
