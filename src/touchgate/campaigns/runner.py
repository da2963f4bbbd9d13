"""Running a campaign: select the audience (in SQL), record who entered, route users
through the strategy tree and hand them to sending; and the preview, the same walk
without sending.

A run selects its audience and routes its first page of entered users in one
transaction, and leaves the others as pages of due work at the first step
(``repo.add_entry_pages``); each is then routed and sent in its own short
transaction (``run_due``), so the delivery worker
starts on the first page at once, writers on SQLite take turns, memory stays
bounded, and a crash mid-way leaves only the pages not yet done. Every statement
works on a page at once: no per-user round trip, no ORM object per user.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from ..crypto import SecretBox
from ..db import dialect_name
from ..delivery import protocol
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..projects import service as projects
from ..touchpoints.service import auth_token
from . import repository as repo
from .audience import audience_sql, filter_sql, property_filter_sql
from .content import (
    CampaignContent,
    Condition,
    DelayTiming,
    EventTrigger,
    EventWithoutTrigger,
    EveryParticipation,
    Group,
    PropertyCondition,
    PropertyGroup,
    SendStep,
)
from .protection import screen
from .router import Router
from .sending import CampaignBroken, RunContext, release_held, start_send, tem_data
from .service import campaign_content, next_run_after, project_tz

log = logging.getLogger("touchgate.campaigns")

PAGE = 5000
OWNER = f"{socket.gethostname()}-{os.getpid()}"


__all__ = ["CampaignBroken", "fire", "preview", "run_due"]


@dataclass
class RunSplitter:
    """Splits of a real run: attributes of the users, and the event each user
    entered the run with."""

    session: Session
    project_id: int
    run_id: int
    catalogue: dict[str, str]

    def audience(self, gids: Sequence[int], flt: Group | Condition) -> set[int]:
        where = filter_sql(flt, self.catalogue)
        return set(repo.matching_gids(self.session, self.project_id, gids, where))

    def event(self, gids: Sequence[int], flt: PropertyGroup | PropertyCondition) -> set[int]:
        return repo.entry_event_matches(self.session, self.run_id, gids, property_filter_sql(flt))


@dataclass
class PreviewSplitter:
    """Splits of the preview: the users' attributes, and for event splits each
    user's latest triggering event (the one they would enter with)."""

    session: Session
    project_id: int
    catalogue: dict[str, str]
    content: CampaignContent

    def audience(self, gids: Sequence[int], flt: Group | Condition) -> set[int]:
        where = filter_sql(flt, self.catalogue)
        return set(repo.matching_gids(self.session, self.project_id, gids, where))

    def event(self, gids: Sequence[int], flt: PropertyGroup | PropertyCondition) -> set[int]:
        trigger = self.content.trigger
        if not isinstance(trigger, EventTrigger | EventWithoutTrigger):
            return set()
        doing = trigger_filter(trigger)
        latest = repo.triggering_events(self.project_id, trigger.event, doing)
        return repo.latest_event_matches(
            self.session, self.project_id, gids, latest, property_filter_sql(flt)
        )


def trigger_filter(trigger: EventTrigger | EventWithoutTrigger) -> ColumnElement[bool]:
    return property_filter_sql(trigger.filter) if trigger.filter is not None else true()


def _context(session: Session, campaign: Campaign, run_id: int, now: datetime) -> RunContext:
    tz = project_tz(projects.get_project(session, campaign.project_id))
    return RunContext(session, campaign, campaign_content(campaign), run_id, now, tz)


def dispatch(ctx: RunContext, router: Router, step: Any, gids: Sequence[int]) -> None:
    """Users reach ``step``: record them at every step they reach now, and send."""
    for reached, users in router.route(step, gids):
        control = isinstance(reached, SendStep) and reached.is_control
        if isinstance(reached, SendStep) and reached.keeps_user_state:
            # Only mode ``all`` keeps a row per user at the step (its deliveries
            # still open); every step's users are counted (``tally``).
            repo.insert_step_users(
                ctx.session,
                campaign_id=ctx.campaign.id,
                run_id=ctx.run_id,
                step_id=reached.id,
                gids=users,
                outcome="entered",
                now=ctx.now,
            )
        ctx.tally.add("entered", len(users), step=reached.id)
        if control:
            ctx.tally.add("control", len(users), step=reached.id)
        if not isinstance(reached, SendStep) or control:
            continue
        if isinstance(reached.timing, DelayTiming):
            repo.add_due(
                ctx.session,
                campaign_id=ctx.campaign.id,
                run_id=ctx.run_id,
                step_id=reached.id,
                kind="send",
                due_at=ctx.now + timedelta(minutes=reached.timing.minutes),
                gids=users,
            )
        else:
            start_send(ctx, reached, users)


def _router(ctx: RunContext) -> Router:
    catalogue = repo.catalogue(ctx.session, ctx.campaign.project_id)
    splitter = RunSplitter(ctx.session, ctx.campaign.project_id, ctx.run_id, catalogue)
    return Router(ctx.campaign.id, splitter)


def execute_run(
    session: Session,
    campaign: Campaign,
    run_id: int,
    now: datetime,
    entrants: repo.Rows | None = None,
) -> None:
    """Select the audience of a run (participation applied), start the first page of
    entered users on its first step and queue the others, page by page (``run_due``
    routes them).
    ``entrants``: ``(gid, event_id)`` of the users who did the triggering event."""
    started = time.monotonic()
    ctx = _context(session, campaign, run_id, now)
    content = ctx.content
    # Pages are routed after this transaction: a touchpoint that is gone breaks the
    # run here, before anyone enters (and the campaign is closed), not page by page.
    for touchpoint_id in sorted(content.touchpoint_ids()):
        ctx.touchpoint(touchpoint_id)
    catalogue = repo.catalogue(session, campaign.project_id)
    every = (
        content.participation.days
        if isinstance(content.participation, EveryParticipation)
        else None
    )
    entered, suppressed = repo.insert_entries(
        session,
        campaign_id=campaign.id,
        run_id=run_id,
        project_id=campaign.project_id,
        audience=audience_sql(campaign.id, content.audience, catalogue),
        participation=repo.participation_sql(campaign.id, every, now),
        entrants=entrants,
        now=now,
    )
    repo.set_run_counts(
        session, run_id, targeted=entered + suppressed, entered=entered, suppressed=suppressed
    )
    ctx.tally.add("targeted", entered + suppressed)
    ctx.tally.add("entered", entered)
    ctx.tally.add("suppressed", suppressed, reason=repo.PARTICIPATION)
    # The first page is routed (and sent) in this transaction, as a small run is
    # whole; the others become due work, each routed in its own transaction.
    first = repo.first_entry_page(session, run_id, PAGE)
    dispatch(ctx, _router(ctx), content.strategy, first)
    pages = (
        repo.add_entry_pages(
            session,
            campaign_id=campaign.id,
            run_id=run_id,
            step_id=content.strategy.id,
            due_at=now,
            page=PAGE,
            after=first[-1],
        )
        if len(first) == PAGE
        else 0
    )
    ctx.flush()
    log.info(
        "campaign %s run %s: %d entered, %d suppressed, %d more pages to route (%.1fs)",
        campaign.id,
        run_id,
        entered,
        suppressed,
        pages,
        time.monotonic() - started,
    )


def fire(session: Session, campaign_id: int, now: datetime) -> int | None:
    """Fire a running campaign's due run. Returns the run id when this process owns it.

    The campaign row is locked (PostgreSQL) and the run row is unique per
    (campaign, scheduled time): of several processes only the one whose insert
    lands runs it; the others see the advanced schedule or a conflict.
    """
    campaign = repo.lock_campaign(session, campaign_id)
    if (
        campaign is None
        or campaign.status != "running"
        or campaign.next_run_at is None
        or campaign.next_run_at > now
    ):
        return None
    trigger = campaign_content(campaign).trigger
    if isinstance(trigger, EventTrigger | EventWithoutTrigger):
        return fire_event(session, campaign, trigger, now)
    scheduled_for = campaign.next_run_at
    tz = project_tz(projects.get_project(session, campaign.project_id))
    campaign.next_run_at = next_run_after(campaign, tz, scheduled_for, now)
    run_id = repo.claim_run(session, campaign.id, scheduled_for, OWNER, now)
    if run_id is None:
        return None
    execute_run(session, campaign, run_id, now)
    return run_id


# On PostgreSQL an event id becomes visible when its transaction commits, not in id
# order: ids are handled only once they have been the newest for this long, so an
# earlier id still being committed is not skipped. (SQLite commits one at a time.)
EVENT_SETTLE = timedelta(seconds=5)


def fire_event(
    session: Session,
    campaign: Campaign,
    trigger: EventTrigger | EventWithoutTrigger,
    now: datetime,
) -> int | None:
    """Poll an event-triggered campaign.

    ``event``: users who did the event since the last poll (matching its property
    filter, the audience and participation) enter a new run. ``event_without``:
    each such event starts a wait; users whose wait has passed without the second
    event enter. The campaign row is locked and its event cursor advanced in the
    same transaction, so each event is handled once however many processes poll.
    """
    without = isinstance(trigger, EventWithoutTrigger)
    ended = campaign.end_at is not None and campaign.end_at <= now
    cursor = campaign.event_cursor or 0
    upto = cursor
    if not ended:
        latest = repo.max_event_id(session, campaign.project_id)
        if dialect_name(session) == "postgresql":
            horizon_at = campaign.event_horizon_at
            if horizon_at is None or horizon_at <= now - EVENT_SETTLE:
                upto = max(cursor, campaign.event_horizon or cursor)
                campaign.event_horizon = latest
                campaign.event_horizon_at = now
        else:
            upto = latest
    where = trigger_filter(trigger)
    entrants: repo.Rows | None = None
    matured: datetime | None = None
    if upto > cursor:
        campaign.event_cursor = upto
        if without:
            repo.add_waits(
                session, campaign.id, campaign.project_id, trigger.event, cursor, upto, where
            )
        else:
            doers = repo.event_entrants(campaign.project_id, trigger.event, cursor, upto, where)
            if repo.any_row(session, doers):
                entrants = doers
    if isinstance(trigger, EventWithoutTrigger):
        window = timedelta(minutes=trigger.within_minutes)
        matured = now - window
        if repo.has_waits(session, campaign.id, matured):
            entrants = repo.quiet_waiters(
                session, campaign.id, campaign.project_id, trigger.without, window, matured
            )
    # After the end nothing new starts; waits already started still run their course.
    waiting = without and repo.has_waits(session, campaign.id)
    campaign.next_run_at = None if ended and not waiting else now
    if entrants is None:
        return None
    run_id = repo.claim_run(session, campaign.id, now, OWNER, now)
    if run_id is None:
        # A run at this very time exists: handle these users at the next poll (the
        # waits stay until their run; plain events are read again from the cursor).
        if not without:
            campaign.event_cursor = cursor
        return None
    execute_run(session, campaign, run_id, now, entrants=entrants)
    if matured is not None:
        repo.drop_waits(session, campaign.id, matured)
    return run_id


def run_due(session: Session, due_id: int, now: datetime) -> bool:
    """Do one piece of due work (a delayed send, a follow-up step, users held by
    quiet hours) if still ours."""
    campaign_id = repo.due_campaign(session, due_id)
    if campaign_id is None:
        return False
    # Shared: pieces of due work of one campaign (the pages of a run) go on side by
    # side; a pause or a close waits for them.
    campaign = repo.lock_campaign(session, campaign_id, shared=True)
    if campaign is None or campaign.status != "running":
        return False
    row = repo.claim_due(session, due_id)
    if row is None:
        return False
    ctx = _context(session, campaign, row.run_id, now)
    step = ctx.content.step(row.step_id)
    if step is None:
        return True
    gids = [int(g) for g in row.gids]
    if row.kind == "hold" and isinstance(step, SendStep) and row.channel is not None:
        release_held(ctx, step, row.channel, gids, fallback=row.fallback)
    elif row.kind == "send" and isinstance(step, SendStep):
        start_send(ctx, step, gids)
    else:
        dispatch(ctx, _router(ctx), step, gids)
    ctx.flush()
    return True


# --- preview ------------------------------------------------------------------------------------


SIGN_REDACTED = "<redacted>"


def preview(
    session: Session,
    campaign: Campaign,
    sample: int,
    secrets: SecretBox,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The exact request bodies the first ``sample`` matching users would be sent, per
    send step and touchpoint, and who protection would hold back there. The run's
    walk of the tree (``Router``), minus sending: nothing is sent or written."""
    now = now or utcnow()
    content = campaign_content(campaign)
    catalogue = repo.catalogue(session, campaign.project_id)
    audience = audience_sql(campaign.id, content.audience, catalogue)
    gids = repo.sample_gids(session, campaign.project_id, audience, sample)
    attrs = repo.user_attributes(session, campaign.project_id, gids)
    splitter = PreviewSplitter(session, campaign.project_id, catalogue, content)
    routed = [
        (step, users)
        for step, users in Router(campaign.id, splitter, follow_next=True).route(
            content.strategy, gids
        )
        if isinstance(step, SendStep) and not step.is_control
    ]
    tps = repo.touchpoints_by_id(session, campaign.project_id, content.touchpoint_ids())
    tz = project_tz(projects.get_project(session, campaign.project_id))
    ctx = RunContext(session, campaign, content, 0, now, tz)
    stamp = int(now.timestamp() * 1000)
    requests: list[dict[str, Any]] = []
    suppressed: list[dict[str, Any]] = []
    for step, members in routed:
        for index, ch in enumerate(step.channels):
            tp = tps.get(ch.touchpoint_id)
            if tp is None:
                continue
            screened = screen(
                session,
                project_id=campaign.project_id,
                touchpoint_id=tp.id,
                run_id=0,
                step_id=step.id,
                gids=members,
                rules=ctx.rules_for(tp.id),
                tz=tz,
                now=now,
                record=False,
            )
            suppressed.extend(
                {"step_id": step.id, "touchpoint_id": tp.id, "gid": g, "reason": reason}
                for reason, held_back in screened.suppressed.items()
                for g in held_back
            )
            reached = screened.allowed or screened.held
            tem = tem_data(ch.params)
            text_keys = protocol.placeholder_keys(tp.template_params or [], tem)
            token = auth_token(secrets, tp)
            batch = max(1, int(tp.batch_size or 500))
            for start in range(0, len(reached), batch):
                part = reached[start : start + batch]
                entries = [
                    protocol.data_entry(
                        g, attrs.get(g, {}), list(tp.user_attributes or []), tem, text_keys
                    )
                    for g in part
                ]
                order_no = protocol.new_order_no()
                # Viewers may preview: the MD5 ``sign`` is never computed here (it
                # would let anyone who can preview brute-force the token offline).
                data_list = protocol.encode_data_list(entries)
                body = protocol.delivery_body(order_no, data_list, stamp, None)
                shown = orjson.loads(body)
                if token:
                    shown = {**shown, "sign": SIGN_REDACTED}
                    body = orjson.dumps(shown)
                requests.append(
                    {
                        "step_id": step.id,
                        "step_name": step.name,
                        "channel": index,
                        "touchpoint_id": tp.id,
                        "touchpoint_name": tp.name,
                        "url": tp.url,
                        "gids": part,
                        "held": screened.held_until is not None,
                        "body": shown,
                        "body_text": body.decode(),
                    }
                )
    return {
        "sample": sample,
        "gids": gids,
        "requests": requests,
        "suppressed": suppressed,
        # The audience now, for the confirmation before publishing and the approver.
        "audience_size": repo.count_audience(session, campaign.project_id, audience),
    }
