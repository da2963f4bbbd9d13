"""SQL for the data store. Bulk paths use Core statements, never an ORM object per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, Table, func, insert, select, update
from sqlalchemy.orm import Session

from ..db import dialect_name
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


def upsert_users(
    session: Session, project_id: int, rows: Sequence[tuple[int, dict[str, Any]]]
) -> set[int]:
    """Create or update users in bulk, merging each patch into the stored attributes.

    ``rows`` are ``(gid, patch)`` with distinct gids. Returns the gids that were
    created (the others existed and were updated). A ``None`` in a patch is stored
    as JSON null by this statement; :func:`drop_null_attributes` removes it.

    This is the import's hot path, so it skips per-row ORM/Core processing:
    PostgreSQL gets the chunk by COPY into a temporary table and one
    ``INSERT … SELECT … ON CONFLICT``; SQLite one driver-level executemany.
    """
    if not rows:
        return set()
    connection = session.connection()
    dialect = connection.dialect
    # The column type's own conversion (naive UTC text on SQLite), done once per chunk.
    to_db = USERS.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp = to_db(utcnow()) if to_db is not None else utcnow()

    if dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS touchgate_user_import "
                "(gid bigint NOT NULL, patch jsonb NOT NULL) ON COMMIT DELETE ROWS"
            )
            with cursor.copy("COPY touchgate_user_import (gid, patch) FROM STDIN") as copy:
                for gid, patch in rows:
                    copy.write_row((gid, orjson.dumps(patch).decode()))
            cursor.execute(
                "INSERT INTO users (project_id, gid, attributes, updated_at) "
                "SELECT %s, gid, patch, %s FROM touchgate_user_import "
                "ON CONFLICT (project_id, gid) DO UPDATE "
                "SET attributes = users.attributes || excluded.attributes, "
                "updated_at = excluded.updated_at "
                "RETURNING gid, xmax = 0",
                (project_id, stamp),
            )
            created = {gid for gid, is_new in cursor.fetchall() if is_new}
            # Empty the staging table now: ON COMMIT only runs at the request's end.
            cursor.execute("DELETE FROM touchgate_user_import")
        return created

    # SQLite has no xmax: read which gids exist first. Writers are serialised
    # (BEGIN IMMEDIATE), so nothing can appear between this read and the upsert.
    gids = [gid for gid, _ in rows]
    existing = set(
        session.scalars(
            select(USERS.c.gid).where(USERS.c.project_id == project_id, USERS.c.gid.in_(gids))
        )
    )
    connection.exec_driver_sql(
        "INSERT INTO users (project_id, gid, attributes, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (project_id, gid) DO UPDATE "
        "SET attributes = json_patch(users.attributes, excluded.attributes), "
        "updated_at = excluded.updated_at",
        [(project_id, gid, orjson.dumps(patch).decode(), stamp) for gid, patch in rows],
    )
    return set(gids) - existing


def drop_null_attributes(session: Session, project_id: int, gids: Sequence[int]) -> None:
    """Remove attributes set to null (meaning "no value") from these users."""
    if not gids:
        return
    stripped: ColumnElement[Any]
    if dialect_name(session) == "postgresql":
        stripped = func.jsonb_strip_nulls(USERS.c.attributes)
    else:
        # RFC 7396 merge patch onto {}: null members are dropped.
        stripped = func.json_patch("{}", USERS.c.attributes)
    session.execute(
        update(USERS)
        .where(USERS.c.project_id == project_id, USERS.c.gid.in_(list(gids)))
        .values(attributes=stripped)
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
