"""Delivery benchmark: Touchgate end to end against the raw HTTP limit.

    .venv/bin/python bench/delivery.py [--users 1000000] [--batch 500] [--concurrency 8]
        [--database-url postgresql://postgres@127.0.0.1:5432/tg_bench] [--profile out.prof]
        [--mode engine|campaign|latency|workers]

(a) the raw limit: a bare aiohttp loop posting pre-built bodies of the same
    size to the same receiver, with the same concurrency;
(b) Touchgate: from ``enqueue_delivery`` of N users (already in the store) to
    every per-user result settled in the database, with a worker running — in
    a child process whose peak RSS is reported.

``--mode campaign`` replaces (b) with what a user sees: ``touchgate serve`` (API,
scheduler and worker in one process) on the same database; a project, a touchpoint
and N users are set up through its API (not measured), then a "send now" campaign to
everyone is published through the API, and the time runs from the publish request
until every result is settled and the campaign's stats agree (succeeded = N,
nothing pending). Peak RSS is the served process's (``VmHWM``).

The receiver (``bench/receiver.py``) runs in its own process and answers
TOU_SUCC for every user. Default database: a temporary SQLite file. A
PostgreSQL URL names a database the benchmark creates and drops.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
ENQUEUE_CHUNK = 10_000  # users per enqueue transaction (the worker starts on the first)


def start_receiver() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "receiver.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise SystemExit(f"receiver did not start: {line!r}")
    return proc, int(line.split()[1])


def sample_entries(start_gid: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "gid": g,
            "temData": {
                "title": "Member birthday coupon",
                "amount": 100,
                "startDate": "2026-12-01",
            },
            "dynamicData": {"memberId": f"M{g:09d}", "phone": f"130{g:08d}"},
        }
        for g in range(start_gid, start_gid + n)
    ]


# --- (a) the raw limit ----------------------------------------------------------------


async def raw_loop(url: str, users: int, batch: int, concurrency: int) -> float:
    """Users per second a bare aiohttp loop reaches with pre-built bodies."""
    from touchgate.delivery.protocol import delivery_body, encode_data_list

    data_list = encode_data_list(sample_entries(1, batch))
    n_requests = (users + batch - 1) // batch
    bodies = [
        delivery_body(uuid.uuid4().hex, data_list, int(time.time() * 1000), "token")
        for _ in range(min(n_requests, 64))
    ]
    headers = {"Content-Type": "application/json; charset=utf-8"}
    queue = iter(range(n_requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one() -> None:
            for i in queue:
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                    doc = orjson.loads(await r.read())
                    assert doc["code"] == 0

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return n_requests * batch / elapsed


# --- setup ---------------------------------------------------------------------------------


def setup_store(url: str, users: int, batch: int, concurrency: int, receiver_url: str) -> int:
    """Create the schema, a project, a touchpoint and N users; returns the touchpoint id."""
    from touchgate.config import Settings
    from touchgate.migrate import upgrade
    from touchgate.models import Project, Touchpoint, User
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(Settings(database_url=url, secret_key="bench"))
    upgrade(runtime.engine)
    with runtime.tx() as s:
        project = Project(name="bench")
        s.add(project)
        s.flush()
        tp = Touchpoint(
            project_id=project.id,
            name="bench",
            type="benefit",
            transport="http",
            url=receiver_url,
            token_encrypted=runtime.secrets.encrypt("token"),
            signing_secret_encrypted=runtime.secrets.encrypt(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            ),
            batch_size=batch,
            timeout_seconds=30,
            retry_schedule=[1, 5, 30],
            max_in_flight=concurrency,
            receipt={"mode": "sync"},
            user_attributes=["memberId", "phone"],
            template_params=[],
        )
        s.add(tp)
        s.flush()
        tp_id, project_id = tp.id, project.id
    table = User.__table__
    step = 20_000
    for start in range(1, users + 1, step):
        with runtime.tx() as s:
            s.execute(
                table.insert(),
                [
                    {
                        "project_id": project_id,
                        "gid": g,
                        "attributes": {
                            "memberId": f"M{g:09d}",
                            "phone": f"130{g:08d}",
                            "city": "Shanghai",
                        },
                    }
                    for g in range(start, min(start + step, users + 1))
                ],
            )
    runtime.close()
    return tp_id


# --- (b) Touchgate end to end (child process) ---------------------------------------------


def touchgate_run(
    url: str,
    tp_id: int,
    users: int,
    concurrency: int,
    profile: str | None,
    verbose: bool,
    out: Any,
) -> None:
    from sqlalchemy import func, select

    from touchgate.config import Settings
    from touchgate.delivery.client import close
    from touchgate.delivery.enqueue import enqueue_delivery
    from touchgate.delivery.worker import Worker
    from touchgate.models import Order, Touchpoint
    from touchgate.runtime import Runtime

    settings = Settings(
        database_url=url,
        secret_key="bench",
        allowed_networks="127.0.0.0/8",
        worker_concurrency=concurrency * 2,
    )
    runtime = Runtime.from_settings(settings)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    progress = [0]

    def enqueue_all() -> None:
        with runtime.tx() as s:
            tp = s.get(Touchpoint, tp_id)
            assert tp is not None
        for start in range(1, users + 1, ENQUEUE_CHUNK):
            progress[0] = start - 1
            with runtime.tx() as s:
                enqueue_delivery(
                    s,
                    touchpoint=tp,
                    gids=range(start, min(start + ENQUEUE_CHUNK, users + 1)),
                    tem_data={
                        "title": "Member birthday coupon",
                        "amount": 100,
                        "startDate": "2026-12-01",
                    },
                )
        progress[0] = users

    def unsettled() -> int:
        with runtime.tx() as s:
            return (
                s.scalar(select(func.count()).select_from(Order).where(Order.state != "done")) or 0
            )

    async def main() -> float:
        stop = asyncio.Event()
        worker = Worker(runtime, idle_seconds=0.05)
        started = time.perf_counter()
        enqueuer = threading.Thread(target=enqueue_all)
        enqueuer.start()
        task = asyncio.create_task(worker.run(stop))
        last = started
        while True:
            await asyncio.sleep(0.25)
            if verbose and time.perf_counter() - last >= 5:
                last = time.perf_counter()
                print(
                    f"    {last - started:6.1f} s: enqueued {progress[0]:,}, "
                    f"settled {worker.settled_users:,}",
                    file=sys.stderr,
                    flush=True,
                )
            if not enqueuer.is_alive() and await asyncio.to_thread(unsettled) == 0:
                break
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await close(runtime)
        if worker.settled_users != users:
            raise SystemExit(f"settled {worker.settled_users} of {users}")
        return elapsed

    elapsed = asyncio.run(main())
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    runtime.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.send({"elapsed": elapsed, "rss_mb": rss_kb / 1024})


# --- (b) campaign mode: publish → settled through a served process -------------------------

CAMPAIGN_PARAMS = [
    {"key": "title", "name": "Title", "type": "text", "required": True},
    {"key": "amount", "name": "Amount", "type": "number", "required": True},
    {"key": "startDate", "name": "Start date", "type": "text", "required": True},
]
# The engine mode's temData: no placeholder, so both modes render the same bodies.
CAMPAIGN_TEM_DATA = {"title": "Member birthday coupon", "amount": 100, "startDate": "2026-12-01"}
ADMIN_TOKEN = "tg-bench-admin-token"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(url: str, data_dir: str, concurrency: int) -> tuple[subprocess.Popen[str], str]:
    """``touchgate serve`` on a free port (API, scheduler and delivery worker)."""
    import os

    port = free_port()
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": url,
        "TOUCHGATE_SECRET_KEY": "bench",
        "TOUCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TOUCHGATE_WORKER_CONCURRENCY": str(concurrency * 2),
        "TOUCHGATE_DATA_DIR": data_dir,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "touchgate.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(data_dir) / "serve.log", "w"),  # noqa: SIM115
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited; see {data_dir}/serve.log")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("serve did not start")
        time.sleep(0.2)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup_campaign(
    api: Any, users: int, batch: int, concurrency: int, receiver_url: str
) -> tuple[int, int, int]:
    """Project, space, catalogue, touchpoint and N users through the API;
    returns (project, space, touchpoint) ids."""

    def ok(r: Any) -> Any:
        if r.status_code >= 300:
            raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
        return r.json()

    pid = ok(api.post("/projects", json={"name": "bench", "approval_required": False}))["id"]
    sid = ok(api.post(f"/projects/{pid}/spaces", json={"name": "bench"}))["id"]
    for key in ("memberId", "phone", "city"):
        ok(
            api.post(
                f"/projects/{pid}/attributes",
                json={"key": key, "name": key, "type": "string", "kind": "attribute"},
            )
        )
    tid = ok(
        api.post(
            f"/projects/{pid}/touchpoints",
            json={
                "name": "bench",
                "type": "benefit",
                "transport": "http",
                "url": receiver_url,
                "token": "token",
                "batch_size": batch,
                "timeout_seconds": 30,
                "retry_schedule": [1, 5, 30],
                "max_in_flight": concurrency,
                "user_attributes": ["memberId", "phone"],
                "template_params": CAMPAIGN_PARAMS,
            },
        )
    )["id"]
    ok(api.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [sid]}))
    step = 200_000
    for start in range(1, users + 1, step):
        body = b"\n".join(
            orjson.dumps(
                {
                    "gid": g,
                    "attributes": {
                        "memberId": f"M{g:09d}",
                        "phone": f"130{g:08d}",
                        "city": "Shanghai",
                    },
                }
            )
            for g in range(start, min(start + step, users + 1))
        )
        ok(
            api.post(
                f"/projects/{pid}/users/import",
                content=body,
                headers={"Content-Type": "application/x-ndjson"},
            )
        )
    return pid, sid, tid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (less noisy than the wall clock on
    a shared machine)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Start the process's peak RSS afresh (Linux: ``clear_refs`` 5), so the set-up
    does not count."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def campaign_run(
    base: str,
    serve_pid: int,
    users: int,
    batch: int,
    concurrency: int,
    receiver_url: str,
    verbose: bool,
) -> tuple[float, bool, float, float]:
    """Publish a "send now" campaign to everyone; seconds until every result is
    settled and the stats agree, and until the first result was."""
    import httpx

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=600) as api:
        t0 = time.perf_counter()
        pid, sid, tid = setup_campaign(api, users, batch, concurrency, receiver_url)
        print(f"    (set up through the API in {time.perf_counter() - t0:.1f} s, not measured)")
        campaigns = f"/projects/{pid}/spaces/{sid}/campaigns"
        body = {
            "name": "Bench: everyone, now",
            "trigger": {"type": "once"},
            "audience": {"match": "all"},
            "participation": {"mode": "once"},
            "anti_disturb": True,
            "strategy": {
                "type": "send",
                "id": "s1",
                "mode": "first_success",
                "timing": {"type": "now"},
                "channels": [{"touchpoint_id": tid, "params": CAMPAIGN_TEM_DATA}],
            },
        }
        r = api.post(campaigns, json=body)
        if r.status_code != 201:
            raise SystemExit(f"campaign: {r.status_code} {r.text}")
        cid = r.json()["id"]
        rss_reset = reset_peak_rss(serve_pid)
        cpu_before = cpu_seconds(serve_pid)
        refused = 0
        started = time.perf_counter()
        for action in ("submit", "publish"):
            r = api.post(f"{campaigns}/{cid}/{action}")
            if r.status_code != 200:
                raise SystemExit(f"{action}: {r.status_code} {r.text}")
            if action == "submit" and r.json()["status"] != "awaiting_publish":
                raise SystemExit(f"submit: {r.json()['status']}")
        last = started
        first_result: float | None = None
        while True:
            time.sleep(0.25)
            r = api.get(f"{campaigns}/{cid}/stats")
            now = time.perf_counter()
            if r.status_code != 200:
                # What a user would see meanwhile (e.g. SQLite busy for 30 s).
                refused += 1
                if verbose:
                    print(f"    {now - started:6.1f} s: stats {r.status_code}", file=sys.stderr)
                continue
            stats = r.json()
            if first_result is None and stats["succeeded"] + stats["failed"] > 0:
                first_result = now - started
            if verbose and now - last >= 5:
                last = now
                print(
                    f"    {now - started:6.1f} s: entered {stats['entered']:,}, sent "
                    f"{stats['sent']:,}, succeeded {stats['succeeded']:,}",
                    file=sys.stderr,
                    flush=True,
                )
            if stats["succeeded"] + stats["failed"] >= users and stats["pending"] == 0:
                break
            if now - started > 3600:
                raise SystemExit(f"not settled after an hour: {stats}")
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(serve_pid) - cpu_before
        if refused:
            print(f"    stats requests refused during the run: {refused}", flush=True)
        if not (stats["targeted"] == stats["entered"] == stats["sent"] == users):
            raise SystemExit(f"stats disagree: {stats}")
        if stats["succeeded"] != users or stats["failed"] != 0:
            raise SystemExit(f"not every user succeeded: {stats}")
        return elapsed, rss_reset, cpu, first_result if first_result is not None else elapsed


def campaign_mode(args: Any, url: str, data_dir: str, receiver_url: str, raw: float) -> None:
    serve, base = start_serve(url, data_dir, args.concurrency)
    try:
        elapsed, rss_reset, cpu, first = campaign_run(
            base, serve.pid, args.users, args.batch, args.concurrency, receiver_url, args.verbose
        )
        rss = peak_rss_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait(60)
    tg = args.users / elapsed
    print(f"(b) campaign publish → settled: {tg:9,.0f} users/s  ({elapsed:.1f} s)", flush=True)
    print(f"    ratio b/a:               {tg / raw:12.2f}")
    print(f"    first result settled:    {first:12.1f} s after the publish (polled every 0.25 s)")
    print(f"    CPU of serve:            {cpu:12.1f} s ({args.users / cpu:,.0f} users per CPU s)")
    during = "from the publish on" if rss_reset else "including the set-up"
    print(f"    peak RSS of serve:       {rss:12.0f} MB ({during})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Touchgate delivery benchmark")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", default=None, help="write a cProfile of (b) here")
    parser.add_argument("--verbose", action="store_true", help="print progress of (b)")
    parser.add_argument(
        "--mode",
        choices=("engine", "campaign", "latency", "workers"),
        default="engine",
        help="engine: enqueue → settled vs the raw loop; campaign: publish through the API → "
        "settled; latency: a 50 ms endpoint vs the in-flight-limit ideal; workers: "
        "PostgreSQL, 2 worker processes vs 1",
    )
    args = parser.parse_args(argv)
    if args.mode == "latency":
        latency_mode(args)
        return
    if args.mode == "workers":
        workers_mode(args)
        return

    tmp = tempfile.TemporaryDirectory(prefix="tg-bench-")
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    pg_name = None
    if url.startswith(("postgresql", "postgres")):
        import psycopg

        base, pg_name = url.rsplit("/", 1)
        admin = base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
    receiver, port = start_receiver()
    receiver_url = f"http://127.0.0.1:{port}/touch"
    try:
        print(
            f"database: {url.split('@')[-1]}  users: {args.users:,}  batch: {args.batch}  "
            f"concurrency: {args.concurrency}",
            flush=True,
        )
        raw = asyncio.run(raw_loop(receiver_url, args.users, args.batch, args.concurrency))
        print(f"(a) raw aiohttp loop:        {raw:12,.0f} users/s", flush=True)
        if args.mode == "campaign":
            campaign_mode(args, url, tmp.name, receiver_url, raw)
            return
        t0 = time.perf_counter()
        tp_id = setup_store(url, args.users, args.batch, args.concurrency, receiver_url)
        print(f"    (store set up in {time.perf_counter() - t0:.1f} s, not measured)", flush=True)
        parent, child = mp.get_context("spawn").Pipe()
        proc = mp.get_context("spawn").Process(
            target=touchgate_run,
            args=(url, tp_id, args.users, args.concurrency, args.profile, args.verbose, child),
        )
        proc.start()
        result = parent.recv()
        proc.join()
        tg = args.users / result["elapsed"]
        print(
            f"(b) Touchgate end to end:    {tg:12,.0f} users/s  ({result['elapsed']:.1f} s)",
            flush=True,
        )
        print(f"    ratio b/a:               {tg / raw:12.2f}")
        print(f"    peak RSS of (b):         {result['rss_mb']:12.0f} MB")
    finally:
        receiver.terminate()
        receiver.wait(10)
        if pg_name:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        tmp.cleanup()


# --- latency and worker modes (a latency-bound endpoint) ----------------------------------

LATENCY_MS = 50.0
TEM_DATA = {"title": "Member birthday coupon", "amount": 100, "startDate": "2026-12-01"}


def start_slow_receiver(delay_ms: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "receiver.py"),
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise SystemExit(f"receiver did not start: {line!r}")
    return proc, int(line.split()[1])


def enqueue_untimed(url: str, tp_id: int, users: int) -> None:
    """Queue N users as orders (not measured: these modes time the worker)."""
    from touchgate.config import Settings
    from touchgate.delivery.enqueue import enqueue_delivery
    from touchgate.models import Touchpoint
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(Settings(database_url=url, secret_key="bench"))
    with runtime.tx() as s:
        tp = s.get(Touchpoint, tp_id)
        assert tp is not None
    for start in range(1, users + 1, ENQUEUE_CHUNK):
        with runtime.tx() as s:
            enqueue_delivery(
                s,
                touchpoint=tp,
                gids=range(start, min(start + ENQUEUE_CHUNK, users + 1)),
                tem_data=TEM_DATA,
            )
    runtime.close()


def unsettled_orders(url: str) -> int:
    from sqlalchemy import func, select

    from touchgate.db import make_engine
    from touchgate.models import Order

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).where(Order.state != "done")) or 0
    finally:
        engine.dispose()


def latency_run(url: str, concurrency: int, profile: str | None, out: Any) -> None:
    """(child process) One in-process worker until every queued order is settled."""
    from sqlalchemy import func, select

    from touchgate.config import Settings
    from touchgate.delivery.client import close
    from touchgate.delivery.worker import Worker
    from touchgate.models import Order
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(
        Settings(
            database_url=url,
            secret_key="bench",
            allowed_networks="127.0.0.0/8",
            worker_concurrency=concurrency,
        )
    )
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    def unsettled() -> int:
        with runtime.tx() as s:
            return (
                s.scalar(select(func.count()).select_from(Order).where(Order.state != "done")) or 0
            )

    async def main() -> tuple[float, int]:
        stop = asyncio.Event()
        worker = Worker(runtime, idle_seconds=0.02)
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        while await asyncio.to_thread(unsettled):
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await close(runtime)
        print(
            f"    worker: {worker.claims} claims, {worker.claim_seconds:.1f} s in them; "
            f"{worker.settlements} settlements, {worker.settle_seconds:.1f} s in them "
            f"({worker.settled_users / max(worker.settle_seconds, 1e-9):,.0f} users/s settled "
            "while settling)",
            file=sys.stderr,
            flush=True,
        )
        return elapsed, worker.settled_users

    elapsed, settled = asyncio.run(main())
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    runtime.close()
    out.send({"elapsed": elapsed, "settled": settled})


def _pg_create(url: str) -> tuple[str, str]:
    import psycopg

    base, name = url.rsplit("/", 1)
    admin = base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin, name


def _pg_drop(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def latency_mode(args: argparse.Namespace) -> None:
    """A receiver that answers after 50 ms: the worker should keep its in-flight
    limit busy, so users/s approach in_flight × batch / 0.05 s."""
    tmp = tempfile.TemporaryDirectory(prefix="tg-bench-")
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    pg = _pg_create(url) if url.startswith(("postgresql", "postgres")) else None
    receiver, port = start_slow_receiver(LATENCY_MS)
    receiver_url = f"http://127.0.0.1:{port}/touch"
    try:
        print(
            f"mode: latency ({LATENCY_MS:g} ms)  database: {url.split('@')[-1]}  "
            f"users: {args.users:,}  batch: {args.batch}  in flight: {args.concurrency}",
            flush=True,
        )
        ideal = args.concurrency * args.batch / (LATENCY_MS / 1000)
        raw = asyncio.run(raw_loop(receiver_url, args.users, args.batch, args.concurrency))
        print(f"(i) in-flight-limit ideal:   {ideal:12,.0f} users/s", flush=True)
        print(f"(a) raw aiohttp loop:        {raw:12,.0f} users/s  ({raw / ideal:.2f} of i)")
        t0 = time.perf_counter()
        tp_id = setup_store(url, args.users, args.batch, args.concurrency, receiver_url)
        enqueue_untimed(url, tp_id, args.users)
        print(f"    (store and queue set up in {time.perf_counter() - t0:.1f} s)", flush=True)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=latency_run, args=(url, args.concurrency, args.profile, child))
        proc.start()
        result = parent.recv()
        proc.join()
        if result["settled"] != args.users:
            raise SystemExit(f"settled {result['settled']} of {args.users}")
        tg = args.users / result["elapsed"]
        print(f"(b) Touchgate worker:        {tg:12,.0f} users/s  ({result['elapsed']:.1f} s)")
        print(f"    ratio b/i:               {tg / ideal:12.2f}   (target >= 0.8)")
        print(f"    ratio b/a:               {tg / raw:12.2f}")
    finally:
        receiver.terminate()
        receiver.wait(10)
        if pg:
            _pg_drop(*pg)
        tmp.cleanup()


def analyze(url: str) -> None:
    """Fresh planner statistics, as autovacuum would have them: both runs plan alike."""
    from sqlalchemy import text

    from touchgate.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def settled_orders(url: str) -> tuple[int, int]:
    """(orders done, orders in all)."""
    from sqlalchemy import func, select

    from touchgate.db import make_engine
    from touchgate.models import Order

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            done = conn.scalar(select(func.count()).where(Order.state == "done")) or 0
            total = conn.scalar(select(func.count()).select_from(Order)) or 0
            return done, total
    finally:
        engine.dispose()


def worker_processes(url: str, n: int, concurrency: int) -> float:
    """Start n ``touchgate worker`` processes on the queued orders; orders settled
    per second from the first settled one to the last (process start-up, which
    is the same for 1 and 2 processes, is left out)."""
    import os
    import signal

    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": url,
        "TOUCHGATE_SECRET_KEY": "bench",
        "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TOUCHGATE_WORKER_CONCURRENCY": str(concurrency),
    }
    before, _ = settled_orders(url)
    procs = [
        subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "touchgate"),
                "worker",
                "--no-scheduler",
                "--id",
                f"bench-{n}-{i}",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    try:
        while True:
            first, total = settled_orders(url)
            if first > before:
                started = time.perf_counter()
                break
            time.sleep(0.01)
        while True:
            done, total = settled_orders(url)
            if done == total:
                return (done - first) / (time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def workers_mode(args: argparse.Namespace) -> None:
    """PostgreSQL, a 50 ms endpoint: 2 ``touchgate worker`` processes vs 1 (each
    process has its own in-flight limit, so two should take about half the time)."""
    url = (
        args.database_url or f"postgresql://postgres@127.0.0.1:5432/tg_bench_{uuid.uuid4().hex[:8]}"
    )
    if not url.startswith(("postgresql", "postgres")):
        raise SystemExit("--mode workers runs on PostgreSQL")
    pg = _pg_create(url)
    receiver, port = start_slow_receiver(LATENCY_MS)
    receiver_url = f"http://127.0.0.1:{port}/touch"
    try:
        print(
            f"mode: workers ({LATENCY_MS:g} ms endpoint)  database: {url.split('@')[-1]}  "
            f"users: {args.users:,}  batch: {args.batch}  in flight per worker: "
            f"{args.concurrency}",
            flush=True,
        )
        tp_id = setup_store(url, args.users, args.batch, args.concurrency, receiver_url)
        rates = {}
        for n in (1, 2):
            enqueue_untimed(url, tp_id, args.users)
            analyze(url)
            orders_per_s = worker_processes(url, n, args.concurrency)
            rates[n] = orders_per_s * args.batch
            print(
                f"({n}) {n} worker process{'es' if n > 1 else ''}:       {rates[n]:12,.0f} users/s",
                flush=True,
            )
        print(f"    2 vs 1:                  {rates[2] / rates[1]:12.2f}x  (target >= 1.6x)")
    finally:
        receiver.terminate()
        receiver.wait(10)
        _pg_drop(*pg)


if __name__ == "__main__":
    main()
