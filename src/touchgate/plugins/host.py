"""The plugin host: the service side of the sandbox.

``runtime.plugin_host`` is a :class:`PluginHost`. The delivery engine
and the test send call :meth:`PluginHost.call`; it runs the plugin's ``send`` or
``query_receipts`` in a sandboxed worker process (see sandbox.py), started on
first use and reused per (plugin id, config), and returns
``[{gid, status, error_msg}]``.

Errors, drawn once::

    Exception
    ├── PluginRetryable   the batch follows the touchpoint's retry schedule:
    │                     the plugin raised RetryableError, or its worker was
    │                     killed for a limit (wall-clock timeout, CPU, memory,
    │                     a signal), or the host was too busy to take the call
    └── PluginFailed      the batch fails with this message: any other
                          exception, a worker that exited on its own (os._exit),
                          garbage on the channel, a result that is not
                          ``[{gid, status, error_msg}]``, an unknown plugin

After any failure of the process itself the worker is killed; the next call
starts a fresh one. Other plugins' workers are never touched.

The host is thread-based (a dedicated executor does the blocking pipe I/O), so
it serves any event loop and synchronous callers (:meth:`call_sync`) alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .sandbox import (
    Sandbox,
    SandboxDied,
    SandboxError,
    SandboxGarbage,
    SandboxProcess,
    SandboxTimeout,
    detect_sandbox,
)

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("touchgate.plugins")

STATUSES = ("TOU_SUCC", "TOU_FAIL", "PENDING")
METHODS = ("send", "query_receipts")
OPEN_TIMEOUT_MIN = 10.0
# Give a worker back to the pool only while it has CPU budget left (RLIMIT_CPU is
# per process lifetime); past this fraction it is closed and replaced.
CPU_RECYCLE_FRACTION = 0.8


class PluginRetryable(Exception):
    """Try this batch again later (the touchpoint's retry schedule)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PluginFailed(Exception):
    """The batch failed; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PluginInfo:
    id: int
    project_id: int
    entry: str
    directory: Path
    sha256: str = ""


WorkerKey = tuple[int, str, str]  # plugin id, package digest, config fingerprint


@dataclass
class _Worker:
    key: WorkerKey
    process: SandboxProcess
    last_used: float = field(default_factory=time.monotonic)


def config_fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()


def read_results(result: Any) -> list[dict[str, Any]]:
    """Check a plugin's return value: ``[{gid, status, error_msg}]``."""
    if not isinstance(result, list):
        raise PluginFailed(
            "the plugin returned " + type(result).__name__ + ", not a list of "
            "{gid, status, error_msg}"
        )
    out: list[dict[str, Any]] = []
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise PluginFailed(f"result[{index}] is not an object")
        gid = item.get("gid")
        if isinstance(gid, str) and gid.isdigit():
            gid = int(gid)
        if not isinstance(gid, int) or isinstance(gid, bool):
            raise PluginFailed(f"result[{index}].gid is not an integer")
        status = item.get("status")
        if status not in STATUSES:
            raise PluginFailed(f"result[{index}].status must be one of {', '.join(STATUSES)}")
        error_msg = item.get("error_msg", item.get("errorMsg"))
        if error_msg is None:
            error_msg = ""
        if not isinstance(error_msg, str):
            raise PluginFailed(f"result[{index}].error_msg is not a string")
        out.append({"gid": gid, "status": status, "error_msg": error_msg[:2000]})
    return out


class PluginHost:
    """Pools of sandboxed workers keyed by (plugin id, config fingerprint)."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        sandbox: Sandbox | None = None,
        plugin_lookup: Callable[[int], PluginInfo | None] | None = None,
        max_processes: int = 32,
        per_plugin: int = 2,
        idle_seconds: float = 300.0,
    ) -> None:
        self.sandbox = sandbox or detect_sandbox()
        self._runtime = runtime
        self._lookup = plugin_lookup
        self._max_processes = max_processes
        self._per_plugin = per_plugin
        self._idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._idle: dict[WorkerKey, list[_Worker]] = {}
        self._counts: dict[WorkerKey, int] = {}
        self._total = 0
        self._busy: set[SandboxProcess] = set()
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_processes + 4, thread_name_prefix="plugin-host"
        )
        self._reaper = threading.Thread(
            target=self._reap_forever, name="plugin-host-reaper", daemon=True
        )
        self._reaper.start()

    # -- public API ---------------------------------------------------------------

    async def call(
        self,
        *,
        project_id: int,
        plugin_id: int,
        config: dict[str, Any],
        method: str,
        order_no: str,
        users: list[dict[str, Any]] | None,
        timeout: float,
    ) -> list[dict[str, Any]]:
        """Run ``method`` of the plugin; see the module docstring for errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor,
            functools.partial(
                self.call_sync,
                project_id=project_id,
                plugin_id=plugin_id,
                config=config,
                method=method,
                order_no=order_no,
                users=users,
                timeout=timeout,
            ),
        )

    def call_sync(
        self,
        *,
        project_id: int,
        plugin_id: int,
        config: dict[str, Any],
        method: str,
        order_no: str,
        users: list[dict[str, Any]] | None,
        timeout: float,
    ) -> list[dict[str, Any]]:
        if method not in METHODS:
            raise PluginFailed(f"unknown plugin method {method!r}")
        if not timeout or timeout <= 0:
            raise PluginFailed("the call needs a positive timeout")
        info = self._plugin(project_id, plugin_id)
        worker = self._acquire(info, config, timeout)
        keep = False
        try:
            request: dict[str, Any] = {"op": "call", "method": method, "order_no": order_no}
            if method == "send":
                request["users"] = users or []
            try:
                reply = worker.process.request(request, timeout)
            except SandboxError as exc:
                raise _map_sandbox_error(exc, timeout) from None
            if reply["ok"]:
                keep = True
                return read_results(reply.get("result"))
            # A worker whose plugin raised may have left things behind (threads,
            # children, half-open state): the next call gets a fresh process.
            raise _map_plugin_error(reply.get("error") or {})
        finally:
            self._release(worker, keep=keep)

    def readiness(self) -> str:
        return self.sandbox.kind

    def forget_plugin(self, plugin_id: int) -> None:
        """Close the idle workers of a plugin (it was deleted)."""
        with self._cond:
            doomed = []
            for key in [k for k in self._idle if k[0] == plugin_id]:
                doomed += self._idle.pop(key)
            for worker in doomed:
                self._forget_locked(worker.key)
            self._cond.notify_all()
        for worker in doomed:
            worker.process.kill()

    def worker_count(self) -> int:
        with self._cond:
            return self._total

    def close(self) -> None:
        """Stop every worker (the service is shutting down); calls in progress
        end with PluginRetryable."""
        with self._cond:
            self._closed = True
            doomed = [w for workers in self._idle.values() for w in workers]
            self._idle.clear()
            busy = list(self._busy)
            self._cond.notify_all()
        for worker in doomed:
            worker.process.close()
        for process in busy:
            process.interrupt()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _reap_forever(self) -> None:
        """Close workers idle for longer than ``idle_seconds`` even when no call comes."""
        interval = max(0.5, min(30.0, self._idle_seconds / 2))
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(interval)
                if self._closed:
                    return
                doomed = self._reap_locked(time.monotonic())
                if doomed:
                    self._cond.notify_all()
            for worker in doomed:
                worker.process.close()

    # -- plugins ------------------------------------------------------------------

    def _plugin(self, project_id: int, plugin_id: int) -> PluginInfo:
        # One primary-key read per batch (not per user); no cache, so a deleted
        # plugin is refused at once.
        info = self._load_plugin(plugin_id)
        if info is None:
            raise PluginFailed(f"plugin {plugin_id} does not exist")
        if info.project_id != project_id:
            raise PluginFailed(f"plugin {plugin_id} does not belong to project {project_id}")
        if not info.directory.is_dir():
            raise PluginFailed(f"the files of plugin {plugin_id} are missing on this machine")
        return info

    def _load_plugin(self, plugin_id: int) -> PluginInfo | None:
        if self._lookup is not None:
            return self._lookup(plugin_id)
        if self._runtime is None:
            return None
        from . import repository
        from .service import plugin_dir

        with self._runtime.tx() as session:
            row = repository.get_plugin(session, plugin_id)
            if row is None:
                return None
            return PluginInfo(
                id=row.id,
                project_id=row.project_id,
                entry=row.entry,
                directory=plugin_dir(self._runtime.settings, row.id),
                sha256=row.sha256,
            )

    # -- the pool -------------------------------------------------------------------

    def _forget_locked(self, key: WorkerKey) -> None:
        self._counts[key] -= 1
        if not self._counts[key]:
            del self._counts[key]
        self._total -= 1

    def _reap_locked(self, now: float) -> list[_Worker]:
        doomed: list[_Worker] = []
        for key in list(self._idle):
            keep = []
            for worker in self._idle[key]:
                if now - worker.last_used > self._idle_seconds or not worker.process.alive:
                    doomed.append(worker)
                    self._forget_locked(key)
                else:
                    keep.append(worker)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return doomed

    def _evict_one_locked(self) -> _Worker | None:
        oldest: _Worker | None = None
        for workers in self._idle.values():
            for worker in workers:
                if oldest is None or worker.last_used < oldest.last_used:
                    oldest = worker
        if oldest is None:
            return None
        self._idle[oldest.key].remove(oldest)
        if not self._idle[oldest.key]:
            del self._idle[oldest.key]
        self._forget_locked(oldest.key)
        return oldest

    def _acquire(self, info: PluginInfo, config: dict[str, Any], timeout: float) -> _Worker:
        key = (info.id, info.sha256, config_fingerprint(config))
        # Waiting for a free worker does not eat the call's own timeout, but is bounded.
        deadline = time.monotonic() + max(60.0, 10 * timeout)
        doomed: list[_Worker] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise PluginRetryable("the plugin host is shutting down")
                    doomed += self._reap_locked(time.monotonic())
                    idle = self._idle.get(key)
                    if idle:
                        worker = idle.pop()
                        if not idle:
                            del self._idle[key]
                        self._busy.add(worker.process)
                        return worker
                    room = self._counts.get(key, 0) < self._per_plugin
                    if room and self._total >= self._max_processes:
                        victim = self._evict_one_locked()
                        if victim is not None:
                            doomed.append(victim)
                    if room and self._total < self._max_processes:
                        self._counts[key] = self._counts.get(key, 0) + 1
                        self._total += 1
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PluginRetryable("every plugin worker is busy; try again later")
                    self._cond.wait(remaining)
        finally:
            for old in doomed:
                old.process.close()
        try:
            worker = self._start(key, info, config, timeout)
        except BaseException:
            with self._cond:
                self._forget_locked(key)
                self._cond.notify_all()
            raise
        with self._cond:
            self._busy.add(worker.process)
        return worker

    def _start(
        self, key: WorkerKey, info: PluginInfo, config: dict[str, Any], timeout: float
    ) -> _Worker:
        try:
            process = self.sandbox.launch(info.directory, info.entry)
        except SandboxError as exc:
            raise PluginRetryable(f"the plugin worker could not start: {exc}") from None
        try:
            reply = process.request(
                {"op": "open", "config": config}, max(timeout, OPEN_TIMEOUT_MIN)
            )
        except SandboxError as exc:
            raise _map_sandbox_error(exc, max(timeout, OPEN_TIMEOUT_MIN)) from None
        if not reply["ok"]:
            process.kill()
            raise _map_plugin_error(reply.get("error") or {}, during="open")
        return _Worker(key=key, process=process)

    def _release(self, worker: _Worker, *, keep: bool) -> None:
        process = worker.process
        cpu_budget = self.sandbox.limits.cpu_seconds * CPU_RECYCLE_FRACTION
        reuse = keep and process.alive and process.cpu_seconds < cpu_budget
        with self._cond:
            self._busy.discard(process)
            if reuse and not self._closed:
                worker.last_used = time.monotonic()
                self._idle.setdefault(worker.key, []).append(worker)
            else:
                self._forget_locked(worker.key)
                reuse = False
            self._cond.notify_all()
        if not reuse:
            process.close() if process.alive else process.kill()


def _map_sandbox_error(exc: SandboxError, timeout: float) -> Exception:
    if isinstance(exc, SandboxTimeout):
        return PluginRetryable(f"the plugin did not answer within {timeout:g} s and was killed")
    if isinstance(exc, SandboxDied):
        if exc.by_signal or exc.returncode is None:
            return PluginRetryable(str(exc))
        return PluginFailed(str(exc))
    if isinstance(exc, SandboxGarbage):
        return PluginFailed(str(exc))
    return PluginFailed(str(exc))


def _map_plugin_error(error: dict[str, Any], during: str | None = None) -> Exception:
    message = str(error.get("message") or error.get("type") or "the plugin failed")
    if during:
        message = f"{during}(): {message}"
    if error.get("retryable"):
        return PluginRetryable(message)
    if error.get("limit"):
        return PluginRetryable(f"the plugin ran out of memory ({message})")
    return PluginFailed(message)


def ensure_plugin_host(runtime: Runtime) -> PluginHost:
    """The runtime's plugin host, created on first use (e.g. by ``touchgate worker``)."""
    if runtime.plugin_host is None:
        runtime.plugin_host = PluginHost(runtime)
    return runtime.plugin_host


def close_plugin_host(runtime: Runtime) -> None:
    """Stop the runtime's sandboxed workers (after the delivery worker has drained)."""
    host, runtime.plugin_host = runtime.plugin_host, None
    if host is not None:
        host.close()
