"""Fixtures: real databases (SQLite file and the local PostgreSQL server), a real
HTTP server running the app on 127.0.0.1, and an authenticated client.

Every test that uses ``runtime``/``client`` runs once per backend. Set
``TOUCHGATE_TEST_BACKENDS=sqlite`` (or ``postgresql``) to run just one.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from touchgate.config import Settings
from touchgate.models import Base
from touchgate.runtime import Runtime

ADMIN_TOKEN = "test-admin-token"
PG_ADMIN_DSN = os.environ.get("TOUCHGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [
    b.strip()
    for b in os.environ.get("TOUCHGATE_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Database:
    """A fresh database for this run, dropped at the end."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.name = f"tg_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp / (self.name + '.db')}"
        else:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            base = PG_ADMIN_DSN.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"

    def drop(self) -> None:
        if self.backend == "postgresql":
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def make_settings(url: str, data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=url,
        admin_token=ADMIN_TOKEN,
        secret_key="test-secret-key",
        plugin_dir=str(data_dir / "plugins"),
        **extra,
    )


@pytest.fixture(scope="session", params=BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    db = Database(request.param, tmp_path_factory.mktemp(request.param))
    from touchgate.db import make_engine
    from touchgate.migrate import upgrade

    engine = make_engine(db.url)
    upgrade(engine)
    engine.dispose()
    yield db
    db.drop()


def truncate_all(runtime: Runtime) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    # The live server's worker and scheduler keep reading while a test starts: on
    # PostgreSQL the TRUNCATE can deadlock with one of their queries (the server
    # picks the TRUNCATE as the victim). Try again; the worker's query is short.
    for attempt in range(5):
        try:
            with runtime.engine.begin() as conn:
                if runtime.engine.dialect.name == "postgresql":
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    for name in tables:
                        conn.execute(text(f"DELETE FROM {name}"))
            return
        except OperationalError as exc:
            if attempt == 4 or "deadlock" not in str(exc):
                raise


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, runtime: Runtime, app: Any = None) -> None:
        from touchgate.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app if app is not None else create_app(runtime),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="session")
def session_runtime(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    data_dir = tmp_path_factory.mktemp("data")
    runtime = Runtime.from_settings(
        make_settings(database.url, data_dir, allowed_networks="127.0.0.0/8,::1/128")
    )
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def live_server(session_runtime: Runtime) -> Iterator[LiveServer]:
    server = LiveServer(session_runtime)
    yield server
    server.stop()


@pytest.fixture
def runtime(session_runtime: Runtime) -> Iterator[Runtime]:
    truncate_all(session_runtime)
    from touchgate.auth import ensure_bootstrap_key

    with session_runtime.tx() as session:
        ensure_bootstrap_key(session, ADMIN_TOKEN)
    yield session_runtime


@pytest.fixture
def client(runtime: Runtime, live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as c:
        yield c


@pytest.fixture
def anon_client(runtime: Runtime, live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url + "/api/v1", timeout=60) as c:
        yield c


@pytest.fixture
def project(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data
