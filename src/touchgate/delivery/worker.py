"""The delivery worker: claim due orders with leases, send them, settle in bulk.

A pipeline on one asyncio loop, database work in threads so the loop never
blocks::

    claim (lease many due orders at once) ──► attempts (concurrent, within each
    touchpoint's in-flight limit) ──► settle queue ──► settle (one transaction
    for everything finished meanwhile)

Workers are stateless: run one inside ``touchgate serve`` or any number of
``touchgate worker`` processes against PostgreSQL. A worker killed at any
moment loses nothing: its leases expire and another worker resends the same
orders under the same ``orderNo`` (the receiver's idempotency key), and the
settlement fence (``repository.lock_owned``) keeps a worker that lost its
lease from recording anything.
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

from sqlalchemy.orm import Session

from ..models import Touchpoint
from ..models.base import utcnow
from ..runtime import BackgroundTask, Runtime
from . import protocol, rate_repository, receipts
from . import repository as repo
from .client import get_client
from .outcomes import DEFAULT_POLL_SECONDS, ClaimedOrder, Outcome, receipt_timeout_minutes
from .rate_gate import RateGate, reserve_in
from .receipts import TouchpointConfig
from .settlement import settle

log = logging.getLogger("touchgate.delivery.worker")

# A claimed order must be settled before its lease ends, or another worker may
# take it (harmless — the fence and the orderNo make it safe — but wasteful).
DEFAULT_LEASE_SECONDS = 180.0
DEFAULT_IDLE_SECONDS = 0.5
SETTLE_MAX = 500
# Orders claimed per touchpoint beyond its in-flight limit, ready to go the
# moment a slot frees (hides the claim round trip without hoarding orders).
READY_PER_TOUCHPOINT = 2
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
    ) -> None:
        self.runtime = runtime
        self.id = worker_id or default_worker_id()
        self.concurrency = concurrency or runtime.settings.worker_concurrency
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self._in_flight = 0
        self._per_touchpoint: Counter[int] = Counter()
        self._queue: list[Outcome] = []
        self._queued = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._touchpoints: dict[int, _Cached] = {}
        self.settled_users = 0
        self.sent_orders = 0
        self._rate = RateGate(reserve_in(runtime))  # rate limit

    # --- database work (in threads) ---------------------------------------------

    def _limit(self, touchpoint_id: int) -> int:
        cached = self._touchpoints.get(touchpoint_id)
        size = cached.config.max_in_flight if cached is not None else None
        return size or self.runtime.settings.per_touchpoint_in_flight

    def _saturated(self, settling: list[Outcome]) -> list[int]:
        """Touchpoints with their in-flight limit busy plus a small ready queue
        (not counting the orders about to be settled).

        Claiming more of them would only park orders (and their leases) behind
        the client's per-touchpoint limit while other touchpoints' orders wait.
        """
        busy = Counter(self._per_touchpoint)
        busy.subtract(o.order.touchpoint_id for o in settling)
        full = [tid for tid, n in busy.items() if n >= self._limit(tid) + READY_PER_TOUCHPOINT]
        return full + self._rate.backlogged()  # rate limit: nor those far behind their rate

    def _claim_in(
        self, session: Session, limit: int, skip: list[int]
    ) -> list[tuple[ClaimedOrder, _Cached]]:
        now = utcnow()
        until = now + timedelta(seconds=self.lease_seconds)
        clock = time.monotonic()
        rows = repo.claim_due(session, self.id, now, until, limit, skip_touchpoints=skip)
        if not rows:
            return []
        # The touchpoint rows are read on every claim (a few rows), so an edit
        # applies to the next attempt; decrypting secrets happens only when the
        # row changed.
        ids = {r.touchpoint_id for r in rows}
        rates = rate_repository.requests_per_second(session, ids)  # rate limit
        for tp in repo.touchpoints_by_id(session, ids):
            version = (tp.created_at, tp.updated_at, rates.get(tp.id))  # rate limit
            cached = self._touchpoints.get(tp.id)
            if (
                cached is not None
                and cached.version == version
                and (clock - cached.loaded < TOUCHPOINT_CACHE_SECONDS)
            ):
                continue
            plugin_config = None
            if tp.transport == "plugin":
                plugin_config = _plugin_runtime_config(session, self.runtime, tp)
            self._touchpoints[tp.id] = _Cached(
                touchpoint_config(self.runtime, tp, now, rates.get(tp.id)),  # rate limit
                plugin_config,
                clock,
                version,
            )
        out = []
        for r in rows:
            order = ClaimedOrder(**r._asdict())
            cached = self._touchpoints.get(order.touchpoint_id)
            if cached is None:  # the touchpoint row is gone (cascade deletes its orders)
                continue
            out.append((order, cached))
        return out

    def _cycle(
        self, outcomes: list[Outcome], limit: int, skip: list[int]
    ) -> tuple[int, list[tuple[ClaimedOrder, _Cached]]]:
        """Settle what finished and claim more, in ONE transaction (one write lock
        on SQLite, one round trip of commits on PostgreSQL)."""
        try:
            with self.runtime.tx() as session:
                settled = settle(session, self.id, outcomes, followups=self.runtime.followups)
                claimed = self._claim_in(session, limit, skip) if limit > 0 else []
                return settled, claimed
        except Exception as exc:
            if len(outcomes) <= 1:
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
                except Exception as one_exc:
                    log.exception(
                        "order %s: settlement failed", outcome.order.order_no, exc_info=one_exc
                    )
            return settled, []

    # --- sending ---------------------------------------------------------------------

    async def _attempt(self, order: ClaimedOrder, cached: _Cached) -> Outcome:
        tp = cached.config
        at = utcnow()
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
            self._queued.set()
            return
        self._queue.append(outcome)
        self._queued.set()

    # --- the loops ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim, send and settle until ``stop`` is set, then drain what is in flight."""
        log.info("delivery worker %s started (concurrency %d)", self.id, self.concurrency)
        idle_wait = 0.0
        try:
            while True:
                if idle_wait:
                    self._queued.clear()
                    if not self._queue:
                        # Once stopping, only outcomes matter (stop is already set).
                        watch = None if stop.is_set() else stop
                        await _wait_any(watch, self._queued, timeout=idle_wait)
                    idle_wait = 0.0
                batch, self._queue = self._queue[:SETTLE_MAX], self._queue[SETTLE_MAX:]
                stopping = stop.is_set()
                if stopping and not batch and self._in_flight == 0:
                    return
                free = 0 if stopping else self.concurrency - (self._in_flight - len(batch))
                if not batch and free <= 0:
                    idle_wait = 1.0  # every slot busy: wait for an outcome
                    continue
                try:
                    settled, claimed = await asyncio.to_thread(
                        self._cycle, batch, free, self._saturated(batch)
                    )
                except Exception as exc:  # database away: the leases bring the orders back
                    log.exception("worker cycle failed", exc_info=exc)
                    settled, claimed = 0, []
                    idle_wait = 2.0
                self.settled_users += settled
                self.sent_orders += len(batch)
                self._in_flight -= len(batch)
                for done in batch:
                    self._per_touchpoint[done.order.touchpoint_id] -= 1
                for order, cached in claimed:
                    self._in_flight += 1
                    self._per_touchpoint[order.touchpoint_id] += 1
                    task = asyncio.create_task(self._run_one(order, cached))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if stopping:
                    idle_wait = idle_wait or 0.2
                elif not claimed and not batch:
                    idle_wait = self.idle_seconds  # nothing due: poll again later
                elif not self._queue and len(claimed) < free:
                    # Less work than room: let outcomes accumulate (bigger transactions).
                    idle_wait = min(0.02, self.idle_seconds)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._queue:
                with contextlib.suppress(Exception):
                    settled, _ = await asyncio.to_thread(self._cycle, self._queue, 0, [])
                    self.settled_users += settled
                self._queue = []
            log.info(
                "delivery worker %s stopped (%d orders, %d users settled)",
                self.id,
                self.sent_orders,
                self.settled_users,
            )


async def _wait_any(
    first: asyncio.Event | None, other: asyncio.Event | None, timeout: float
) -> None:
    """Wait until either event is set or ``timeout`` passes."""
    waits = [asyncio.ensure_future(e.wait()) for e in (first, other) if e is not None]
    if not waits:
        await asyncio.sleep(timeout)
        return
    _, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
    for w in pending:
        w.cancel()


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
