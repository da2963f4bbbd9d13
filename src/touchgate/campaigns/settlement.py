"""What a campaign does when results of its deliveries become final: the settlement
sink, called inside the settlement transaction (if it fails, the settlement rolls
back with it and is retried).

For a send step it counts the results (per touchpoint and per user of the step),
takes failed deliveries out of what frequency caps count, falls back to the next
touchpoint on ``TOU_FAIL`` (``first_success``), and queues the ``next`` step for
users done with this one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ..delivery.hooks import OrderInfo, SettlementFollowup, UserResult
from ..delivery.protocol import FAIL, SUCC
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..projects import service as projects
from . import repository as repo
from .content import CampaignContent, SendStep
from .sending import CampaignBroken, RunContext, close_all_mode, deliver, move_on
from .service import campaign_content, project_tz

log = logging.getLogger("touchgate.campaigns")


# Where a settlement transaction keeps what it has read about each campaign: one
# settlement settles many orders of the same campaign, and its content (parsed) and
# time zone do not change within a transaction.
_SEEN = "touchgate.campaigns.settlement"


def _campaign_of(session: Session, campaign: Campaign) -> tuple[CampaignContent, ZoneInfo]:
    """The campaign's typed content and its project's time zone, read once per
    transaction (the session lives for one)."""
    seen: dict[int, tuple[CampaignContent, ZoneInfo]] = session.info.setdefault(_SEEN, {})
    found = seen.get(campaign.id)
    if found is None:
        tz = project_tz(projects.get_project(session, campaign.project_id))
        found = seen[campaign.id] = (campaign_content(campaign), tz)
    return found


class CampaignSettlementSink:
    """Implements the delivery engine's settlement sink for campaigns."""

    def on_settled(self, session: Session, order: OrderInfo, results: Sequence[UserResult]) -> None:
        if order.campaign_id is None or order.run_id is None or order.step_id is None:
            return
        if order.replay_of is not None:
            return  # a replay is a manual re-send of an order, not a campaign step
        campaign = session.get(Campaign, order.campaign_id)
        if campaign is None or not results:
            return
        content, tz = _campaign_of(session, campaign)
        step = content.step(order.step_id)
        if not isinstance(step, SendStep):
            return
        context: dict[str, Any] = order.context or {}
        channel = int(context.get("channel", 0))
        fallback = bool(context.get("fallback", False))
        now = utcnow()
        ctx = RunContext(session, campaign, content, order.run_id, now, tz)
        succeeded = [r[0] for r in results if r[1] == SUCC]
        failed: dict[str, list[int]] = defaultdict(list)
        for gid, status, error, _attempts in results:
            if status == FAIL:
                failed[error or ""].append(gid)
        tid = order.touchpoint_id
        ctx.tally.add("succeeded", len(succeeded), step=step.id, touchpoint=tid)
        for error, gids in failed.items():
            ctx.tally.add("failed", len(gids), step=step.id, touchpoint=tid, reason=error)
            repo.forget_messages(session, campaign.project_id, order.run_id, step.id, tid, gids)
        if step.mode == "all" and len(step.channels) > 1:
            close_all_mode(ctx, step, succeeded, ok=True)
            for error, gids in failed.items():
                close_all_mode(ctx, step, gids, ok=False, failure=error)
        else:
            ctx.tally.add("succeeded", len(succeeded), step=step.id)
            if fallback:
                ctx.tally.add("recovered", len(succeeded), step=step.id)
            move_on(ctx, step, succeeded)
            last = channel + 1 >= len(step.channels)
            for error, gids in failed.items():
                if last or campaign.status == "closed":
                    ctx.tally.add("failed", len(gids), step=step.id, reason=error)
                    move_on(ctx, step, gids)
                    continue
                ctx.tally.add("fell_back", len(gids), step=step.id, touchpoint=tid)
                try:
                    deliver(ctx, step, channel + 1, gids, fallback=True, failure=error)
                except CampaignBroken as exc:
                    log.warning("campaign %s: no fallback: %s", campaign.id, exc.message)
                    ctx.tally.add("fell_back", -len(gids), step=step.id, touchpoint=tid)
                    ctx.tally.add("failed", len(gids), step=step.id, reason=error)
                    move_on(ctx, step, gids)
        ctx.flush()


SINK = CampaignSettlementSink()


def settlement_followups() -> tuple[SettlementFollowup, ...]:
    """The campaigns' part of every settlement, handed to the delivery worker
    (``Runtime.followups``)."""
    return (SINK.on_settled,)
