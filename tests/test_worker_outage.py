"""The run's database unreachable for ~10 s in the middle of a delivery
(PostgreSQL, a real receiver): no new request starts while it is away, the
answers of requests in flight are kept and settled when it is back (nothing is
sent twice), delivery resumes within seconds, and the log tells the story in
two lines."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from conftest import BACKENDS, PG_ADMIN_DSN, Database, make_settings
from test_engine_support import WorkerThread, add_users, enqueue, make_touchpoint, wait_for
from touchgate.migrate import upgrade
from touchgate.models import Attempt, Order, OrderResult
from touchgate.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
USERS = 4000
BATCH = 50
DELAY_MS = 400
OUTAGE_SECONDS = 10.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="the outage test runs on PostgreSQL"),
]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Runtime, Database]]:
    db = Database("postgresql", tmp_path)
    runtime = Runtime.from_settings(
        make_settings(db.url, tmp_path, allowed_networks="127.0.0.0/8,::1/128")
    )
    upgrade(runtime.engine)
    yield runtime, db
    runtime.close()
    _allow(db.name, True)
    db.drop()


def _allow(name: str, allowed: bool) -> None:
    """Make the test's own database (and only it) reachable or not."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def _start_receiver(record: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "receiver.py"),
            "--port",
            "0",
            "--delay-ms",
            str(DELAY_MS),
            "--record",
            str(record),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return proc, int(line.split()[1])


def _requests(port: int) -> int:
    n: int = httpx.get(f"http://127.0.0.1:{port}/stats").json()["requests"]
    return n


def _settled(runtime: Runtime) -> int:
    with runtime.tx() as s:
        return s.scalar(select(func.count()).select_from(OrderResult)) or 0


def test_an_outage_costs_little_more_than_its_length(
    pg: tuple[Runtime, Database], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, db = pg
    record = tmp_path / "received.txt"
    receiver, port = _start_receiver(record)
    caplog.set_level(logging.INFO, logger="touchgate")
    try:
        tp = make_touchpoint(
            runtime, f"http://127.0.0.1:{port}/touch", batch_size=BATCH, retry_schedule=[1, 1]
        )
        add_users(runtime, tp.project_id, range(1, USERS + 1))
        nos = enqueue(runtime, tp, list(range(1, USERS + 1)))
        worker = WorkerThread(runtime, concurrency=8, lease_seconds=3)
        try:
            wait_for(lambda: _settled(runtime) >= 400, timeout=60, what="delivery under way")
            _allow(db.name, False)
            went_away = time.monotonic()
            # Requests in flight finish (their answers are kept); no new one starts.
            time.sleep(DELAY_MS / 1000 * 2 + 0.5)
            during = _requests(port)
            time.sleep(OUTAGE_SECONDS - (time.monotonic() - went_away))
            assert _requests(port) == during, "requests started while the database was away"
            _allow(db.name, True)
            back = time.monotonic()
            wait_for(lambda: _requests(port) > during, timeout=10, what="delivery to resume")
            resumed = time.monotonic() - back
            wait_for(lambda: _settled(runtime) == USERS, timeout=60, what="every user settled")
            finished = time.monotonic() - back
            time.sleep(0.3)
            requests = _requests(port)
        finally:
            worker.close()
    finally:
        receiver.terminate()
        receiver.wait(10)
    print(f"resumed {resumed:.1f} s after the database came back, finished after {finished:.1f} s")
    assert resumed <= 5

    # Nothing was sent twice: every order reached the receiver exactly once …
    order_nos_of: dict[int, set[str]] = defaultdict(set)
    per_order: Counter[str] = Counter()
    for line in record.read_text().splitlines():
        order_no, gid, _ = line.split()
        order_nos_of[int(gid)].add(order_no)
        per_order[order_no] += 1
    assert len(order_nos_of) == USERS
    assert all(len(v) == 1 for v in order_nos_of.values())
    assert set(per_order) == set(nos)
    assert set(per_order.values()) == {BATCH}
    assert requests == len(nos)
    # … and the attempt log says so: one attempt per order, each a success.
    with runtime.tx() as s:
        attempts = s.execute(
            select(Order.order_no, func.count(Attempt.id))
            .join(Attempt, Attempt.order_id == Order.id)
            .group_by(Order.order_no)
        ).all()
        assert dict(attempts) == dict.fromkeys(nos, 1)
        statuses = s.execute(
            select(OrderResult.status, func.count()).group_by(OrderResult.status)
        ).all()
        assert dict(statuses) == {"TOU_SUCC": USERS}

    # The log: one line when it went away, one when it came back; no tracebacks.
    lines = [r for r in caplog.records if r.name.startswith("touchgate.delivery")]
    away = [r for r in lines if "database unreachable" in r.getMessage()]
    again = [r for r in lines if "database reachable again" in r.getMessage()]
    assert len(away) == 1 and away[0].levelno == logging.WARNING
    assert len(again) == 1 and again[0].levelno == logging.INFO
    assert not [r for r in lines if r.exc_info], [r.getMessage() for r in lines if r.exc_info]


def test_an_idle_worker_says_it_once(
    pg: tuple[Runtime, Database], caplog: pytest.LogCaptureFixture
) -> None:
    """With nothing to send, the heartbeat still notices the outage and its end,
    and says each once (the retries in between stay quiet)."""
    runtime, db = pg
    caplog.set_level(logging.INFO, logger="touchgate")
    worker = WorkerThread(runtime, concurrency=2, lease_seconds=0.6)

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    try:
        wait_for(lambda: said("started") == 1, what="the worker to start")
        time.sleep(0.5)
        _allow(db.name, False)
        wait_for(lambda: said("database unreachable") == 1, timeout=10, what="the warning")
        time.sleep(3)  # several retries and heartbeats fail meanwhile
        _allow(db.name, True)
        wait_for(lambda: said("database reachable again") == 1, timeout=10, what="the return")
        time.sleep(1)
    finally:
        worker.close()
    assert said("database unreachable") == 1
    assert said("database reachable again") == 1
    assert not [r for r in caplog.records if r.exc_info]
