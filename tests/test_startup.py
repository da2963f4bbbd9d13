"""Starting the service: one-line errors for unwritable places, private files, and
the admin token printed only when it was generated."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

EXE = Path(sys.executable).parent / "touchgate"


def run_cli(
    args: list[str], env: dict[str, str], *, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = []
    if user is not None:
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run(
        [*prefix, str(EXE), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def serve_output(tmp: Path, env: dict[str, str]) -> str:
    """Start ``touchgate serve``, wait until it listens, stop it; its output."""
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(EXE), "serve", "--port", str(free_port()), "--no-worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 60
            while "Application startup complete" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return log.read_text()


def test_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = run_cli(["db", "upgrade"], {"TOUCHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/file/x.db"})
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, r.stderr  # one sentence, possibly wrapped by the terminal width
    assert "Cannot create the data directory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_unwritable_data_dir_and_database_are_one_line() -> None:
    nobody = 65534
    # pytest's own temporary directories are closed to other users; this one is not.
    tmp_path = Path(tempfile.mkdtemp(prefix="touchgate-startup-"))
    tmp_path.chmod(0o755)
    try:
        _check_unwritable(tmp_path, nobody)
    finally:
        shutil.rmtree(tmp_path)


def _check_unwritable(tmp_path: Path, nobody: int) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o755)
    env = {"TOUCHGATE_DATABASE_URL": f"sqlite:///{readonly}/touchgate.db"}
    for command in (["serve", "--port", str(free_port())], ["worker"], ["db", "upgrade"]):
        r = run_cli(command, env, user=nobody)
        assert r.returncode == 2, r.stderr
        assert f"The data directory {readonly} is not writable" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2

    # A writable directory with a database file that is not the user's.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    env = {
        "TOUCHGATE_DATABASE_URL": f"sqlite:///{shared}/touchgate.db",
        "TOUCHGATE_SECRET_KEY": "k",
    }
    assert run_cli(["db", "upgrade"], env).returncode == 0
    r = run_cli(["db", "upgrade"], env, user=nobody)
    assert r.returncode == 2
    assert f"The database file {shared}/touchgate.db is not writable" in r.stderr
    assert "Traceback" not in r.stderr


def test_sqlite_files_are_owner_only(tmp_path: Path) -> None:
    os.umask(0o022)
    r = run_cli(["db", "upgrade"], {"TOUCHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db"})
    assert r.returncode == 0, r.stderr
    for name in ("t.db", "touchgate.secret"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_admin_token_is_printed_only_when_generated(tmp_path: Path) -> None:
    env = {"TOUCHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TOUCHGATE_SECRET_KEY": "k"}
    given = serve_output(tmp_path, {**env, "TOUCHGATE_ADMIN_TOKEN": "from-the-env-123"})
    assert "from-the-env-123" not in given
    assert "from the TOUCHGATE_ADMIN_TOKEN variable" in given

    first = serve_output(tmp_path, env)
    token = (tmp_path / "touchgate.admin-token").read_text().strip()
    assert token in first and "generated now" in first
    again = serve_output(tmp_path, env)
    assert token not in again
