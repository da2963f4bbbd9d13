"""The plugin host and its sandbox against hostile plugins: each misbehaviour fails
its call in bounded time, leaks nothing, and a healthy plugin keeps working right
after. Runs with the strongest sandbox this machine offers and with the rlimits
fallback (where a case needs namespaces, the fallback case says why it is skipped).
"""

from __future__ import annotations

import ast
import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from touchgate.plugins.host import PluginFailed, PluginHost, PluginInfo, PluginRetryable
from touchgate.plugins.sandbox import Limits, Sandbox, SandboxProcess, detect_sandbox

HEALTHY = """
import os

class Channel:
    def open(self, config):
        self.config = config

    def send(self, order_no, users):
        return [{"gid": u["gid"], "status": "TOU_SUCC", "error_msg": str(os.getpid())}
                for u in users]

    def query_receipts(self, order_no):
        return [{"gid": 7, "status": "PENDING"}, {"gid": 8, "status": "TOU_FAIL",
                 "error_msg": "bounced"}]
"""

HOSTILE = """
import os, sys, time

class RetryableError(Exception):
    pass

class Channel:
    def open(self, config):
        self.config = config
        if config.get("fail_open"):
            raise ValueError("bad api key")

    def send(self, order_no, users):
        if order_no == "loop":
            while True:
                pass
        if order_no == "sleep":
            time.sleep(3600)
        if order_no == "memory":
            block = bytearray(8 << 30)
            return [{"gid": 1, "status": "TOU_SUCC", "error_msg": str(len(block))}]
        if order_no == "fork":
            while True:
                try:
                    if os.fork() == 0:
                        while True:
                            try:
                                os.fork()
                            except OSError:
                                time.sleep(0.01)
                except OSError:
                    time.sleep(0.01)
        if order_no == "environ":
            found = {"environ": dict(os.environ), "proc": {}}
            for pid in ("1", str(os.getppid())):
                try:
                    text = open("/proc/" + pid + "/environ").read()
                    # Only what matters, so the answer stays short whatever the
                    # service's environment holds.
                    found["proc"][pid] = {
                        "touchgate": "TOUCHGATE" in text,
                        "leak": "must-not-leak" in text,
                    }
                except OSError as exc:
                    found["proc"][pid] = type(exc).__name__
            return [{"gid": 1, "status": "TOU_SUCC", "error_msg": repr(found)}]
        if order_no == "exit":
            os._exit(7)
        if order_no == "write":
            report = {}
            here = os.path.dirname(os.path.abspath(__file__))
            targets = [self.config["target"], os.path.join(here, "written.txt"),
                       os.path.join(os.getcwd(), "..", "escape.txt"), "/escape.txt",
                       os.path.join(os.getcwd(), "inside.txt")]
            for path in targets:
                try:
                    with open(path, "w") as fh:
                        fh.write("x")
                    report[path] = "written"
                except OSError as exc:
                    report[path] = type(exc).__name__
            return [{"gid": 1, "status": "TOU_SUCC", "error_msg": repr(report)}]
        if order_no == "garbage":
            for fd in range(0, 64):
                if fd != 2:
                    try:
                        os.write(fd, b"}}} garbage, not JSON\\n")
                    except OSError:
                        pass
            return []
        if order_no == "print":
            print("chatty plugin output {not json")
            sys.stdout.write("more noise\\n")
            sys.stdout.flush()
            return [{"gid": u["gid"], "status": "TOU_SUCC"} for u in users]
        if order_no == "retry":
            raise RetryableError("gateway busy")
        if order_no == "raise":
            raise KeyError("no such template")
        if order_no == "bad-result":
            return {"gid": 1}
        if order_no == "bad-status":
            return [{"gid": 1, "status": "DELIVERED"}]
        if order_no == "not-json":
            return [{"gid": 1, "status": "TOU_SUCC", "error_msg": object()}]
        return [{"gid": u["gid"], "status": "TOU_SUCC", "error_msg": ""} for u in users]
"""

DETECTED = detect_sandbox()
KINDS = sorted({DETECTED.kind, "rlimits"})


@dataclass(frozen=True)
class RecordingSandbox(Sandbox):
    """The real sandbox, remembering each worker it launched (pid, and uid when the
    worker runs as a dedicated one) so the tests can look for leftovers of exactly
    these workers, whatever else runs on the machine."""

    launched: list[tuple[int, int | None]] = field(default_factory=list, compare=False)

    def launch(self, plugin_dir: Path, entry: str, *, probe: bool = False) -> SandboxProcess:
        process = super().launch(plugin_dir, entry, probe=probe)
        self.launched.append((process.process.pid, process.uid))
        return process


def _sandbox(kind: str, limits: Limits | None = None) -> RecordingSandbox:
    base = DETECTED if kind == DETECTED.kind else Sandbox(kind="rlimits")
    return RecordingSandbox(
        kind=base.kind,
        bwrap=base.bwrap,
        switch_uid=base.switch_uid,
        limits=limits or base.limits,
    )


def write_plugin(root: Path, name: str, code: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "chan.py").write_text(code)
    directory.chmod(0o755)
    return directory


class Plugins:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs: dict[int, Path] = {
            1: write_plugin(root, "healthy", HEALTHY),
            2: write_plugin(root, "hostile", HOSTILE),
            3: write_plugin(root, "healthy2", HEALTHY),
        }

    def lookup(self, plugin_id: int) -> PluginInfo | None:
        directory = self.dirs.get(plugin_id)
        if directory is None:
            return None
        return PluginInfo(plugin_id, 1, "chan:Channel", directory, sha256=str(plugin_id))


@pytest.fixture(params=KINDS)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PluginHost]:
    plugins = Plugins(tmp_path / "plugins")
    h = PluginHost(sandbox=_sandbox(request.param), plugin_lookup=plugins.lookup)
    yield h
    h.close()
    wait_until_no_workers(h.sandbox)


def wait_until_no_workers(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, RecordingSandbox)
    deadline = time.monotonic() + 10
    while _leftovers(sandbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(sandbox) == []


def _leftovers(sandbox: RecordingSandbox) -> list[int]:
    """Live processes of the launched workers: their own, their descendants, and
    any process running as one of their dedicated uids."""
    pids = {pid for pid, _ in sandbox.launched}
    uids = {uid for _, uid in sandbox.launched if uid is not None}
    parents: dict[int, int] = {}
    owners: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            owner = entry.stat().st_uid
        except OSError:
            continue
        if fields[0] != "Z":  # zombies are already dead
            parents[int(entry.name)] = int(fields[1])
            owners[int(entry.name)] = owner
    found = []
    for pid in parents:
        if pid in pids or owners[pid] in uids:
            found.append(pid)
            continue
        parent, hops = parents.get(pid), 0
        while parent and hops < 64:
            if parent in pids:
                found.append(pid)
                break
            parent, hops = parents.get(parent), hops + 1
    return found


def call(
    host: PluginHost,
    order_no: str,
    *,
    plugin_id: int = 2,
    timeout: float = 5,
    config: dict[str, Any] | None = None,
    method: str = "send",
) -> list[dict[str, Any]]:
    return host.call_sync(
        project_id=1,
        plugin_id=plugin_id,
        config=config or {},
        method=method,
        order_no=order_no,
        users=[{"gid": 5, "dynamicData": {}, "temData": {}}],
        timeout=timeout,
    )


def healthy_after(host: PluginHost) -> None:
    """The same plugin (a fresh process) and another plugin both still work."""
    assert call(host, "ok") == [{"gid": 5, "status": "TOU_SUCC", "error_msg": ""}]
    assert call(host, "ok", plugin_id=1)[0]["status"] == "TOU_SUCC"


def test_healthy_plugin_is_reused(host: PluginHost) -> None:
    first = call(host, "a", plugin_id=1)
    second = call(host, "b", plugin_id=1)
    assert first[0]["status"] == "TOU_SUCC"
    assert first[0]["error_msg"] == second[0]["error_msg"]  # same worker process
    assert host.worker_count() == 1
    # Another config is another worker.
    call(host, "c", plugin_id=1, config={"region": "cn-north"})
    assert host.worker_count() == 2
    receipts = call(host, "o", plugin_id=1, method="query_receipts")
    assert receipts == [
        {"gid": 7, "status": "PENDING", "error_msg": ""},
        {"gid": 8, "status": "TOU_FAIL", "error_msg": "bounced"},
    ]


def test_async_call(host: PluginHost) -> None:
    async def main() -> list[dict[str, Any]]:
        return await host.call(
            project_id=1,
            plugin_id=1,
            config={},
            method="send",
            order_no="x",
            users=[{"gid": 1}, {"gid": 2}],
            timeout=5,
        )

    assert [r["gid"] for r in asyncio.run(main())] == [1, 2]


def test_endless_loop_is_killed_at_the_timeout(host: PluginHost) -> None:
    started = time.monotonic()
    with pytest.raises(PluginRetryable, match="did not answer within 2 s"):
        call(host, "loop", timeout=2)
    assert time.monotonic() - started < 5
    with pytest.raises(PluginRetryable):
        call(host, "sleep", timeout=1)
    healthy_after(host)


def test_huge_allocation_hits_the_memory_limit(host: PluginHost) -> None:
    started = time.monotonic()
    with pytest.raises(PluginRetryable, match="out of memory"):
        call(host, "memory")
    assert time.monotonic() - started < 5
    healthy_after(host)


def test_cpu_limit_kills_the_worker(tmp_path: Path) -> None:
    plugins = Plugins(tmp_path)
    tight = _sandbox(DETECTED.kind, Limits(cpu_seconds=1))
    host = PluginHost(sandbox=tight, plugin_lookup=plugins.lookup)
    try:
        started = time.monotonic()
        with pytest.raises(PluginRetryable, match=r"SIGXCPU|SIGKILL"):
            call(host, "loop", timeout=30)
        assert time.monotonic() - started < 15
        healthy_after(host)
    finally:
        host.close()


def test_fork_bomb_is_contained(host: PluginHost) -> None:
    """The bomb forks until refused and keeps trying: the call times out and every
    process it made dies with the worker."""
    # bubblewrap: RLIMIT_NPROC for the worker's own uid, the PID namespace dies
    # with it; rlimits as root (where the kernel ignores RLIMIT_NPROC): seccomp
    # refuses new processes; rlimits as another user: RLIMIT_NPROC.
    started = time.monotonic()
    with pytest.raises(PluginRetryable):
        call(host, "fork", timeout=3)
    assert time.monotonic() - started < 10
    # Every process of the bomb died with its worker.
    wait_until_no_workers(host.sandbox)
    healthy_after(host)


def test_environment_is_scrubbed(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "TOUCHGATE_ADMIN_TOKEN": "admin-token-must-not-leak",
        "TOUCHGATE_SECRET_KEY": "secret-key-must-not-leak",
        "TOUCHGATE_DATABASE_URL": "postgresql://user:dbpass-must-not-leak@db/x",
        "DATABASE_URL": "postgresql://user:dbpass2-must-not-leak@db/x",
        "GITHUB_TOKEN": "gh-token-must-not-leak",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    found = ast.literal_eval(call(host, "environ")[0]["error_msg"])
    environ = repr(found["environ"])
    for name, value in secrets.items():
        assert value not in environ
        assert name not in environ
    assert "TOUCHGATE" not in environ
    assert set(found["environ"]) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PWD",
    }
    if host.sandbox.kind == "bubblewrap":
        # Its own PID namespace: the service's process (and its environment, with
        # whatever TOUCHGATE_* it started with) is not even visible.
        for seen in found["proc"].values():
            assert not isinstance(seen, dict) or not (seen["touchgate"] or seen["leak"])
    # (The rlimits fallback shares the PID namespace: a plugin running as the
    # service's own user can read /proc/<service>/environ; docs/plugins.md says so.)
    healthy_after(host)


def test_os_exit_fails_the_call(host: PluginHost) -> None:
    started = time.monotonic()
    with pytest.raises(PluginFailed, match="exited with status 7"):
        call(host, "exit")
    assert time.monotonic() - started < 5
    healthy_after(host)


def test_writes_outside_the_work_directory_are_contained(host: PluginHost, tmp_path: Path) -> None:
    if host.sandbox.kind == "rlimits":
        pytest.skip("the rlimits fallback shares the service's file system (no namespaces)")
    outside = tmp_path / "outside" / "escaped.txt"
    outside.parent.mkdir()
    outside.parent.chmod(0o777)  # even a world-writable directory is out of reach
    result = call(host, "write", config={"target": str(outside)})[0]["error_msg"]
    report: dict[str, str] = ast.literal_eval(result)
    assert len(report) == 5
    for path, outcome in report.items():
        if path.endswith("inside.txt"):
            assert outcome == "written", report  # its private work directory is writable
        else:
            assert outcome != "written", (path, report)
    assert not outside.exists()
    lookup = host._lookup
    assert lookup is not None
    info = lookup(2)
    assert info is not None
    assert sorted(p.name for p in info.directory.iterdir()) == ["chan.py"]
    assert not Path("/escape.txt").exists()
    healthy_after(host)


def test_garbage_on_the_channel_fails_the_call(host: PluginHost) -> None:
    started = time.monotonic()
    with pytest.raises(PluginFailed, match="not JSON"):
        call(host, "garbage")
    assert time.monotonic() - started < 5
    healthy_after(host)


def test_prints_do_not_disturb_the_channel(host: PluginHost) -> None:
    assert call(host, "print") == [{"gid": 5, "status": "TOU_SUCC", "error_msg": ""}]
    assert call(host, "print")[0]["status"] == "TOU_SUCC"


def test_exceptions_map_to_retry_or_failure(host: PluginHost) -> None:
    with pytest.raises(PluginRetryable, match="gateway busy"):
        call(host, "retry")
    with pytest.raises(PluginFailed, match="no such template"):
        call(host, "raise")
    with pytest.raises(PluginFailed, match="not a list"):
        call(host, "bad-result")
    with pytest.raises(PluginFailed, match="status must be one of"):
        call(host, "bad-status")
    with pytest.raises(PluginFailed, match="not JSON"):
        call(host, "not-json")
    with pytest.raises(PluginFailed, match=r"open\(\): bad api key"):
        call(host, "ok", config={"fail_open": True})
    with pytest.raises(PluginFailed, match="no query_receipts"):
        call(host, "ok", plugin_id=2, method="query_receipts")
    with pytest.raises(PluginFailed, match="does not exist"):
        call(host, "ok", plugin_id=99)
    with pytest.raises(PluginFailed, match="does not belong"):
        host.call_sync(
            project_id=2,
            plugin_id=1,
            config={},
            method="send",
            order_no="x",
            users=[],
            timeout=5,
        )
    healthy_after(host)


def test_a_hanging_plugin_does_not_hold_up_others(host: PluginHost) -> None:
    async def main() -> tuple[float, BaseException | list[dict[str, Any]]]:
        hang = asyncio.ensure_future(
            host.call(
                project_id=1,
                plugin_id=2,
                config={},
                method="send",
                order_no="sleep",
                users=[],
                timeout=3,
            )
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        for _ in range(5):
            await host.call(
                project_id=1,
                plugin_id=1,
                config={},
                method="send",
                order_no="x",
                users=[{"gid": 1}],
                timeout=3,
            )
        elapsed = time.monotonic() - started
        outcome = await asyncio.gather(hang, return_exceptions=True)
        return elapsed, outcome[0]

    elapsed, outcome = asyncio.run(main())
    assert elapsed < 2.5
    assert isinstance(outcome, PluginRetryable)


def test_idle_workers_are_closed(tmp_path: Path) -> None:
    plugins = Plugins(tmp_path)
    host = PluginHost(sandbox=DETECTED, plugin_lookup=plugins.lookup, idle_seconds=1)
    try:
        call(host, "x", plugin_id=1)
        call(host, "x", plugin_id=3)
        assert host.worker_count() == 2
        deadline = time.monotonic() + 10
        while host.worker_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert host.worker_count() == 0
        assert call(host, "x", plugin_id=1)[0]["status"] == "TOU_SUCC"
    finally:
        host.close()


def test_local_time_and_standard_library_work_in_the_sandbox(tmp_path: Path) -> None:
    code = """
import hashlib, json, time, datetime, decimal, sqlite3, zoneinfo
class Channel:
    def send(self, order_no, users):
        stamp = time.strftime("%Y") + datetime.datetime.now().isoformat()
        digest = hashlib.md5(order_no.encode()).hexdigest()
        return [{"gid": 1, "status": "TOU_SUCC", "error_msg": digest + stamp}]
"""
    directory = write_plugin(tmp_path, "stdlib", code)
    info = PluginInfo(1, 1, "chan:Channel", directory, "x")
    host = PluginHost(sandbox=DETECTED, plugin_lookup=lambda _id: info)
    try:
        [result] = call(host, "abc", plugin_id=1)
        assert result["error_msg"].startswith("900150983cd24fb0d6963f7d28e17f72")
    finally:
        host.close()


def test_rlimits_as_root_forbids_processes_but_not_threads(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the seccomp filter is used only where the plugin runs as root")
    code = """
import os, subprocess, threading
class Channel:
    def send(self, order_no, users):
        out = []
        t = threading.Thread(target=lambda: out.append("thread")); t.start(); t.join()
        for attempt in (os.fork, lambda: subprocess.run(["/bin/true"])):
            try:
                if attempt() == 0:
                    os._exit(0)
                out.append("process")
            except OSError as exc:
                out.append(exc.strerror)
        return [{"gid": 1, "status": "TOU_SUCC", "error_msg": ",".join(out)}]
"""
    info = PluginInfo(1, 1, "chan:Channel", write_plugin(tmp_path, "procs", code), "x")
    host = PluginHost(sandbox=_sandbox("rlimits"), plugin_lookup=lambda _id: info)
    try:
        [result] = call(host, "x", plugin_id=1)
        assert result["error_msg"] == (
            "thread,Resource temporarily unavailable,Resource temporarily unavailable"
        )
    finally:
        host.close()


def test_close_ends_calls_in_progress(host: PluginHost) -> None:
    import threading

    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            call(host, "sleep", timeout=30)
        except (PluginRetryable, PluginFailed) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(1)
    started = time.monotonic()
    host.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 10
    assert len(outcome) == 1 and isinstance(outcome[0], PluginRetryable)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    if text.encode() in fh.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_workers_die_with_the_service(kind: str, tmp_path: Path) -> None:
    """A service killed with SIGKILL mid-call leaves no plugin process behind."""
    import signal
    import subprocess
    import sys
    import uuid

    module = f"m_{uuid.uuid4().hex}"
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / f"{module}.py").write_text(HOSTILE)
    plugin.chmod(0o755)
    script = f"""
import sys, threading
from pathlib import Path
from touchgate.plugins.host import PluginHost, PluginInfo
from touchgate.plugins.sandbox import Sandbox, detect_sandbox
sandbox = detect_sandbox() if {kind!r} == detect_sandbox().kind else Sandbox(kind="rlimits")
info = PluginInfo(1, 1, "{module}:Channel", Path({str(plugin)!r}), "x")
host = PluginHost(sandbox=sandbox, plugin_lookup=lambda _id: info)
print("ready", flush=True)
host.call_sync(project_id=1, plugin_id=1, config={{}}, method="send", order_no="loop",
               users=[], timeout=120)
"""
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while not _processes_mentioning(module) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_mentioning(module), "the plugin worker never started"
        time.sleep(0.5)  # the plugin is now spinning in its endless loop
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _processes_mentioning(module) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_mentioning(module) == []
    finally:
        service.kill()
        service.wait(timeout=10)
