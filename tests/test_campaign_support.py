"""Helpers for the campaign tests: a project with a catalogue and users, touchpoints,
campaign bodies, and a real touchpoint receiver (aiohttp on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
from aiohttp import web

ATTRIBUTES = [
    ("city", "string"),
    ("age", "number"),
    ("vip", "boolean"),
    ("birthday", "date"),
    ("memberId", "string"),
    ("phone", "string"),
]
PARAMS = [
    {"key": "title", "name": "Title", "type": "text", "required": True},
    {"key": "amount", "name": "Amount", "type": "number", "required": True},
    {
        "key": "jump",
        "name": "Jump type",
        "type": "enum",
        "required": False,
        "enum": {
            "source": "manual",
            "options": [{"code": "JUMP_H5", "name": "H5"}, {"code": "JUMP_APP", "name": "App"}],
        },
    },
]


def fresh_touchpoint_config(monkeypatch: Any) -> None:
    """Make the in-process delivery worker (the live server's) re-read touchpoints at
    every claim. Every test truncates the tables, so touchpoint ids start again at 1
    and a worker cache keyed by id would still point at the previous test's receiver."""
    from touchgate.delivery import worker

    monkeypatch.setattr(worker, "TOUCHPOINT_CACHE_SECONDS", 0.0)


def make_project(
    client: httpx.Client, name: str = "Retail", *, approval: bool = True
) -> tuple[int, int]:
    r = client.post("/projects", json={"name": name, "approval_required": approval})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = client.post(f"/projects/{pid}/spaces", json={"name": "Growth"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    for key, typ in ATTRIBUTES:
        r = client.post(
            f"/projects/{pid}/attributes",
            json={"key": key, "name": key, "type": typ, "kind": "attribute", "sensitive": False},
        )
        assert r.status_code == 201, r.text
    return pid, sid


def import_users(client: httpx.Client, pid: int, users: Iterable[dict[str, Any]]) -> int:
    body = b"\n".join(orjson.dumps(u) for u in users)
    r = client.post(
        f"/projects/{pid}/users/import",
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 0, r.text
    total: int = r.json()["imported"] + r.json()["updated"]
    return total


def make_touchpoint(
    client: httpx.Client,
    pid: int,
    url: str,
    space_ids: list[int],
    *,
    name: str = "SMS",
    batch_size: int = 200,
    params: list[dict[str, Any]] | None = None,
) -> int:
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json={
            "name": name,
            "type": "notification",
            "transport": "http",
            "url": url,
            "token": "s3cret",
            "batch_size": batch_size,
            "retry_schedule": [1, 1, 1],
            "user_attributes": ["memberId", "phone"],
            "template_params": PARAMS if params is None else params,
        },
    )
    assert r.status_code == 201, r.text
    tid: int = r.json()["id"]
    r = client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": space_ids})
    assert r.status_code == 200, r.text
    return tid


def api_enum_params(receiver_url: str) -> list[dict[str, Any]]:
    """One required enum parameter ``tpl`` whose options come from the receiver's
    options API (it offers ``T1``)."""
    return [
        {
            "key": "tpl",
            "name": "Template",
            "type": "enum",
            "required": True,
            "enum": {"source": "api", "url": receiver_url.replace("/touch", "/options")},
        }
    ]


def send_step(*tids: int, step_id: str = "s1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "send",
        "id": step_id,
        "mode": "first_success",
        "timing": {"type": "now"},
        "channels": [
            {"touchpoint_id": t, "params": {"title": "Hi {{memberId}}", "amount": 100}}
            for t in tids
        ],
        **extra,
    }


def campaign_body(tid: int, name: str = "Birthday coupon", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "trigger": {"type": "once"},
        "audience": {
            "match": "filter",
            "filter": {
                "op": "and",
                "conditions": [{"attribute": "city", "operator": "eq", "value": "Shanghai"}],
            },
        },
        "participation": {"mode": "once"},
        "anti_disturb": True,
        "strategy": send_step(tid),
    }
    body.update(overrides)
    return body


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Receiver:
    """A touchpoint endpoint on 127.0.0.1 that records every (orderNo, gid, status) it
    answered; ``fail`` decides which gids get TOU_FAIL."""

    def __init__(self, fail: Callable[[int], bool] = lambda gid: False) -> None:
        self.fail = fail
        self.records: list[tuple[str, int, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.option_calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        statuses = []
        with self.lock:
            self.bodies.append(body)
            for entry in body["dataList"]:
                gid = int(entry["gid"])
                status = "TOU_FAIL" if self.fail(gid) else "TOU_SUCC"
                self.records.append((body["orderNo"], gid, status))
                statuses.append(
                    {
                        "gid": gid,
                        "status": status,
                        "errorMsg": "blocked" if status != "TOU_SUCC" else "",
                    }
                )
        return web.json_response(
            {"code": 0, "message": "", "orderNo": body["orderNo"], "sendStatusList": statuses}
        )

    async def options(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        with self.lock:
            self.option_calls.append(body)
        return web.json_response(
            {"code": 0, "enumArgs": [{"code": "T1", "description": "Template one"}]}
        )

    def gids(self, status: str | None = None) -> list[int]:
        with self.lock:
            return [g for _, g, s in self.records if status is None or s == status]


@contextmanager
def running_receiver(receiver: Receiver) -> Iterator[Receiver]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: dict[str, web.AppRunner] = {}

    async def start() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/touch", receiver.handle)
        app.router.add_post("/options", receiver.options)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        receiver.url = f"http://127.0.0.1:{port}/touch"
        runner_box["r"] = runner
        started.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner_box["r"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
