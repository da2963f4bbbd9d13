"""The delivery worker: claim due orders with leases, send them, settle in bulk.

A pipeline on one asyncio loop, database work in threads so the loop never
blocks::

    claim (lease only what can be sent now: per touchpoint, the free places of
    its in-flight limit; renew the leases held — the heartbeat) ──► attempts
    (concurrent) ──► answers ──► settle (one transaction for everything
    answered meanwhile, while the next claims go on)

On PostgreSQL a claim is one statement on a connection the worker keeps, in
autocommit (``repository.claim_due_now``: leases, payloads and the touchpoints'
versions in one round trip): the time from an answer to the next request is
mostly the claim's. SQLite claims in a transaction (BEGIN IMMEDIATE takes its
write lock).

Leases are short (``--lease-seconds``, 15 s) and renewed every third of that
while the worker lives. Workers are stateless: run one inside ``touchgate
serve`` or any number of ``touchgate worker`` processes against PostgreSQL. A
worker killed at any moment loses nothing: its leases expire within seconds
and another worker resends the same orders under the same ``orderNo`` (the
receiver's idempotency key); the settlement fence (``repository.lock_owned``:
the order is still leased to this worker, expired or not) keeps a worker whose
order was taken over from recording anything.

When the database is unreachable, no new request starts; the answers of the
requests in flight stay in memory (at most ``concurrency``) and are settled
when it is back. Touchpoints whose requests keep failing are paused by their
circuit breaker (``breaker``), shared through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session

from ..models import Touchpoint
from ..models.base import utcnow
from ..runtime import BackgroundTask, Runtime, wait_any
from . import breaker, protocol, receipts
from . import repository as repo
from .client import get_client
from .outcomes import DEFAULT_POLL_SECONDS, ClaimedOrder, Outcome, receipt_timeout_minutes
from .rate_gate import RateGate, reserve_in
from .receipts import TouchpointConfig
from .settlement import settle

log = logging.getLogger("touchgate.delivery.worker")

# A short lease, renewed by the worker's heartbeat (every third of it) while the
# worker lives: a killed worker's orders are due again within seconds.
DEFAULT_LEASE_SECONDS = 15.0
DEFAULT_IDLE_SECONDS = 0.5
# Settlements a worker runs at once on PostgreSQL, each on its own connection: the
# server's time per user (heap and index inserts of results and events) is most of
# a settlement, and two server processes use two cores. SQLite has one writer.
PG_SETTLEMENTS_AT_ONCE = 2
SETTLE_MAX = 500
UNHEALTHY_READ_SECONDS = 0.5
# Decrypted secrets are re-read at least this often (e.g. a rotation's grace period ends).
TOUCHPOINT_CACHE_SECONDS = 60.0


def default_worker_id() -> str:
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def touchpoint_config(
    runtime: Runtime,
    tp: Touchpoint,
    now: datetime,
    requests_per_second: float | None = None,  # rate limit
) -> TouchpointConfig:
    """Snapshot a touchpoint with its secrets decrypted (kept in memory only)."""
    from ..touchpoints.service import auth_token, signing_secrets

    token = auth_token(runtime.secrets, tp)
    secrets = signing_secrets(runtime.secrets, tp, now)
    receipt = tp.receipt or {}
    schedule = tp.retry_schedule
    return TouchpointConfig(
        id=tp.id,
        project_id=tp.project_id,
        transport=tp.transport,
        url=tp.url,
        token=token,
        signing_secrets=tuple(secrets),
        timeout_seconds=float(tp.timeout_seconds or 15),
        retry_schedule=tuple(int(s) for s in schedule) if schedule is not None else None,
        max_in_flight=tp.max_in_flight,
        receipt_mode="async" if receipt.get("mode") == "async" else "sync",
        receipt_url=receipt.get("url"),
        # The API enforces ≥ 30 s; the engine trusts what is stored.
        poll_seconds=max(1, int(receipt.get("poll_seconds") or DEFAULT_POLL_SECONDS)),
        timeout_minutes=receipt_timeout_minutes(receipt),
        plugin_id=tp.plugin_id,
        plugin_config=tp.plugin_config,
        requests_per_second=requests_per_second,  # rate limit
    )


@dataclass
class _Cached:
    config: TouchpointConfig
    plugin_config: dict[str, Any] | None
    loaded: float
    version: tuple[datetime, datetime, float | None]  # rate limit: + requests per second


class Worker:
    """One delivery worker. ``await worker.run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        concurrency: int | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        breaker_rules: breaker.Rules = breaker.DEFAULT_RULES,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.id = worker_id or default_worker_id()
        self.concurrency = concurrency or runtime.settings.worker_concurrency
        self.lease_seconds = lease_seconds
        # Three heartbeats per lease: one late or lost beat does not lose the lease.
        self.heartbeat_seconds = max(0.05, lease_seconds / 3)
        self.idle_seconds = idle_seconds
        self.breaker_rules = breaker_rules
        self.clock = clock
        self._in_flight = 0
        self._per_touchpoint: Counter[int] = Counter()
        # Orders whose lease this worker holds: being sent, or answered and
        # waiting for settlement. The heartbeat renews exactly these.
        self._held: set[int] = set()
        self._queue: list[Outcome] = []
        # Settlements running (each in its own thread and transaction) and the
        # answers each settles. PostgreSQL settles two batches at once (while one
        # waits for the database, the other is built); SQLite has one writer.
        self._settling: list[tuple[asyncio.Task[int], list[Outcome]]] = []
        self.settlements_at_once = (
            PG_SETTLEMENTS_AT_ONCE if runtime.engine.dialect.name == "postgresql" else 1
        )
        # What each answered request says about its touchpoint's health (HTTP only).
        self._requests: dict[int, breaker.RequestResult] = {}
        self._queued = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._touchpoints: dict[int, _Cached] = {}
        self._unhealthy: dict[int, breaker.Health] = {}
        self._unhealthy_read = -UNHEALTHY_READ_SECONDS
        # PostgreSQL claims on a connection of their own, in autocommit (_claim_now);
        # SQLite's claims need BEGIN IMMEDIATE, the write lock, in a transaction.
        self._claims_in_autocommit = runtime.engine.dialect.name == "postgresql"
        self._claim_connection: Connection | None = None
        self._claiming = False  # a claim runs (in a thread) on that connection
        self._last_beat = time.monotonic()
        self._outage = _Outage()
        self.settled_users = 0
        self.sent_orders = 0
        self._rate = RateGate(reserve_in(runtime))  # rate limit
        # Where the time goes (the benchmark prints these): seconds inside
        # claim and settlement transactions, and how many of each.
        self.claim_seconds = 0.0
        self.claims = 0
        self.settle_seconds = 0.0
        self.settlements = 0

    # --- database work (in threads) ---------------------------------------------

    def _limit(self, touchpoint_id: int) -> int:
        cached = self._touchpoints.get(touchpoint_id)
        size = cached.config.max_in_flight if cached is not None else None
        return size or self.runtime.settings.per_touchpoint_in_flight

    def _answered(self) -> list[Outcome]:
        """Answers not settled yet: waiting, and being settled."""
        return self._queue + [o for _, batch in self._settling for o in batch]

    def _busy(self) -> Counter[int]:
        """Requests in flight per touchpoint (not counting the answered ones)."""
        busy = Counter(self._per_touchpoint)
        busy.subtract(o.order.touchpoint_id for o in self._answered())
        return busy

    def _load_touchpoints(self, session: Session, ids: set[int], now: datetime) -> None:
        # The touchpoints' versions (and rate limits) are read on every claim (a
        # few rows, one query), so an edit applies to the next attempt; the whole
        # row is read and its secrets decrypted only when it changed.
        versions = repo.touchpoint_versions(session, ids)
        stale = self._stale(versions)
        if stale:
            self._load_stale(session, stale, versions, now)

    def _stale(self, versions: dict[int, repo.Version]) -> set[int]:
        clock = time.monotonic()
        return {
            tid
            for tid, version in versions.items()
            if (cached := self._touchpoints.get(tid)) is None
            or cached.version != version
            or clock - cached.loaded >= TOUCHPOINT_CACHE_SECONDS
        }

    def _load_stale(
        self, session: Session, stale: set[int], versions: dict[int, repo.Version], now: datetime
    ) -> None:
        clock = time.monotonic()
        for tp in repo.touchpoints_by_id(session, stale):
            version = versions.get(tp.id, (tp.created_at, tp.updated_at, None))
            plugin_config = None
            if tp.transport == "plugin":
                plugin_config = _plugin_runtime_config(session, self.runtime, tp)
            self._touchpoints[tp.id] = _Cached(
                touchpoint_config(self.runtime, tp, now, version[2]),
                plugin_config,
                clock,
                version,
            )

    def _read_health(self, db: Session | Connection) -> list[int]:
        """The touchpoints whose breaker is not closed (their orders wait, but for
        probes). Breakers change rarely: read again at least every half second,
        and on every claim while one is not closed (probes are due on time)."""
        clock = time.monotonic()
        if self._unhealthy or clock - self._unhealthy_read >= UNHEALTHY_READ_SECONDS:
            self._unhealthy = repo.unhealthy(db)
            self._unhealthy_read = clock
        return self._paused()

    def _paused(self) -> list[int]:
        """Touchpoints whose breaker was not closed when last read."""
        return [t for t, h in self._unhealthy.items() if h.state != breaker.CLOSED]

    def _skip(self, paused: list[int], busy: Counter[int]) -> list[int]:
        """Touchpoints not to claim for: paused, at their in-flight limit, or far
        behind their rate limit."""
        return sorted(
            {
                *paused,
                *(t for t, n in busy.items() if n >= self._limit(t)),
                *self._rate.backlogged(),  # rate limit: nor those far behind their rate
            }
        )

    def _take(
        self, orders: list[ClaimedOrder], busy: Counter[int]
    ) -> tuple[list[tuple[ClaimedOrder, _Cached]], list[int]]:
        """What to send of the claimed orders, and the ids to give back (their
        touchpoint is at its in-flight limit)."""
        out: list[tuple[ClaimedOrder, _Cached]] = []
        extra: list[int] = []
        taking = Counter(busy)
        for order in orders:
            cached = self._touchpoints.get(order.touchpoint_id)
            if cached is None:  # the touchpoint row is gone (cascade deletes its orders)
                continue
            if taking[order.touchpoint_id] >= self._limit(order.touchpoint_id):
                extra.append(order.id)  # no free slot: give it back, unsent
                continue
            taking[order.touchpoint_id] += 1
            out.append((order, cached))
        return out, extra

    def _claim_in(
        self, session: Session, free: int, busy: Counter[int]
    ) -> list[tuple[ClaimedOrder, _Cached]]:
        """Lease only what can be sent now: at most ``free`` orders, and per
        touchpoint at most its free in-flight slots; none of a touchpoint whose
        breaker is open (a probe once its cool-down is over)."""
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        paused = self._read_health(session)
        rows: list[Any] = []
        for tid in paused:
            h = self._unhealthy[tid]
            if free - len(rows) <= 0 or not breaker.may_probe(h, now, self.breaker_rules):
                continue
            probe = repo.claim_one_of(session, self.id, tid, now, until)
            if not probe:
                continue
            if repo.take_probe(session, tid, h, self.id, now):
                log.info("touchpoint %d: cool-down over, sending one probe", tid)
                rows.extend(probe)
            else:
                repo.release_leases(session, self.id, [probe[0].id])
        skip = self._skip(paused, busy)
        if free - len(rows) > 0:
            rows.extend(
                repo.claim_due(
                    session, self.id, now, until, free - len(rows), skip_touchpoints=skip
                )
            )
        if not rows:
            return []
        self._load_touchpoints(session, {r.touchpoint_id for r in rows}, now)
        out, extra = self._take([ClaimedOrder(**r._asdict()) for r in rows], busy)
        repo.release_leases(session, self.id, extra)
        return out

    def _claim_now(
        self, connection: Connection, free: int, busy: Counter[int], renew: list[int] | None
    ) -> tuple[list[tuple[ClaimedOrder, _Cached]] | None, set[int] | None]:
        """PostgreSQL: renew and claim on this worker's connection in autocommit,
        each one statement (``repo.claim_due_now``: the leases, payloads and
        touchpoint versions in one round trip). Claims nothing (None) when it
        finds a breaker not closed: probes take the transaction of :meth:`_claim_tx`."""
        kept = None
        if renew is not None:
            until = self.clock() + timedelta(seconds=self.lease_seconds)
            kept = repo.renew_leases(connection, self.id, renew, until)
        if free <= 0:
            return [], kept
        paused = self._read_health(connection)
        if paused:
            return None, kept
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        claimed = repo.claim_due_now(
            connection, self.id, now, until, free, skip_touchpoints=self._skip(paused, busy)
        )
        if not claimed:
            return [], kept
        versions = {c.fields["touchpoint_id"]: c.version for c in claimed if c.version}
        if stale := self._stale(versions):
            with self.runtime.tx() as session:
                self._load_stale(session, stale, versions, now)
        out, extra = self._take([ClaimedOrder(**c.fields) for c in claimed], busy)
        repo.release_leases(connection, self.id, extra)
        return out, kept

    def _connection(self) -> Connection:
        """The connection claims run on (PostgreSQL), kept between claims."""
        if self._claim_connection is None:
            self._claim_connection = self.runtime.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return self._claim_connection

    def _close_connection(self, *, broken: bool = False) -> None:
        """Give the claims' connection back (``broken``: discard it; after an error
        it may be dead, and the pool checks the next one it hands out)."""
        connection, self._claim_connection = self._claim_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if broken:
                    connection.invalidate()
                connection.close()

    def _apply_health(self, session: Session, outcomes: list[Outcome]) -> None:
        """Count the settled requests against their touchpoints' breakers."""
        per_touchpoint: dict[int, list[breaker.RequestResult]] = {}
        for o in outcomes:
            result = self._requests.get(o.order.id)
            if result is not None:
                per_touchpoint.setdefault(o.order.touchpoint_id, []).append(result)
        # Healthy touchpoints answering fine cost no write at all.
        touched = [
            t
            for t, results in per_touchpoint.items()
            if t in self._unhealthy or any(r.failed for r in results)
        ]
        if not touched:
            return
        now = self.clock()
        current = repo.lock_health(session, touched, now)
        changed: dict[int, breaker.Health] = {}
        for tid in touched:
            before = current.get(tid, breaker.CLOSED_HEALTH)
            after = breaker.after_requests(before, per_touchpoint[tid], now, self.breaker_rules)
            if after != before:
                changed[tid] = after
                # This worker's next claim sees it at once (others within
                # UNHEALTHY_READ_SECONDS).
                self._unhealthy = {**self._unhealthy, tid: after}
                if after.state != before.state:
                    _log_health(tid, before, after)
        repo.save_health(session, changed)

    def _claim_cycle(
        self, free: int, busy: Counter[int], renew: list[int] | None
    ) -> tuple[list[tuple[ClaimedOrder, _Cached]], set[int] | None]:
        """Renew the leases held (the heartbeat) and claim what can be sent now,
        in one short transaction (on PostgreSQL one statement each, unless a
        breaker is open): new requests start before the answers that freed their
        slots are settled, so a slow endpoint's slots never wait for the database."""
        started = time.perf_counter()
        self._claiming = True
        try:
            if not self._claims_in_autocommit or self._paused():
                return self._claim_tx(free, busy, renew)
            try:
                claimed, kept = self._claim_now(self._connection(), free, busy, renew)
            except Exception:
                self._close_connection(broken=True)  # a new one next time
                raise
            if claimed is None:
                claimed, _ = self._claim_tx(free, busy, None)
            return claimed, kept
        finally:
            self._claiming = False
            self.claim_seconds += time.perf_counter() - started
            self.claims += 1

    def _claim_tx(
        self, free: int, busy: Counter[int], renew: list[int] | None
    ) -> tuple[list[tuple[ClaimedOrder, _Cached]], set[int] | None]:
        with self.runtime.tx() as session:
            # Always reach the database (an idle worker's heartbeat has nothing
            # to renew): a success here is how the end of an outage is noticed.
            session.connection()
            kept = None
            if renew is not None:
                until = self.clock() + timedelta(seconds=self.lease_seconds)
                kept = repo.renew_leases(session, self.id, renew, until)
            claimed = self._claim_in(session, free, busy) if free > 0 else []
            return claimed, kept

    def _settle_cycle(self, outcomes: list[Outcome]) -> int:
        """Settle what finished (results, events, attempt log, breakers) in one
        transaction; if that fails for another reason than the database being
        away, one by one."""
        started = time.perf_counter()
        try:
            return self._settle_tx(outcomes)
        finally:
            self.settle_seconds += time.perf_counter() - started
            self.settlements += 1

    def _settle_tx(self, outcomes: list[Outcome]) -> int:
        try:
            with self.runtime.tx() as session:
                settled = settle(session, self.id, outcomes, followups=self.runtime.followups)
                self._apply_health(session, outcomes)
                return settled
        except Exception as exc:
            if len(outcomes) <= 1 or is_connection_error(exc):
                raise
            # One bad settlement (a failing listener…) must not hold back the
            # others: settle them one by one, leave the failures to their leases.
            log.warning("settling %d outcomes together failed (%s); one by one", len(outcomes), exc)
            settled = 0
            for outcome in outcomes:
                try:
                    with self.runtime.tx() as session:
                        settled += settle(
                            session, self.id, [outcome], followups=self.runtime.followups
                        )
                        self._apply_health(session, [outcome])
                except Exception as one_exc:
                    if is_connection_error(one_exc):
                        raise
                    log.exception(
                        "order %s: settlement failed", outcome.order.order_no, exc_info=one_exc
                    )
            return settled

    # --- sending ---------------------------------------------------------------------

    async def _attempt(self, order: ClaimedOrder, cached: _Cached) -> Outcome:
        tp = cached.config
        at = self.clock()
        gids = order.batch_gids()
        if order.state == "polling":
            if order.receipt_deadline is not None and at >= order.receipt_deadline:
                return receipts.receipt_timed_out(order, tp, at)
            kind = "receipt"
        else:
            kind = "delivery"
        await self._rate.turn(tp)  # rate limit: wait for the touchpoint's next request slot
        at = utcnow()  # rate limit: the time of sending, after the wait
        if tp.transport == "plugin":
            return await self._plugin_attempt(order, cached, kind, at, gids)
        ts = int(at.timestamp() * 1000)
        if kind == "receipt":
            url = tp.receipt_url or ""
            body = protocol.receipt_body(order.order_no, ts, tp.token)
        else:
            url = tp.url or ""
            body = protocol.delivery_body(order.order_no, order.payload, ts, tp.token)
        headers = protocol.request_headers(body, order.order_no, ts, tp.signing_secrets)
        res = await get_client(self.runtime).post(
            url,
            body,
            headers,
            timeout=tp.timeout_seconds,
            touchpoint_id=tp.id,
            max_in_flight=tp.max_in_flight,
        )
        self._requests[order.id] = breaker.RequestResult(
            breaker.request_failed(res.status, res.error_kind),
            res.error or (f"HTTP {res.status}" if res.status is not None else None),
        )
        return receipts.from_http(order, tp, kind, at, gids, res)

    async def _plugin_attempt(
        self, order: ClaimedOrder, cached: _Cached, kind: str, at: datetime, gids: list[int]
    ) -> Outcome:
        tp = cached.config
        started = time.monotonic()

        def ms() -> int:
            return int((time.monotonic() - started) * 1000)

        if tp.plugin_id is None:
            return receipts.from_plugin(
                order, tp, kind, at, gids, 0, failed="the touchpoint has no plugin"
            )
        # Imported lazily: HTTP-only deployments never start a plugin host.
        from ..plugins.host import PluginFailed, PluginRetryable, ensure_plugin_host

        host = ensure_plugin_host(self.runtime)
        users = None if kind == "receipt" else _loads(order.payload)
        try:
            results = await host.call(
                project_id=tp.project_id,
                plugin_id=tp.plugin_id,
                config=cached.plugin_config or {},
                method="query_receipts" if kind == "receipt" else "send",
                order_no=order.order_no,
                users=users,
                timeout=tp.timeout_seconds,
            )
        except PluginRetryable as exc:
            return receipts.from_plugin(order, tp, kind, at, gids, ms(), retryable=str(exc))
        except PluginFailed as exc:
            return receipts.from_plugin(order, tp, kind, at, gids, ms(), failed=str(exc))
        return receipts.from_plugin(order, tp, kind, at, gids, ms(), results)

    async def _run_one(self, order: ClaimedOrder, cached: _Cached) -> None:
        try:
            outcome = await self._attempt(order, cached)
        except Exception as exc:  # a bug must not kill the worker; the lease expires
            log.exception("order %s: attempt crashed", order.order_no, exc_info=exc)
            self._in_flight -= 1
            self._per_touchpoint[order.touchpoint_id] -= 1
            self._held.discard(order.id)
            self._requests.pop(order.id, None)
            self._queued.set()
            return
        self._queue.append(outcome)
        self._queued.set()

    # --- the loop ----------------------------------------------------------------------

    def _start(self, claimed: list[tuple[ClaimedOrder, _Cached]]) -> None:
        for order, cached in claimed:
            self._in_flight += 1
            self._per_touchpoint[order.touchpoint_id] += 1
            self._held.add(order.id)
            task = asyncio.create_task(self._run_one(order, cached))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _beat(self, renewed: list[int], kept: set[int] | None) -> None:
        self._last_beat = time.monotonic()
        if kept is None or len(kept) == len(renewed):
            return
        # Orders settled meanwhile (in parallel with the heartbeat) were released.
        lost = set(renewed) - kept - {o.order.id for o in self._answered()}
        if lost:
            log.warning("heartbeat: %d lease(s) were taken by another worker", len(lost))

    def _done(self, batch: list[Outcome], settled: int) -> None:
        """Forget outcomes that were settled (or given up)."""
        self.settled_users += settled
        self.sent_orders += len(batch)
        self._in_flight -= len(batch)
        for done in batch:
            self._per_touchpoint[done.order.touchpoint_id] -= 1
            self._held.discard(done.order.id)
            self._requests.pop(done.order.id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim, send and settle until ``stop`` is set, then drain what is in flight.

        Claims (with the heartbeat) and settlements run side by side: a slot
        freed by an answer is refilled while that answer is being settled.
        While the database is unreachable no new request starts; the answers of
        requests already in flight wait in memory (at most ``concurrency`` of
        them: nothing new is sent) and are settled when it is back, under the
        lease fence.
        """
        log.info(
            "delivery worker %s started (concurrency %d, lease %g s)",
            self.id,
            self.concurrency,
            self.lease_seconds,
        )
        # Answers waiting for settlement hold new claims back beyond this: the
        # next requests go out while the last ones are settled, but sending
        # never runs further ahead of settlement (memory, and a failing
        # endpoint's breaker opening late).
        backlog_max = self.concurrency
        retry_at = 0.0  # while the database is away: the next try
        # Orders queued in this process (a campaign page, a replay) wake the loop.
        unlisten = self.runtime.orders_queued.listen(self._queued)
        try:
            while True:
                # Cleared before reading the state: whatever happens from here
                # on (an answer, a settlement finishing) ends the wait below.
                self._queued.clear()
                now = time.monotonic()
                stopping = stop.is_set()
                # 1. Settlements that finished.
                for task, batch in [s for s in self._settling if s[0].done()]:
                    self._settling.remove((task, batch))
                    exc = task.exception()
                    if exc is None:
                        self._outage.recovered()
                        self._done(batch, task.result())
                    elif is_connection_error(exc):
                        self._queue[:0] = batch  # settled when the database is back
                        self._outage.failed(exc, len(self._queue), self._in_flight)
                        retry_at = now + OUTAGE_RETRY_SECONDS
                    else:
                        # Unexpected: give these answers up; their leases expire
                        # and another attempt sends the same orders again.
                        log.error("settling %d answer(s) failed", len(batch), exc_info=exc)
                        self._done(batch, 0)
                down = self._outage.down
                answered = len(self._answered())
                if stopping and self._in_flight == 0 and not self._settling:
                    return
                if stopping and down and self._in_flight == answered and not self._settling:
                    return  # every answer is in; the last try below settles or gives up
                # 2. Claim into free slots; renew the leases held when the
                # heartbeat is due (while the database is away: to notice its return).
                free = self.concurrency - (self._in_flight - answered)
                if stopping or down or answered >= backlog_max or now < self._outage.claims_from:
                    free = 0
                beat = now - self._last_beat >= self.heartbeat_seconds or (down and now >= retry_at)
                claimed: list[tuple[ClaimedOrder, _Cached]] = []
                if free > 0 or beat:
                    renew = sorted(self._held) if beat else None
                    try:
                        claimed, kept = await asyncio.to_thread(
                            self._claim_cycle, free, self._busy(), renew
                        )
                    except Exception as exc:
                        if is_connection_error(exc):
                            self._outage.failed(exc, len(self._queue), self._in_flight)
                            retry_at = time.monotonic() + OUTAGE_RETRY_SECONDS
                        else:
                            log.error("claiming orders failed", exc_info=exc)
                        self._last_beat = time.monotonic()  # not again at once
                    else:
                        self._outage.recovered()
                        self._start(claimed)
                        if renew is not None:
                            self._beat(renew, kept)
                # 3. Settle what has been answered, after the claim (on SQLite both
                # need the write lock, and the claim is short); while the database
                # is away, one try at a time.
                at_once = 1 if down else self.settlements_at_once
                while (
                    self._queue and len(self._settling) < at_once and (not down or now >= retry_at)
                ):
                    batch = self._queue[:SETTLE_MAX]
                    del self._queue[: len(batch)]
                    task = asyncio.create_task(asyncio.to_thread(self._settle_cycle, batch))
                    task.add_done_callback(lambda _: self._queued.set())
                    self._settling.append((task, batch))
                if free > 0 and claimed and len(claimed) >= free:
                    continue  # more may be due
                # 4. Wait for an answer, a finished settlement, the heartbeat or stop.
                if self._outage.down:
                    wait = max(0.01, retry_at - time.monotonic())
                elif claimed or answered:
                    wait = min(0.02, self.idle_seconds)  # let answers gather a little
                else:
                    wait = self.idle_seconds  # nothing due: poll again later
                wait = min(wait, max(0.01, self._last_beat + self.heartbeat_seconds - now))
                await wait_any(None if stopping else stop, self._queued, timeout=wait)
        finally:
            unlisten()
            if not self._claiming:  # else a cancelled claim's thread still uses it
                await asyncio.to_thread(self._close_connection)
            for task, batch in self._settling:
                with contextlib.suppress(Exception):
                    await task
                if not task.cancelled() and task.exception() is None:
                    self._done(batch, task.result())
                else:
                    self._queue[:0] = batch  # one last try below
            self._settling = []
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._queue:
                try:
                    self.settled_users += await asyncio.to_thread(self._settle_cycle, self._queue)
                except Exception as exc:
                    log.warning(
                        "stopping with %d answer(s) unsettled (%s); their orders are sent again",
                        len(self._queue),
                        _short(exc),
                    )
                self._queue = []
            log.info(
                "delivery worker %s stopped (%d orders, %d users settled)",
                self.id,
                self.sent_orders,
                self.settled_users,
            )


OUTAGE_RETRY_SECONDS = 1.0
OUTAGE_CLAIM_GRACE_SECONDS = 2.0
# While the database stays away, one reminder line this often.
OUTAGE_REMINDER_SECONDS = 60.0


def is_connection_error(exc: BaseException) -> bool:
    """Did this fail because the database cannot be reached (as opposed to a bug
    or a bad statement)? Connection refused or closed, the database not
    accepting connections, a terminated backend."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, DisconnectionError):
        return True
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        if isinstance(cur, DBAPIError) and isinstance(cur.orig, psycopg.Error):
            cur = cur.orig
            continue
        cur = cur.__cause__ or cur.__context__
    return False


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Outage:
    """Says once that the database went away and once that it is back."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._reminded = 0.0
        # After an outage every worker renews its leases first; claims wait a
        # moment so that nobody takes an order whose lease merely ran out while
        # its worker could not reach the database either.
        self.claims_from = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, answers: int, in_flight: int) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = self._reminded = now
            log.warning(
                "database unreachable (%s): no new requests; %d answer(s) kept, %d in flight",
                _short(exc),
                answers,
                in_flight,
            )
        elif now - self._reminded >= OUTAGE_REMINDER_SECONDS:
            self._reminded = now
            log.warning(
                "database still unreachable after %.0f s (%s); %d answer(s) kept",
                now - self.since,
                _short(exc),
                answers,
            )

    def recovered(self) -> None:
        if self.since is None:
            return
        now = time.monotonic()
        log.info("database reachable again after %.1f s", now - self.since)
        self.since = None
        self.claims_from = now + OUTAGE_CLAIM_GRACE_SECONDS


def _log_health(touchpoint_id: int, before: breaker.Health, after: breaker.Health) -> None:
    if after.state == breaker.OPEN:
        log.warning(
            "touchpoint %d: deliveries paused (breaker open): %s", touchpoint_id, after.reason
        )
    elif after.state == breaker.CLOSED:
        log.info("touchpoint %d: the probe succeeded, deliveries resume", touchpoint_id)


def _loads(payload: bytes) -> Any:
    import orjson

    return orjson.loads(payload)


def _plugin_runtime_config(session: Session, runtime: Runtime, tp: Touchpoint) -> dict[str, Any]:
    from ..plugins.service import runtime_config

    return runtime_config(session, runtime.secrets, tp)


# --- running inside ``touchgate serve`` and as ``touchgate worker`` ---------------------------


def start_in_app(runtime: Runtime) -> None:
    """Start a worker task on the server's loop (``serve``'s lifespan)."""
    if not runtime.settings.run_worker or runtime.delivery_worker is not None:
        return
    worker = Worker(runtime)
    runtime.delivery_worker = BackgroundTask.start("delivery worker", worker.run)


async def stop_in_app(runtime: Runtime) -> None:
    """Stop claiming and drain what is in flight, at most ``shutdown_seconds``."""
    task, runtime.delivery_worker = runtime.delivery_worker, None
    if task is not None:
        await task.finish(runtime.settings.shutdown_seconds)


def run_process(
    runtime: Runtime,
    *,
    worker_id: str | None = None,
    concurrency: int | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    extra: Sequence[Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, Any]]] = (),
) -> None:
    """``touchgate worker``: run until SIGTERM/SIGINT, then stop in order: the
    ``extra`` jobs (the scheduler) and the worker stop taking work and drain (at
    most ``shutdown_seconds``), then the plugin host and the HTTP client close."""
    import signal

    from ..plugins.host import close_plugin_host
    from .client import close as close_client

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = Worker(
            runtime, worker_id=worker_id, concurrency=concurrency, lease_seconds=lease_seconds
        )
        tasks = [BackgroundTask("delivery worker", stop, asyncio.create_task(worker.run(stop)))]
        for fn in extra:
            tasks.append(
                BackgroundTask(fn.__qualname__, stop, asyncio.create_task(fn(runtime, stop)))
            )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            # Until a signal, or until a job ends on its own (a crash: stop the rest).
            await asyncio.wait(
                [stopping, *(t.task for t in tasks)], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            await asyncio.gather(
                *(t.finish(runtime.settings.shutdown_seconds) for t in reversed(tasks))
            )
            close_plugin_host(runtime)
            await close_client(runtime)
        for t in tasks:
            if t.task.done() and not t.task.cancelled() and t.task.exception() is not None:
                raise RuntimeError(f"{t.name} failed") from t.task.exception()

    asyncio.run(main())
