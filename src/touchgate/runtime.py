"""The process-wide objects a request, a worker or a CLI command needs: the one
composition root's product.

A :class:`Runtime` holds the database (engine, sessions), the secret box and the
long-lived services as typed fields. The services are made on first use
(``delivery.client.get_client``, ``plugins.host.ensure_plugin_host``) or by the
process's lifespan — ``app.py``'s for ``serve``, ``delivery.worker.run_process``
for ``touchgate worker`` — which also stops them, in dependency order: stop
taking work (scheduler, worker), drain, then close the plugin host and the HTTP
client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings, get_settings
from .crypto import SecretBox, load_key_material
from .db import make_engine, make_sessionmaker, transaction
from .delivery.hooks import SettlementFollowup
from .delivery.repository import queued_orders


def default_followups() -> tuple[SettlementFollowup, ...]:
    """What every settlement must also do (the campaigns' fallbacks and next steps).

    The composition root of the follow-ups: the delivery engine never imports
    the domains that react to its results; it is handed these.
    """
    from .campaigns.settlement import settlement_followups

    return settlement_followups()


if TYPE_CHECKING:
    from .delivery.client import HttpClient
    from .delivery.options import OptionsCache
    from .plugins.host import PluginHost
    from .touchpoints.guard import UsageCheck

log = logging.getLogger(__name__)


class Nudge:
    """A wake-up call to the loops of this process that wait for one kind of work
    (orders to send, campaigns to start): whoever commits such work calls
    :meth:`notify`, from any thread, and the loops start on it now instead of at
    their next poll. Loops in other processes still find the work by polling."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def listen(self, event: asyncio.Event) -> Callable[[], None]:
        """Set ``event`` (an event of the running loop) at every notify, until the
        returned function is called."""
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._listeners.append(entry)

        def stop() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(entry)

        return stop

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for loop, event in listeners:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)


async def wait_any(*events: asyncio.Event | None, timeout: float) -> None:
    """Wait until one of the events (``None``: left out) is set or ``timeout`` passes."""
    waits = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    if not waits:
        await asyncio.sleep(timeout)
        return
    _, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
    for w in pending:
        w.cancel()


@dataclass
class BackgroundTask:
    """A task of the process (the in-app worker, the campaign scheduler) and the
    event that asks it to stop."""

    name: str
    stop: asyncio.Event
    task: asyncio.Task[Any]

    @classmethod
    def start(
        cls, name: str, run: Callable[[asyncio.Event], Coroutine[Any, Any, Any]]
    ) -> BackgroundTask:
        """Start ``run(stop)`` as a task on the running loop."""
        stop = asyncio.Event()
        return cls(name, stop, asyncio.get_running_loop().create_task(run(stop), name=name))

    async def finish(self, timeout: float) -> None:
        """Ask the task to stop and wait up to ``timeout`` seconds; then cancel it
        (again each second, since its own clean-up may be waiting on something: a
        process that was asked to stop must not hang on it)."""
        self.stop.set()
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            log.warning("%s did not stop within %g s; cancelling it", self.name, timeout)
            for _ in range(3):
                self.task.cancel()
                done, _ = await asyncio.wait({self.task}, timeout=1.0)
                if done:
                    break
            else:
                log.error("%s did not end when cancelled; leaving it", self.name)
                return
        if not self.task.cancelled() and self.task.exception() is not None:
            log.error("%s failed", self.name, exc_info=self.task.exception())


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretBox
    # Run inside every settlement transaction, in order (``delivery.settlement.settle``).
    followups: tuple[SettlementFollowup, ...] = field(default_factory=default_followups)
    # Long-lived services (see the module docstring for who makes and stops them).
    http_client: HttpClient | None = None
    plugin_host: PluginHost | None = None
    # Options of enum parameters read from options APIs, see ``delivery.options``.
    options_cache: OptionsCache = field(default_factory=dict)
    # Who still needs a touchpoint (``touchpoints.guard``): given by the composition root.
    touchpoint_usage_checks: tuple[UsageCheck, ...] = ()
    # Wake-up calls (``Nudge``): orders were committed (``tx`` wakes the delivery
    # worker), a campaign changed state (the campaign scheduler).
    orders_queued: Nudge = field(default_factory=Nudge)
    campaigns_changed: Nudge = field(default_factory=Nudge)
    # Tasks started by ``serve``'s lifespan.
    delivery_worker: BackgroundTask | None = None
    campaign_scheduler: BackgroundTask | None = None
    # Seconds between campaign scheduler ticks; None: the scheduler's default. An
    # embedding process (a test) may change it while the scheduler runs.
    campaign_tick_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or get_settings()
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            secrets=SecretBox(load_key_material(settings)),
        )

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A unit of work owned by the caller (a request, a job, a command). Once it
        has committed orders, this process's delivery worker is woken for them."""
        with transaction(self.sessions) as session:
            yield session
        if queued_orders(session):
            self.orders_queued.notify()

    def close(self) -> None:
        self.engine.dispose()
