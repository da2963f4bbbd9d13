"""The campaign scheduler: starts campaigns at their start time, fires due runs,
does due work (delayed sends, follow-up steps) and finishes campaigns.

``tick(runtime, now)`` does one pass; ``run_forever(runtime, stop)`` loops it (an
asyncio task in ``touchgate serve`` and in every ``touchgate worker``; the
database work runs in a thread). Any number of processes may tick the same
database: a run belongs to whoever inserts its ``campaign_runs`` row, due work
to whoever deletes its ``campaign_due`` row, each in the transaction that does
the work, so a crash mid-way leaves it for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from ..db import dialect_name
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..outage import database_error, describe
from ..runtime import Runtime, wait_any
from . import repository as repo
from . import runner
from .runner import CampaignBroken

log = logging.getLogger("touchgate.campaigns.scheduler")

TICK_SECONDS = 1.0
DUE_PER_TICK = 200
# A tick starts no more due work after this many seconds (the next tick goes on).
DUE_SECONDS = 5.0
# Pieces of due work done at once on PostgreSQL.
DUE_THREADS = 2
# Housekeeping (folding counters, forgetting what caps no longer look at) runs at
# most this often per process.
MAINTENANCE_SECONDS = 600.0
COUNT_ROWS_TO_FOLD = 10_000
# Caps look back at most 365 days.
SENT_MESSAGES_KEPT = timedelta(days=366)


@dataclass
class TickReport:
    started: int = 0
    runs: int = 0
    due: int = 0
    finished: int = 0
    closed: int = 0
    # Due work left for the next tick (this one spent its DUE_SECONDS): no pause.
    more: bool = False


def _guarded(runtime: Runtime, campaign_id: int | None, work: Callable[[Session], Any]) -> Any:
    """Run ``work`` in its own transaction. A campaign that cannot go on is closed
    with the reason; any other error is logged and retried at the next tick."""
    try:
        with runtime.tx() as session:
            return work(session)
    except CampaignBroken as exc:
        if campaign_id is not None:
            with runtime.tx() as session:
                campaign = session.get(Campaign, campaign_id)
                if campaign is not None and campaign.status in ("running", "not_started"):
                    campaign.status = "closed"
                    campaign.next_run_at = None
                    campaign.last_error = exc.message
                    campaign.last_error_code = exc.code
                    campaign.last_error_params = exc.params
                    repo.drop_due(session, campaign_id)
            log.warning("campaign %s closed: %s", campaign_id, exc.message)
        return "closed"
    except Exception:
        log.exception("campaign %s: scheduler work failed; retrying at the next tick", campaign_id)
        return None


def tick(runtime: Runtime, now: datetime | None = None) -> TickReport:
    """One scheduler pass at ``now`` (default: the current time)."""
    now = now or utcnow()
    report = TickReport()
    with runtime.tx() as session:
        report.started = repo.start_due_campaigns(session, now)
        due_campaigns = repo.campaigns_due(session, now)
    for campaign_id in due_campaigns:
        result = _guarded(
            runtime, campaign_id, partial(runner.fire, campaign_id=campaign_id, now=now)
        )
        if result == "closed":
            report.closed += 1
        elif result is not None:
            report.runs += 1
    with runtime.tx() as session:
        due_work = repo.due_work(session, now, DUE_PER_TICK)
        sqlite = dialect_name(session) == "sqlite"
    report.more = len(due_work) == DUE_PER_TICK

    # A big run's pages are spread over ticks, so other campaigns start on time and a
    # stop is not held up by a whole run.
    deadline = time.monotonic() + DUE_SECONDS

    def do(work: tuple[int, int]) -> Any:
        if time.monotonic() > deadline:
            report.more = True
            return None
        due_id, campaign_id = work
        return _guarded(runtime, campaign_id, partial(runner.run_due, due_id=due_id, now=now))

    if not sqlite and len(due_work) > 1:
        # PostgreSQL works on several pieces at once (while one waits for the
        # database, another routes and renders), each in its own transaction.
        with ThreadPoolExecutor(DUE_THREADS, thread_name_prefix="campaign-due") as pool:
            report.due += sum(1 for result in pool.map(do, due_work) if result is True)
        due_work = []
    # On SQLite the pages and the delivery worker's transactions take the one write
    # lock in turn (``db.WriteTurns``), so both move together.
    for work in due_work:
        result = do(work)
        if report.more:
            break
        if result is True:
            report.due += 1
    with runtime.tx() as session:
        for campaign_id in repo.running_without_next_run(session):
            if not repo.has_pending_work(session, campaign_id):
                report.finished += repo.finish_campaign(session, campaign_id, now)
    return report


def maintain(runtime: Runtime, now: datetime) -> int:
    """Fold the counters of campaigns with many rows; forget old counted messages.
    Returns how many counter rows were folded away."""
    folded = 0
    with runtime.tx() as session:
        busy = repo.campaigns_with_many_counts(session, COUNT_ROWS_TO_FOLD, limit=5)
    for campaign_id in busy:
        with runtime.tx() as session:
            folded += repo.compact_counts(session, campaign_id, now - timedelta(minutes=10))
    with runtime.tx() as session:
        repo.purge_sent_messages(session, now - SENT_MESSAGES_KEPT)
    return folded


async def run_forever(runtime: Runtime, stop: asyncio.Event, interval: float | None = None) -> None:
    """Tick until ``stop`` is set (the worker command and ``serve`` run this)."""
    # A campaign published (or resumed…) in this process: tick now, not at the next.
    changed = asyncio.Event()
    unlisten = runtime.campaigns_changed.listen(changed)
    try:
        await _tick_forever(runtime, stop, interval, changed)
    finally:
        unlisten()


async def _tick_forever(
    runtime: Runtime, stop: asyncio.Event, interval: float | None, changed: asyncio.Event
) -> None:
    maintained = float("-inf")
    down_since: float | None = None  # the database is unreachable since then
    while not stop.is_set():
        changed.clear()
        more = False
        try:
            more = (await asyncio.to_thread(tick, runtime)).more
        except Exception as exc:
            if database_error(exc) is None:
                log.exception("campaign scheduler tick failed")
            elif down_since is None:  # one line per outage, not a traceback per tick
                down_since = time.monotonic()
                log.error("campaign scheduler: database unreachable (%s)", describe(exc))
            await _pause(stop, TICK_SECONDS)
            continue
        if down_since is not None:
            log.warning(
                "campaign scheduler: database reachable again after %.1f s",
                time.monotonic() - down_since,
            )
            down_since = None
        if time.monotonic() - maintained >= MAINTENANCE_SECONDS:
            maintained = time.monotonic()
            try:
                await asyncio.to_thread(maintain, runtime, utcnow())
            except Exception as exc:
                if database_error(exc) is None:
                    log.exception("campaign housekeeping failed; trying again later")
                else:
                    log.warning("campaign housekeeping skipped: %s", describe(exc))
        # Wait in short slices and re-read the interval each time, so an embedding
        # process can slow its own scheduler down and speed it up again.
        started = time.monotonic()
        while not stop.is_set() and not more:
            every = interval if interval is not None else runtime.campaign_tick_seconds
            if every is None:
                every = TICK_SECONDS
            remaining = every - (time.monotonic() - started)
            if remaining <= 0 or changed.is_set():
                break
            await wait_any(stop, changed, timeout=min(remaining, 1.0))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
