"""SQL for the data store. Bulk paths use Core statements, never an ORM object per row."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from psycopg.errors import DeadlockDetected, UniqueViolation
from sqlalchemy import Connection, Table, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..db import pg_bigint_array
from ..models import Attribute, Event, User
from ..models.base import utcnow

EventRow = tuple[str, int, datetime, dict[str, Any]]  # name, gid, time, properties

USERS = cast(Table, User.__table__)
EVENTS = cast(Table, Event.__table__)


# -- attribute catalogue -----------------------------------------------------------


def list_attributes(session: Session, project_id: int) -> Sequence[Attribute]:
    """The project's whole catalogue, in creation order."""
    return session.scalars(
        select(Attribute).where(Attribute.project_id == project_id).order_by(Attribute.id)
    ).all()


def attributes_by_key(
    session: Session, project_id: int, keys: Iterable[str]
) -> dict[str, Attribute]:
    """The catalogue entries among ``keys`` (missing keys are simply absent)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(
        select(Attribute).where(Attribute.project_id == project_id, Attribute.key.in_(wanted))
    )
    return {row.key: row for row in rows}


def attribute_types(session: Session, project_id: int) -> dict[str, str]:
    """``{key: type}`` for the whole catalogue (what the importer validates against)."""
    rows = session.execute(
        select(Attribute.key, Attribute.type).where(Attribute.project_id == project_id)
    )
    return {key: type_ for key, type_ in rows}


def sensitive_keys(session: Session, project_id: int) -> frozenset[str]:
    """Keys of the attributes marked sensitive (their values are sealed at rest)."""
    rows = session.scalars(
        select(Attribute.key).where(
            Attribute.project_id == project_id, Attribute.sensitive.is_(True)
        )
    )
    return frozenset(rows)


# -- users ----------------------------------------------------------------------------


def get_user(session: Session, project_id: int, gid: int) -> User | None:
    return session.get(User, (project_id, gid))


@dataclass(frozen=True)
class UserPatches:
    """A chunk of user patches encoded for :func:`upsert_users`.

    The whole chunk is one JSON object ``{"gid": patch, ...}`` (one C-level
    ``orjson.dumps``, no Python step per row) that ``json_each``/``jsonb_each``
    read back in one statement, in the object's order on SQLite; jsonb keeps an
    object's keys in numeric order for these, so concurrent imports into
    PostgreSQL lock rows in one order.
    """

    patches: str
    cleared: list[int]  # gids whose patch may hold a null (more is harmless)

    @classmethod
    def encode(cls, rows: Mapping[int, Mapping[str, Any]], cleared: list[int]) -> UserPatches:
        return cls(orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode(), cleared)


# A set of gids whose span is at most this many times its size is read as one range
# (``gid BETWEEN first AND last``, the users outside the set dropped): a run's page is
# consecutive gids, and a range read is a third of the time of a lookup per gid.
RANGE_READ_SPAN = 2


def _users_where(
    dialect: str, project_id: int, gids: Sequence[int]
) -> tuple[str, str, tuple[Any, ...], frozenset[int] | None]:
    """How to read these users: the FROM clause (users as ``u``), the WHERE clause,
    their parameters, and the gids to keep when the read may return others."""
    first, last = min(gids), max(gids)
    mark = "%s" if dialect == "postgresql" else "?"
    if last - first + 1 <= RANGE_READ_SPAN * len(gids):
        wanted = frozenset(gids)
        keep = None if len(wanted) == last - first + 1 else wanted
        return (
            "users u",
            f"u.project_id = {mark} AND u.gid BETWEEN {mark} AND {mark}",
            (project_id, first, last),
            keep,
        )
    if dialect == "postgresql":
        # A join on unnest() is an index lookup per gid whatever the statistics
        # say; "gid = ANY(array)" on a freshly imported (unanalysed) table was
        # planned as a scan of the whole project (12 s per 5,000 gids at 1M users).
        return (
            "unnest(%s::bigint[]) AS g(gid) JOIN users u ON u.gid = g.gid",
            "u.project_id = %s",
            (pg_bigint_array(gids), project_id),
            None,
        )
    marks = ",".join("?" * len(gids))
    return "users u", f"u.project_id = ? AND u.gid IN ({marks})", (project_id, *gids), None


def _read_users(
    session: Session,
    project_id: int,
    gids: Sequence[int],
    columns: str,
    column_params: tuple[Any, ...],
) -> list[Any]:
    """Rows of ``gid, <columns>`` for these users (users not in the store are absent).

    The one way many users are read (enqueueing, campaign splits, previews), as a
    range when the gids are dense, else by gid. Driver-level SQL on purpose: this
    runs once per few thousand users on the hot path."""
    conn = session.connection()
    dialect = conn.dialect.name
    source, where, params, keep = _users_where(dialect, project_id, gids)
    # The columns' parameters come first in the statement, then FROM's and WHERE's.
    cur = conn.exec_driver_sql(
        f"SELECT u.gid, {columns} FROM {source} WHERE {where}", (*column_params, *params)
    )
    rows: list[Any] = list(cur.cursor.fetchall())
    if keep is not None:
        rows = [row for row in rows if row[0] in keep]
    return rows


def user_attributes(
    session: Session, project_id: int, gids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Attributes of these users in one query (users not in the store are absent)."""
    if not gids:
        return {}
    pg = session.connection().dialect.name == "postgresql"
    rows = _read_users(
        session, project_id, gids, "u.attributes::text" if pg else "u.attributes", ()
    )
    loads = orjson.loads
    return {gid: loads(raw) if raw else {} for gid, raw in rows}


# Attribute keys the database is asked for by name in a JSON path (SQLite); a key
# with other characters is read through ``user_attributes``.
_PLAIN_KEY = re.compile(r"[^\"\\]*")


def can_read_values(keys: Sequence[str]) -> bool:
    """Whether ``user_values`` can read these keys."""
    return all(_PLAIN_KEY.fullmatch(key) for key in keys)


def user_values(
    session: Session, project_id: int, gids: Sequence[int], keys: Sequence[str]
) -> dict[int, tuple[Any, ...]]:
    """``gid → (gid, value of each key as JSON text, "null" where it has none)`` for
    these users (users not in the store are absent): the values are taken out of the
    stored attributes by the database, so no Python object is made per value."""
    if not gids:
        return {}
    if session.connection().dialect.name == "postgresql":
        columns = ", ".join(["coalesce((u.attributes -> %s)::text, 'null')"] * len(keys))
        params: tuple[Any, ...] = tuple(keys)
    else:
        columns = ", ".join(["coalesce(u.attributes -> ?, 'null')"] * len(keys))
        params = tuple(f'$."{key}"' for key in keys)
    rows = _read_users(session, project_id, gids, columns, params)
    return {row[0]: row for row in rows}


def upsert_users(session: Session, project_id: int, rows: UserPatches) -> int:
    """Create or update users in bulk, merging each patch into the stored attributes.

    ``None`` in a patch removes that attribute (and is never stored). Returns how
    many users were created (the others existed and were updated). One statement
    for the whole chunk (two when a patch has a null): on SQLite it runs without
    the GIL from start to end.
    """
    connection = session.connection()
    dialect = connection.dialect
    # The column type's own conversion (naive UTC text on SQLite), done once per chunk.
    to_db = USERS.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp = to_db(utcnow()) if to_db is not None else utcnow()
    if dialect.name == "postgresql":
        created = _upsert_users_postgresql(connection, project_id, rows.patches, stamp)
    else:
        created = _upsert_users_sqlite(connection, project_id, rows.patches, stamp)
    if rows.cleared:
        # A new user was inserted with its patch as given, nulls included: the
        # statement's DO UPDATE sees the patch only as EXCLUDED, the inserted row,
        # so nulls cannot be both kept for merging and dropped for inserting.
        _strip_nulls(connection, project_id, rows.cleared)
    return created


def _upsert_users_postgresql(
    connection: Connection, project_id: int, patches: str, stamp: Any
) -> int:
    """Update the users that exist, then insert the others with a plain INSERT.

    ``INSERT … ON CONFLICT DO UPDATE`` inserts every row speculatively (a lock
    and a confirmation per row): measured alone on 300,000 new users, 172,000–
    176,000 rows/s against 197,000–213,000 for this form, whose one extra step
    per row is the probe of the UPDATE's join. A user created by another import
    between that probe and the INSERT (not yet committed when the probe ran)
    makes the INSERT fail; then the chunk is written again by the upsert, which
    waits for that import and merges into its row. A deadlock between two
    imports updating the same users is handled the same way.
    """
    try:
        with connection.begin_nested():
            row = connection.exec_driver_sql(
                "WITH p AS (SELECT key::bigint AS gid, value FROM jsonb_each(%s::jsonb)), "
                "updated AS ("
                "UPDATE users SET attributes = users.attributes || p.value, updated_at = %s "
                "FROM p WHERE users.project_id = %s AND users.gid = p.gid "
                "RETURNING users.gid), "
                "created AS ("
                "INSERT INTO users (project_id, gid, attributes, updated_at) "
                "SELECT %s, p.gid, p.value, %s FROM p "
                "WHERE NOT EXISTS (SELECT FROM updated WHERE updated.gid = p.gid) "
                "RETURNING 1"
                ") SELECT count(*) FROM created",
                (patches, stamp, project_id, project_id, stamp),
            ).one()
        return int(row[0])
    except DBAPIError as exc:
        if not isinstance(exc.orig, UniqueViolation | DeadlockDetected):
            raise
    row = connection.exec_driver_sql(
        "WITH upserted AS ("
        "INSERT INTO users (project_id, gid, attributes, updated_at) "
        "SELECT %s, key::bigint, value, %s FROM jsonb_each(%s::jsonb) "
        "ON CONFLICT (project_id, gid) DO UPDATE "
        "SET attributes = users.attributes || excluded.attributes, "
        "updated_at = excluded.updated_at "
        "RETURNING xmax = 0 AS created"
        ") SELECT count(*) FILTER (WHERE created) FROM upserted",
        (project_id, stamp, patches),
    ).one()
    return int(row[0])


def _upsert_users_sqlite(connection: Connection, project_id: int, patches: str, stamp: Any) -> int:
    # How many rows the upsert created, from the table's rowids: a new row takes
    # the largest rowid plus one, and writers are serialised (BEGIN IMMEDIATE),
    # so the largest rowid grows by exactly the number of rows created. (Only a
    # row given an explicit rowid near 2**63 would break this; none is.)
    largest = "SELECT coalesce(max(rowid), 0) FROM users"
    before = connection.exec_driver_sql(largest).scalar_one()
    # json_patch is RFC 7396 merge: a null in the patch removes the key.
    # "WHERE true" tells SQLite's parser that ON CONFLICT is the upsert clause.
    connection.exec_driver_sql(
        "INSERT INTO users (project_id, gid, attributes, updated_at) "
        "SELECT ?, CAST(key AS INTEGER), value, ? FROM json_each(?) WHERE true "
        "ON CONFLICT (project_id, gid) DO UPDATE "
        "SET attributes = json_patch(users.attributes, excluded.attributes), "
        "updated_at = excluded.updated_at",
        (project_id, stamp, patches),
    )
    after = connection.exec_driver_sql(largest).scalar_one()
    return int(after - before)


def _strip_nulls(connection: Connection, project_id: int, gids: list[int]) -> None:
    """Remove attributes set to null (meaning "no value") from these users."""
    if connection.dialect.name == "postgresql":
        # A join on unnest() is an index lookup per gid whatever the statistics
        # say (see delivery.repository.user_attributes).
        connection.exec_driver_sql(
            "UPDATE users SET attributes = jsonb_strip_nulls(users.attributes) "
            "FROM unnest(%s::bigint[]) AS given(gid) "
            "WHERE users.project_id = %s AND users.gid = given.gid",
            (gids, project_id),
        )
    else:
        # RFC 7396 merge patch onto {}: null members are dropped.
        connection.exec_driver_sql(
            "UPDATE users SET attributes = json_patch('{}', attributes) "
            "WHERE project_id = ? AND gid IN (SELECT value FROM json_each(?))",
            (project_id, orjson.dumps(gids).decode()),
        )


# -- events ---------------------------------------------------------------------------


def insert_events(session: Session, project_id: int, events: Iterable[EventRow]) -> int:
    """Insert events in one executemany; returns how many were written."""
    rows: Sequence[dict[str, Any]] = [
        {"project_id": project_id, "name": name, "gid": gid, "time": time, "properties": props}
        for name, gid, time, props in events
    ]
    if rows:
        session.execute(insert(Event), rows)
    return len(rows)


def list_events(
    session: Session,
    project_id: int,
    *,
    name: str | None,
    gid: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Event], int]:
    """Events newest first (``since`` inclusive, ``until`` exclusive) and how many match."""
    query = select(Event).where(Event.project_id == project_id)
    if name is not None:
        query = query.where(Event.name == name)
    if gid is not None:
        query = query.where(Event.gid == gid)
    if since is not None:
        query = query.where(Event.time >= since)
    if until is not None:
        query = query.where(Event.time < until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Event.time.desc(), Event.id.desc()).limit(limit).offset(offset)
    ).all()
    return rows, total


def event_names(session: Session, project_id: int, limit: int) -> list[tuple[str, datetime]]:
    """The distinct event names of a project, alphabetical, each with its latest time.

    A loose index scan (a recursive query asking for the next name after the last
    one) over ``ix_events_project_name_time``: one index seek per name, so the answer
    stays fast however many millions of events each name has.
    """
    first = select(func.min(EVENTS.c.name).label("name")).where(EVENTS.c.project_id == project_id)
    names = first.cte("event_names", recursive=True)
    following = (
        select(func.min(EVENTS.c.name))
        .where(EVENTS.c.project_id == project_id, EVENTS.c.name > names.c.name)
        .scalar_subquery()
    )
    names = names.union_all(select(following).where(names.c.name.is_not(None)))
    last_seen = (
        select(func.max(EVENTS.c.time))
        .where(EVENTS.c.project_id == project_id, EVENTS.c.name == names.c.name)
        .scalar_subquery()
    )
    rows = session.execute(
        select(names.c.name, last_seen).where(names.c.name.is_not(None)).limit(limit)
    )
    return [(name, seen) for name, seen in rows]


def recent_event_properties(
    session: Session, project_id: int, name: str, sample: int
) -> list[dict[str, Any]]:
    """The properties of the latest ``sample`` events of one name, newest first."""
    rows = session.scalars(
        select(EVENTS.c.properties)
        .where(EVENTS.c.project_id == project_id, EVENTS.c.name == name)
        .order_by(EVENTS.c.time.desc())
        .limit(sample)
    )
    return [props for props in rows if isinstance(props, dict)]
