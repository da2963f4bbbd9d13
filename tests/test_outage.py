"""The API while its database is away or slow: 503 with ``Retry-After`` and a code
(``database_unavailable``, ``database_timeout``), never a 500; one log line per
outage and one when it is over; a statement that runs past the API's limit is
cancelled. The outage is real: the test's own PostgreSQL database stops accepting
connections and its backends are terminated."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from conftest import ADMIN_TOKEN, BACKENDS, PG_ADMIN_DSN, Database, LiveServer, make_settings
from touchgate.app import create_app
from touchgate.db import statement_timeout
from touchgate.errors import DatabaseTimeout, DatabaseUnavailable
from touchgate.migrate import upgrade
from touchgate.outage import OutageLog, database_error
from touchgate.runtime import Runtime

needs_postgresql = pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="PostgreSQL is not among TOUCHGATE_TEST_BACKENDS"
)


class Stack:
    """A database of the test's own, a runtime on it and the API serving it."""

    def __init__(self, tmp: Path) -> None:
        self.db = Database("postgresql", tmp)
        self.runtime = Runtime.from_settings(make_settings(self.db.url, tmp))
        upgrade(self.runtime.engine)
        app = create_app(self.runtime, background=False)

        @app.get("/slow-for-test")
        def slow() -> dict[str, str]:  # a request whose query outlives the limit
            with self.runtime.tx() as session:
                session.execute(text("SELECT pg_sleep(5)"))
            return {"status": "done"}

        self.server = LiveServer(self.runtime, app)
        self.http = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def connections(self, allowed: bool) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                f'ALTER DATABASE "{self.db.name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'
            )
            if not allowed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self.db.name,),
                )

    def close(self) -> None:
        self.connections(True)
        self.http.close()
        self.server.stop()
        self.runtime.close()
        self.db.drop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.close()


def _wait_for(check: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@needs_postgresql
def test_api_answers_503_while_the_database_is_away(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="touchgate")
    assert stack.http.get("/api/v1/projects").status_code == 200
    stack.connections(False)
    try:
        for path in ("/api/v1/projects", "/api/v1/projects", "/api/v1/projects/1"):
            r = stack.http.get(path)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "5"
            error = r.json()["error"]
            assert error["code"] == "database_unavailable"
            assert "unreachable" in error["message"]
        assert stack.http.get("/readyz").status_code == 503
    finally:
        stack.connections(True)
    _wait_for(lambda: stack.http.get("/api/v1/projects").status_code == 200)
    assert stack.http.get("/readyz").status_code == 200
    lines = [r for r in caplog.records if r.name == "touchgate.database"]
    down = [r for r in lines if "database unreachable" in r.getMessage()]
    back = [r for r in lines if "reachable again" in r.getMessage()]
    assert len(down) == 1, [r.getMessage() for r in lines]  # one line, not one per request
    assert down[0].exc_info is None  # and no traceback
    assert "OperationalError" in down[0].getMessage()
    assert len(back) == 1 and "3 requests answered 503" in back[0].getMessage()
    assert not [r for r in caplog.records if r.name == "touchgate" and r.exc_info]


@needs_postgresql
def test_a_statement_past_the_api_limit_is_cancelled(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="touchgate")
    settings = stack.runtime.settings
    stack.runtime.settings = settings.model_copy(update={"api_statement_timeout": 0.3})
    started = time.monotonic()
    r = stack.http.get("/slow-for-test")
    assert time.monotonic() - started < 3
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "database_timeout"
    assert r.headers["retry-after"] == "5"
    assert any(
        "statement timeout: GET /slow-for-test" in rec.getMessage() for rec in caplog.records
    )
    # Without the limit (a worker, a command-line job) the same query runs to its end.
    with statement_timeout(0), stack.runtime.tx() as session:
        assert session.execute(text("SELECT pg_sleep(0.5), 1")).one()[1] == 1
    with statement_timeout(0.1), pytest.raises(sa_exc.OperationalError), stack.runtime.tx() as s:
        s.execute(text("SELECT pg_sleep(0.5)"))
    # The API still answers afterwards.
    stack.runtime.settings = settings
    assert stack.http.get("/api/v1/projects").status_code == 200


def _wrapped(orig: BaseException, cls: type[sa_exc.DBAPIError]) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, orig)


def test_which_errors_are_the_databases_state() -> None:
    locked = _wrapped(sqlite3.OperationalError("database is locked"), sa_exc.OperationalError)
    assert type(database_error(locked)) is DatabaseUnavailable
    gone = _wrapped(psycopg.OperationalError("server closed the connection"), sa_exc.DBAPIError)
    gone.connection_invalidated = True
    assert type(database_error(gone)) is DatabaseUnavailable
    cancelled = _wrapped(
        psycopg.errors.QueryCanceled("canceling statement"), sa_exc.OperationalError
    )
    assert type(database_error(cancelled)) is DatabaseTimeout
    assert type(database_error(sa_exc.TimeoutError("QueuePool limit"))) is DatabaseUnavailable
    # A bug stays a bug (500): a constraint violated, a programming error.
    duplicate = _wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), sa_exc.IntegrityError)
    assert database_error(duplicate) is None
    assert database_error(ValueError("no")) is None


def test_outage_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="touchgate.database")
    now = [100.0]
    outages = OutageLog(clock=lambda: now[0])
    cause = _wrapped(
        sqlite3.OperationalError("unable to open database file"), sa_exc.OperationalError
    )
    error = DatabaseUnavailable("x")
    outages.connected()  # nothing was down: nothing to say
    for _ in range(70):
        outages.failed(error, cause, "GET /api/v1/projects")
        now[0] += 1
    outages.connected()
    outages.connected()
    assert [r.getMessage() for r in caplog.records] == [
        "database unreachable (OperationalError: unable to open database file); the API "
        "answers 503 database_unavailable until it is back",
        "database still unreachable after 60 s (61 requests answered 503)",
        "database reachable again after 70.0 s (70 requests answered 503 meanwhile)",
    ]
