"""A campaign's results, from its counters (``campaign_counts``: appended at entry,
suppression, enqueue and settlement), never from a scan of per-user rows: reading
them is one indexed aggregate, whatever the size of the campaign or the planner's
statistics.

Definitions (per campaign, summed over its runs):
- ``targeted``: audience users selected by the runs; ``entered``: those who entered
  the strategy; the rest were suppressed with reason ``participation``.
- Per send step, users: ``sent`` were handed to a touchpoint; ``succeeded`` on one
  of them; ``failed`` on every one tried (by the error of their last delivery);
  ``suppressed`` held back from every one (by the reason at the last one);
  ``pending`` = sent − succeeded − failed; ``recovered_by_fallback`` succeeded on a
  touchpoint after failing on an earlier one. The campaign's figures are the sums
  over its steps (plus the ``participation`` suppressions).
- ``control``: users of ``timing: none`` steps (counted, not sent).
- ``by_touchpoint``: deliveries through each touchpoint: ``failed`` includes the
  users that ``fell_back`` to the next touchpoint of their step; ``suppressed`` and
  ``held`` count users held back from (or waiting for) that touchpoint.
- ``success_rate``: succeeded / (succeeded + failed), null before anything settled.
- ``series``: succeeded, failed and suppressed users over time.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ..delivery.protocol import FAIL, SUCC
from ..models.campaigns import Campaign
from ..projects import service as projects
from ..runtime import Runtime
from . import repository as repo
from .schemas import (
    DELIVERY_CSV_COLUMNS,
    CampaignStats,
    DeliveryOut,
    Series,
    SeriesPoint,
    StepStats,
    TouchpointStats,
)
from .service import campaign_content, get_campaign, project_tz
from .validation import not_one_of

SERIES_METRICS = ("succeeded", "failed", "suppressed")
MAX_POINTS = 200
INTERVALS = (
    ("minute", timedelta(minutes=1)),
    ("hour", timedelta(hours=1)),
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
)


def rate(succeeded: int, failed: int) -> float | None:
    settled = succeeded + failed
    return round(succeeded / settled, 4) if settled else None


def _add(into: dict[str, int], reason: str, n: int) -> None:
    if n:
        into[reason] = into.get(reason, 0) + n


def campaign_stats(session: Session, campaign: Campaign) -> CampaignStats:
    content = campaign_content(campaign)
    project = projects.get_project(session, campaign.project_id)
    by_step: dict[str, StepStats] = {
        s.id: StepStats(name=s.name, type=s.type) for s in content.steps()
    }
    by_tp: dict[int, TouchpointStats] = {}
    top: dict[str, int] = defaultdict(int)
    suppressed_by_reason: dict[str, int] = {}
    for step_id, tid, metric, reason, n in repo.count_totals(session, campaign.id):
        if not step_id:
            if metric == "suppressed":
                _add(suppressed_by_reason, reason, n)
            else:
                top[metric] += n
            continue
        if tid:
            t = by_tp.setdefault(tid, TouchpointStats())
            if metric == "failed":
                _add(t.failed_by_reason, reason, n)
            elif metric == "suppressed":
                _add(t.suppressed_by_reason, reason, n)
            if metric in ("sent", "succeeded", "failed", "suppressed", "fell_back", "held"):
                setattr(t, metric, getattr(t, metric) + n)
            if metric == "held":
                by_step.setdefault(step_id, StepStats()).held += n
            continue
        s = by_step.setdefault(step_id, StepStats())
        if metric == "failed":
            _add(s.failed_by_reason, reason, n)
        elif metric == "suppressed":
            _add(s.suppressed_by_reason, reason, n)
        elif metric == "recovered":
            s.recovered_by_fallback += n
        if metric in ("entered", "control", "sent", "succeeded", "failed", "suppressed"):
            setattr(s, metric, getattr(s, metric) + n)
    for s in by_step.values():
        s.pending = max(0, s.sent - s.succeeded - s.failed)
        s.success_rate = rate(s.succeeded, s.failed)
    failed_by_reason: dict[str, int] = {}
    for s in by_step.values():
        for reason, n in s.failed_by_reason.items():
            _add(failed_by_reason, reason, n)
        for reason, n in s.suppressed_by_reason.items():
            _add(suppressed_by_reason, reason, n)
    tps = repo.touchpoints_any(session, campaign.project_id, by_tp)
    for tid, t in by_tp.items():
        tp = tps.get(tid)
        t.name = tp.name if tp is not None else None
        t.deleted = tp is None or tp.deleted_at is not None
        t.pending = max(0, t.sent - t.succeeded - t.failed)
        t.success_rate = rate(t.succeeded, t.failed)
    steps = by_step.values()
    succeeded = sum(s.succeeded for s in steps)
    failed = sum(s.failed for s in steps)
    tz = project_tz(project)
    return CampaignStats(
        targeted=top["targeted"],
        entered=top["entered"],
        sent=sum(s.sent for s in steps),
        succeeded=succeeded,
        failed=failed,
        pending=sum(s.pending for s in steps),
        suppressed=sum(suppressed_by_reason.values()),
        control=sum(s.control for s in steps),
        held=sum(t.held for t in by_tp.values()),
        runs=repo.run_count(session, campaign.id),
        success_rate=rate(succeeded, failed),
        recovered_by_fallback=sum(s.recovered_by_fallback for s in steps),
        failed_by_reason=failed_by_reason,
        suppressed_by_reason=suppressed_by_reason,
        by_step=by_step,
        by_touchpoint={str(tid): t for tid, t in sorted(by_tp.items())},
        series=series(session, campaign.id, tz),
        timezone=project.timezone or "UTC",
    )


def _start_of(at: datetime, interval: str, tz: ZoneInfo) -> datetime:
    """The start of the interval ``at`` falls in; days and weeks in the project's zone."""
    if interval == "minute":
        return at.replace(second=0, microsecond=0)
    if interval == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    local = at.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        local -= timedelta(days=local.weekday())
    return local


def series(session: Session, campaign_id: int, tz: ZoneInfo) -> Series:
    """Outcomes over time in the smallest interval giving at most MAX_POINTS points,
    every interval from the first to the last present (zeros included)."""
    rows = repo.count_series(session, campaign_id, SERIES_METRICS)
    if not rows:
        return Series(interval="minute", points=[])
    first, last = rows[0][0], rows[-1][0]
    name, step = next(
        ((n, s) for n, s in INTERVALS if (last - first) / s < MAX_POINTS), INTERVALS[-1]
    )
    sums: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SERIES_METRICS, 0))
    for bucket, metric, n in rows:
        sums[_start_of(bucket, name, tz)][metric] += n
    points = []
    at = _start_of(first, name, tz)
    end = _start_of(last, name, tz)
    while at <= end:
        values = sums.get(at, dict.fromkeys(SERIES_METRICS, 0))
        points.append(SeriesPoint(at=at, **values))
        # Days and weeks step in local time (a day is 23 or 25 hours at a DST change).
        local = name in ("day", "week")
        at = _start_of(at + step + timedelta(hours=2), name, tz) if local else at + step
    return Series(interval=name, points=points)


# --- per-user results ------------------------------------------------------------------------

DELIVERY_STATUSES = ("pending", SUCC, FAIL, "suppressed")
CSV_PAGE = 5000


def delivery_filter(
    status: str | None, gid: int | None, step_id: str | None, touchpoint_id: int | None
) -> repo.DeliveryFilter:
    if status is not None and status not in DELIVERY_STATUSES:
        raise not_one_of("status", DELIVERY_STATUSES)
    return repo.DeliveryFilter(status=status, gid=gid, step_id=step_id, touchpoint_id=touchpoint_id)


class _Names:
    """Step and touchpoint names for result rows (deleted touchpoints keep theirs)."""

    def __init__(self, session: Session, campaign: Campaign) -> None:
        self.session = session
        self.project_id = campaign.project_id
        self.steps = {s.id: s.name for s in campaign_content(campaign).steps()}
        self.touchpoints: dict[int, tuple[str | None, bool]] = {}

    def decorate(self, rows: list[dict[str, Any]]) -> list[DeliveryOut]:
        wanted = {r["touchpoint_id"] for r in rows if r["touchpoint_id"] is not None}
        missing = wanted - set(self.touchpoints)
        if missing:
            found = repo.touchpoints_any(self.session, self.project_id, missing)
            for tid in missing:
                tp = found.get(tid)
                self.touchpoints[tid] = (
                    (tp.name, tp.deleted_at is not None) if tp is not None else (None, True)
                )
        out = []
        for r in rows:
            tid = r["touchpoint_id"]
            name, deleted = self.touchpoints.get(tid, (None, False)) if tid else (None, False)
            step = r["step_id"]
            out.append(
                DeliveryOut(
                    **r,
                    step_name=self.steps.get(step) if step else None,
                    touchpoint_name=name,
                    touchpoint_deleted=deleted,
                )
            )
        return out


def deliveries(
    session: Session, campaign: Campaign, flt: repo.DeliveryFilter, limit: int, offset: int
) -> tuple[list[DeliveryOut], int]:
    rows, total = repo.list_deliveries(session, campaign.id, flt, limit=limit, offset=offset)
    return _Names(session, campaign).decorate(rows), total


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def deliveries_csv(
    runtime: Runtime, project_id: int, space_id: int, campaign_id: int, flt: repo.DeliveryFilter
) -> Iterator[bytes]:
    """Every matching row as CSV (UTF-8 with a BOM, for spreadsheet software), page
    by page, each page read in a short transaction of its own."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(DELIVERY_CSV_COLUMNS)
    yield codecs.BOM_UTF8 + buffer.getvalue().encode()
    after: tuple[str, int, int] | None = None
    names: dict[int, tuple[str | None, bool]] = {}
    while True:
        with runtime.tx() as session:
            campaign = get_campaign(session, project_id, space_id, campaign_id)
            decorator = _Names(session, campaign)
            decorator.touchpoints = names
            rows, after = repo.deliveries_page(session, campaign.id, flt, after, CSV_PAGE)
            items = decorator.decorate(rows)
        buffer.seek(0)
        buffer.truncate()
        for item in items:
            row = item.model_dump()
            writer.writerow([_csv_value(row[c]) for c in DELIVERY_CSV_COLUMNS])
        if items:
            yield buffer.getvalue().encode()
        if after is None:
            return
