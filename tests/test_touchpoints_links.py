"""The registry where it meets other domains: plugin touchpoints (config through the
plugins service) and enum options from an options API (a real HTTP server on
127.0.0.1)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from touchgate.models import Plugin, Touchpoint
from touchgate.runtime import Runtime

CONFIG_FIELDS = [
    {"key": "api_key", "label": "API key", "type": "text", "required": True, "secret": True},
    {
        "key": "region",
        "label": "Region",
        "type": "enum",
        "required": False,
        "secret": False,
        "options": ["cn-east", "cn-north"],
        "default": "cn-east",
    },
]


def add_plugin(runtime: Runtime, project_id: int, version: str = "1.0.0") -> int:
    """A plugin version as an upload leaves it (the upload itself is the plugins
    domain's and is tested there)."""
    with runtime.tx() as session:
        plugin = Plugin(
            project_id=project_id,
            name="sms-gateway",
            version=version,
            api_version=1,
            entry="sms_gateway:Channel",
            description=None,
            config_fields=CONFIG_FIELDS,
            sha256="0" * 64,
            size=1,
            file_count=1,
        )
        session.add(plugin)
        session.flush()
        plugin_id: int = plugin.id
        return plugin_id


def stored_plugin_config(runtime: Runtime, tid: int) -> dict[str, Any]:
    with runtime.tx() as session:
        row = session.get(Touchpoint, tid)
        assert row is not None and row.plugin_config is not None
        return dict(row.plugin_config)


def plugin_body(plugin_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "SMS plugin",
        "type": "notification",
        "transport": "plugin",
        "plugin_id": plugin_id,
        "plugin_config": {"api_key": "k-123", "region": "cn-north"},
        **extra,
    }


def test_plugin_touchpoint(client: httpx.Client, project: dict[str, Any], runtime: Runtime) -> None:
    pid = project["id"]
    plugin_id = add_plugin(runtime, pid)
    r = client.post(f"/projects/{pid}/touchpoints", json=plugin_body(plugin_id))
    assert r.status_code == 201, r.text
    tp = r.json()
    assert "k-123" not in r.text
    assert tp["transport"] == "plugin" and tp["plugin_id"] == plugin_id
    assert tp["plugin_config"] == {"api_key_set": True, "region": "cn-north"}
    assert tp["url"] is None and tp["token_set"] is False
    stored = stored_plugin_config(runtime, tp["id"])
    assert stored["api_key"] != "k-123" and runtime.secrets.decrypt(stored["api_key"]) == "k-123"
    assert client.get(f"/projects/{pid}/touchpoints/{tp['id']}").json()["plugin_config"] == {
        "api_key_set": True,
        "region": "cn-north",
    }

    # Every problem of the config is named, with the registry's own findings.
    bad = plugin_body(
        plugin_id,
        name="Bad",
        plugin_config={"region": "mars", "extra": 1},
        user_attributes=["nope"],
        batch_size=0,
    )
    r = client.post(f"/projects/{pid}/touchpoints", json=bad)
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert fields == {
        "plugin_config.region",
        "plugin_config.extra",
        "plugin_config.api_key",
        "user_attributes[0]",
        "batch_size",
    }
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json=plugin_body(plugin_id, name="Bad", receipt={"mode": "async"}, user_attributes=["x"]),
    )
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["error"]["details"]} == {"user_attributes[0]"}
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json=plugin_body(
            plugin_id, name="Bad", receipt={"mode": "async", "url": "https://r.example.com"}
        ),
    )
    assert {d["field"] for d in r.json()["error"]["details"]} == {"receipt.url"}
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    foreign = add_plugin(runtime, other)
    for unknown in (foreign, 999_999):
        r = client.post(f"/projects/{pid}/touchpoints", json=plugin_body(unknown, name="Bad"))
        assert r.status_code == 422
        assert [d["field"] for d in r.json()["error"]["details"]] == ["plugin_id"]


def test_plugin_touchpoint_updates(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    pid = project["id"]
    v1, v2 = add_plugin(runtime, pid, "1.0.0"), add_plugin(runtime, pid, "2.0.0")
    tp = client.post(f"/projects/{pid}/touchpoints", json=plugin_body(v1)).json()
    url = f"/projects/{pid}/touchpoints/{tp['id']}"
    client.post(url + "/disable")

    # A new config without the secret keeps the stored secret.
    r = client.patch(url, json={"plugin_config": {"region": "cn-east"}})
    assert r.status_code == 200, r.text
    assert r.json()["plugin_config"] == {"api_key_set": True, "region": "cn-east"}
    assert runtime.secrets.decrypt(stored_plugin_config(runtime, tp["id"])["api_key"]) == "k-123"
    # Switching to a new version carries the values over.
    r = client.patch(url, json={"plugin_id": v2})
    assert r.status_code == 200, r.text
    assert r.json()["plugin_id"] == v2
    assert r.json()["plugin_config"] == {"api_key_set": True, "region": "cn-east"}
    r = client.patch(url, json={"url": "https://x.example.com", "token": "t"})
    assert {d["field"] for d in r.json()["error"]["details"]} == {"url", "token"}
    # To http and back.
    r = client.patch(
        url, json={"transport": "http", "url": "https://x.example.com/t", "token": "t"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plugin_id"] is None and body["plugin_config"] is None
    assert body["url"] == "https://x.example.com/t" and body["token_set"] is True
    r = client.patch(url, json={"receipt": {"mode": "async", "url": "https://r.example.com"}})
    assert r.status_code == 200, r.text
    r = client.patch(url, json={"transport": "plugin", "plugin_id": v1})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["error"]["details"]} == {"plugin_config.api_key"}
    r = client.patch(
        url, json={"transport": "plugin", "plugin_id": v1, "plugin_config": {"api_key": "new"}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"] is None and body["token_set"] is False
    assert body["plugin_config"] == {"api_key_set": True, "region": "cn-east"}
    # The receipt URL went with the http transport; the async settings stay.
    assert body["receipt"] == {"mode": "async", "poll_seconds": 300, "timeout_minutes": 1440}
    # Back to http with async receipts needs a receipt URL again.
    r = client.patch(url, json={"transport": "http", "url": "https://x.example.com/t"})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["error"]["details"]} == {"receipt.url"}


class OptionsApi:
    """An options API on 127.0.0.1 answering with whatever ``answer`` holds."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] = {"code": 0, "enumArgs": []}
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(orjson.loads(await request.read()))
            return web.Response(body=orjson.dumps(self.answer), content_type="application/json")

        app = web.Application()
        app.router.add_post("/options", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def options_api() -> Iterator[OptionsApi]:
    api = OptionsApi()
    yield api
    api.close()


def test_options_from_the_options_api(
    client: httpx.Client, project: dict[str, Any], options_api: OptionsApi
) -> None:
    pid = project["id"]
    options_api.answer = {
        "code": 0,
        "enumArgs": [
            {"code": "T1", "description": "Template 1"},
            {
                "code": "CAT",
                "description": "Category",
                "childEnumArgs": [{"code": "T2", "description": "Two"}],
            },
        ],
    }
    body = {
        "name": "Templates",
        "type": "notification",
        "url": "https://sms.example.com/t",
        "template_params": [
            {
                "key": "tpl",
                "name": "Template",
                "type": "enum",
                "required": True,
                "enum": {"source": "api", "url": f"http://127.0.0.1:{options_api.port}/options"},
            },
            {
                "key": "broken",
                "name": "Broken",
                "type": "enum",
                "enum": {"source": "api", "url": f"http://127.0.0.1:{options_api.port}/missing"},
            },
        ],
    }
    tp = client.post(f"/projects/{pid}/touchpoints", json=body).json()
    base = f"/projects/{pid}/touchpoints/{tp['id']}/params"
    r = client.get(f"{base}/tpl/options")
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"code": "T1", "name": "Template 1"},
        {"code": "CAT", "name": "Category", "children": [{"code": "T2", "name": "Two"}]},
    ]
    assert options_api.requests == [
        {"projectId": pid, "paramDescription": "Template", "paramName": "tpl"}
    ]
    assert "X-Touchgate-Warning" not in r.headers
    # Cached: the API is not asked again, unless a refresh is asked for.
    assert client.get(f"{base}/tpl/options").json() == r.json()
    assert len(options_api.requests) == 1
    options_api.answer = {"code": 1, "message": "maintenance"}
    again = client.get(f"{base}/tpl/options?refresh=true")
    assert again.status_code == 200 and again.json() == r.json()
    assert len(options_api.requests) == 2
    assert "maintenance" in again.headers["X-Touchgate-Warning"]
    r = client.get(f"{base}/broken/options")
    assert r.status_code == 502, r.text
    assert "404" in r.json()["error"]["message"]
