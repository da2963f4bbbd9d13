"""The plugin worker: the program that runs INSIDE the sandbox, one per process.

It is executed as a script by the sandboxed interpreter (``python -I -S
runner.py …``), so it imports nothing but the standard library — the service's
code and dependencies are not even visible in the sandbox.

Start-up, before any plugin code runs:
1. the protocol moves to private duplicates of stdin/stdout; fd 0 becomes
   /dev/null and fd 1 a copy of stderr, so a plugin's ``print`` cannot corrupt
   the channel;
2. when asked (``--uid``), the private work directory is handed to that user and
   the process drops root for it (no capabilities left);
3. resource limits (``--limits`` JSON: address space, CPU seconds, open files,
   processes, file size; core dumps off) that the plugin cannot raise again.

Protocol: one JSON object per line each way. Requests: ``{"op": "check"}``,
``{"op": "open", "config": {…}}``, ``{"op": "call", "method": "send" |
"query_receipts", "order_no": "…", "users": […]}``, ``{"op": "close"}``.
Replies: ``{"ok": true, "result": …, "cpu": seconds}`` or ``{"ok": false,
"error": {"type", "message", "retryable", "limit"}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

PROTOCOL_VERSION = 1


def _setup_fds() -> tuple[int, int]:
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    return proto_in, proto_out


def _drop_privileges(uid: int) -> None:
    with contextlib.suppress(OSError):  # the rlimits sandbox has no private tmpfs to own
        os.chown(os.getcwd(), uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    names = {
        "as": resource.RLIMIT_AS,
        "cpu": resource.RLIMIT_CPU,
        "nofile": resource.RLIMIT_NOFILE,
        "nproc": resource.RLIMIT_NPROC,
        "fsize": resource.RLIMIT_FSIZE,
        "core": resource.RLIMIT_CORE,
    }
    for name, value in limits.items():
        which = names[name]
        soft = hard = int(value)
        if name == "cpu":
            # SIGXCPU at the soft limit, SIGKILL at the hard one.
            hard = soft + 5
        resource.setrlimit(which, (soft, hard))


# seccomp: (audit arch, clone, clone3, fork, vfork) syscall numbers per machine.
_SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, 56, 435, 57, 58),
    "aarch64": (0xC00000B7, 220, 435, -1, -1),
}


def _forbid_new_processes() -> bool:
    """Refuse process creation (threads stay allowed) with a seccomp filter.

    Used where RLIMIT_NPROC means nothing (the plugin runs as root without
    namespaces): fork, vfork and clone without CLONE_THREAD fail with EAGAIN;
    clone3 answers ENOSYS so the C library falls back to clone, whose flags a
    filter can read. Returns False where the machine is not supported."""
    import ctypes
    import platform
    import struct

    arch = _SECCOMP_ARCHES.get(platform.machine())
    if arch is None:
        return False
    audit_arch, nr_clone, nr_clone3, nr_fork, nr_vfork = arch
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    errno_eagain, errno_enosys = 0x00050000 | 11, 0x00050000 | 38
    clone_thread = 0x00010000
    program = [
        (ld_w_abs, 0, 0, 4),  # A = arch
        (jeq_k, 1, 0, audit_arch),
        (ret_k, 0, 0, kill),  # another ABI (e.g. x32/i386 entry points): refuse
        (ld_w_abs, 0, 0, 0),  # A = syscall number
        (jge_k, 0, 1, 0x40000000),  # the x32 ABI's numbers: refuse
        (ret_k, 0, 0, kill),
        (jeq_k, 0, 1, nr_clone3),
        (ret_k, 0, 0, errno_enosys),
        (jeq_k, 0, 1, nr_fork & 0xFFFFFFFF),
        (ret_k, 0, 0, errno_eagain),
        (jeq_k, 0, 1, nr_vfork & 0xFFFFFFFF),
        (ret_k, 0, 0, errno_eagain),
        (jeq_k, 0, 3, nr_clone),
        (ld_w_abs, 0, 0, 16),  # A = low 32 bits of clone's flags
        (jset_k, 1, 0, clone_thread),
        (ret_k, 0, 0, errno_eagain),
        (ret_k, 0, 0, allow),
    ]
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(raw)

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        return False
    return bool(libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(prog), 0, 0) == 0)


def _die_with_parent(parent_pid: int) -> bool:
    """Be killed when the service goes away (bubblewrap does this itself)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    return os.getppid() == parent_pid  # it may have died before the prctl


class _Channel:
    def __init__(self, fd_in: int, fd_out: int) -> None:
        self._in = os.fdopen(fd_in, "rb", buffering=1 << 16)
        self._out = fd_out

    def read(self) -> dict[str, object] | None:
        line = self._in.readline()
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("a request must be a JSON object")
        return message

    def write(self, message: dict[str, object]) -> None:
        data = (json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._out, view)
            view = view[written:]


def _error(exc: BaseException) -> dict[str, object]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc) or type(exc).__name__
    return {
        "ok": False,
        "error": {
            "type": type(exc).__name__,
            "message": message[:2000],
            "retryable": "RetryableError" in names,
            "limit": isinstance(exc, MemoryError),
        },
    }


def _load_entry(entry: str) -> type:
    import importlib

    module_name, _, class_name = entry.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise LookupError(f"module {module_name!r} has no attribute {class_name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"{entry} is not a class")
    if not callable(getattr(cls, "send", None)):
        raise TypeError(f"class {class_name} has no send() method")
    return cls


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


def serve(channel: _Channel, entry: str) -> int:
    instance: object | None = None
    while True:
        try:
            request = channel.read()
        except ValueError as exc:
            channel.write({"ok": False, "error": {"type": "ProtocolError", "message": str(exc)}})
            return 2
        if request is None:
            return 0
        op = request.get("op")
        try:
            if op == "check":
                _load_entry(entry)
                channel.write({"ok": True, "result": None})
                return 0
            if op == "open":
                cls = _load_entry(entry)
                instance = cls()
                opener = getattr(instance, "open", None)
                if callable(opener):
                    opener(request.get("config") or {})
                channel.write({"ok": True, "result": None, "cpu": _cpu_seconds()})
            elif op == "call":
                if instance is None:
                    raise RuntimeError("the plugin was not opened")
                method = request.get("method")
                if method not in ("send", "query_receipts"):
                    raise ValueError(f"unknown method {method!r}")
                function = getattr(instance, str(method), None)
                if not callable(function):
                    raise AttributeError(f"the plugin has no {method}() method")
                if method == "send":
                    result = function(request.get("order_no"), request.get("users") or [])
                else:
                    result = function(request.get("order_no"))
                try:
                    channel.write({"ok": True, "result": result, "cpu": _cpu_seconds()})
                except (TypeError, ValueError) as exc:
                    channel.write(
                        {
                            "ok": False,
                            "error": {
                                "type": "InvalidResult",
                                "message": f"the result is not JSON: {exc}"[:2000],
                                "retryable": False,
                                "limit": False,
                            },
                        }
                    )
            elif op == "close":
                closer = getattr(instance, "close", None)
                if callable(closer):
                    closer()
                channel.write({"ok": True, "result": None})
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
        except BaseException as exc:  # the plugin's failure is reported, not fatal
            if isinstance(exc, KeyboardInterrupt):
                raise
            channel.write(_error(exc))
            if op == "check" or isinstance(exc, MemoryError):
                return 1


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="touchgate-plugin-runner")
    parser.add_argument("--plugin-dir", required=True)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--limits", default="{}")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--no-fork", action="store_true")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)

    proto_in, proto_out = _setup_fds()
    channel = _Channel(proto_in, proto_out)
    if args.uid is not None:
        _drop_privileges(args.uid)
    _apply_limits(json.loads(args.limits))
    if args.parent_pid is not None and not _die_with_parent(args.parent_pid):
        return 0
    if args.no_fork and not _forbid_new_processes():
        channel.write(
            {
                "ok": False,
                "error": {
                    "type": "SandboxError",
                    "message": "process creation cannot be forbidden on this machine",
                },
            }
        )
        return 3
    sys.dont_write_bytecode = True
    if args.probe:
        channel.write({"ok": True, "result": {"uid": os.getuid(), "protocol": PROTOCOL_VERSION}})
        return 0
    sys.path.insert(0, args.plugin_dir)
    return serve(channel, args.entry)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
