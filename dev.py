#!/usr/bin/env python3
"""Set up and run Touchgate with nothing but Python 3.11.

    python3 dev.py demo    install into .venv, then serve on SQLite with a demo project
    python3 dev.py test    install into .venv, then run every check (ruff, mypy, pytest)
    python3 dev.py setup   install only

Dependencies come from requirements.lock (exact versions, the ones the tests ran with).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCK = ROOT / "requirements.lock"
UV_VERSION = "0.13.9"


def run(*cmd: str | Path, check: bool = True, **kw: object) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)  # type: ignore[arg-type]
    if check and rc != 0:
        sys.exit(rc)
    return rc


def setup() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Touchgate needs Python 3.11; this is {sys.version.split()[0]}.")
    if not (BIN / "python").exists():
        print(f"Creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".touchgate-lock"
    lock_text = LOCK.read_text() + (ROOT / "pyproject.toml").read_text()
    if stamp.exists() and stamp.read_text() == lock_text:
        return
    if not (BIN / "uv").exists():
        run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
    run(BIN / "uv", "pip", "sync", "--quiet", "--python", BIN / "python", LOCK, env=env)
    run(BIN / "uv", "pip", "install", "--quiet", "--python", BIN / "python", "--no-deps",
        "-e", ".", env=env)
    stamp.write_text(lock_text)


def ensure_postgres() -> None:
    """Start the local PostgreSQL cluster when it is installed but not running."""
    if shutil.which("pg_isready") is None:
        return
    if subprocess.call(["pg_isready", "-q", "-h", "127.0.0.1"]) == 0:
        return
    clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if clusters and shutil.which("pg_ctlcluster"):
        run("pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start",
            check=False)


def ensure_chromium() -> None:
    """The console's browser tests drive Debian's Chromium."""
    if Path("/usr/bin/chromium").exists() or os.environ.get("TOUCHGATE_SKIP_BROWSER"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        run("apt-get", "update", "-qq", check=False)
        run("apt-get", "install", "-y", "-qq", "chromium", "fonts-noto-cjk", check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_bubblewrap() -> None:
    """Plugins run in bubblewrap namespaces where it works (resource limits only otherwise)."""
    if shutil.which("bwrap") or os.environ.get("TOUCHGATE_SKIP_BWRAP"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        run("apt-get", "update", "-qq", check=False)
        run("apt-get", "install", "-y", "-qq", "bubblewrap", check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def test(args: list[str]) -> None:
    setup()
    ensure_postgres()
    ensure_chromium()
    ensure_bubblewrap()
    run(BIN / "ruff", "check", "src", "tests", "bench", "examples")
    run(BIN / "ruff", "format", "--check", "src", "tests", "bench", "examples")
    run(BIN / "mypy")
    run(BIN / "pytest", *args)


def demo(args: list[str]) -> None:
    setup()
    os.execv(BIN / "touchgate", [str(BIN / "touchgate"), "serve", "--demo", *args])


def main() -> None:
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "setup":
        setup()
    elif cmd == "test":
        test(args)
    elif cmd == "demo":
        demo(args)
    else:
        print(__doc__)
        sys.exit(0 if cmd == "help" else 2)


if __name__ == "__main__":
    main()
