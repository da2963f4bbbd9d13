"""SIGKILL a ``touchgate worker`` mid-delivery: the other worker takes its orders
over within seconds (short leases, renewed by a heartbeat while a worker lives),
nothing is lost, nothing is recorded successful twice (PostgreSQL, real
processes, a real receiver)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from conftest import BACKENDS, Database, make_settings
from test_engine_support import enqueue, make_touchpoint, wait_for
from touchgate.migrate import upgrade
from touchgate.models import Event, Order, OrderResult, User
from touchgate.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
USERS = 20_000
BATCH = 100
LEASE_SECONDS = 3
CONCURRENCY = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="the kill test runs on PostgreSQL"),
]


@pytest.fixture
def pg_runtime(tmp_path: Path) -> Iterator[Runtime]:
    db = Database("postgresql", tmp_path)
    runtime = Runtime.from_settings(
        make_settings(db.url, tmp_path, allowed_networks="127.0.0.0/8,::1/128")
    )
    upgrade(runtime.engine)
    yield runtime
    runtime.close()
    db.drop()


def _start_receiver(record: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "receiver.py"),
            "--port",
            "0",
            "--delay-ms",
            "200",
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


def _start_worker(runtime: Runtime, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": runtime.settings.database_url,
        "TOUCHGATE_SECRET_KEY": runtime.settings.secret_key or "",
        "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "touchgate"),
                "worker",
                "--id",
                name,
                "--concurrency",
                str(CONCURRENCY),
                "--lease-seconds",
                str(LEASE_SECONDS),
                "--no-scheduler",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _settled(runtime: Runtime) -> int:
    with runtime.tx() as s:
        return s.scalar(select(func.count()).select_from(OrderResult)) or 0


def test_sigkill_loses_nothing_and_never_doubles(pg_runtime: Runtime, tmp_path: Path) -> None:
    runtime = pg_runtime
    record = tmp_path / "received.txt"
    receiver, port = _start_receiver(record)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        tp = make_touchpoint(
            runtime, f"http://127.0.0.1:{port}/touch", batch_size=BATCH, retry_schedule=[1, 1, 1]
        )
        with runtime.tx() as s:
            s.execute(
                User.__table__.insert(),
                [
                    {"project_id": tp.project_id, "gid": g, "attributes": {"phone": str(g)}}
                    for g in range(1, USERS + 1)
                ],
            )
        nos = enqueue(runtime, tp, list(range(1, USERS + 1)), tem_data={"title": "t", "amount": 1})
        assert len(nos) == USERS // BATCH

        # A slow endpoint (200 ms per request) keeps the run going for seconds.
        survivor = _start_worker(runtime, "survivor", tmp_path / "survivor.log")
        workers.append(survivor)
        first = _start_worker(runtime, "doomed", tmp_path / "worker-1.log")
        workers.append(first)
        wait_for(lambda: _settled(runtime) >= 3000, timeout=120, what="the workers to work")

        def doomed_holds_orders() -> bool:
            with runtime.tx() as s:
                return bool(
                    s.scalars(
                        select(Order.id).where(Order.lease_owner == "doomed", Order.state != "done")
                    ).first()
                )

        # Kill it while it is sending (it starts after the survivor and may have
        # had nothing yet when the first 3,000 were settled).
        wait_for(doomed_holds_orders, timeout=60, what="the doomed worker to hold orders")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        with runtime.tx() as s:
            orphaned = s.scalars(
                select(Order.id).where(Order.lease_owner == "doomed", Order.state != "done")
            ).all()
        settled_at_kill = _settled(runtime)
        assert 3000 <= settled_at_kill < USERS
        assert orphaned, "the kill should leave leased, unsettled orders behind"
        # It held only what it was sending: no parked orders behind its in-flight limit.
        assert len(orphaned) <= CONCURRENCY

        def orphans_settled() -> bool:
            with runtime.tx() as s:
                left = s.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.id.in_(orphaned), Order.state != "done")
                )
                return left == 0

        # The lease runs out within LEASE_SECONDS of the last heartbeat, and the
        # survivor picks the orders up among the rest of the run (about 4 s of
        # work for it alone).
        wait_for(orphans_settled, timeout=LEASE_SECONDS + 10, what="the orphans re-sent")
        orphans_done = time.monotonic() - killed_at
        wait_for(lambda: _settled(runtime) == USERS, timeout=60, what="every user settled")
        all_done = time.monotonic() - killed_at
        print(
            f"{len(orphaned)} orphaned order(s) settled {orphans_done:.1f} s after the kill, "
            f"the whole run {all_done:.1f} s after it"
        )
        assert all_done <= LEASE_SECONDS + 10
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(10)

    with runtime.tx() as s:
        statuses = s.execute(
            select(OrderResult.status, func.count()).group_by(OrderResult.status)
        ).all()
        assert dict(statuses) == {"TOU_SUCC": USERS}
        rows = s.scalar(select(func.count()).select_from(OrderResult))
        assert rows == USERS
        assert s.scalar(select(func.count()).select_from(Order).where(Order.state != "done")) == 0
        events = s.execute(
            select(func.count(), func.count(func.distinct(Event.gid))).where(
                Event.name == "$ma_channel_touch"
            )
        ).one()
        assert tuple(events) == (USERS, USERS)  # one event per user, none twice
        heirs = s.execute(
            text("SELECT count(*) FROM orders WHERE state = 'done' AND attempt_count = 1")
        ).scalar()
        assert heirs == USERS // BATCH

    # The receiver's view: every user answered TOU_SUCC under exactly one orderNo
    # (resends after the crash reuse the same orderNo, the idempotency key).
    order_nos_of: dict[int, set[str]] = defaultdict(set)
    answered = 0
    for line in record.read_text().splitlines():
        order_no, gid, status = line.split()
        assert status == "TOU_SUCC"
        order_nos_of[int(gid)].add(order_no)
        answered += 1
    assert len(order_nos_of) == USERS
    assert all(len(v) == 1 for v in order_nos_of.values())
    assert {n for v in order_nos_of.values() for n in v} == set(nos)
    assert answered >= USERS
