"""A campaign's results, from SQL aggregates over its entries, step users, orders and
per-user results (never a Python loop over users).

Definitions (per campaign, summed over its runs):
- ``targeted``: audience users selected by the runs; ``entered``: those who entered
  the strategy; ``suppressed``: those held back (reason ``participation``: the
  participation rule had them in an earlier run).
- ``sent``/``succeeded``/``failed``/``pending`` count users per send step: a user
  who failed on the first touchpoint and succeeded on the fallback is one sent and
  one succeeded; ``failed`` users failed on every touchpoint tried, counted in
  ``failed_by_reason`` by the error of their last delivery.
- ``control``: users of ``timing: none`` steps (counted, not sent).
- ``by_touchpoint``: per touchpoint, each per-user delivery (a fallback is a second
  delivery on another touchpoint).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.orm import Session

from ..delivery.protocol import FAIL, PENDING, SUCC
from ..models.campaigns import Campaign
from . import repository as repo
from .schemas import CampaignStats, StepStats, TouchpointStats, iter_steps


def campaign_stats(session: Session, campaign: Campaign) -> CampaignStats:
    entries = repo.entry_counts(session, campaign.id)
    entered = sum(n for (status, _), n in entries.items() if status == "entered")
    suppressed_by_reason: dict[str, int] = defaultdict(int)
    for (status, reason), n in entries.items():
        if status == "suppressed":
            suppressed_by_reason[reason or "unknown"] += n
    suppressed = sum(suppressed_by_reason.values())

    by_step: dict[str, StepStats] = {
        str(step.get("id")): StepStats() for step in iter_steps(campaign.strategy) if step
    }
    for step_id, outcome, n in repo.step_user_counts(session, campaign.id):
        stats = by_step.setdefault(step_id, StepStats())
        stats.entered += n
        if outcome == "control":
            stats.control += n
    failed_by_reason: dict[str, int] = defaultdict(int)
    for step_id, status, reason, n in repo.user_outcomes(session, campaign.id):
        stats = by_step.setdefault(step_id, StepStats())
        stats.sent += n
        if status == SUCC:
            stats.succeeded += n
        elif status == PENDING:
            stats.pending += n
        else:
            stats.failed += n
            stats.failed_by_reason[reason] = stats.failed_by_reason.get(reason, 0) + n
            failed_by_reason[reason] += n

    by_touchpoint: dict[str, TouchpointStats] = {}
    for touchpoint_id, status, error, n in repo.touchpoint_counts(session, campaign.id):
        tstats = by_touchpoint.setdefault(str(touchpoint_id), TouchpointStats())
        tstats.sent += n
        if status == SUCC:
            tstats.succeeded += n
        elif status == FAIL:
            tstats.failed += n
            tstats.failed_by_reason[error] = tstats.failed_by_reason.get(error, 0) + n
        else:
            tstats.pending += n

    steps = by_step.values()
    return CampaignStats(
        targeted=entered + suppressed,
        entered=entered,
        sent=sum(s.sent for s in steps),
        succeeded=sum(s.succeeded for s in steps),
        failed=sum(s.failed for s in steps),
        pending=sum(s.pending for s in steps),
        suppressed=suppressed,
        control=sum(s.control for s in steps),
        runs=repo.run_count(session, campaign.id),
        failed_by_reason=dict(failed_by_reason),
        suppressed_by_reason=dict(suppressed_by_reason),
        by_step=by_step,
        by_touchpoint=by_touchpoint,
    )
