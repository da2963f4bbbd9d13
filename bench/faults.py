"""Faults benchmark: what worker kills and database outages cost a delivery.

    .venv/bin/python bench/faults.py [--users 100000] [--batch 100] [--delay-ms 300]
        [--kills 5] [--outages 2] [--outage-seconds 10]

PostgreSQL (a database the script creates and drops), two ``touchgate worker``
processes, ``bench/receiver.py`` answering after ``--delay-ms`` and recording
every user it answered. Three runs of the same N users, each under new orders
and a receiver of its own:

1. undisturbed;
2. ``--kills`` times, one worker SIGKILLed (and started again at once, as a
   supervisor would), every 2 s;
3. ``--outages`` times the run's database unreachable for ``--outage-seconds``
   (``ALTER DATABASE … WITH ALLOW_CONNECTIONS false`` and its backends
   terminated; the server keeps running), 2 s apart.

Each run is timed from the enqueue to the last user settled, and checked: every
user ``TOU_SUCC`` exactly once, and the receiver never saw a gid under two
orderNos. Prints the three times and what the faults cost.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from delivery import TEM_DATA, setup_store  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def start_receiver(delay_ms: float, record: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "receiver.py"),
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
            "--record",
            str(record),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise SystemExit(f"receiver did not start: {line!r}")
    return proc, int(line.split()[1])


class Workers:
    """Two ``touchgate worker`` processes, logs appended to one file each."""

    def __init__(self, url: str, concurrency: int, logs: Path) -> None:
        self.env = {
            **os.environ,
            "TOUCHGATE_DATABASE_URL": url,
            "TOUCHGATE_SECRET_KEY": "bench",
            "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
            "TOUCHGATE_LOG_LEVEL": "INFO",
        }
        self.concurrency = concurrency
        self.logs = logs
        self.started = 0
        self.procs = [self._start(), self._start()]

    def _start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        name = f"faults-{self.started}"
        with (self.logs / f"{name}.log").open("ab") as out:
            return subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "touchgate"),
                    "worker",
                    "--no-scheduler",
                    "--id",
                    name,
                    "--concurrency",
                    str(self.concurrency),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill_one(self, i: int) -> None:
        victim = self.procs[i % 2]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.procs[i % 2] = self._start()

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def set_reachable(name: str, reachable: bool) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if reachable else "false"}'
        )
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def wait_connected(name: str, n: int, timeout: float = 60) -> None:
    """Until n processes hold connections to the database (the workers are up)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(DISTINCT client_port) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            ).fetchone()
            if row and row[0] >= n:
                return
            time.sleep(0.1)
    raise SystemExit("the workers did not connect")


def new_touchpoint(url: str, template_tp: int, receiver_url: str, name: str) -> int:
    """A copy of the benchmark touchpoint pointing at this run's receiver."""
    from touchgate.config import Settings
    from touchgate.models import Touchpoint
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(Settings(database_url=url, secret_key="bench"))
    with runtime.tx() as s:
        base = s.get(Touchpoint, template_tp)
        assert base is not None
        tp = Touchpoint(
            **{
                c.key: getattr(base, c.key)
                for c in Touchpoint.__table__.columns
                if c.key not in ("id", "name", "url", "created_at", "updated_at")
            },
            name=name,
            url=receiver_url,
        )
        s.add(tp)
        s.flush()
        tp_id = tp.id
    runtime.close()
    return tp_id


def enqueue(url: str, tp_id: int, users: int) -> list[str]:
    from touchgate.config import Settings
    from touchgate.delivery.enqueue import enqueue_delivery
    from touchgate.models import Touchpoint
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(Settings(database_url=url, secret_key="bench"))
    nos: list[str] = []
    with runtime.tx() as s:
        tp = s.get(Touchpoint, tp_id)
        assert tp is not None
    for start in range(1, users + 1, 10_000):
        with runtime.tx() as s:
            res = enqueue_delivery(
                s,
                touchpoint=tp,
                gids=range(start, min(start + 10_000, users + 1)),
                tem_data=TEM_DATA,
            )
            nos.extend(res.order_nos)
    runtime.close()
    return nos


def settled_users(dsn: str, tp_id: int) -> int | None:
    """Users of this touchpoint's orders with a final result (None: database away)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM order_results u JOIN orders o ON o.id = u.order_id "
                "WHERE o.touchpoint_id = %s",
                (tp_id,),
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return None


def check(dsn: str, tp_id: int, users: int, record: Path) -> str:
    with psycopg.connect(dsn) as conn:
        statuses = dict(
            conn.execute(
                "SELECT u.status, count(*) FROM order_results u JOIN orders o ON o.id = u.order_id "
                "WHERE o.touchpoint_id = %s GROUP BY u.status",
                (tp_id,),
            ).fetchall()
        )
        distinct = conn.execute(
            "SELECT count(DISTINCT u.gid) FROM order_results u JOIN orders o ON o.id = u.order_id "
            "WHERE o.touchpoint_id = %s",
            (tp_id,),
        ).fetchone()
    problems = []
    if statuses != {"TOU_SUCC": users} or distinct is None or distinct[0] != users:
        problems.append(f"results {statuses}, {distinct and distinct[0]} distinct users")
    order_nos_of: dict[int, set[str]] = defaultdict(set)
    answers = 0
    for line in record.read_text().splitlines():
        order_no, gid, _ = line.split()
        order_nos_of[int(gid)].add(order_no)
        answers += 1
    doubled = sum(1 for v in order_nos_of.values() if len(v) > 1)
    if len(order_nos_of) != users or doubled:
        problems.append(f"receiver saw {len(order_nos_of)} users, {doubled} under two orderNos")
    resent = answers - users
    verdict = "ok" if not problems else "FAILED: " + "; ".join(problems)
    return f"{verdict} (every user TOU_SUCC once; answers re-sent: {resent})"


def run(
    label: str,
    url: str,
    dsn: str,
    template_tp: int,
    args: argparse.Namespace,
    workdir: Path,
    disturb: Callable[[Workers, threading.Event], None] | None,
) -> float:
    record = workdir / f"{label}.received"
    receiver, port = start_receiver(args.delay_ms, record)
    tp_id = new_touchpoint(url, template_tp, f"http://127.0.0.1:{port}/touch", label[:15])
    logs = workdir / label
    logs.mkdir()
    workers = Workers(url, args.concurrency, logs)
    # The workers start (imports, connections): not part of the figure.
    wait_connected(url.rsplit("/", 1)[1], 2)
    done = threading.Event()
    try:
        started = time.perf_counter()
        enqueue(url, tp_id, args.users)
        if args.verbose:
            print(f"{'':12s} enqueued in {time.perf_counter() - started:.1f} s", flush=True)
        thread = None
        if disturb is not None:
            thread = threading.Thread(target=disturb, args=(workers, done), daemon=True)
            thread.start()
        while True:
            n = settled_users(dsn, tp_id)
            if n == args.users:
                break
            if args.verbose and int(time.perf_counter() - started) % 2 == 0:
                print(f"{'':12s} {time.perf_counter() - started:5.1f} s: {n} settled", flush=True)
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        done.set()
        if thread is not None:
            thread.join()
    finally:
        done.set()
        workers.stop()
        receiver.terminate()
        receiver.wait(10)
    print(f"{label:12s} {elapsed:7.1f} s   {check(dsn, tp_id, args.users, record)}", flush=True)
    print(f"{'':12s} worker logs: {logs}", flush=True)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Touchgate faults benchmark (PostgreSQL)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="in flight per worker")
    parser.add_argument("--delay-ms", type=float, default=300.0, help="the receiver's latency")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--outages", type=int, default=2)
    parser.add_argument("--outage-seconds", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="print progress")
    parser.add_argument("--workdir", default=None, help="keep logs and records here")
    args = parser.parse_args(argv)

    name = f"tg_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    url = dsn
    workdir = Path(args.workdir or f"/tmp/{name}")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"PostgreSQL, {args.users:,} users, batch {args.batch}, 2 workers × "
            f"{args.concurrency} in flight, receiver {args.delay_ms:g} ms",
            flush=True,
        )
        template = setup_store(url, args.users, args.batch, args.concurrency, "http://x/")

        def kills(workers: Workers, done: threading.Event) -> None:
            for i in range(args.kills):
                if done.wait(2.0):
                    print(f"{'':12s} (the run ended after {i} kill(s))", flush=True)
                    return
                workers.kill_one(i)

        def outages(workers: Workers, done: threading.Event) -> None:
            for i in range(args.outages):
                if done.wait(2.0):
                    print(f"{'':12s} (the run ended after {i} outage(s))", flush=True)
                    return
                set_reachable(name, False)
                time.sleep(args.outage_seconds)
                set_reachable(name, True)

        base = run("undisturbed", url, dsn, template, args, workdir, None)
        killed = run(f"{args.kills} kills", url, dsn, template, args, workdir, kills)
        out = run(f"{args.outages} outages", url, dsn, template, args, workdir, outages)
        print(
            f"kills cost {(killed - base) / max(1, args.kills):.1f} s each; outages cost "
            f"{out - base:.1f} s for {args.outages * args.outage_seconds:g} s of downtime"
        )
    finally:
        set_reachable(name, True)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
