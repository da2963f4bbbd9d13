"""Where and how plugin code runs: isolation detection, the launch command, and one
sandboxed worker process with a line-based JSON channel and hard timeouts.

Two levels, detected once per process by actually starting a probe worker:

``bubblewrap``
    ``bwrap`` with new mount, PID, network, IPC and UTS namespaces: the root is an
    empty tmpfs holding only read-only binds of the Python installation, the
    system libraries, the runner and the plugin's own directory, plus a private
    size-limited tmpfs work directory. No network at all. When the service runs
    as root the runner drops to a dedicated unprivileged uid before plugin code
    runs (so RLIMIT_NPROC is enforced by the kernel); otherwise bwrap adds a user
    namespace. Killing the worker kills its whole PID namespace.
``rlimits``
    The fallback where bwrap is missing or cannot create namespaces: the same
    runner, resource limits, scrubbed environment, private work directory and
    wall-clock kills, but the plugin shares the service's file system view,
    PID namespace and uid. As root, where the kernel ignores RLIMIT_NPROC, the
    runner forbids new processes with a seccomp filter instead.

In both, the environment is scrubbed (no ``TOUCHGATE_*``, no database URL, no
tokens: only PATH, HOME, TMPDIR, LANG), no file descriptor is inherited besides
the pipes, and every limit in :class:`Limits` is applied by the runner before
the plugin is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

log = logging.getLogger("touchgate.plugins")

RUNNER = Path(__file__).with_name("runner.py")
SandboxKind = Literal["bubblewrap", "rlimits"]

# Inside a bubblewrap sandbox.
BOX_PLUGIN = "/plugin"
BOX_RUNNER = "/touchgate/runner.py"
BOX_WORK = "/work"
MAX_LINE = 32 * 1024 * 1024
STDERR_KEEP = 4096
# Unprivileged uids handed to workers when the service runs as root; one per
# live worker, reserved with a lock file so several service processes on one
# machine never share one (RLIMIT_NPROC counts per uid).
UID_BASE = 1_700_000_000
UID_SLOTS = 65_536
UID_LOCK_DIR = Path("/tmp/touchgate-sandbox-uids")


@dataclass(frozen=True)
class Limits:
    """Per-process limits applied inside the worker (see runner.py)."""

    memory_bytes: int = 512 * 1024 * 1024
    cpu_seconds: int = 300
    open_files: int = 64
    processes: int = 32
    file_bytes: int = 64 * 1024 * 1024
    work_dir_bytes: int = 64 * 1024 * 1024

    def runner_limits(self, extra_processes: int = 0) -> dict[str, int]:
        return {
            "as": self.memory_bytes,
            "cpu": self.cpu_seconds,
            "nofile": self.open_files,
            "nproc": self.processes + extra_processes,
            "fsize": self.file_bytes,
            "core": 0,
        }


class SandboxError(Exception):
    """A worker process misbehaved; the process is dead when this is raised."""


class SandboxTimeout(SandboxError):
    """The worker did not answer in time and was killed."""


class SandboxDied(SandboxError):
    """The worker process exited or was killed by a signal (a crash or a limit)."""

    def __init__(self, message: str, *, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode

    @property
    def by_signal(self) -> bool:
        return self.returncode is not None and self.returncode < 0


class SandboxGarbage(SandboxError):
    """The worker wrote something that is not a protocol message."""


@dataclass(frozen=True)
class Sandbox:
    """How workers are launched on this machine."""

    kind: SandboxKind
    bwrap: str | None = None
    switch_uid: bool = False
    limits: Limits = Limits()

    @property
    def python(self) -> str:
        return sys.executable

    def describe(self) -> str:
        return self.kind

    # -- launch command ---------------------------------------------------------

    def _python_binary(self) -> str:
        # The venv's python is a symlink into the base installation; bind the real one.
        return os.path.realpath(sys.executable)

    def _bwrap_command(self, plugin_dir: Path, runner_args: list[str]) -> list[str]:
        assert self.bwrap is not None
        python = self._python_binary()
        prefix = os.path.realpath(sys.base_prefix)
        binds: list[tuple[str, str]] = [(prefix, prefix)]
        if not python.startswith(prefix + os.sep):
            binds.append((python, python))
        cmd = [
            self.bwrap,
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "plugin",
            "--clearenv",
        ]
        if not self.switch_uid:
            cmd.append("--unshare-user")
        for name, value in scrubbed_env(BOX_WORK).items():
            cmd += ["--setenv", name, value]
        for system_dir in ("/usr", "/lib", "/lib64", "/lib32", "/bin"):
            if os.path.islink(system_dir):
                cmd += ["--symlink", os.readlink(system_dir), system_dir]
            elif os.path.isdir(system_dir):
                cmd += ["--ro-bind", system_dir, system_dir]
        # Local time for the plugin's clock; it is a symlink into /usr/share/zoneinfo.
        cmd += ["--perms", "0755", "--dir", "/etc"]
        cmd += ["--ro-bind-try", "/etc/localtime", "/etc/localtime"]
        made: set[str] = {"/", "/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc"}
        for source, dest in [
            *binds,
            (str(RUNNER), BOX_RUNNER),
            (str(plugin_dir), BOX_PLUGIN),
        ]:
            # bwrap creates missing parents 0700; a dropped uid must traverse them.
            parents = list(reversed(Path(dest).parents))
            for parent in parents:
                if str(parent) not in made:
                    made.add(str(parent))
                    cmd += ["--perms", "0755", "--dir", str(parent)]
            cmd += ["--ro-bind", source, dest]
        cmd += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "0700",
            "--size",
            str(self.limits.work_dir_bytes),
            "--tmpfs",
            BOX_WORK,
            "--chdir",
            BOX_WORK,
            python,
            "-I",
            "-S",
            BOX_RUNNER,
            "--plugin-dir",
            BOX_PLUGIN,
            *runner_args,
        ]
        return cmd

    def launch(self, plugin_dir: Path, entry: str, *, probe: bool = False) -> SandboxProcess:
        """Start a worker for the plugin in ``plugin_dir`` (not yet opened)."""
        return SandboxProcess(self, plugin_dir, entry, probe=probe)


def scrubbed_env(home: str) -> dict[str, str]:
    """The whole environment a plugin sees: nothing of the service's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }


def _processes_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


class _UidLease:
    """An unprivileged uid reserved for one worker (lock held while it lives)."""

    def __init__(self) -> None:
        UID_LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = secrets.randbelow(UID_SLOTS)
        for step in range(UID_SLOTS):
            slot = (start + step) % UID_SLOTS
            path = UID_LOCK_DIR / str(slot)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid = UID_BASE + slot
            self._fd: int | None = fd
            return
        raise SandboxError("no free sandbox uid")

    def kill_all(self) -> None:
        """SIGKILL every process of this uid (stray children of a dead worker)."""
        if _processes_of_uid(self.uid) == 0:
            return
        # kill(-1) from a process running as the uid reaches exactly its processes.
        for _ in range(5):
            subprocess.run(
                ["/bin/sh", "-c", "kill -KILL -1"],
                user=self.uid,
                group=self.uid,
                extra_groups=[],
                env=scrubbed_env("/"),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=10,
            )
            if _processes_of_uid(self.uid) == 0:
                return
            time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SandboxProcess:
    """One worker process and its JSON-lines channel. Not thread-safe: the host
    gives each process to one call at a time."""

    def __init__(self, sandbox: Sandbox, plugin_dir: Path, entry: str, *, probe: bool) -> None:
        self.sandbox = sandbox
        self.plugin_dir = plugin_dir
        self.entry = entry
        self.cpu_seconds = 0.0
        self.calls = 0
        self._buffer = bytearray()
        self._host_dir = Path(tempfile.mkdtemp(prefix="touchgate-plugin-"))
        self._uid: _UidLease | None = None
        self._dead = False
        runner_args = ["--entry", entry]
        extra_processes = 0
        if sandbox.switch_uid:
            self._uid = _UidLease()
            runner_args += ["--uid", str(self._uid.uid)]
        elif sandbox.kind == "rlimits" and os.geteuid() != 0:
            # RLIMIT_NPROC counts every process of the uid; leave room for the others.
            extra_processes = _processes_of_uid(os.geteuid())
        elif sandbox.kind == "rlimits":
            # Root ignores RLIMIT_NPROC: forbid new processes outright (seccomp).
            runner_args.append("--no-fork")
        if sandbox.kind == "rlimits":
            runner_args += ["--parent-pid", str(os.getpid())]
        runner_args += ["--limits", json.dumps(sandbox.limits.runner_limits(extra_processes))]
        if probe:
            runner_args.append("--probe")
        stderr_path = self._host_dir / "stderr.log"
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in kill()
        if sandbox.kind == "bubblewrap":
            cmd = sandbox._bwrap_command(plugin_dir, runner_args)
            cwd = str(self._host_dir)
            env = scrubbed_env(BOX_WORK)
        else:
            work = self._host_dir / "work"
            work.mkdir(mode=0o700)
            cmd = [
                os.path.realpath(sys.executable),
                "-I",
                "-S",
                str(RUNNER),
                "--plugin-dir",
                str(plugin_dir),
                *runner_args,
            ]
            cwd = str(work)
            env = scrubbed_env(str(work))
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            self._cleanup()
            raise SandboxDied(f"could not start the plugin worker: {exc}", returncode=None) from exc
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin.fileno()
        self._stdout = self.process.stdout.fileno()
        os.set_blocking(self._stdin, False)
        os.set_blocking(self._stdout, False)

    @property
    def uid(self) -> int | None:
        """The dedicated uid the plugin runs as, when the service runs as root."""
        return self._uid.uid if self._uid is not None else None

    @property
    def alive(self) -> bool:
        return not self._dead and self.process.poll() is None

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its reply, at most ``timeout`` seconds.

        On any failure the process is killed and a :class:`SandboxError` raised."""
        deadline = time.monotonic() + timeout
        try:
            data = orjson.dumps(message) + b"\n"
        except TypeError as exc:  # the caller's data, not the plugin's fault
            raise SandboxGarbage(f"the request cannot be encoded as JSON: {exc}") from None
        try:
            self._write(data, deadline)
            line = self._read_line(deadline)
        except SandboxError:
            self.kill()
            raise
        try:
            reply = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.kill()
            raise SandboxGarbage(
                f"the plugin worker wrote something that is not JSON: {line[:80]!r}"
            ) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self.kill()
            raise SandboxGarbage("the plugin worker wrote an unexpected message")
        cpu = reply.get("cpu")
        if isinstance(cpu, (int, float)):
            self.cpu_seconds = float(cpu)
        self.calls += 1
        return reply

    def _died(self) -> SandboxDied:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        if self.sandbox.kind == "bubblewrap" and code is not None and 128 < code < 128 + 65:
            code = -(code - 128)  # bwrap reports a child killed by signal N as 128 + N
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            reason = f"the plugin worker was killed by {name}"
            if -code in (signal.SIGKILL, signal.SIGXCPU):
                reason += " (a resource limit: CPU time or memory)"
        elif code is None:
            reason = "the plugin worker closed its channel"
        else:
            reason = f"the plugin worker exited with status {code}"
        tail = self.stderr_tail()
        if tail:
            log.debug("plugin worker stderr (last bytes): %s", tail)
        return SandboxDied(reason, returncode=code)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(self._stdin, selectors.EVENT_WRITE)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxTimeout("the plugin did not read its request in time")
                if not sel.select(remaining):
                    continue
                try:
                    written = os.write(self._stdin, view)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    raise self._died() from None
                view = view[written:]

    def _read_line(self, deadline: float) -> bytes:
        with selectors.DefaultSelector() as sel:
            sel.register(self._stdout, selectors.EVENT_READ)
            while True:
                newline = self._buffer.find(b"\n")
                if newline >= 0:
                    line = bytes(self._buffer[:newline])
                    del self._buffer[: newline + 1]
                    return line
                if len(self._buffer) > MAX_LINE:
                    raise SandboxGarbage("the plugin worker wrote a line longer than 32 MiB")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxTimeout("the plugin did not answer in time")
                if not sel.select(remaining):
                    continue
                try:
                    chunk = os.read(self._stdout, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise self._died()
                self._buffer += chunk

    def stderr_tail(self) -> str:
        try:
            with open(self._host_dir / "stderr.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - STDERR_KEEP))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self, timeout: float = 2.0) -> None:
        """Ask the plugin to close, then make sure the process is gone."""
        if self.alive:
            with contextlib.suppress(SandboxError):
                self.request({"op": "close"}, timeout)
        self.kill()

    def interrupt(self) -> None:
        """Kill the worker from another thread: only signals, so the thread in
        :meth:`request` sees the channel close and cleans up itself."""
        if self._dead:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def kill(self) -> None:
        """Kill the worker and everything it started; idempotent."""
        if self._dead:
            return
        self._dead = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._uid is not None:
            self._uid.kill_all()
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self._stderr.close()
        if self._uid is not None:
            self._uid.release()
        shutil.rmtree(self._host_dir, ignore_errors=True)


def _probe(sandbox: Sandbox) -> bool:
    empty = Path(tempfile.mkdtemp(prefix="touchgate-probe-"))
    try:
        worker = sandbox.launch(empty, "probe:Probe", probe=True)
    except SandboxError as exc:
        log.info("plugin sandbox %s unavailable: %s", sandbox.kind, exc)
        shutil.rmtree(empty, ignore_errors=True)
        return False
    try:
        reply = worker._read_line(time.monotonic() + 15)
        ok = json.loads(reply).get("ok") is True
    except (SandboxError, ValueError) as exc:
        log.info(
            "plugin sandbox %s unavailable: %s %s", sandbox.kind, exc, worker.stderr_tail()[-300:]
        )
        ok = False
    finally:
        worker.kill()
        shutil.rmtree(empty, ignore_errors=True)
    return ok


@functools.lru_cache(maxsize=1)
def detect_sandbox() -> Sandbox:
    """The strongest isolation this machine offers, found by actually trying it."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None and sys.platform.startswith("linux"):
        candidate = Sandbox(kind="bubblewrap", bwrap=bwrap, switch_uid=os.geteuid() == 0)
        if _probe(candidate):
            return candidate
        log.warning(
            "bubblewrap is installed but cannot create namespaces here; plugins run with "
            "resource limits only"
        )
    else:
        log.warning(
            "bubblewrap (bwrap) is not installed; plugins run with resource limits only. "
            "Install it (apt-get install bubblewrap) for namespace isolation."
        )
    return Sandbox(kind="rlimits")


def sandbox_summary(sandbox: Sandbox) -> dict[str, Any]:
    return {"kind": sandbox.kind, "switch_uid": sandbox.switch_uid, **asdict(sandbox.limits)}
