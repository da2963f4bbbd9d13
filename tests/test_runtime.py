"""The runtime's background tasks stop when asked, and are cancelled when they
do not; the services start on first use and close once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from conftest import make_settings
from touchgate.runtime import BackgroundTask, Nudge, Runtime, wait_any


def test_a_task_that_stops_when_asked() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            seen.append("drained")

        task = BackgroundTask.start("polite", run)
        await task.finish(timeout=5)
        return seen

    assert asyncio.run(main()) == ["drained"]


def test_a_nudge_from_another_thread_wakes_a_waiting_loop() -> None:
    """``notify`` from a request's thread sets the listening loop's event (the loop
    stops waiting at once); after ``unlisten`` it no longer does."""
    nudge = Nudge()
    nudge.notify()  # nobody listens: nothing happens

    async def main() -> tuple[bool, bool]:
        woken = asyncio.Event()
        unlisten = nudge.listen(woken)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.run_in_executor(None, nudge.notify))
        await wait_any(None, woken, timeout=30)
        first = woken.is_set()
        woken.clear()
        unlisten()
        await asyncio.to_thread(nudge.notify)
        await asyncio.sleep(0.05)
        return first, woken.is_set()

    assert asyncio.run(main()) == (True, False)


def test_a_task_that_does_not_stop_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    """Even one whose clean-up waits on something that never comes."""

    async def main() -> bool:
        never = asyncio.Event()

        async def run(stop: asyncio.Event) -> None:
            try:
                await never.wait()
            finally:
                await never.wait()  # a drain waiting on a request that never ends

        task = BackgroundTask.start("stubborn", run)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await task.finish(timeout=0.05)
        assert loop.time() - started < 3
        return task.task.done()

    with caplog.at_level(logging.WARNING, logger="touchgate"):
        assert asyncio.run(main()) is True
    assert "stubborn did not stop within 0.05 s; cancelling it" in caplog.text


def test_a_failed_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async def run(stop: asyncio.Event) -> None:
            raise RuntimeError("boom")

        task = BackgroundTask.start("fragile", run)
        await asyncio.sleep(0)
        await task.finish(timeout=1)

    with caplog.at_level(logging.ERROR, logger="touchgate"):
        asyncio.run(main())
    assert "fragile failed" in caplog.text


def test_services_are_made_on_first_use_and_closed(tmp_path: Path) -> None:
    from touchgate.delivery import client
    from touchgate.plugins.host import close_plugin_host, ensure_plugin_host

    runtime = Runtime.from_settings(make_settings(f"sqlite:///{tmp_path / 'r.db'}", tmp_path))
    try:
        assert runtime.http_client is None and runtime.plugin_host is None
        host = ensure_plugin_host(runtime)
        assert ensure_plugin_host(runtime) is host
        close_plugin_host(runtime)
        assert runtime.plugin_host is None
        close_plugin_host(runtime)  # twice is harmless

        async def use_client() -> None:
            assert client.get_client(runtime) is client.get_client(runtime)
            await client.close(runtime)
            assert runtime.http_client is None

        asyncio.run(use_client())
    finally:
        runtime.close()


def test_services_stop_in_dependency_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler stops, the worker drains, and only then the plugin host and the
    HTTP client close (an in-flight plugin call must not lose its sandbox)."""
    from touchgate import app as app_module
    from touchgate.campaigns import scheduler
    from touchgate.delivery import client, worker

    order: list[str] = []

    async def scheduler_run(runtime: Runtime, stop: asyncio.Event) -> None:
        await stop.wait()
        order.append("scheduler stopped")

    async def worker_stop(runtime: Runtime) -> None:
        await asyncio.sleep(0.01)  # draining takes a moment
        order.append("worker drained")

    def host_close(runtime: Runtime) -> None:
        order.append("plugin host closed")

    async def client_close(runtime: Runtime) -> None:
        order.append("HTTP client closed")

    monkeypatch.setattr(scheduler, "run_forever", scheduler_run)
    monkeypatch.setattr(worker, "start_in_app", lambda runtime: order.append("worker started"))
    monkeypatch.setattr(worker, "stop_in_app", worker_stop)
    monkeypatch.setattr(app_module, "close_plugin_host", host_close)
    monkeypatch.setattr(app_module, "ensure_plugin_host", lambda runtime: None)
    monkeypatch.setattr(client, "close", client_close)
    runtime = Runtime.from_settings(make_settings(f"sqlite:///{tmp_path / 'o.db'}", tmp_path))

    async def main() -> None:
        async with app_module.services(runtime):
            order.append("serving")

    try:
        asyncio.run(main())
    finally:
        runtime.close()
    assert order == [
        "worker started",
        "serving",
        "scheduler stopped",
        "worker drained",
        "plugin host closed",
        "HTTP client closed",
    ]


def test_scheduler_logs_an_outage_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick that cannot reach the database is one line per outage, not a traceback
    per tick, and the return is said with the outage's length."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from touchgate.campaigns import scheduler

    calls = {"n": 0}
    stop = asyncio.Event()

    def tick(runtime: Runtime) -> scheduler.TickReport:
        calls["n"] += 1
        if calls["n"] <= 5:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))
        if calls["n"] == 7:
            stop.set()
        return scheduler.TickReport()

    monkeypatch.setattr(scheduler, "tick", tick)
    monkeypatch.setattr(scheduler, "maintain", lambda runtime, now: None)
    monkeypatch.setattr(scheduler, "TICK_SECONDS", 0.001)
    runtime = Runtime.from_settings(make_settings(f"sqlite:///{tmp_path / 's.db'}", tmp_path))
    try:
        with caplog.at_level(logging.INFO, logger="touchgate.campaigns.scheduler"):
            asyncio.run(scheduler.run_forever(runtime, stop, interval=0.001))
    finally:
        runtime.close()
    messages = [r.getMessage() for r in caplog.records]
    assert calls["n"] == 7
    assert (
        messages[0] == "campaign scheduler: database unreachable (OperationalError: disk I/O error)"
    )
    assert messages[1].startswith("campaign scheduler: database reachable again after ")
    assert len(messages) == 2
    assert not any(r.exc_info for r in caplog.records)
