"""``touchgate serve --demo`` as a user runs it: stopping the service (Ctrl-C or
SIGTERM) also stops the sample receiver it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port

TOUCHGATE = Path(sys.executable).with_name("touchgate")


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped: its state in /proc is "Z".
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _wait_for(check: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_demo_stops_its_receiver(tmp_path: Path, stop_with: signal.Signals) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'touchgate.db'}",
        "TOUCHGATE_ADMIN_TOKEN": "demo-test-token",
    }
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(TOUCHGATE), "serve", "--demo", "--port", str(port), "--no-worker"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        config = tmp_path / "touchgate.demo-receiver.json"
        _wait_for(config.exists, "the receiver's configuration")
        receiver_port = int(json.loads(config.read_text())["port"])
        _wait_for(lambda: _answers(receiver_port), "the receiver")

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(up, "the service")
        children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children").read_text().split()
        assert len(children) == 1, children
        receiver_pid = int(children[0])

        serve.send_signal(stop_with)
        serve.wait(timeout=60)
        _wait_for(lambda: not _alive(receiver_pid), "the receiver to stop", 30)
        assert not _answers(receiver_port)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output, output
