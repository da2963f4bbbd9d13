"""``touchgate serve`` and ``touchgate worker`` as an operator runs them: they log
in the configured format (time, level, logger; JSON lines on request; no secret),
and stop within a few seconds of SIGTERM — even with a request stuck on a lock
in the database, whose query does not outlive the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from conftest import BACKENDS, Database, free_port
from touchgate.db import make_engine
from touchgate.migrate import upgrade

TOUCHGATE = Path(sys.executable).with_name("touchgate")
TOKEN = "shutdown-test-admin-token"
SECRET = "shutdown-test-secret-key"


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = Database(request.param, tmp_path)
    engine = make_engine(db.url)
    upgrade(engine)
    engine.dispose()
    yield db
    db.drop()


def _env(db: Database, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": db.url,
        "TOUCHGATE_ADMIN_TOKEN": TOKEN,
        "TOUCHGATE_SECRET_KEY": SECRET,
        "TOUCHGATE_SHUTDOWN_SECONDS": "3",
        **extra,
    }


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    err = cwd / f"{args[0]}.stderr"
    proc = subprocess.Popen(
        [str(TOUCHGATE), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
    )
    return proc, err


def _wait_for(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _stop(proc: subprocess.Popen[bytes], seconds: float = 10) -> float:
    """SIGTERM, then how long the process took to exit (fails past ``seconds``)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {seconds} s after SIGTERM")
    return time.monotonic() - started


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The log records of a JSON-format process (banner lines are not records)."""
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(orjson.loads(line))
    return records


def test_serve_logs_json_and_stops_on_sigterm(database: Database, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve, err = _start(
        ["serve", "--port", str(port)], tmp_path, _env(database, TOUCHGATE_LOG_FORMAT="json")
    )
    try:
        _wait_for(lambda: _up(url), "the service")
        r = httpx.get(url + "/api/v1/projects", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        took = _stop(serve)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode in (0, 128 + signal.SIGTERM), err.read_text()
    assert took < 10
    text = err.read_text()
    assert TOKEN not in text and SECRET not in text
    records = _json_lines(err)
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
    loggers = {r["logger"] for r in records}
    assert "uvicorn.access" in loggers, loggers  # uvicorn's lines follow the format
    assert any("GET /api/v1/projects" in r["message"] for r in records)
    assert any(r["logger"] == "touchgate.delivery.worker" for r in records), loggers


def test_worker_logs_text_and_stops_on_sigterm(database: Database, tmp_path: Path) -> None:
    worker, err = _start(["worker", "--id", "w-shutdown"], tmp_path, _env(database))
    try:
        _wait_for(lambda: "started" in err.read_text(), "the worker to start", 30)
        took = _stop(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err.read_text()
    assert took < 10
    lines = [line for line in err.read_text().splitlines() if " touchgate." in line]
    assert lines, err.read_text()
    # "2026-11-29T23:05:01.123Z INFO touchgate.delivery.worker: …"
    stamp, level, logger = lines[0].split(" ")[:3]
    assert stamp.endswith("Z") and "T" in stamp
    assert level in ("DEBUG", "INFO", "WARNING", "ERROR")
    assert logger.startswith("touchgate.") and logger.endswith(":")
    assert any("w-shutdown stopped" in line for line in lines), lines
    assert "Traceback" not in err.read_text()


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs PostgreSQL")
def test_serve_stops_with_a_request_stuck_in_the_database(
    database: Database, tmp_path: Path
) -> None:
    """A request waiting on a lock neither keeps ``serve`` alive nor leaves its query
    running in PostgreSQL after the process is gone."""
    if database.backend != "postgresql":
        pytest.skip("a lock held in PostgreSQL")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve, err = _start(
        ["serve", "--port", str(port), "--no-worker"],
        tmp_path,
        _env(database, TOUCHGATE_API_STATEMENT_TIMEOUT="120"),
    )
    holder = psycopg.connect(database.url)
    try:
        _wait_for(lambda: _up(url), "the service")
        holder.execute("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE")
        answers: list[int] = []

        def stuck() -> None:
            try:
                r = httpx.get(
                    url + "/api/v1/projects",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=60,
                )
                answers.append(r.status_code)
            except httpx.TransportError:
                answers.append(0)

        request = threading.Thread(target=stuck, daemon=True)
        request.start()

        def waiting() -> bool:
            row = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type"
                " = 'Lock'",
                (database.name,),
            ).fetchone()
            return bool(row and row[0])

        _wait_for(waiting, "the request to wait on the lock", 20)
        took = _stop(serve)
        assert took < 10, err.read_text()
        # PostgreSQL notices its client is gone and ends the query.
        _wait_for(lambda: not waiting(), "the stuck query to end", 10)
        request.join(timeout=10)
    finally:
        holder.close()
        if serve.poll() is None:
            serve.kill()
