"""Handing a send step's users to its touchpoints, through protection, and keeping
the campaign's counters as it goes.

A send step in mode ``first_success`` tries its touchpoints in order: a user held
back from one (blocklist, cap, quiet hours with ``drop``) goes straight on to the
next, a user whose delivery fails goes on when the failure settles
(``settlement``). Mode ``all`` sends through every touchpoint at once and keeps,
per user, how many deliveries are still open. Users held by quiet hours with
``hold`` are due again when the quiet hours end, for the same touchpoint.

Counters (``campaign_counts``) are appended here, per step (users) and per
touchpoint (deliveries); see ``stats`` for what each means.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ..delivery.enqueue import enqueue_delivery
from ..errors import TouchgateError
from ..models import Touchpoint
from ..models.campaigns import Campaign
from . import repository as repo
from .content import CampaignContent, SendStep
from .protection import BLOCKLIST_IN_MEMORY, Rules, Screened, screen
from .schemas import FrequencyCap, QuietHours

log = logging.getLogger("touchgate.campaigns")


class CampaignBroken(TouchgateError):
    """A campaign cannot go on (e.g. a touchpoint it needs is gone): it is closed."""

    status_code = 409
    code = "campaign_broken"


def bucket_of(at: datetime) -> datetime:
    """The minute a counter change is filed under (the time series' resolution)."""
    return at.replace(second=0, microsecond=0)


@dataclass
class Tally:
    """Counter changes collected during one piece of work, written at once."""

    counts: Counter[repo.CountKey] = field(default_factory=Counter)

    def add(
        self, metric: str, n: int, *, step: str = "", touchpoint: int = 0, reason: str = ""
    ) -> None:
        if n:
            self.counts[(step, touchpoint, metric, reason)] += n

    def flush(self, session: Session, campaign_id: int, now: datetime) -> None:
        repo.add_counts(session, campaign_id, bucket_of(now), self.counts)
        self.counts.clear()


@dataclass
class RunContext:
    """One piece of a campaign's work (a run's page, due work, a settlement): the
    campaign, its typed content, the time it happens at, and what it has looked up."""

    session: Session
    campaign: Campaign
    content: CampaignContent
    run_id: int
    now: datetime
    tz: ZoneInfo
    tally: Tally = field(default_factory=Tally)
    touchpoints: dict[int, Touchpoint] = field(default_factory=dict)
    rules: dict[int, Rules] = field(default_factory=dict)

    def touchpoint(self, touchpoint_id: int) -> Touchpoint:
        tp = self.touchpoints.get(touchpoint_id)
        if tp is None:
            found = repo.touchpoints_by_id(self.session, self.campaign.project_id, [touchpoint_id])
            tp = found.get(touchpoint_id)
            if tp is None or tp.status != "enabled":
                raise CampaignBroken(
                    f"Touchpoint {touchpoint_id} is no longer usable.",
                    code="touchpoint_unusable",
                    params={"touchpoint_id": touchpoint_id, "name": tp.name if tp else None},
                )
            self.touchpoints[touchpoint_id] = tp
        return tp

    def rules_for(self, touchpoint_id: int) -> Rules:
        rules = self.rules.get(touchpoint_id)
        if rules is None:
            rules = load_rules(self.session, self.campaign, touchpoint_id)
            self.rules[touchpoint_id] = rules
        return rules

    def flush(self) -> None:
        self.tally.flush(self.session, self.campaign.id, self.now)


def load_rules(session: Session, campaign: Campaign, touchpoint_id: int) -> Rules:
    project = repo.project_protection(session, campaign.project_id)
    own = repo.touchpoint_protection(session, touchpoint_id)
    project_cap = project.frequency_cap if project is not None else None
    tp_cap = own.frequency_cap if own is not None else None
    quiet = own.quiet_hours if own is not None else None
    return Rules(
        project_cap=FrequencyCap.model_validate(project_cap) if project_cap else None,
        touchpoint_cap=FrequencyCap.model_validate(tp_cap) if tp_cap else None,
        quiet_hours=QuietHours.model_validate(quiet) if quiet else None,
        anti_disturb=campaign.anti_disturb,
        blocked=_frozen(
            repo.blocklist_of(session, campaign.project_id, touchpoint_id, BLOCKLIST_IN_MEMORY)
        ),
    )


def _frozen(gids: set[int] | None) -> frozenset[int] | None:
    return frozenset(gids) if gids is not None else None


def send_channel(
    ctx: RunContext, step: SendStep, channel: int, gids: Sequence[int], *, fallback: bool
) -> Screened:
    """Hand ``gids`` to one touchpoint of ``step`` through protection: the allowed
    ones are queued, the held ones are due when the quiet hours end, the others are
    recorded as suppressed. ``fallback``: the users failed on an earlier touchpoint
    of the step. Touchpoint counters are kept here; step counters by the caller."""
    session, campaign = ctx.session, ctx.campaign
    tp = ctx.touchpoint(step.channels[channel].touchpoint_id)
    out = screen(
        session,
        project_id=campaign.project_id,
        touchpoint_id=tp.id,
        run_id=ctx.run_id,
        step_id=step.id,
        gids=gids,
        rules=ctx.rules_for(tp.id),
        tz=ctx.tz,
        now=ctx.now,
    )
    for reason, members in out.suppressed.items():
        repo.insert_suppressions(
            session,
            campaign_id=campaign.id,
            run_id=ctx.run_id,
            step_id=step.id,
            touchpoint_id=tp.id,
            reason=reason,
            gids=members,
            now=ctx.now,
        )
        ctx.tally.add("suppressed", len(members), step=step.id, touchpoint=tp.id, reason=reason)
    if out.held and out.held_until is not None:
        repo.add_due(
            session,
            campaign_id=campaign.id,
            run_id=ctx.run_id,
            step_id=step.id,
            kind="hold",
            due_at=out.held_until,
            gids=out.held,
            channel=channel,
            fallback=fallback,
        )
        ctx.tally.add("held", len(out.held), step=step.id, touchpoint=tp.id)
    if out.allowed:
        enqueue_delivery(
            session,
            touchpoint=tp,
            gids=out.allowed,
            tem_data=tem_data(step.channels[channel].params),
            campaign_id=campaign.id,
            run_id=ctx.run_id,
            step_id=step.id,
            context={"channel": channel, "fallback": fallback},
        )
        ctx.tally.add("sent", len(out.allowed), step=step.id, touchpoint=tp.id)
    return out


def tem_data(params: dict[str, object]) -> dict[str, object]:
    # Values were validated when the campaign was saved, submitted and published.
    return {k: v for k, v in params.items() if v is not None}


def _last_reasons(out: Screened) -> dict[int, str]:
    return {g: reason for reason, members in out.suppressed.items() for g in members}


def deliver(
    ctx: RunContext,
    step: SendStep,
    channel: int,
    gids: Sequence[int],
    *,
    fallback: bool,
    failure: str = "",
) -> None:
    """``first_success`` from ``channel`` on: users held back from a touchpoint go on
    to the next one at once. Users held back from every remaining one are done with
    the step: suppressed, or failed (with ``failure``, their earlier delivery's error)
    when they were ``fallback`` users."""
    remaining = list(gids)
    reasons: dict[int, str] = {}
    index = channel
    while remaining and index < len(step.channels):
        out = send_channel(ctx, step, index, remaining, fallback=fallback)
        if not fallback:
            ctx.tally.add("sent", len(out.allowed), step=step.id)
        reasons = _last_reasons(out)
        remaining = [g for g in remaining if g in reasons]
        index += 1
    if not remaining:
        return
    if fallback:
        ctx.tally.add("failed", len(remaining), step=step.id, reason=failure)
    else:
        for reason, n in Counter(reasons[g] for g in remaining).items():
            ctx.tally.add("suppressed", n, step=step.id, reason=reason)
    move_on(ctx, step, remaining)


def start_send(ctx: RunContext, step: SendStep, gids: Sequence[int]) -> None:
    """Send a step now: through its touchpoints in order (``first_success``; the
    settlement falls back to the next ones), or through all of them (``all``)."""
    if not step.channels:
        return
    if step.mode == "first_success" or len(step.channels) == 1:
        deliver(ctx, step, 0, gids, fallback=False)
        return
    opened: Counter[int] = Counter()
    reasons: dict[int, str] = {}
    for index in range(len(step.channels)):
        out = send_channel(ctx, step, index, gids, fallback=False)
        opened.update(out.allowed)
        opened.update(out.held)
        reasons.update(_last_reasons(out))
    suppressed = [g for g in gids if not opened[g]]
    by_count: dict[int, list[int]] = defaultdict(list)
    for g in gids:
        if opened[g]:
            by_count[opened[g]].append(g)
    for count, members in by_count.items():
        repo.open_deliveries(ctx.session, ctx.run_id, step.id, members, count)
    ctx.tally.add("sent", len(gids) - len(suppressed), step=step.id)
    for reason, n in Counter(reasons[g] for g in suppressed).items():
        ctx.tally.add("suppressed", n, step=step.id, reason=reason)
    move_on(ctx, step, suppressed)


def release_held(
    ctx: RunContext, step: SendStep, channel: int, gids: Sequence[int], *, fallback: bool
) -> None:
    """Users held by quiet hours at ``channel``: the hours have ended, try again
    (protection applies again, caps included)."""
    tid = step.channels[channel].touchpoint_id
    ctx.tally.add("held", -len(gids), step=step.id, touchpoint=tid)
    if step.mode == "first_success" or len(step.channels) == 1:
        deliver(ctx, step, channel, gids, fallback=fallback, failure="quiet_hours")
        return
    out = send_channel(ctx, step, channel, gids, fallback=fallback)
    held_back = [g for members in out.suppressed.values() for g in members]
    close_all_mode(ctx, step, held_back, ok=False, reasons=_last_reasons(out))


def close_all_mode(
    ctx: RunContext,
    step: SendStep,
    gids: Sequence[int],
    *,
    ok: bool,
    reasons: dict[int, str] | None = None,
    failure: str = "",
) -> None:
    """Mode ``all``: one delivery of each user is over (``ok``: it succeeded). Users
    whose last open delivery this was are done: succeeded if any of theirs did."""
    done = repo.close_deliveries(ctx.session, ctx.run_id, step.id, gids, ok=ok)
    succeeded = [g for g, any_ok in done if any_ok]
    failed = [g for g, any_ok in done if not any_ok]
    ctx.tally.add("succeeded", len(succeeded), step=step.id)
    for reason, n in Counter((reasons or {}).get(g, failure) for g in failed).items():
        ctx.tally.add("failed", n, step=step.id, reason=reason)
    move_on(ctx, step, [g for g, _ in done])


def move_on(ctx: RunContext, step: SendStep, gids: Iterable[int]) -> None:
    """Users done with ``step`` go to its ``next`` step (due now); a closed
    campaign's users go nowhere."""
    users = list(gids)
    if users and step.next is not None and ctx.campaign.status != "closed":
        repo.add_due(
            ctx.session,
            campaign_id=ctx.campaign.id,
            run_id=ctx.run_id,
            step_id=step.next.id,
            kind="step",
            due_at=ctx.now,
            gids=users,
        )
