"""Engine and sessions; every SQLite/PostgreSQL difference lives here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy drive transactions (pysqlite's implicit BEGIN is off), and
    # make the embedded store safe for an API thread pool plus a worker.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Checkpoints are the background thread's work (``WalCheckpoints``); a
    # committing writer checkpoints only if that falls far behind.
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
    # busy_timeout instead of failing with "database is locked" mid-transaction.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class WriteTurns:
    """SQLite's one write lock, taken in turn by this process's threads.

    Every transaction here is a writer (``BEGIN IMMEDIATE``), and a writer that
    finds the lock taken waits in SQLite's busy handler, which polls with
    growing sleeps (up to 100 ms): a thread writing back to back (a campaign's
    pages) then keeps one that is sleeping (the delivery worker's settlement)
    out for as long as it goes on, and the lock stands idle while the next one
    sleeps. Here the process's transactions queue first come, first served and
    hand the lock over at once; other processes (a command-line import) still
    meet at SQLite's lock. Re-entrant: a transaction opened inside another on
    the same thread does not wait for itself."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False
        # One closed gate per waiting thread, in arrival order; the thread ending
        # its turn opens the first (the turn passes without being free between).
        self._waiting: deque[threading.Lock] = deque()
        self._local = threading.local()

    @contextmanager
    def turn(self) -> Iterator[None]:
        depth: int = getattr(self._local, "depth", 0)
        if depth == 0:
            self._acquire()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._release()

    def waiting(self) -> int:
        """How many threads wait for their turn."""
        return len(self._waiting)

    def _acquire(self) -> None:
        with self._mutex:
            if not self._busy:
                self._busy = True
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append(gate)
        gate.acquire()  # opened by the thread whose turn ends

    def _release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._busy = False


# The write turns of each SQLite engine (``transaction`` takes one).
_write_turns: weakref.WeakKeyDictionary[Engine, WriteTurns] = weakref.WeakKeyDictionary()

# SQLite's own default is 1,000 pages (4 MB), checkpointed by whichever commit
# crosses it, inside that writer's turn.
WAL_AUTOCHECKPOINT_PAGES = 16000
CHECKPOINT_SECONDS = 0.2
# How often an idle checkpoint thread looks whether its engine still exists.
CHECKPOINT_IDLE_SECONDS = 30.0


class WalCheckpoints:
    """Copies SQLite's write-ahead log into the database from a thread of its own.

    A checkpoint copies every page written since the last one and syncs the
    file; left to SQLite, the commit that makes the log cross 4 MB does it while
    it still holds its write turn, so claims and settlements took turns waiting
    for disk writes. A passive checkpoint runs beside the writers (it needs no
    write lock); this one runs every ``CHECKPOINT_SECONDS`` after a commit, on
    its own connection, and stops with the engine."""

    def __init__(self, engine: Engine, path: str) -> None:
        self._engine = weakref.ref(engine)
        self._path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpoints", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while not self._stop.is_set():
                if not self._wake.wait(CHECKPOINT_IDLE_SECONDS):
                    if self._engine() is None:
                        break  # an engine dropped without dispose(): stop with it
                    continue
                self._wake.clear()
                if self._stop.wait(CHECKPOINT_SECONDS):
                    break
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()


_checkpoints: weakref.WeakKeyDictionary[Engine, WalCheckpoints] = weakref.WeakKeyDictionary()


def _file_path(url: str) -> str | None:
    """The file of an SQLite URL (None: in memory, or a ``file:`` URI)."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _create_private_sqlite_file(path: str) -> None:
    """Create the SQLite file owner-only (0600) before SQLite does: it holds users'
    personal data and key hashes, and SQLite gives its -wal and -shm files the
    mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # not creatable: SQLite (or the start-up check) reports it
    os.close(fd)


# Milliseconds a statement may run on PostgreSQL in the current context (an API
# request sets it, see ``app.py``); None: no limit (workers, command-line jobs).
statement_timeout_ms: ContextVar[int | None] = ContextVar("statement_timeout_ms", default=None)
# How often PostgreSQL checks, while running a query, that its client is still
# there: the query of a process that died or was stopped is cancelled within this
# time instead of running on (PostgreSQL 14 and later).
CLIENT_CHECK_MS = 2000


def _pg_on_connect(dbapi_conn: Any, _record: Any) -> None:
    if dbapi_conn.info.server_version >= 140000:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
        dbapi_conn.commit()


# The DBAPI connections each PostgreSQL engine has lent out right now, so that a
# process going away can cancel the queries still running on them.
_lent: weakref.WeakKeyDictionary[Engine, set[Any]] = weakref.WeakKeyDictionary()
_lent_lock = threading.Lock()


def _track_lent(engine: Engine) -> None:
    lent: set[Any] = set()
    _lent[engine] = lent

    def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        with _lent_lock:
            lent.add(dbapi_conn)

    def checkin(dbapi_conn: Any, _record: Any) -> None:
        with _lent_lock:
            lent.discard(dbapi_conn)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)


def cancel_running_queries(engine: Engine) -> int:
    """Ask PostgreSQL to cancel what runs on every connection lent out now (the
    process is stopping: a request stuck on a lock must not keep it alive, nor its
    query run on without it). Returns how many connections were asked."""
    with _lent_lock:
        lent = list(_lent.get(engine, ()))
    for dbapi_conn in lent:
        with contextlib.suppress(Exception):  # closed meanwhile: nothing to cancel
            dbapi_conn.cancel()
    return len(lent)


def _pg_on_begin(conn: Any) -> None:
    # Only where a limit applies (an API request): the hot paths pay nothing.
    limit = statement_timeout_ms.get()
    if limit:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(limit)}")


@contextmanager
def statement_timeout(seconds: float) -> Iterator[None]:
    """Limit every PostgreSQL statement run in this context (and in the threads it
    hands work to) to ``seconds``; 0 means no limit. No effect on SQLite."""
    token = statement_timeout_ms.set(int(seconds * 1000) or None)
    try:
        yield
    finally:
        statement_timeout_ms.reset(token)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    if is_sqlite_url(url):
        path = _file_path(url)
        if path is not None:
            _create_private_sqlite_file(path)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=pool_size
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        _write_turns[engine] = WriteTurns()
        if path is not None:
            checkpoints = _checkpoints[engine] = WalCheckpoints(engine, path)
            event.listen(engine, "commit", lambda _conn: checkpoints.committed())
            event.listen(engine, "engine_disposed", lambda _engine: checkpoints.stop())
        return engine
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True, future=True
    )
    event.listen(engine, "connect", _pg_on_connect)
    event.listen(engine, "begin", _pg_on_begin)
    _track_lent(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. On SQLite it waits
    for this process's earlier writers first (``WriteTurns``)."""
    bind = factory.kw.get("bind")
    turns = _write_turns.get(bind) if isinstance(bind, Engine) else None
    with turns.turn() if turns is not None else contextlib.nullcontext():
        session = factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def pg_bigint_array(values: Iterable[int]) -> str:
    """The text of a PostgreSQL ``bigint[]`` literal (``{1,2,3}``), to bind as one
    parameter and cast: psycopg adapts a list of thousands of ints value by value,
    which costs more than the query (about 1.5 us a value)."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name
