"""User import benchmark: the CLI and the API against a raw bulk load, on both databases.

    .venv/bin/python bench/import.py [--rows 1000000] [--format ndjson|csv]
        [--databases sqlite,postgresql] [--pg-server postgresql://postgres@127.0.0.1:5432]

Generates one file of ``--rows`` lines (about five attributes a user: two
strings, a number, a boolean and a date; one line in ten updates a user seen
earlier, in the same chunk or an earlier one, some with a null that removes a
value), then, for each database, on a fresh database each time (PostgreSQL ones
are created and dropped):

(a) the raw limit: the same lines bulk-loaded with no validation into a plain
    table of one JSON column, with the same driver (SQLite: one executemany per
    chunk; PostgreSQL: COPY into jsonb), in chunks of the importer's size;
(b) ``touchgate import users FILE`` as a process of its own, with its peak RSS:
    rows/s over the import as the command times it (from opening the project to
    the last commit), and the whole process's time (Python start-up and imports
    included) shown beside it;
(c) ``POST /api/v1/projects/{pid}/users/import`` streaming the file to a
    ``touchgate serve`` process, timed from the first byte sent to the answer,
    with the server's peak RSS.

Prints rows/s for each, the ratio of (b) and (c) to (a), and checks every
count in the answers against the file. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
TOUCHGATE = Path(sys.executable).parent / "touchgate"
ADMIN_TOKEN = "bench-import-admin-token"
SECRET_KEY = "bench-import"
CATALOGUE = [
    ("memberId", "string"),
    ("city", "string"),
    ("level", "number"),
    ("vip", "boolean"),
    ("birthday", "date"),
]
CITIES = ["Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Hangzhou", "成都", "武汉", "São Paulo"]
UPDATE_SHARE = 0.1
BLOCK = 1 << 20


# --- the file ---------------------------------------------------------------------------


@dataclass
class Expected:
    rows: int
    users: int  # distinct gids: the users created on an empty database

    @property
    def updated(self) -> int:
        return self.rows - self.users


def _users(rows: int, seed: int = 7) -> Iterator[tuple[int, dict[str, object]]]:
    rng = random.Random(seed)
    seen = 0
    for _ in range(rows):
        if seen and rng.random() < UPDATE_SHARE:
            # half of the updates hit a recent user (same chunk), half any earlier one
            low = max(1, seen - 2_000) if rng.random() < 0.5 else 1
            gid = rng.randint(low, seen)
            patch: dict[str, object] = {"level": rng.randint(1, 9)}
            patch["vip" if rng.random() < 0.5 else "city"] = (
                None if rng.random() < 0.3 else rng.choice(CITIES)
            )
            if "vip" in patch and patch["vip"] is not None:
                patch["vip"] = True
            yield gid, patch
        else:
            seen += 1
            yield (
                seen,
                {
                    "memberId": f"M{seen:09d}",
                    "city": rng.choice(CITIES),
                    "level": rng.randint(0, 9),
                    "vip": rng.random() < 0.2,
                    "birthday": f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-"
                    f"{rng.randint(1, 28):02d}",
                },
            )


def write_file(path: Path, rows: int, fmt: str) -> Expected:
    gids: set[int] = set()
    with path.open("wb") as fh:
        if fmt == "csv":
            keys = [key for key, _ in CATALOGUE]
            fh.write(("gid," + ",".join(keys) + "\n").encode())
        buffer: list[bytes] = []
        for gid, patch in _users(rows):
            gids.add(gid)
            if fmt == "csv":
                # A CSV line has every column: an update leaves the columns it does
                # not give empty, which clears them (one more null-removal case).
                cells = [str(gid)] + [_csv_cell(patch.get(key)) for key, _ in CATALOGUE]
                buffer.append((",".join(cells) + "\n").encode())
            else:
                buffer.append(orjson.dumps({"gid": gid, "attributes": patch}) + b"\n")
            if len(buffer) == 10_000:
                fh.write(b"".join(buffer))
                buffer = []
        fh.write(b"".join(buffer))
    return Expected(rows=rows, users=len(gids))


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return f'"{text}"' if "," in text or '"' in text else text


# --- databases ---------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, pg_server: str, tmp: Path) -> Iterator[str]:
    """A URL of a new, empty database, removed afterwards."""
    if kind == "sqlite":
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    name = f"tg_bench_import_{uuid.uuid4().hex[:8]}"
    admin = f"{pg_server.rstrip('/')}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            yield block


def _lines(path: Path, chunk: int) -> Iterator[list[bytes]]:
    """The file's lines, ``chunk`` at a time (a CSV header is skipped)."""
    tail = b""
    batch: list[bytes] = []
    first = True
    for block in _blocks(path):
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        if first and path.suffix == ".csv":
            lines = lines[1:]
        first = False
        batch.extend(lines)
        while len(batch) >= chunk:
            yield batch[:chunk]
            batch = batch[chunk:]
    if tail:
        batch.append(tail)
    if batch:
        yield batch


def raw_load(url: str, path: Path, chunk: int) -> float:
    """(a): seconds to bulk-load the file's lines into a plain table, no validation."""
    if url.startswith("sqlite"):
        return _raw_load_sqlite(url.removeprefix("sqlite:///"), path, chunk)
    return _raw_load_postgresql(url, path, chunk)


def _raw_load_sqlite(file: str, path: Path, chunk: int) -> float:
    import sqlite3

    conn = sqlite3.connect(file, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE raw_lines (doc TEXT NOT NULL)")
    started = time.perf_counter()
    for lines in _lines(path, chunk):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO raw_lines (doc) VALUES (?)", [(line.decode(),) for line in lines]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _raw_load_postgresql(url: str, path: Path, chunk: int) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_lines (doc jsonb NOT NULL)")
        conn.commit()
        started = time.perf_counter()
        for lines in _lines(path, chunk):
            if path.suffix == ".csv":
                # The same cells as JSON arrays (a COPY of the CSV itself would not parse).
                docs = [orjson.dumps(line.decode().split(",")) for line in lines]
            else:
                docs = lines
            data = b"\n".join(docs).replace(b"\\", b"\\\\") + b"\n"
            with conn.cursor() as cur, cur.copy("COPY raw_lines (doc) FROM STDIN") as copy:
                copy.write(data)
            conn.commit()
        return time.perf_counter() - started


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": url,
        "TOUCHGATE_SECRET_KEY": SECRET_KEY,
        "TOUCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "COLUMNS": "120",
    }


def prepare_project(url: str) -> int:
    """Migrate the database and create a project with the benchmark's catalogue."""
    from touchgate.config import Settings
    from touchgate.migrate import upgrade
    from touchgate.models import Attribute, Project
    from touchgate.runtime import Runtime

    runtime = Runtime.from_settings(Settings(database_url=url, secret_key=SECRET_KEY))
    upgrade(runtime.engine)
    with runtime.tx() as session:
        project = Project(name="bench")
        session.add(project)
        session.flush()
        for key, type_ in CATALOGUE:
            session.add(
                Attribute(project_id=project.id, key=key, name=key, type=type_, kind="attribute")
            )
        project_id = project.id
    runtime.close()
    return project_id


# --- (b) the CLI, (c) the API ------------------------------------------------------------


@dataclass
class Run:
    seconds: float  # the import
    rss_mb: float
    imported: int
    updated: int
    rejected: int
    process_seconds: float | None = None  # the CLI process, start to exit


def run_cli(url: str, path: Path, project_id: int) -> Run:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(TOUCHGATE), "import", "users", str(path), "--project", str(project_id)],
        env=_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the CLI failed ({proc.returncode}):\n{output}")
    # The summary table's rows: "│ imported (new users) │ 900,770 │", "│ time │ 4.9 s │"
    cells = {
        row[0].strip(): row[1].strip()
        for ln in output.splitlines()
        if len(row := ln.strip("│ ").split("│")) == 2
    }
    return Run(
        seconds=float(cells["time"].removesuffix(" s")),
        rss_mb=usage.ru_maxrss / 1024,
        imported=int(cells["imported (new users)"].replace(",", "")),
        updated=int(cells["updated (existing users)"].replace(",", "")),
        rejected=int(cells["rejected lines"].replace(",", "")),
        process_seconds=elapsed,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_api(url: str, path: Path, project_id: int, content_type: str) -> Run:
    port = _free_port()
    server = subprocess.Popen(
        [str(TOUCHGATE), "serve", "--no-worker", "--port", str(port)],
        env=_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("touchgate serve did not start")
            time.sleep(0.1)
        headers = {
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": content_type,
            "Content-Length": str(path.stat().st_size),
        }
        started = time.perf_counter()
        response = httpx.post(
            f"{base}/api/v1/projects/{project_id}/users/import",
            content=_blocks(path),
            headers=headers,
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"the import answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        rss = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return Run(elapsed, rss, body["imported"], body["updated"], body["rejected"])


# --- main ----------------------------------------------------------------------------------


def _check(run: Run, expected: Expected, what: str) -> None:
    got = (run.imported, run.updated, run.rejected)
    want = (expected.users, expected.updated, 0)
    if got != want:
        raise SystemExit(f"{what}: imported/updated/rejected {got}, expected {want}")


def main(argv: list[str] | None = None) -> None:
    from touchgate.datastore.importer import CHUNK_LINES

    parser = argparse.ArgumentParser(description="Touchgate user import benchmark")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args(argv)
    content_type = "text/csv" if args.format == "csv" else "application/x-ndjson"

    with tempfile.TemporaryDirectory(prefix="tg-bench-import-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / f"users.{args.format}"
        started = time.perf_counter()
        expected = write_file(path, args.rows, args.format)
        size_mb = path.stat().st_size / 1e6
        print(
            f"file: {args.rows:,} {args.format} lines, {size_mb:.0f} MB, {expected.users:,} users "
            f"({expected.updated:,} lines update one); written in "
            f"{time.perf_counter() - started:.1f} s, not measured",
            flush=True,
        )
        results: list[tuple[str, str, float, float, float | None]] = []
        for kind in args.databases.split(","):
            with fresh_database(kind, args.pg_server, tmp) as url:
                raw = args.rows / raw_load(url, path, CHUNK_LINES)
            print(f"{kind:10s} (a) raw bulk load:  {raw:10,.0f} rows/s", flush=True)
            results.append((kind, "(a) raw bulk load", raw, 1.0, None))
            paths: list[tuple[str, Callable[[str, Path, int], Run]]] = []
            if not args.skip_cli:
                paths.append(("(b) CLI", run_cli))
            if not args.skip_api:
                paths.append(("(c) API", lambda u, p, pid: run_api(u, p, pid, content_type)))
            for label, runner in paths:
                with fresh_database(kind, args.pg_server, tmp) as url:
                    project_id = prepare_project(url)
                    run = runner(url, path, project_id)
                _check(run, expected, f"{kind} {label}")
                rate = args.rows / run.seconds
                process = f"  (process: {run.process_seconds:.1f} s)" if run.process_seconds else ""
                print(
                    f"{kind:10s} {label}: {rate:16,.0f} rows/s ({run.seconds:.1f} s)  "
                    f"ratio {rate / raw:.2f}  peak RSS {run.rss_mb:.0f} MB{process}",
                    flush=True,
                )
                results.append((kind, label, rate, rate / raw, run.rss_mb))
        print()
        print("| store | path | rows/s | ratio to (a) | peak RSS |")
        print("|---|---|---|---|---|")
        for kind, label, rate, ratio, rss in results:
            shown = "" if rss is None else f"{rss:.0f} MB"
            print(f"| {kind} | {label} | {rate:,.0f} | {ratio:.2f} | {shown} |")


if __name__ == "__main__":
    main()
