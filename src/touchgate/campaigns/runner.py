"""Running a campaign: select the audience (in SQL), record who entered, walk the
strategy tree and hand users to the delivery engine; and the settlement listener
that continues a send after its results (``first_success`` fallback, ``next``).

Users move through the tree in pages of gids (keyset-paged from the run's entries,
so memory stays bounded and no cursor stays open while orders are written). Every
statement works on a page at once: no per-user round trip, no ORM object per user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, true
from sqlalchemy.orm import Session

from ..crypto import SecretBox
from ..db import dialect_name
from ..delivery import protocol
from ..delivery.hooks import OrderInfo, UserResult, register_settlement_listener
from ..delivery.protocol import FAIL
from ..delivery.service import enqueue_delivery
from ..errors import TouchgateError
from ..models import Touchpoint, User
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..projects import service as projects
from ..touchpoints.service import auth_token
from . import repository as repo
from .audience import audience_sql, filter_sql, property_filter_sql
from .schemas import find_step
from .service import next_run_after, project_tz

log = logging.getLogger("touchgate.campaigns")

PAGE = 5000
OWNER = f"{socket.gethostname()}-{os.getpid()}"


class CampaignBroken(TouchgateError):
    """A campaign cannot go on (e.g. a touchpoint it needs is gone): it is closed."""

    status_code = 409
    code = "campaign_broken"


@dataclass
class RunContext:
    campaign: Campaign
    run_id: int
    now: datetime
    catalogue: dict[str, str]
    touchpoints: dict[int, Touchpoint] = field(default_factory=dict)


def ab_bucket(campaign_id: int, gid: int) -> int:
    """A user's stable A/B position, 0–99, from a hash of the campaign and the gid."""
    digest = hashlib.blake2b(f"{campaign_id}:{gid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def _touchpoint(session: Session, ctx: RunContext, touchpoint_id: int) -> Touchpoint:
    tp = ctx.touchpoints.get(touchpoint_id)
    if tp is None:
        found = repo.touchpoints_by_id(session, ctx.campaign.project_id, [touchpoint_id])
        tp = found.get(touchpoint_id)
        if tp is None or tp.status != "enabled":
            raise CampaignBroken(f"Touchpoint {touchpoint_id} is no longer usable.")
        ctx.touchpoints[touchpoint_id] = tp
    return tp


def _tem_data(params: dict[str, Any]) -> dict[str, Any]:
    # Values were validated when the campaign was saved, submitted and published.
    return {k: v for k, v in params.items() if v is not None}


def send_channel(
    session: Session, ctx: RunContext, step: dict[str, Any], channel: int, gids: list[int]
) -> None:
    ch = step["channels"][channel]
    tp = _touchpoint(session, ctx, int(ch["touchpoint_id"]))
    # Attributes read here, in one indexed query per page, and handed over with the gids.
    attrs = repo.user_attributes(session, ctx.campaign.project_id, gids)
    empty: dict[str, Any] = {}
    enqueue_delivery(
        session,
        touchpoint=tp,
        users=((g, attrs.get(g, empty)) for g in gids),
        tem_data=_tem_data(ch.get("params") or {}),
        campaign_id=ctx.campaign.id,
        run_id=ctx.run_id,
        step_id=step["id"],
        context={"channel": channel},
    )


def start_send(session: Session, ctx: RunContext, step: dict[str, Any], gids: list[int]) -> None:
    """Send a step now: through every touchpoint (``all``), or the first one
    (``first_success``; the settlement listener falls back to the next ones)."""
    channels = step.get("channels") or []
    count = len(channels) if step.get("mode") == "all" else min(1, len(channels))
    for index in range(count):
        send_channel(session, ctx, step, index, gids)


def dispatch(session: Session, ctx: RunContext, step: dict[str, Any], gids: list[int]) -> None:
    """Users reach ``step``: record them and do what the step says."""
    if not gids:
        return
    campaign = ctx.campaign
    kind = step.get("type")
    timing = (step.get("timing") or {}).get("type", "now")
    outcome = "control" if kind == "send" and timing == "none" else "entered"
    repo.insert_step_users(
        session,
        campaign_id=campaign.id,
        run_id=ctx.run_id,
        step_id=step["id"],
        gids=gids,
        outcome=outcome,
        now=ctx.now,
    )
    if kind == "send":
        if timing == "none":
            return
        if timing == "delay":
            due = ctx.now + timedelta(minutes=int(step["timing"]["minutes"]))
            repo.add_due(
                session,
                campaign_id=campaign.id,
                run_id=ctx.run_id,
                step_id=step["id"],
                kind="send",
                due_at=due,
                gids=gids,
            )
            return
        start_send(session, ctx, step, gids)
    elif kind == "split":
        remaining = gids
        for branch in step.get("branches", []):
            where = filter_sql(branch["filter"], ctx.catalogue)
            matched = set(repo.matching_gids(session, campaign.project_id, remaining, where))
            if matched:
                taken = [g for g in remaining if g in matched]
                remaining = [g for g in remaining if g not in matched]
                if branch.get("next"):
                    dispatch(session, ctx, branch["next"], taken)
        if remaining and step.get("otherwise"):
            dispatch(session, ctx, step["otherwise"], remaining)
    elif kind == "ab":
        buckets: list[list[int]] = [[] for _ in step["branches"]]
        bounds = []
        acc = 0
        for branch in step["branches"]:
            acc += int(branch["percent"])
            bounds.append(acc)
        for gid in gids:
            pos = ab_bucket(campaign.id, gid)
            for i, bound in enumerate(bounds):
                if pos < bound:
                    buckets[i].append(gid)
                    break
        for branch, members in zip(step["branches"], buckets, strict=True):
            if branch.get("next"):
                dispatch(session, ctx, branch["next"], members)


def execute_run(
    session: Session,
    campaign: Campaign,
    run_id: int,
    now: datetime,
    only: ColumnElement[bool] | None = None,
) -> None:
    """Select the audience of a run (participation applied) and start everyone on it.
    ``only`` narrows the audience further (the users who did the triggering event)."""
    catalogue = repo.catalogue(session, campaign.project_id)
    audience = audience_sql(campaign.id, campaign.audience, catalogue)
    if only is not None:
        audience = and_(audience, only)
    entered, suppressed = repo.insert_entries(
        session,
        campaign_id=campaign.id,
        run_id=run_id,
        project_id=campaign.project_id,
        audience=audience,
        participation=repo.participation_sql(campaign.id, campaign.participation, now),
        now=now,
    )
    repo.set_run_counts(
        session, run_id, targeted=entered + suppressed, entered=entered, suppressed=suppressed
    )
    ctx = RunContext(campaign=campaign, run_id=run_id, now=now, catalogue=catalogue)
    after = 0
    started = time.monotonic()
    while page := repo.entered_gids_page(session, run_id, after, PAGE):
        dispatch(session, ctx, campaign.strategy, page)
        after = page[-1]
    log.info(
        "campaign %s run %s: %d entered, %d suppressed (%.1fs)",
        campaign.id,
        run_id,
        entered,
        suppressed,
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
    if campaign.trigger.get("type") in ("event", "event_without"):
        return fire_event(session, campaign, now)
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


def fire_event(session: Session, campaign: Campaign, now: datetime) -> int | None:
    """Poll an event-triggered campaign.

    ``event``: users who did the event since the last poll (matching its property
    filter, the audience and participation) enter a new run. ``event_without``:
    each such event starts a wait; users whose wait has passed without the second
    event enter. The campaign row is locked and its event cursor advanced in the
    same transaction, so each event is handled once however many processes poll.
    """
    trigger = campaign.trigger
    without = trigger.get("type") == "event_without"
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
    where = property_filter_sql(trigger["filter"]) if trigger.get("filter") else true()
    only: ColumnElement[bool] | None = None
    matured: datetime | None = None
    if upto > cursor:
        campaign.event_cursor = upto
        if without:
            repo.add_waits(
                session,
                campaign.id,
                campaign.project_id,
                str(trigger["event"]),
                cursor,
                upto,
                where,
            )
        else:
            doers = repo.event_gids(campaign.project_id, str(trigger["event"]), cursor, upto, where)
            if repo.any_event(session, doers):
                only = User.gid.in_(doers)
    if without:
        window = timedelta(minutes=int(trigger["within_minutes"]))
        matured = now - window
        if repo.has_waits(session, campaign.id, matured):
            quiet = repo.quiet_waiters(
                session, campaign.id, campaign.project_id, str(trigger["without"]), window, matured
            )
            only = User.gid.in_(quiet)
    # After the end nothing new starts; waits already started still run their course.
    waiting = without and repo.has_waits(session, campaign.id)
    campaign.next_run_at = None if ended and not waiting else now
    if only is None:
        return None
    run_id = repo.claim_run(session, campaign.id, now, OWNER, now)
    if run_id is None:
        # A run at this very time exists: handle these users at the next poll (the
        # waits stay until their run; plain events are read again from the cursor).
        if not without:
            campaign.event_cursor = cursor
        return None
    execute_run(session, campaign, run_id, now, only=only)
    if matured is not None:
        repo.drop_waits(session, campaign.id, matured)
    return run_id


def run_due(session: Session, due_id: int, now: datetime) -> bool:
    """Do one piece of due work (a delayed send or a follow-up step) if still ours."""
    campaign_id = repo.due_campaign(session, due_id)
    if campaign_id is None:
        return False
    campaign = repo.lock_campaign(session, campaign_id)
    if campaign is None or campaign.status != "running":
        return False
    row = repo.claim_due(session, due_id)
    if row is None:
        return False
    step = find_step(campaign.strategy, row.step_id)
    if step is None:
        return True
    ctx = RunContext(
        campaign=campaign,
        run_id=row.run_id,
        now=now,
        catalogue=repo.catalogue(session, campaign.project_id),
    )
    gids = [int(g) for g in row.gids]
    if row.kind == "send":
        start_send(session, ctx, step, gids)
    else:
        dispatch(session, ctx, step, gids)
    return True


def on_settled(session: Session, order: OrderInfo, results: list[UserResult]) -> None:
    """Continue a campaign's send step with users whose results just became final:
    fall back to the next touchpoint on TOU_FAIL (``first_success``), and queue the
    ``next`` step for users done with this one. Runs in the settlement transaction."""
    if order.campaign_id is None or order.run_id is None or order.step_id is None:
        return
    if order.replay_of is not None:
        return  # a replay is a manual re-send of an order, not a new campaign step
    campaign = session.get(Campaign, order.campaign_id)
    if campaign is None or campaign.status == "closed":
        return
    step = find_step(campaign.strategy, order.step_id)
    if step is None or step.get("type") != "send":
        return
    channel = int((order.context or {}).get("channel", 0))
    channels = step.get("channels") or []
    gids = [r[0] for r in results]
    done = gids
    if step.get("mode", "first_success") == "first_success":
        if channel + 1 < len(channels):
            failed = [r[0] for r in results if r[1] == FAIL]
            done = [r[0] for r in results if r[1] != FAIL]
            if failed:
                ctx = RunContext(campaign=campaign, run_id=order.run_id, now=utcnow(), catalogue={})
                try:
                    send_channel(session, ctx, step, channel + 1, failed)
                except CampaignBroken as exc:
                    log.warning("campaign %s: no fallback: %s", campaign.id, exc.message)
                    done = gids
    elif channel != 0:
        done = []  # mode "all": the first touchpoint's results move users on, once
    nxt = step.get("next")
    if done and isinstance(nxt, dict):
        repo.add_due(
            session,
            campaign_id=campaign.id,
            run_id=order.run_id,
            step_id=str(nxt["id"]),
            kind="step",
            due_at=utcnow(),
            gids=done,
        )


register_settlement_listener(on_settled)


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
    send step and touchpoint. Nothing is sent and nothing is written."""
    now = now or utcnow()
    catalogue = repo.catalogue(session, campaign.project_id)
    audience = audience_sql(campaign.id, campaign.audience, catalogue)
    gids = repo.sample_gids(session, campaign.project_id, audience, sample)
    attrs = repo.user_attributes(session, campaign.project_id, gids)
    routed: list[tuple[dict[str, Any], list[int]]] = []
    _route(session, campaign, catalogue, campaign.strategy, gids, routed)
    stamp = int(now.timestamp() * 1000)
    requests: list[dict[str, Any]] = []
    tps = repo.touchpoints_by_id(
        session,
        campaign.project_id,
        (int(ch["touchpoint_id"]) for step, _ in routed for ch in step.get("channels", [])),
    )
    for step, members in routed:
        for index, ch in enumerate(step.get("channels") or []):
            tp = tps.get(int(ch["touchpoint_id"]))
            if tp is None or not members:
                continue
            tem = _tem_data(ch.get("params") or {})
            text_keys = [
                p["key"]
                for p in tp.template_params or []
                if p.get("type") == "text"
                and isinstance(tem.get(p["key"]), str)
                and protocol.placeholders(tem[p["key"]])
            ]
            token = auth_token(secrets, tp)
            batch = max(1, int(tp.batch_size or 500))
            for start in range(0, len(members), batch):
                part = members[start : start + batch]
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
                        "step_id": step["id"],
                        "channel": index,
                        "touchpoint_id": tp.id,
                        "touchpoint_name": tp.name,
                        "url": tp.url,
                        "gids": part,
                        "body": shown,
                        "body_text": body.decode(),
                    }
                )
    return {
        "sample": sample,
        "gids": gids,
        "requests": requests,
        # The audience now, for the confirmation before publishing and the approver.
        "audience_size": repo.count_audience(session, campaign.project_id, audience),
    }


def _route(
    session: Session,
    campaign: Campaign,
    catalogue: dict[str, str],
    step: dict[str, Any],
    gids: list[int],
    out: list[tuple[dict[str, Any], list[int]]],
) -> None:
    """Where sample users would go: through splits to send steps (and their ``next``,
    assuming every user moves on; a control group is not sent)."""
    if not gids:
        return
    kind = step.get("type")
    if kind == "send":
        if (step.get("timing") or {}).get("type") != "none":
            out.append((step, gids))
        if isinstance(step.get("next"), dict):
            _route(session, campaign, catalogue, step["next"], gids, out)
    elif kind == "split":
        remaining = gids
        for branch in step.get("branches", []):
            where = filter_sql(branch["filter"], catalogue)
            matched = set(repo.matching_gids(session, campaign.project_id, remaining, where))
            taken = [g for g in remaining if g in matched]
            remaining = [g for g in remaining if g not in matched]
            if branch.get("next"):
                _route(session, campaign, catalogue, branch["next"], taken, out)
        if step.get("otherwise"):
            _route(session, campaign, catalogue, step["otherwise"], remaining, out)
    elif kind == "ab":
        acc = 0
        bounds = []
        for branch in step["branches"]:
            acc += int(branch["percent"])
            bounds.append(acc)
        for i, branch in enumerate(step["branches"]):
            lo = bounds[i - 1] if i else 0
            members = [g for g in gids if lo <= ab_bucket(campaign.id, g) < bounds[i]]
            if branch.get("next"):
                _route(session, campaign, catalogue, branch["next"], members, out)
