"""SQLite's one writer, shared in turn by a process's threads, and its write-ahead
log checkpointed from a thread of its own."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from touchgate import db
from touchgate.db import WriteTurns, make_engine, make_sessionmaker, transaction


def _wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_turns_are_served_first_come_first_served() -> None:
    turns = WriteTurns()
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with turns.turn():
            holding.set()
            release.wait(10)
            order.append("first")

    def later(name: str) -> None:
        with turns.turn():
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(10)
    for i, name in enumerate(["b", "c", "d"]):
        t = threading.Thread(target=later, args=(name,))
        t.start()
        threads.append(t)
        # Queued in this order: each has taken its ticket before the next starts.
        _wait_until(lambda i=i: turns.waiting() == i + 1)
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "b", "c", "d"]


def test_a_transaction_inside_another_on_the_same_thread_does_not_wait(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    sessions = make_sessionmaker(engine)
    done = threading.Event()

    def nested() -> None:
        with transaction(sessions) as outer:
            outer.execute(text("CREATE TABLE t (x INTEGER)"))
        with transaction(sessions), transaction(sessions) as inner:
            inner.execute(text("INSERT INTO t VALUES (1)"))
        done.set()

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    assert done.wait(10), "a nested transaction waited for its own thread"
    with transaction(sessions) as s:
        assert s.scalar(text("SELECT count(*) FROM t")) == 1
    engine.dispose()


def test_the_log_is_checkpointed_beside_the_writers(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        s.execute(text("CREATE TABLE t (x BLOB)"))
    for _ in range(20):
        with transaction(sessions) as s:
            s.execute(text("INSERT INTO t VALUES (randomblob(100000))"))

    def checkpointer_runs() -> bool:
        return any(t.name == "sqlite-checkpoints" for t in threading.enumerate())

    # 2 MB in the log, far below the point where a commit would checkpoint it
    # itself: only the checkpoint thread copies it into the database file.
    assert path.stat().st_size < 1_000_000 or checkpointer_runs()
    _wait_until(lambda: path.stat().st_size > 2_000_000)
    assert checkpointer_runs()
    engine.dispose()
    _wait_until(lambda: not checkpointer_runs())


def test_the_checkpoint_thread_ends_with_an_engine_never_disposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "CHECKPOINT_IDLE_SECONDS", 0.05)
    engine = make_engine(f"sqlite:///{tmp_path / 'dropped.db'}")
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
    thread = db._checkpoints[engine]._thread
    assert thread is not None and thread.is_alive()
    del engine, sessions, s
    gc.collect()
    _wait_until(lambda: not thread.is_alive())
