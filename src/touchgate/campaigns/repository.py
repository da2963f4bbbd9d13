"""SQL for campaigns. Audience selection, participation and results are set-based
statements (INSERT … SELECT, aggregates); users are never loaded one by one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Interval,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..datastore.sensitive import SENSITIVE_TYPE
from ..db import dialect_name
from ..delivery.protocol import FAIL, PENDING, SUCC
from ..models import Attribute, Event, Order, OrderUser, Touchpoint, TouchpointSpace, User
from ..models.base import UTCDateTime
from ..models.campaigns import (
    Campaign,
    CampaignDue,
    CampaignEntry,
    CampaignListGid,
    CampaignRun,
    CampaignStepUser,
    CampaignWait,
)


def gid_in(session: Session, column: Any, gids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN gids``. On PostgreSQL one ``bigint[]`` parameter (``= ANY``): an IN
    list of thousands of parameters is slow to plan, and an array typed from the
    values (e.g. ``smallint[]``) would keep the bigint index from being used."""
    if dialect_name(session) == "postgresql":
        return cast(
            ColumnElement[bool],
            column == any_(bindparam(None, list(gids), type_=postgresql.ARRAY(BigInteger))),
        )
    return cast(ColumnElement[bool], column.in_(list(gids)))


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


def lock_campaign(session: Session, campaign_id: int) -> Campaign | None:
    """Re-read a campaign, locked for this transaction on PostgreSQL."""
    query = (
        select(Campaign).where(Campaign.id == campaign_id).execution_options(populate_existing=True)
    )
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
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
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(
        select(Touchpoint).where(Touchpoint.project_id == project_id, Touchpoint.id.in_(wanted))
    ).all()
    return {tp.id: tp for tp in rows if getattr(tp, "deleted_at", None) is None}


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
    campaign_id: int, participation: dict[str, Any], now: datetime
) -> ColumnElement[bool]:
    """Users who may enter again: never entered (once), or not within N days (every)."""
    earlier = select(CampaignEntry.id).where(
        CampaignEntry.campaign_id == campaign_id,
        CampaignEntry.gid == User.gid,
        CampaignEntry.status == "entered",
    )
    if participation.get("mode") == "every":
        since = now - timedelta(days=int(participation.get("days", 1)))
        earlier = earlier.where(CampaignEntry.at > since)
    return ~exists(earlier)


def insert_entries(
    session: Session,
    *,
    campaign_id: int,
    run_id: int,
    project_id: int,
    audience: ColumnElement[bool],
    participation: ColumnElement[bool],
    now: datetime,
) -> tuple[int, int]:
    """Select the audience in one statement: users who may participate are ``entered``,
    the rest of the audience ``suppressed`` (reason ``participation``). Returns the counts."""
    cols = ["campaign_id", "run_id", "gid", "status", "reason", "at"]
    entered_sel = select(
        literal(campaign_id),
        literal(run_id),
        User.gid,
        literal("entered"),
        literal(None),
        _ts(now),
    ).where(User.project_id == project_id, audience, participation)
    session.execute(insert(CampaignEntry).from_select(cols, entered_sel))
    this_run = select(CampaignEntry.id).where(
        CampaignEntry.run_id == run_id, CampaignEntry.gid == User.gid
    )
    suppressed_sel = select(
        literal(campaign_id),
        literal(run_id),
        User.gid,
        literal("suppressed"),
        literal("participation"),
        _ts(now),
    ).where(User.project_id == project_id, audience, ~exists(this_run))
    session.execute(insert(CampaignEntry).from_select(cols, suppressed_sel))
    if dialect_name(session) == "postgresql":
        # The rows just written are invisible to the planner's statistics, which would
        # then choose sequential scans for every page of this run.
        session.execute(text("ANALYZE campaign_entries"))
    # Counted afterwards: an ORM-level INSERT … SELECT does not report a reliable rowcount.
    counts = dict(
        session.execute(
            select(CampaignEntry.status, func.count())
            .where(CampaignEntry.run_id == run_id)
            .group_by(CampaignEntry.status)
        ).all()
    )
    return int(counts.get("entered", 0)), int(counts.get("suppressed", 0))


def entered_gids_page(session: Session, run_id: int, after: int, limit: int) -> list[int]:
    """The next page of a run's entered gids (keyset paging: no cursor stays open)."""
    return list(
        session.scalars(
            select(CampaignEntry.gid)
            .where(
                CampaignEntry.run_id == run_id,
                CampaignEntry.status == "entered",
                CampaignEntry.gid > after,
            )
            .order_by(CampaignEntry.gid)
            .limit(limit)
        )
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


def user_attributes(
    session: Session, project_id: int, gids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    if not gids:
        return {}
    rows = session.execute(
        select(User.gid, User.attributes).where(
            User.project_id == project_id, gid_in(session, User.gid, gids)
        )
    ).all()
    return {gid: attrs or {} for gid, attrs in rows}


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
    """Record users reaching a step: one INSERT … SELECT from the run's entries (every
    user moving through a run's steps entered it), not a row per user from Python."""
    if not gids:
        return
    rows = select(
        CampaignEntry.run_id,
        literal(step_id),
        CampaignEntry.gid,
        CampaignEntry.campaign_id,
        literal(outcome),
        _ts(now),
    ).where(CampaignEntry.run_id == run_id, gid_in(session, CampaignEntry.gid, gids))
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
) -> None:
    session.execute(
        insert(CampaignDue).values(
            campaign_id=campaign_id,
            run_id=run_id,
            step_id=step_id,
            kind=kind,
            due_at=due_at,
            gids=list(gids),
        )
    )


def due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Due work of running campaigns (paused ones keep theirs until resumed)."""
    return list(
        session.scalars(
            select(CampaignDue.id)
            .join(Campaign, Campaign.id == CampaignDue.campaign_id)
            .where(CampaignDue.due_at <= now, Campaign.status == "running")
            .order_by(CampaignDue.due_at, CampaignDue.id)
            .limit(limit)
        )
    )


def claim_due(session: Session, due_id: int) -> CampaignDue | None:
    """Delete the row and return it: only the process whose delete hit it owns the work."""
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
        )
    ).first()
    if row is None:
        return None
    return CampaignDue(
        id=row.id,
        campaign_id=row.campaign_id,
        run_id=row.run_id,
        step_id=row.step_id,
        kind=row.kind,
        due_at=row.due_at,
        gids=row.gids,
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


# --- results ----------------------------------------------------------------------------------


def entry_counts(session: Session, campaign_id: int) -> dict[tuple[str, str | None], int]:
    rows = session.execute(
        select(CampaignEntry.status, CampaignEntry.reason, func.count())
        .where(CampaignEntry.campaign_id == campaign_id)
        .group_by(CampaignEntry.status, CampaignEntry.reason)
    ).all()
    return {(status, reason): n for status, reason, n in rows}


def step_user_counts(session: Session, campaign_id: int) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(CampaignStepUser.step_id, CampaignStepUser.outcome, func.count())
        .where(CampaignStepUser.campaign_id == campaign_id)
        .group_by(CampaignStepUser.step_id, CampaignStepUser.outcome)
    ).all()
    return [(s, o, n) for s, o, n in rows]


def touchpoint_counts(session: Session, campaign_id: int) -> list[tuple[int, str, str, int]]:
    """Per touchpoint, status and error: how many per-user deliveries."""
    rows = session.execute(
        select(Order.touchpoint_id, OrderUser.status, OrderUser.error_msg, func.count())
        .join(Order, Order.id == OrderUser.order_id)
        .where(Order.campaign_id == campaign_id)
        .group_by(Order.touchpoint_id, OrderUser.status, OrderUser.error_msg)
    ).all()
    return [(t, s, e or "", n) for t, s, e, n in rows]


def user_outcomes(session: Session, campaign_id: int) -> list[tuple[str, str, str, int]]:
    """Per step: how many users succeeded (on any touchpoint), are pending, or failed
    everywhere, with the error of their last failed delivery. One row per
    (step, outcome, reason)."""
    per_user = (
        select(
            Order.run_id,
            Order.step_id,
            OrderUser.gid,
            func.max(case((OrderUser.status == SUCC, 1), else_=0)).label("succ"),
            func.max(case((OrderUser.status == PENDING, 1), else_=0)).label("pend"),
            func.max(OrderUser.order_id).label("last_order"),
        )
        .join(Order, Order.id == OrderUser.order_id)
        .where(Order.campaign_id == campaign_id)
        .group_by(Order.run_id, Order.step_id, OrderUser.gid)
        .subquery()
    )
    outcome = case(
        (per_user.c.succ == 1, literal(SUCC)),
        (per_user.c.pend == 1, literal(PENDING)),
        else_=literal(FAIL),
    )
    last = OrderUser.__table__.alias("last_ou")
    reason = case((and_(per_user.c.succ == 0, per_user.c.pend == 0), last.c.error_msg), else_=None)
    labelled = (
        select(per_user.c.step_id, outcome.label("outcome"), reason.label("reason"))
        .select_from(per_user)
        .join(
            last,
            and_(last.c.order_id == per_user.c.last_order, last.c.gid == per_user.c.gid),
        )
        .subquery()
    )
    rows = session.execute(
        select(labelled.c.step_id, labelled.c.outcome, labelled.c.reason, func.count()).group_by(
            labelled.c.step_id, labelled.c.outcome, labelled.c.reason
        )
    ).all()
    return [(step or "", status, err or "", n) for step, status, err, n in rows]


def list_deliveries(
    session: Session,
    campaign_id: int,
    *,
    status: str | None,
    gid: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Per-user results (order rows), then the suppressed users (no order)."""
    items: list[dict[str, Any]] = []
    total = 0
    if status != "suppressed":
        query = (
            select(
                OrderUser.gid,
                Order.step_id,
                Order.touchpoint_id,
                Order.order_no,
                OrderUser.status,
                OrderUser.error_msg,
                OrderUser.attempts,
            )
            .join(Order, Order.id == OrderUser.order_id)
            .where(Order.campaign_id == campaign_id)
        )
        if status is not None:
            query = query.where(OrderUser.status == status)
        if gid is not None:
            query = query.where(OrderUser.gid == gid)
        n = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(Order.id, OrderUser.gid).limit(limit).offset(offset)
        ).all()
        items.extend(
            {
                "gid": r.gid,
                "step_id": r.step_id,
                "touchpoint_id": r.touchpoint_id,
                "order_no": r.order_no,
                "status": r.status,
                "error_msg": r.error_msg,
                "attempts": r.attempts,
            }
            for r in rows
        )
        total += n
        offset = max(0, offset - n)
        limit -= len(rows)
    if status in (None, "suppressed"):
        query_s = select(CampaignEntry.gid, CampaignEntry.reason).where(
            CampaignEntry.campaign_id == campaign_id, CampaignEntry.status == "suppressed"
        )
        if gid is not None:
            query_s = query_s.where(CampaignEntry.gid == gid)
        n = session.scalar(select(func.count()).select_from(query_s.subquery())) or 0
        total += n
        if limit > 0:
            rows_s = session.execute(
                query_s.order_by(CampaignEntry.id).limit(limit).offset(offset)
            ).all()
            items.extend(
                {
                    "gid": r.gid,
                    "step_id": None,
                    "touchpoint_id": None,
                    "order_no": None,
                    "status": "suppressed",
                    "error_msg": r.reason,
                    "attempts": 0,
                }
                for r in rows_s
            )
    return items, total


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
    drop_waits(session, campaign_id)


def max_event_id(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.max(Event.id)).where(Event.project_id == project_id)) or 0
    )


def event_gids(
    project_id: int, name: str, after: int, upto: int, where: ColumnElement[bool]
) -> Any:
    """The users who did event ``name`` with an id in (after, upto], as a subquery."""
    return select(Event.gid).where(
        Event.project_id == project_id,
        Event.name == name,
        Event.id > after,
        Event.id <= upto,
        where,
    )


def any_event(session: Session, gids: Any) -> bool:
    return bool(session.scalar(select(exists(gids))))


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
    rows = select(literal(campaign_id), Event.gid, Event.time).where(
        Event.project_id == project_id,
        Event.name == name,
        Event.id > after,
        Event.id <= upto,
        where,
    )
    session.execute(insert(CampaignWait).from_select(["campaign_id", "gid", "event_time"], rows))


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
) -> Any:
    """Users whose wait has matured (first event at or before ``matured``) and who did
    not do ``without`` within the window after it, as a subquery of gids."""
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
    return select(CampaignWait.gid).where(
        CampaignWait.campaign_id == campaign_id,
        CampaignWait.event_time <= _ts(matured),
        ~exists(did_it),
    )


def drop_waits(session: Session, campaign_id: int, upto: datetime | None = None) -> None:
    stmt = delete(CampaignWait).where(CampaignWait.campaign_id == campaign_id)
    if upto is not None:
        stmt = stmt.where(CampaignWait.event_time <= upto)
    session.execute(stmt)
