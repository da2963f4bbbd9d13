"""SQL for campaigns. Audience selection, participation and results are set-based
statements (INSERT … SELECT, aggregates); users are never loaded one by one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Interval,
    Select,
    String,
    Table,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    join,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..datastore.repository import user_attributes as user_attributes
from ..datastore.sensitive import SENSITIVE_TYPE
from ..db import dialect_name, pg_bigint_array
from ..delivery import repository as delivery_repository
from ..delivery.outcomes import protocol_gids
from ..models import Attribute, Event, Order, OrderResult, Touchpoint, TouchpointSpace, User
from ..models.base import UTCDateTime
from ..models.campaigns import (
    Campaign,
    CampaignCount,
    CampaignDue,
    CampaignEntry,
    CampaignListGid,
    CampaignRun,
    CampaignStepUser,
    CampaignSuppression,
    CampaignWait,
)
from ..models.protection import (
    BlocklistEntry,
    ProjectProtection,
    SentMessage,
    TouchpointProtection,
)

PARTICIPATION = "participation"
# The kind of due row that names a page of a run's entries by gid range.
ENTRIES = "entries"
# A query of any columns (used as a subquery or read row by row).
Rows = Select[*tuple[Any, ...]]


def gid_in(session: Session, column: Any, gids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN gids`` with the gids as one parameter: an IN list of thousands of
    parameters is slow to compile (SQLAlchemy) and to plan (PostgreSQL). PostgreSQL
    gets a ``bigint[]`` (``= ANY``; an array typed from the values, e.g.
    ``smallint[]``, would keep the bigint index from being used), SQLite a JSON array
    read by ``json_each``."""
    if dialect_name(session) == "postgresql":
        return cast(ColumnElement[bool], column == any_(_pg_bigints(gids)))
    table, gid = gid_rows(session, gids)
    return cast(ColumnElement[bool], column.in_(select(gid).select_from(table)))


def _pg_bigints(gids: Sequence[int]) -> ColumnElement[Any]:
    """The gids as one ``bigint[]`` parameter (an array literal, ``pg_bigint_array``)."""
    return bindparam(None, pg_bigint_array(gids), type_=String()).cast(postgresql.ARRAY(BigInteger))


def gid_rows(session: Session, gids: Sequence[int]) -> tuple[Any, ColumnElement[Any]]:
    """The gids as a table of one column, from one parameter (see ``gid_in``): the
    FROM clause and its gid column."""
    if dialect_name(session) == "postgresql":
        table = func.unnest(_pg_bigints(gids)).table_valued("gid").render_derived(name="g")
        return table, table.c.gid
    text_list = bindparam(None, orjson.dumps(list(gids)).decode(), type_=String())
    # json_each's own column is "value" (SQLite takes no column list in an alias).
    table = func.json_each(text_list).table_valued("value")
    return table, table.c.value


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


# --- campaigns ---------------------------------------------------------------------


def catalogue(session: Session, project_id: int) -> dict[str, str]:
    """The project's attribute catalogue: key → type (``sensitive`` for attributes
    sealed at rest, which an audience cannot compare)."""
    rows = session.execute(
        select(Attribute.key, Attribute.type, Attribute.sensitive).where(
            Attribute.project_id == project_id
        )
    ).all()
    return {key: SENSITIVE_TYPE if secret else typ for key, typ, secret in rows}


def get_campaign(session: Session, space_id: int, campaign_id: int) -> Campaign | None:
    campaign = session.get(Campaign, campaign_id)
    return campaign if campaign is not None and campaign.space_id == space_id else None


def lock_campaign(session: Session, campaign_id: int, *, shared: bool = False) -> Campaign | None:
    """Re-read a campaign, locked for this transaction on PostgreSQL (``shared``: other
    shared holders go on at once; a change of the campaign, e.g. a pause, waits)."""
    query = (
        select(Campaign).where(Campaign.id == campaign_id).execution_options(populate_existing=True)
    )
    if dialect_name(session) == "postgresql":
        query = query.with_for_update(read=shared)
    return session.scalars(query).first()


def campaign_by_name(session: Session, space_id: int, name: str) -> Campaign | None:
    return session.scalars(
        select(Campaign).where(Campaign.space_id == space_id, Campaign.name == name)
    ).first()


def names_like(session: Session, space_id: int, prefix: str) -> set[str]:
    rows = session.scalars(
        select(Campaign.name).where(Campaign.space_id == space_id, Campaign.name.startswith(prefix))
    )
    return set(rows)


def list_campaigns(
    session: Session, space_id: int, status: str | None, limit: int, offset: int
) -> tuple[Sequence[Campaign], int]:
    query = select(Campaign).where(Campaign.space_id == space_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Campaign.id).limit(limit).offset(offset)).all()
    return rows, total


def campaigns_in_states(
    session: Session, project_id: int, states: Iterable[str]
) -> Sequence[Campaign]:
    return session.scalars(
        select(Campaign)
        .where(Campaign.project_id == project_id, Campaign.status.in_(list(states)))
        .order_by(Campaign.id)
    ).all()


# --- touchpoints as campaigns see them ------------------------------------------------


def touchpoints_by_id(
    session: Session, project_id: int, ids: Iterable[int]
) -> dict[int, Touchpoint]:
    """The live touchpoints of the project among ``ids``."""
    found = touchpoints_any(session, project_id, ids)
    return {tid: tp for tid, tp in found.items() if tp.deleted_at is None}


def touchpoint_project(session: Session, touchpoint_id: int) -> int | None:
    return session.scalar(select(Touchpoint.project_id).where(Touchpoint.id == touchpoint_id))


def authorised_touchpoints(session: Session, space_id: int, ids: Iterable[int]) -> set[int]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(TouchpointSpace.touchpoint_id).where(
                TouchpointSpace.space_id == space_id, TouchpointSpace.touchpoint_id.in_(wanted)
            )
        )
    )


# --- list audiences ---------------------------------------------------------------------


def replace_list_gids(
    session: Session, campaign_id: int, gids: Sequence[int], *, replace: bool = True
) -> int:
    if replace:
        session.execute(delete(CampaignListGid).where(CampaignListGid.campaign_id == campaign_id))
    if gids:
        rows = [{"campaign_id": campaign_id, "gid": g} for g in gids]
        if replace:
            for start in range(0, len(rows), 10_000):
                session.execute(insert(CampaignListGid), rows[start : start + 10_000])
        else:
            stmt = _insert_ignore(session, CampaignListGid, ["campaign_id", "gid"])
            for start in range(0, len(rows), 10_000):
                session.execute(stmt, rows[start : start + 10_000])
    return count_list_gids(session, campaign_id)


def count_list_gids(session: Session, campaign_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(CampaignListGid.campaign_id == campaign_id)) or 0
    )


def copy_list_gids(session: Session, source_id: int, target_id: int) -> None:
    session.execute(
        insert(CampaignListGid).from_select(
            ["campaign_id", "gid"],
            select(literal(target_id), CampaignListGid.gid).where(
                CampaignListGid.campaign_id == source_id
            ),
        )
    )


# --- runs -------------------------------------------------------------------------------


def _insert_ignore(session: Session, model: Any, keys: list[str]) -> Any:
    if dialect_name(session) == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(model).on_conflict_do_nothing(index_elements=keys)


def claim_run(
    session: Session, campaign_id: int, scheduled_for: datetime, owner: str, now: datetime
) -> int | None:
    """Insert the run row; the id when this process owns the run, None when another does.

    On PostgreSQL a concurrent insert of the same (campaign, time) waits for the
    other transaction and then conflicts, so exactly one process runs it.
    """
    stmt = (
        _insert_ignore(session, CampaignRun, ["campaign_id", "scheduled_for"])
        .values(
            campaign_id=campaign_id,
            scheduled_for=scheduled_for,
            owner=owner,
            targeted=0,
            entered=0,
            suppressed=0,
            started_at=now,
        )
        .returning(CampaignRun.id)
    )
    run_id: int | None = session.execute(stmt).scalar()
    return run_id


def set_run_counts(
    session: Session, run_id: int, *, targeted: int, entered: int, suppressed: int
) -> None:
    session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id)
        .values(targeted=targeted, entered=entered, suppressed=suppressed)
    )


def run_count(session: Session, campaign_id: int) -> int:
    return session.scalar(select(func.count()).where(CampaignRun.campaign_id == campaign_id)) or 0


# --- entries (audience selection and participation) -------------------------------------


def _ts(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())


def participation_sql(
    campaign_id: int, every_days: int | None, now: datetime
) -> ColumnElement[bool]:
    """Users who may enter again: never entered (once), or not within N days (every)."""
    earlier = select(CampaignEntry.gid).where(
        CampaignEntry.campaign_id == campaign_id,
        CampaignEntry.gid == User.gid,
    )
    if every_days is not None:
        earlier = earlier.where(CampaignEntry.at > now - timedelta(days=every_days))
    return ~exists(earlier)


def insert_entries(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    project_id: int,
    audience: ColumnElement[bool],
    participation: ColumnElement[bool],
    entrants: Rows | None,
    now: datetime,
) -> tuple[int, int]:
    """Select the audience in one statement: users who may participate enter the
    run, the rest of the audience is suppressed (reason ``participation``).

    ``entrants`` (event triggers): ``(gid, event_id)`` of the users who did the
    triggering event, the event kept with the entry for event splits. Returns the
    entered and suppressed counts."""
    # A campaign's first run: nobody entered before, so participation holds everyone
    # and nothing is suppressed for it (two statements and a lookup per user saved).
    first_run = not session.scalar(
        select(
            exists().where(CampaignEntry.campaign_id == campaign_id, CampaignEntry.run_id != run_id)
        )
    )
    if first_run:
        participation = true()
    source: Any = User
    event_id: Any = literal(None, BigInteger())
    if entrants is not None:
        who = entrants.subquery("entrants")
        source = join(User, who, who.c.gid == User.gid)
        event_id = who.c.event_id
    entered_sel = (
        select(
            literal(campaign_id),
            literal(run_id),
            User.gid,
            literal("entered"),
            _ts(now),
            event_id,
        )
        .select_from(source)
        .where(User.project_id == project_id, audience, participation)
    )
    # The table's Core insert: its rowcount is the number of rows written (an
    # ORM-level INSERT … SELECT does not report one), so no count of 1M rows follows.
    entered = _rowcount(
        session.execute(
            insert(cast(Table, CampaignEntry.__table__))
            .from_select(["campaign_id", "run_id", "gid", "status", "at", "event_id"], entered_sel)
            .execution_options(preserve_rowcount=True)
        )
    )
    this_run = select(CampaignEntry.gid).where(
        CampaignEntry.run_id == run_id, CampaignEntry.gid == User.gid
    )
    suppressed_sel = (
        select(
            literal(campaign_id),
            literal(run_id),
            User.gid,
            literal(PARTICIPATION),
            _ts(now),
        )
        .select_from(source)
        .where(User.project_id == project_id, audience, ~exists(this_run))
    )
    if not first_run:
        session.execute(
            insert(CampaignSuppression).from_select(
                ["campaign_id", "run_id", "gid", "reason", "at"], suppressed_sel
            )
        )
    if dialect_name(session) == "postgresql":
        # The rows just written are invisible to the planner's statistics, which would
        # then choose sequential scans for every page of this run.
        session.execute(text("ANALYZE campaign_entries"))
    suppressed = (
        0
        if first_run
        else session.scalar(
            select(func.count()).where(
                CampaignSuppression.run_id == run_id,
                CampaignSuppression.reason == PARTICIPATION,
            )
        )
        or 0
    )
    return int(entered), int(suppressed)


def add_entry_pages(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    step_id: str,
    due_at: datetime,
    page: int,
    after: int,
) -> int:
    """The run's entered users after gid ``after`` (the end of its first page, see
    ``first_entry_page``) reach its first step: one due row (``kind = entries``) per
    ``page`` users in gid order, each naming its range of the run's entries. The
    ranges are found by walking the entries' index a page at a time (the gids never
    pass through Python or JSON here). Each page is then routed in its own short
    transaction, so the delivery worker starts on the first page while later ones
    are routed, and a crash mid-way leaves the pages not yet done. Returns how many
    due rows."""
    after_gid = bindparam("after", type_=BigInteger())
    in_run = CampaignEntry.run_id == run_id
    # The gid ``page`` entries on: the end of the page starting after ``after``.
    page_end = (
        select(CampaignEntry.gid)
        .where(in_run, CampaignEntry.gid > after_gid)
        .order_by(CampaignEntry.gid)
        .offset(page - 1)
        .limit(1)
    )
    last = session.scalar(select(func.max(CampaignEntry.gid)).where(in_run))
    rows: list[dict[str, Any]] = []
    while last is not None and after < last:
        end = session.scalar(page_end, {"after": after})
        end = last if end is None else int(end)
        rows.append(
            {
                "campaign_id": campaign_id,
                "run_id": run_id,
                "step_id": step_id,
                "kind": ENTRIES,
                "due_at": due_at,
                "gids": [],
                "fallback": False,
                "gid_from": after + 1,
                "gid_to": end,
            }
        )
        after = end
    if rows:
        session.execute(insert(CampaignDue), rows)
    return len(rows)


def entry_gids(session: Session, run_id: int, gid_from: int, gid_to: int) -> list[int]:
    """The gids of a run's entries from ``gid_from`` to ``gid_to`` (a page), in order.

    Driver-level SQL: a page is thousands of rows, and an ORM-enabled select made
    a Python object per row (a tenth of ``serve``'s time in a SQLite campaign)."""
    conn = session.connection()
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    rows = conn.exec_driver_sql(
        "SELECT gid FROM campaign_entries"
        f" WHERE run_id = {mark} AND gid >= {mark} AND gid <= {mark} ORDER BY gid",
        (run_id, gid_from, gid_to),
    ).cursor.fetchall()
    return [gid for (gid,) in rows]


def first_entry_page(session: Session, run_id: int, page: int) -> list[int]:
    """The run's first ``page`` entered gids (the rest: ``add_entry_pages``)."""
    return list(
        session.execute(
            select(CampaignEntry.gid)
            .where(CampaignEntry.run_id == run_id)
            .order_by(CampaignEntry.gid)
            .limit(page)
        ).scalars()
    )


def matching_gids(
    session: Session, project_id: int, gids: Sequence[int], where: ColumnElement[bool]
) -> list[int]:
    if not gids:
        return []
    return list(
        session.scalars(
            select(User.gid).where(
                User.project_id == project_id, gid_in(session, User.gid, gids), where
            )
        )
    )


def sample_gids(
    session: Session, project_id: int, audience: ColumnElement[bool], limit: int
) -> list[int]:
    return list(
        session.scalars(
            select(User.gid)
            .where(User.project_id == project_id, audience)
            .order_by(User.gid)
            .limit(limit)
        )
    )


def count_audience(session: Session, project_id: int, audience: ColumnElement[bool]) -> int:
    """How many users match the audience now (what a publish would reach)."""
    return int(
        session.scalar(
            select(func.count()).select_from(User).where(User.project_id == project_id, audience)
        )
        or 0
    )


def insert_step_users(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    step_id: str,
    gids: Sequence[int],
    outcome: str,
    now: datetime,
) -> None:
    """Record users reaching a step (users of the run): one INSERT … SELECT from the
    gids passed as one parameter, not a row per user from Python."""
    if not gids:
        return
    source, gid = gid_rows(session, gids)
    rows = (
        select(
            literal(run_id, BigInteger()),
            literal(step_id),
            gid,
            literal(campaign_id),
            literal(outcome),
            _ts(now),
        )
        .select_from(source)
        # Always a WHERE: SQLite reads "… FROM x ON CONFLICT" as a join otherwise.
        .where(true())
    )
    stmt = _insert_ignore(session, CampaignStepUser, ["run_id", "step_id", "gid"])
    session.execute(
        stmt.from_select(["run_id", "step_id", "gid", "campaign_id", "outcome", "at"], rows)
    )


# --- due work ------------------------------------------------------------------------------


def add_due(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    step_id: str,
    kind: str,
    due_at: datetime,
    gids: Sequence[int],
    channel: int | None = None,
    fallback: bool = False,
) -> None:
    session.execute(
        insert(CampaignDue).values(
            campaign_id=campaign_id,
            run_id=run_id,
            step_id=step_id,
            kind=kind,
            due_at=due_at,
            gids=list(gids),
            channel=channel,
            fallback=fallback,
        )
    )


def due_work(session: Session, now: datetime, limit: int) -> list[tuple[int, int]]:
    """``(due id, campaign id)`` of the due work of running campaigns, in order."""
    rows = session.execute(
        select(CampaignDue.id, CampaignDue.campaign_id)
        .join(Campaign, Campaign.id == CampaignDue.campaign_id)
        .where(CampaignDue.due_at <= now, Campaign.status == "running")
        .order_by(CampaignDue.due_at, CampaignDue.id)
        .limit(limit)
    ).all()
    return [(int(due_id), int(campaign_id)) for due_id, campaign_id in rows]


def claim_due(session: Session, due_id: int) -> CampaignDue | None:
    """Delete the row and return it, with its users in ``gids`` (a page of entries
    read from its range): only the process whose delete hit it owns the work."""
    row = session.execute(
        delete(CampaignDue)
        .where(CampaignDue.id == due_id)
        .returning(
            CampaignDue.id,
            CampaignDue.campaign_id,
            CampaignDue.run_id,
            CampaignDue.step_id,
            CampaignDue.kind,
            CampaignDue.due_at,
            CampaignDue.gids,
            CampaignDue.channel,
            CampaignDue.fallback,
            CampaignDue.gid_from,
            CampaignDue.gid_to,
        )
    ).first()
    if row is None:
        return None
    gids = row.gids
    if row.kind == ENTRIES and row.gid_from is not None and row.gid_to is not None:
        gids = entry_gids(session, row.run_id, row.gid_from, row.gid_to)
    return CampaignDue(
        id=row.id,
        campaign_id=row.campaign_id,
        run_id=row.run_id,
        step_id=row.step_id,
        kind=row.kind,
        due_at=row.due_at,
        gids=gids,
        channel=row.channel,
        fallback=row.fallback,
        gid_from=row.gid_from,
        gid_to=row.gid_to,
    )


def has_pending_work(session: Session, campaign_id: int) -> bool:
    """Due rows left, or orders of the campaign not yet settled."""
    due = session.scalar(select(exists().where(CampaignDue.campaign_id == campaign_id)))
    if due:
        return True
    return bool(
        session.scalar(
            select(exists().where(Order.campaign_id == campaign_id, Order.state != "done"))
        )
    )


# --- scheduling ------------------------------------------------------------------------------


def start_due_campaigns(session: Session, now: datetime) -> int:
    result = session.execute(
        update(Campaign)
        .where(
            Campaign.status == "not_started",
            Campaign.start_at.is_not(None),
            Campaign.start_at <= now,
        )
        .values(status="running", updated_at=now)
    )
    return _rowcount(result)


def campaigns_due(session: Session, now: datetime, limit: int = 100) -> list[int]:
    return list(
        session.scalars(
            select(Campaign.id)
            .where(
                Campaign.status == "running",
                Campaign.next_run_at.is_not(None),
                Campaign.next_run_at <= now,
            )
            .order_by(Campaign.next_run_at)
            .limit(limit)
        )
    )


def running_without_next_run(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Campaign.id).where(Campaign.status == "running", Campaign.next_run_at.is_(None))
        )
    )


def drop_due(session: Session, campaign_id: int) -> None:
    session.execute(delete(CampaignDue).where(CampaignDue.campaign_id == campaign_id))


def due_campaign(session: Session, due_id: int) -> int | None:
    return session.scalar(select(CampaignDue.campaign_id).where(CampaignDue.id == due_id))


def finish_campaign(session: Session, campaign_id: int, now: datetime) -> int:
    result = session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == "running",
            Campaign.next_run_at.is_(None),
        )
        .values(status="finished", updated_at=now)
    )
    return _rowcount(result)


def delete_user_rows(session: Session, campaign_id: int) -> None:
    """The per-user rows of a campaign (they have no foreign key to cascade from)."""
    session.execute(delete(CampaignStepUser).where(CampaignStepUser.campaign_id == campaign_id))
    session.execute(delete(CampaignEntry).where(CampaignEntry.campaign_id == campaign_id))
    session.execute(
        delete(CampaignSuppression).where(CampaignSuppression.campaign_id == campaign_id)
    )
    session.execute(delete(CampaignCount).where(CampaignCount.campaign_id == campaign_id))
    drop_waits(session, campaign_id)


def max_event_id(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.max(Event.id)).where(Event.project_id == project_id)) or 0
    )


def event_entrants(
    project_id: int, name: str, after: int, upto: int, where: ColumnElement[bool]
) -> Rows:
    """``(gid, event_id)`` of the users who did event ``name`` with an id in
    (after, upto]: each user once, with the latest such event."""
    return (
        select(Event.gid.label("gid"), func.max(Event.id).label("event_id"))
        .where(
            Event.project_id == project_id,
            Event.name == name,
            Event.id > after,
            Event.id <= upto,
            where,
        )
        .group_by(Event.gid)
    )


def any_row(session: Session, query: Rows) -> bool:
    return bool(session.scalar(select(exists(query))))


def add_waits(
    session: Session,
    campaign_id: int,
    project_id: int,
    name: str,
    after: int,
    upto: int,
    where: ColumnElement[bool],
) -> None:
    """``event_without``: one wait per first event in (after, upto], in one statement."""
    rows = select(literal(campaign_id), Event.gid, Event.time, Event.id).where(
        Event.project_id == project_id,
        Event.name == name,
        Event.id > after,
        Event.id <= upto,
        where,
    )
    session.execute(
        insert(CampaignWait).from_select(["campaign_id", "gid", "event_time", "event_id"], rows)
    )


def has_waits(session: Session, campaign_id: int, upto: datetime | None = None) -> bool:
    query = exists().where(CampaignWait.campaign_id == campaign_id)
    if upto is not None:
        query = query.where(CampaignWait.event_time <= upto)
    return bool(session.scalar(select(query)))


def quiet_waiters(
    session: Session,
    campaign_id: int,
    project_id: int,
    without: str,
    window: timedelta,
    matured: datetime,
) -> Rows:
    """``(gid, event_id)`` of the users whose wait has matured (first event at or
    before ``matured``) and who did not do ``without`` within the window after it."""
    if dialect_name(session) == "postgresql":
        window_end: Any = CampaignWait.event_time + literal(window, Interval())
    else:
        minutes = int(window.total_seconds() // 60)
        window_end = func.strftime(
            "%Y-%m-%d %H:%M:%f", CampaignWait.event_time, f"+{minutes} minutes"
        )
    did_it = select(Event.id).where(
        Event.project_id == project_id,
        Event.name == without,
        Event.gid == CampaignWait.gid,
        Event.time > CampaignWait.event_time,
        Event.time <= window_end,
    )
    return (
        select(CampaignWait.gid.label("gid"), func.max(CampaignWait.event_id).label("event_id"))
        .where(
            CampaignWait.campaign_id == campaign_id,
            CampaignWait.event_time <= _ts(matured),
            ~exists(did_it),
        )
        .group_by(CampaignWait.gid)
    )


def drop_waits(session: Session, campaign_id: int, upto: datetime | None = None) -> None:
    stmt = delete(CampaignWait).where(CampaignWait.campaign_id == campaign_id)
    if upto is not None:
        stmt = stmt.where(CampaignWait.event_time <= upto)
    session.execute(stmt)


# --- touchpoints by name (history keeps deleted ones) ---------------------------------------


def touchpoints_any(session: Session, project_id: int, ids: Iterable[int]) -> dict[int, Touchpoint]:
    """Touchpoints of the project by id, deleted ones included (their names stay in
    the history they made)."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(
        select(Touchpoint).where(Touchpoint.project_id == project_id, Touchpoint.id.in_(wanted))
    ).all()
    return {tp.id: tp for tp in rows}


# --- event splits -----------------------------------------------------------------------------


def entry_event_matches(
    session: Session, run_id: int, gids: Sequence[int], where: ColumnElement[bool]
) -> set[int]:
    """Which of ``gids`` entered ``run_id`` with an event matching ``where``."""
    if not gids:
        return set()
    return set(
        session.scalars(
            select(CampaignEntry.gid)
            .join(Event, Event.id == CampaignEntry.event_id)
            .where(CampaignEntry.run_id == run_id, gid_in(session, CampaignEntry.gid, gids), where)
        )
    )


def latest_event_matches(
    session: Session,
    project_id: int,
    gids: Sequence[int],
    trigger: Rows,
    where: ColumnElement[bool],
) -> set[int]:
    """Which of ``gids`` have as latest triggering event (``trigger``: ``(gid,
    event_id)``) one matching ``where``: the preview's stand-in for the event a
    user would enter with."""
    if not gids:
        return set()
    latest = trigger.where(gid_in(session, Event.gid, gids)).subquery("latest")
    return set(
        session.scalars(
            select(latest.c.gid)
            .join(Event, Event.id == latest.c.event_id)
            .where(Event.project_id == project_id, where)
        )
    )


def triggering_events(project_id: int, name: str, where: ColumnElement[bool]) -> Rows:
    """``(gid, event_id)``: each user's latest event ``name`` matching ``where``."""
    return (
        select(Event.gid.label("gid"), func.max(Event.id).label("event_id"))
        .where(Event.project_id == project_id, Event.name == name, where)
        .group_by(Event.gid)
    )


# --- protection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapCheck:
    """A frequency cap to hold: fewer than ``max_messages`` in the last ``days``,
    through ``touchpoint_id`` (None: through any touchpoint of the project)."""

    touchpoint_id: int | None
    max_messages: int
    days: int


def project_protection(session: Session, project_id: int) -> ProjectProtection | None:
    return session.get(ProjectProtection, project_id)


def touchpoint_protection(session: Session, touchpoint_id: int) -> TouchpointProtection | None:
    return session.get(TouchpointProtection, touchpoint_id)


def _blocklist_for(project_id: int, touchpoint_id: int) -> list[ColumnElement[bool]]:
    return [
        BlocklistEntry.project_id == project_id,
        or_(BlocklistEntry.touchpoint_id == touchpoint_id, BlocklistEntry.touchpoint_id.is_(None)),
    ]


def blocklist_of(
    session: Session, project_id: int, touchpoint_id: int, most: int
) -> set[int] | None:
    """Every gid blocked for this touchpoint (or every one), or None when there are
    more than ``most`` (then each page is looked up)."""
    gids = set(
        session.scalars(
            select(BlocklistEntry.gid)
            .where(*_blocklist_for(project_id, touchpoint_id))
            .limit(most + 1)
        )
    )
    return gids if len(gids) <= most else None


def blocked_gids(
    session: Session, project_id: int, touchpoint_id: int, gids: Sequence[int]
) -> set[int]:
    """Which of ``gids`` are on the blocklist for this touchpoint or for every one (two
    lookups, each on its own unique index)."""
    if not gids:
        return set()
    found: set[int] = set()
    for scope in (
        BlocklistEntry.touchpoint_id == touchpoint_id,
        BlocklistEntry.touchpoint_id.is_(None),
    ):
        found.update(
            session.scalars(
                select(BlocklistEntry.gid).where(
                    BlocklistEntry.project_id == project_id,
                    gid_in(session, BlocklistEntry.gid, gids),
                    scope,
                )
            )
        )
    return found


def lock_users(session: Session, project_id: int, gids: Sequence[int], now: datetime) -> None:
    """Take the users' protection locks until commit, in gid order (two campaigns
    locking overlapping pages wait for each other instead of deadlocking). SQLite
    has a single writer already: nothing to do."""
    if not gids or dialect_name(session) != "postgresql":
        return
    session.connection().exec_driver_sql(
        "INSERT INTO protection_locks (project_id, gid, at) "
        "SELECT %(p)s, g, %(now)s FROM unnest(%(gids)s::bigint[]) AS g ORDER BY g "
        "ON CONFLICT (project_id, gid) DO UPDATE SET at = excluded.at",
        {"p": project_id, "now": now, "gids": sorted(gids)},
    )


def _under(project_id: int, gid: Any, caps: Sequence[CapCheck], now: datetime) -> list[Any]:
    """Conditions: the user ``gid`` has room under every cap at ``now``."""
    conds = []
    for cap in caps:
        counted = select(func.count()).where(
            SentMessage.project_id == project_id,
            SentMessage.gid == gid,
            SentMessage.at > _ts(now - timedelta(days=cap.days)),
        )
        if cap.touchpoint_id is not None:
            counted = counted.where(SentMessage.touchpoint_id == cap.touchpoint_id)
        conds.append(counted.scalar_subquery() < cap.max_messages)
    return conds


def record_messages(
    session: Session,
    *,
    project_id: int,
    touchpoint_id: int,
    run_id: int,
    step_id: str,
    gids: Sequence[int],
    caps: Sequence[CapCheck],
    now: datetime,
) -> set[int]:
    """Count a message for each of ``gids`` that has room under every cap, in one
    INSERT … SELECT; returns those users."""
    if not gids:
        return set()
    source, gid = gid_rows(session, gids)
    rows = (
        select(
            literal(project_id),
            gid,
            _ts(now),
            literal(run_id, BigInteger()),
            literal(step_id),
            literal(touchpoint_id),
        )
        .select_from(source)
        # Always a WHERE: SQLite reads "… FROM x ON CONFLICT" as a join otherwise.
        .where(true(), *_under(project_id, gid, caps, now))
    )
    columns = ["project_id", "gid", "at", "run_id", "step_id", "touchpoint_id"]
    # A plain insert: a user is counted once per run, step, touchpoint and time by
    # construction (a page's gids are distinct, a step lists a touchpoint once, a
    # later try has a later time), and ON CONFLICT DO NOTHING doubled the cost of
    # each row on PostgreSQL (a speculative insertion per row).
    stmt = insert(SentMessage).from_select(columns, rows)
    if not caps:
        session.execute(stmt)
        return set(gids)
    return set(session.scalars(stmt.returning(SentMessage.gid)))


def under_caps(
    session: Session, project_id: int, gids: Sequence[int], caps: Sequence[CapCheck], now: datetime
) -> set[int]:
    """Which of ``gids`` have room under every cap (read only: the preview)."""
    if not gids or not caps:
        return set(gids)
    return set(
        session.scalars(
            select(User.gid).where(
                User.project_id == project_id,
                gid_in(session, User.gid, gids),
                *_under(project_id, User.gid, caps, now),
            )
        )
    )


def forget_messages(
    session: Session,
    project_id: int,
    run_id: int,
    step_id: str,
    touchpoint_id: int,
    gids: Sequence[int],
) -> None:
    """Failed deliveries don't count toward caps."""
    if gids:
        session.execute(
            delete(SentMessage).where(
                SentMessage.project_id == project_id,
                gid_in(session, SentMessage.gid, gids),
                SentMessage.run_id == run_id,
                SentMessage.step_id == step_id,
                SentMessage.touchpoint_id == touchpoint_id,
            )
        )


def insert_suppressions(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    step_id: str,
    touchpoint_id: int,
    reason: str,
    gids: Sequence[int],
    now: datetime,
) -> None:
    """Record users held back at a touchpoint (INSERT … SELECT from the run's entries)."""
    if not gids:
        return
    rows = select(
        literal(campaign_id),
        CampaignEntry.run_id,
        literal(step_id),
        literal(touchpoint_id),
        CampaignEntry.gid,
        literal(reason),
        _ts(now),
    ).where(CampaignEntry.run_id == run_id, gid_in(session, CampaignEntry.gid, gids))
    session.execute(
        insert(CampaignSuppression).from_select(
            ["campaign_id", "run_id", "step_id", "touchpoint_id", "gid", "reason", "at"], rows
        )
    )


# --- users of an ``all`` step --------------------------------------------------------------------


def open_deliveries(
    session: Session, run_id: int, step_id: str, gids: Sequence[int], count: int
) -> None:
    """The users have ``count`` deliveries open on the step, none successful yet."""
    if gids:
        session.execute(
            update(CampaignStepUser)
            .where(
                CampaignStepUser.run_id == run_id,
                CampaignStepUser.step_id == step_id,
                gid_in(session, CampaignStepUser.gid, gids),
            )
            .values(open=count, ok=False)
        )


def close_deliveries(
    session: Session, run_id: int, step_id: str, gids: Sequence[int], *, ok: bool
) -> list[tuple[int, bool]]:
    """One delivery of each user settled (``ok``: successfully); returns the users whose
    last open delivery this was, with whether any of theirs succeeded."""
    if not gids:
        return []
    rows = session.execute(
        update(CampaignStepUser)
        .where(
            CampaignStepUser.run_id == run_id,
            CampaignStepUser.step_id == step_id,
            gid_in(session, CampaignStepUser.gid, gids),
        )
        .values(
            open=CampaignStepUser.open - 1,
            # A success closes the user's step successfully whatever else happens.
            ok=literal(True) if ok else CampaignStepUser.ok,
        )
        .returning(CampaignStepUser.gid, CampaignStepUser.open, CampaignStepUser.ok)
    ).all()
    return [(gid, bool(done_ok)) for gid, left, done_ok in rows if left is not None and left <= 0]


# --- result counters ---------------------------------------------------------------------------

# (step_id, touchpoint_id, metric, reason): step_id '' and touchpoint_id 0 mean "all".
CountKey = tuple[str, int, str, str]
REASON_MAX = 200


def add_counts(
    session: Session, campaign_id: int, bucket: datetime, counts: Mapping[CountKey, int]
) -> None:
    """Append counter changes (one executemany; nothing waits on anything)."""
    rows = [
        {
            "campaign_id": campaign_id,
            "step_id": step,
            "touchpoint_id": tp,
            "metric": metric,
            "reason": reason[:REASON_MAX],
            "bucket": bucket,
            "n": n,
        }
        for (step, tp, metric, reason), n in counts.items()
        if n
    ]
    if rows:
        session.execute(insert(CampaignCount), rows)


def count_totals(session: Session, campaign_id: int) -> list[tuple[str, int, str, str, int]]:
    """Every counter of the campaign, summed: ``(step_id, touchpoint_id, metric,
    reason, n)``. Reads only ``campaign_counts`` by its campaign index."""
    rows = session.execute(
        select(
            CampaignCount.step_id,
            CampaignCount.touchpoint_id,
            CampaignCount.metric,
            CampaignCount.reason,
            func.sum(CampaignCount.n),
        )
        .where(CampaignCount.campaign_id == campaign_id)
        .group_by(
            CampaignCount.step_id,
            CampaignCount.touchpoint_id,
            CampaignCount.metric,
            CampaignCount.reason,
        )
    ).all()
    return [(s, t, m, r, int(n or 0)) for s, t, m, r, n in rows]


def count_series(
    session: Session, campaign_id: int, metrics: Sequence[str]
) -> list[tuple[datetime, str, int]]:
    """Users per minute and metric, over the steps (touchpoint 0): ``(bucket, metric,
    n)``; campaign-wide suppressions (step '') included."""
    rows = session.execute(
        select(CampaignCount.bucket, CampaignCount.metric, func.sum(CampaignCount.n))
        .where(
            CampaignCount.campaign_id == campaign_id,
            CampaignCount.touchpoint_id == 0,
            CampaignCount.metric.in_(list(metrics)),
        )
        .group_by(CampaignCount.bucket, CampaignCount.metric)
        .order_by(CampaignCount.bucket)
    ).all()
    return [(b, m, int(n or 0)) for b, m, n in rows]


def compact_counts(session: Session, campaign_id: int, before: datetime) -> int:
    """Fold a campaign's counter rows older than ``before`` into one row per key and
    minute (the series keeps its resolution). The rows are deleted and returned in
    one statement, so a row appended by a transaction still in flight is never
    folded without being counted. Returns how many rows fewer there are."""
    deleted = session.execute(
        delete(CampaignCount)
        .where(CampaignCount.campaign_id == campaign_id, CampaignCount.bucket < _ts(before))
        .returning(
            CampaignCount.step_id,
            CampaignCount.touchpoint_id,
            CampaignCount.metric,
            CampaignCount.reason,
            CampaignCount.bucket,
            CampaignCount.n,
        )
    ).all()
    folded: dict[tuple[str, int, str, str, datetime], int] = defaultdict(int)
    for step, tp, metric, reason, bucket, n in deleted:
        folded[(step, tp, metric, reason, bucket)] += int(n)
    rows = [
        {
            "campaign_id": campaign_id,
            "step_id": step,
            "touchpoint_id": tp,
            "metric": metric,
            "reason": reason,
            "bucket": bucket,
            "n": n,
        }
        for (step, tp, metric, reason, bucket), n in folded.items()
        if n
    ]
    if rows:
        session.execute(insert(CampaignCount), rows)
    return len(deleted) - len(rows)


def campaigns_with_many_counts(session: Session, threshold: int, limit: int) -> list[int]:
    return list(
        session.scalars(
            select(CampaignCount.campaign_id)
            .group_by(CampaignCount.campaign_id)
            .having(func.count() > threshold)
            .limit(limit)
        )
    )


# --- per-user results (the reads of delivery's per-user rows are all here) ---------------------


@dataclass(frozen=True)
class DeliveryFilter:
    status: str | None = None
    gid: int | None = None
    step_id: str | None = None
    touchpoint_id: int | None = None


def _results_query(session: Session, campaign_id: int, flt: DeliveryFilter) -> Rows:
    """Final per-user results of the campaign (one row per user and order)."""
    query = (
        select(
            OrderResult.gid,
            Order.step_id,
            Order.touchpoint_id,
            Order.order_no,
            OrderResult.status,
            OrderResult.error_msg,
            OrderResult.attempts,
            OrderResult.settled_at.label("updated_at"),
            Order.id.label("order_id"),
        )
        .join(Order, Order.id == OrderResult.order_id)
        .where(Order.campaign_id == campaign_id)
    )
    return _where_given(
        query,
        (OrderResult.status, flt.status),
        (OrderResult.gid, flt.gid),
        (Order.step_id, flt.step_id),
        (Order.touchpoint_id, flt.touchpoint_id),
    )


def _unsettled_orders(
    session: Session, campaign_id: int, flt: DeliveryFilter, after_order: int
) -> Sequence[Any]:
    """The campaign's orders not done yet, by id, with how many of their users
    have a result (their other users are pending: an order's payload names them)."""
    settled = (
        select(func.count())
        .select_from(OrderResult)
        .where(OrderResult.order_id == Order.id)
        .scalar_subquery()
    )
    query = select(
        Order.id,
        Order.order_no,
        Order.step_id,
        Order.touchpoint_id,
        Order.created_at,
        Order.user_count,
        settled.label("settled"),
    ).where(Order.campaign_id == campaign_id, Order.state != "done", Order.id > after_order)
    query = _where_given(
        query, (Order.step_id, flt.step_id), (Order.touchpoint_id, flt.touchpoint_id)
    )
    return session.execute(query.order_by(Order.id)).all()


def _pending_gids(session: Session, order_id: int, order_no: str) -> list[int]:
    """The users of an order without a result, in gid order."""
    payload = delivery_repository.payload_of(session, order_no)
    done = set(session.scalars(select(OrderResult.gid).where(OrderResult.order_id == order_id)))
    return sorted(g for g in protocol_gids(payload) if g not in done)


def _pending_row(order: Any, gid: int) -> dict[str, Any]:
    return {
        "gid": gid,
        "step_id": order.step_id,
        "touchpoint_id": order.touchpoint_id,
        "order_no": order.order_no,
        "status": "pending",
        "reason": None,
        "error_msg": None,
        "attempts": 0,
        "updated_at": order.created_at,
    }


def _pending(
    session: Session,
    campaign_id: int,
    flt: DeliveryFilter,
    *,
    after: tuple[int, int] = (0, 0),
    offset: int = 0,
    limit: int,
) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Pending users (of unfinished orders, by order and gid) after ``after`` and
    ``offset``: up to ``limit`` ``(order_id, row)`` and how many match in all."""
    out: list[tuple[int, dict[str, Any]]] = []
    total = 0
    after_order, after_gid = after
    for order in _unsettled_orders(session, campaign_id, flt, after_order - 1):
        count = order.user_count - order.settled
        if count <= 0:
            continue
        if flt.gid is None and order.id != after_order and (offset >= count or len(out) >= limit):
            # Counted without reading the payload.
            total += count
            offset = max(0, offset - count) if len(out) < limit else offset
            continue
        gids = _pending_gids(session, order.id, order.order_no)
        if order.id == after_order:
            gids = [g for g in gids if g > after_gid]
        if flt.gid is not None:
            gids = [g for g in gids if g == flt.gid]
        total += len(gids)
        take = gids[offset:]
        offset = max(0, offset - len(gids))
        for g in take[: max(0, limit - len(out))]:
            out.append((order.id, _pending_row(order, g)))
    return out, total


def _where_given(query: Rows, *pairs: tuple[Any, Any]) -> Rows:
    """``column = value`` for each pair whose value is given."""
    for column, value in pairs:
        if value is not None:
            query = query.where(column == value)
    return query


def _suppressions_query(campaign_id: int, flt: DeliveryFilter) -> Rows:
    query = select(
        CampaignSuppression.id,
        CampaignSuppression.gid,
        CampaignSuppression.step_id,
        CampaignSuppression.touchpoint_id,
        CampaignSuppression.reason,
        CampaignSuppression.at,
    ).where(CampaignSuppression.campaign_id == campaign_id)
    return _where_given(
        query,
        (CampaignSuppression.gid, flt.gid),
        (CampaignSuppression.step_id, flt.step_id),
        (CampaignSuppression.touchpoint_id, flt.touchpoint_id),
    )


def _result_row(r: Any) -> dict[str, Any]:
    return {
        "gid": r.gid,
        "step_id": r.step_id,
        "touchpoint_id": r.touchpoint_id,
        "order_no": r.order_no,
        "status": r.status,
        "reason": None,
        "error_msg": r.error_msg,
        "attempts": r.attempts,
        "updated_at": r.updated_at,
    }


def _suppression_row(r: Any) -> dict[str, Any]:
    return {
        "gid": r.gid,
        "step_id": r.step_id,
        "touchpoint_id": r.touchpoint_id,
        "order_no": None,
        "status": "suppressed",
        "reason": r.reason,
        "error_msg": None,
        "attempts": 0,
        "updated_at": r.at,
    }


def list_deliveries(
    session: Session, campaign_id: int, flt: DeliveryFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Final results (one per user and order), then the pending users of unfinished
    orders, then the suppressed users."""
    items: list[dict[str, Any]] = []
    total = 0
    if flt.status not in ("suppressed", "pending"):
        query = _results_query(session, campaign_id, flt)
        n = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(Order.id, OrderResult.gid).limit(limit).offset(offset)
        ).all()
        items.extend(_result_row(r) for r in rows)
        total += n
        offset = max(0, offset - n)
        limit -= len(rows)
    if flt.status in (None, "pending"):
        pending, n = _pending(session, campaign_id, flt, offset=offset, limit=max(0, limit))
        items.extend(row for _, row in pending)
        total += n
        offset = max(0, offset - n)
        limit -= len(pending)
    if flt.status in (None, "suppressed"):
        query_s = _suppressions_query(campaign_id, flt)
        n = session.scalar(select(func.count()).select_from(query_s.subquery())) or 0
        total += n
        if limit > 0:
            rows_s = session.execute(
                query_s.order_by(CampaignSuppression.id).limit(limit).offset(offset)
            ).all()
            items.extend(_suppression_row(r) for r in rows_s)
    return items, total


def deliveries_page(
    session: Session,
    campaign_id: int,
    flt: DeliveryFilter,
    after: tuple[str, int, int] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[str, int, int] | None]:
    """A page of every matching row for an export, keyset-paged (results by order
    and gid, then pending users by order and gid, then suppressions by id);
    returns the rows and where to go on."""
    part, key1, key2 = after or ("results", 0, 0)
    out: list[dict[str, Any]] = []
    if part == "results":
        if flt.status not in ("suppressed", "pending"):
            query = _results_query(session, campaign_id, flt).where(
                tuple_(Order.id, OrderResult.gid) > tuple_(literal(key1), literal(key2))
            )
            rows = session.execute(query.order_by(Order.id, OrderResult.gid).limit(limit)).all()
            if len(rows) == limit:
                last = rows[-1]
                return [_result_row(r) for r in rows], ("results", last.order_id, last.gid)
            out = [_result_row(r) for r in rows]
        part, key1, key2 = "pending", 0, 0
    if part == "pending":
        if flt.status in (None, "pending"):
            pending, _ = _pending(
                session, campaign_id, flt, after=(key1, key2), limit=limit - len(out)
            )
            out.extend(row for _, row in pending)
            if len(out) == limit:
                last_order, last_row = pending[-1]
                return out, ("pending", last_order, last_row["gid"])
        part, key1 = "suppressed", 0
    if flt.status not in (None, "suppressed"):
        return out, None
    rows_s = session.execute(
        _suppressions_query(campaign_id, flt)
        .where(CampaignSuppression.id > key1)
        .order_by(CampaignSuppression.id)
        .limit(limit - len(out))
    ).all()
    out.extend(_suppression_row(r) for r in rows_s)
    if len(out) < limit:
        return out, None
    return out, ("suppressed", rows_s[-1].id if rows_s else key1, 0)


# --- protection settings and the blocklist -------------------------------------------------------


def save_project_protection(
    session: Session, project_id: int, frequency_cap: dict[str, Any] | None, now: datetime
) -> ProjectProtection:
    row = session.get(ProjectProtection, project_id)
    if row is None:
        row = ProjectProtection(project_id=project_id)
        session.add(row)
    row.frequency_cap = frequency_cap
    row.updated_at = now
    session.flush()
    return row


def save_touchpoint_protection(
    session: Session, touchpoint_id: int, values: Mapping[str, Any], now: datetime
) -> TouchpointProtection:
    row = session.get(TouchpointProtection, touchpoint_id)
    if row is None:
        row = TouchpointProtection(touchpoint_id=touchpoint_id)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = now
    session.flush()
    return row


def add_to_blocklist(
    session: Session,
    project_id: int,
    gids: Sequence[int],
    touchpoint_ids: Sequence[int | None],
    reason: str | None,
    now: datetime,
) -> int:
    """Insert entries, leaving existing ones as they are; returns how many are new."""
    added = 0
    for tid in touchpoint_ids:
        rows = [
            {
                "project_id": project_id,
                "gid": g,
                "touchpoint_id": tid,
                "reason": reason,
                "created_at": now,
            }
            for g in gids
        ]
        keys = ["project_id", "gid"] + ([] if tid is None else ["touchpoint_id"])
        where = (
            BlocklistEntry.touchpoint_id.is_(None)
            if tid is None
            else BlocklistEntry.touchpoint_id.is_not(None)
        )
        if dialect_name(session) == "postgresql":
            base: Any = postgresql.insert(BlocklistEntry)
        else:
            base = sqlite.insert(BlocklistEntry)
        stmt = base.on_conflict_do_nothing(index_elements=keys, index_where=where).returning(
            BlocklistEntry.id
        )
        for start in range(0, len(rows), 5000):
            added += len(session.execute(stmt, rows[start : start + 5000]).all())
    return added


def _blocklist_where(
    project_id: int, gid: int | None, touchpoint: int | None, every: bool
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [BlocklistEntry.project_id == project_id]
    if gid is not None:
        conds.append(BlocklistEntry.gid == gid)
    if every:
        conds.append(BlocklistEntry.touchpoint_id.is_(None))
    elif touchpoint is not None:
        conds.append(BlocklistEntry.touchpoint_id == touchpoint)
    return conds


def list_blocklist(
    session: Session,
    project_id: int,
    *,
    gid: int | None,
    touchpoint_id: int | None,
    every: bool,
    limit: int,
    offset: int,
) -> tuple[Sequence[BlocklistEntry], int]:
    conds = _blocklist_where(project_id, gid, touchpoint_id, every)
    total = session.scalar(select(func.count()).select_from(BlocklistEntry).where(*conds)) or 0
    rows = session.scalars(
        select(BlocklistEntry).where(*conds).order_by(BlocklistEntry.id).limit(limit).offset(offset)
    ).all()
    return rows, total


def delete_from_blocklist(
    session: Session, project_id: int, *, gid: int | None, touchpoint_id: int | None, every: bool
) -> int:
    result = session.execute(
        delete(BlocklistEntry).where(*_blocklist_where(project_id, gid, touchpoint_id, every))
    )
    return _rowcount(result)


def purge_sent_messages(session: Session, before: datetime, limit: int = 10_000) -> int:
    """Forget counted messages older than any cap looks back (a bounded batch)."""
    oldest = (
        select(SentMessage.project_id, SentMessage.gid, SentMessage.at)
        .where(SentMessage.at < _ts(before))
        .limit(limit)
        .subquery()
    )
    result = session.execute(
        delete(SentMessage).where(
            tuple_(SentMessage.project_id, SentMessage.gid, SentMessage.at).in_(
                select(oldest.c.project_id, oldest.c.gid, oldest.c.at)
            )
        )
    )
    return _rowcount(result)
