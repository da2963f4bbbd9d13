"""Shared pieces of the delivery engine tests (no tests here): a database of
their own, a real touchpoint endpoint (aiohttp on 127.0.0.1, port 0, in a
thread), a real worker on its own loop and runtime, and helpers that create
projects, touchpoints and users.

Engine tests get their own database (one per backend and module) because the
session's live server runs an embedded worker that would otherwise claim the
orders these tests want to drive themselves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import select, text

from conftest import BACKENDS, Database, make_settings, truncate_all
from touchgate.delivery import orders
from touchgate.delivery.enqueue import enqueue_delivery
from touchgate.delivery.hooks import SettlementFollowup
from touchgate.delivery.outcomes import protocol_gids
from touchgate.delivery.worker import Worker
from touchgate.migrate import upgrade
from touchgate.models import Event, Order, OrderPayload, Project, Touchpoint, User
from touchgate.runtime import Runtime

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, base64


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON, bytes → as is, None → all TOU_SUCC
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Handler = Callable[[str, dict[str, Any], int], Reply]  # kind, document, nth request of kind


@dataclass
class Seen:
    kind: str  # touch | receipt
    doc: dict[str, Any]
    headers: dict[str, str]
    at: float


def success_for(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": 0,
        "message": "",
        "orderNo": doc.get("orderNo"),
        "sendStatusList": [
            {"gid": e["gid"], "status": "TOU_SUCC", "errorMsg": ""} for e in doc["dataList"]
        ],
    }


class Endpoint:
    """A touchpoint endpoint (``/touch``) with a receipt URL (``/receipt``)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.handler: Handler = lambda kind, doc, n: Reply()
        self._counts: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/touch", self._handle("touch"))
        app.router.add_post("/receipt", self._handle("receipt"))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def _handle(self, kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            doc = orjson.loads(await request.read())
            n = self._counts.get(kind, 0)
            self._counts[kind] = n + 1
            self.seen.append(Seen(kind, doc, dict(request.headers), time.monotonic()))
            reply = self.handler(kind, doc, n)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            body = reply.body
            if body is None:
                body = success_for(doc) if kind == "touch" else {"code": 0, "sendStatusList": []}
            raw = body if isinstance(body, bytes) else orjson.dumps(body)
            return web.Response(
                status=reply.status,
                body=raw,
                headers={"Content-Type": "application/json", **reply.headers},
            )

        return handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/touch"

    @property
    def receipt_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receipt"

    def of(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.kind == kind]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class WorkerThread:
    """A real ``Worker`` on its own loop and runtime (same database)."""

    def __init__(
        self, runtime: Runtime, *, followups: Sequence[SettlementFollowup] = (), **kwargs: Any
    ) -> None:
        self.runtime = Runtime.from_settings(runtime.settings)
        # Extra settlement follow-ups, after the campaigns' own.
        self.runtime.followups = (*self.runtime.followups, *followups)
        kwargs.setdefault("idle_seconds", 0.05)
        self.worker = Worker(self.runtime, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self.worker.run(self._stop)
            finally:
                from touchgate.delivery.client import close

                await close(self.runtime)

        self._loop.run_until_complete(main())

    def close(self) -> None:
        deadline = time.monotonic() + 5
        while self._stop is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()
        self.runtime.close()


@pytest.fixture(scope="module", params=BACKENDS, name="engine_database")
def engine_database_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    db = Database(request.param, tmp_path_factory.mktemp("engine-" + request.param))
    runtime = Runtime.from_settings(
        make_settings(
            db.url, tmp_path_factory.mktemp("engine-data"), allowed_networks="127.0.0.0/8,::1/128"
        )
    )
    upgrade(runtime.engine)
    yield runtime
    runtime.close()
    db.drop()


@pytest.fixture(name="runtime")
def runtime_fixture(engine_database: Runtime) -> Runtime:
    """Overrides conftest's ``runtime`` in the modules that import it."""
    truncate_all(engine_database)
    return engine_database


@pytest.fixture(name="endpoint")
def endpoint_fixture() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


@pytest.fixture(name="worker")
def worker_fixture(runtime: Runtime) -> Iterator[WorkerThread]:
    w = WorkerThread(runtime)
    yield w
    w.close()


def make_touchpoint(
    runtime: Runtime,
    url: str,
    *,
    project_id: int | None = None,
    token: str | None = "tok",
    batch_size: int = 3,
    retry_schedule: list[int] | None = None,
    receipt: dict[str, Any] | None = None,
    user_attributes: list[str] | None = None,
    timeout_seconds: int = 5,
    name: str = "tp",
    max_in_flight: int | None = None,
) -> Touchpoint:
    with runtime.tx() as s:
        if project_id is None:
            project = Project(name=f"p-{time.monotonic_ns()}")
            s.add(project)
            s.flush()
            project_id = project.id
        tp = Touchpoint(
            project_id=project_id,
            name=name,
            type="benefit",
            transport="http",
            url=url,
            token_encrypted=runtime.secrets.encrypt(token) if token else None,
            signing_secret_encrypted=runtime.secrets.encrypt(SECRET),
            batch_size=batch_size,
            timeout_seconds=timeout_seconds,
            max_in_flight=max_in_flight,
            retry_schedule=retry_schedule if retry_schedule is not None else [1, 1],
            receipt=receipt or {"mode": "sync"},
            user_attributes=user_attributes if user_attributes is not None else ["phone"],
            template_params=[
                {"key": "title", "name": "Title", "type": "text", "required": True},
                {"key": "amount", "name": "Amount", "type": "number", "required": True},
            ],
        )
        s.add(tp)
        s.flush()
        return tp


def add_users(runtime: Runtime, project_id: int, gids: range) -> None:
    with runtime.tx() as s:
        s.execute(
            User.__table__.insert(),
            [
                {
                    "project_id": project_id,
                    "gid": g,
                    "attributes": {"phone": f"130{g:08d}", "name": f"U{g}"},
                }
                for g in gids
            ],
        )


def enqueue(runtime: Runtime, tp: Touchpoint, gids: list[int], **kw: Any) -> list[str]:
    with runtime.tx() as s:
        tem = kw.pop("tem_data", {"title": "Hi {{name}}", "amount": 100})
        res = enqueue_delivery(s, touchpoint=tp, gids=gids, tem_data=tem, **kw)
        return res.order_nos


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def all_done(runtime: Runtime, order_nos: list[str]) -> bool:
    with runtime.tx() as s:
        states = s.scalars(select(Order.state).where(Order.order_no.in_(order_nos))).all()
        return len(states) == len(order_nos) and all(st == "done" for st in states)


def payloads(session: Any) -> list[bytes]:
    """The frozen payload of every order, in the orders' order."""
    stmt = (
        select(OrderPayload.payload)
        .join(Order, Order.order_no == OrderPayload.order_no)
        .order_by(Order.id)
    )
    return list(session.scalars(stmt))


def results(runtime: Runtime, order_nos: list[str]) -> dict[int, tuple[str, str | None, int]]:
    """Every user of these orders: its final result, or ``("pending", None, 0)``."""
    out: dict[int, tuple[str, str | None, int]] = {}
    with runtime.tx() as s:
        stmt = select(OrderPayload.payload).where(OrderPayload.order_no.in_(order_nos))
        for payload in s.scalars(stmt):
            for gid in protocol_gids(payload):
                out[gid] = ("pending", None, 0)
        rows = s.execute(
            text(
                "SELECT u.gid, u.status, u.error_msg, u.attempts FROM order_results u "
                "JOIN orders o ON o.id = u.order_id WHERE o.order_no IN :nos"
            ).bindparams(__import__("sqlalchemy").bindparam("nos", expanding=True)),
            {"nos": order_nos},
        ).all()
        out.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return out


def touch_events(runtime: Runtime, project_id: int) -> list[Event]:
    with runtime.tx() as s:
        return list(
            s.scalars(
                select(Event)
                .where(Event.project_id == project_id, Event.name == "$ma_channel_touch")
                .order_by(Event.gid)
            )
        )


def attempts_of(runtime: Runtime, order_no: str) -> list[dict[str, Any]]:
    with runtime.tx() as s:
        order = s.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None
        return orders.order_detail(s, order.project_id, order_no)["attempts"]  # type: ignore[no-any-return]
