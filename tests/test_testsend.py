"""Test send through the real API against real local endpoints: every failure
class of the diagnosis, redaction, validation and the last-test fields."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from touchgate.config import Settings
from touchgate.delivery import client as http_client
from touchgate.delivery import testsend
from touchgate.delivery.client import HttpResult
from touchgate.runtime import Runtime

TOKEN = "tok-test-send-S3CRET"

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def doc(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class ThreadedServer:
    """An aiohttp.web server on 127.0.0.1 (port 0) in its own thread and loop.

    ``handler`` answers every request; tests replace it. Requests are recorded.
    """

    handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("test endpoint did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.seen.append(Seen(request.path, dict(request.headers), body))
            doc: dict[str, Any] = {}
            try:
                parsed = orjson.loads(body)
                if isinstance(parsed, dict):
                    doc = parsed
            except orjson.JSONDecodeError:
                pass
            if self.handler is None:
                return web.json_response({"code": 0})
            return await self.handler(request, doc)

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        self._loop.run_until_complete(start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def endpoint() -> Iterator[ThreadedServer]:
    server = ThreadedServer()
    yield server
    server.stop()


def reply_ok(
    status: str = "TOU_SUCC", **extra: Any
) -> Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        body = {
            "code": 0,
            "message": "",
            "orderNo": doc.get("orderNo"),
            "sendStatusList": [
                {"gid": e["gid"], "status": status, "errorMsg": ""} for e in doc["dataList"]
            ],
        }
        body.update(extra)
        return web.json_response(body)

    return handler


def setup_touchpoint(
    client: httpx.Client, project: dict[str, Any], url: str, **overrides: Any
) -> dict[str, Any]:
    pid = project["id"]
    for key, name in (("memberId", "Member id"), ("phone", "Phone"), ("name", "Name")):
        r = client.post(
            f"/projects/{pid}/attributes",
            json={"key": key, "name": name, "type": "string", "kind": "attribute"},
        )
        assert r.status_code in (201, 409), r.text
    body: dict[str, Any] = {
        "name": "SMS",
        "type": "notification",
        "transport": "http",
        "url": url,
        "token": TOKEN,
        "batch_size": 3,
        "timeout_seconds": 5,
        "user_attributes": ["memberId", "phone", "name"],
        "template_params": [
            {"key": "title", "name": "Title", "type": "text", "required": True},
            {"key": "amount", "name": "Amount", "type": "number", "required": False},
            {
                "key": "jump",
                "name": "Jump",
                "type": "enum",
                "required": False,
                "enum": {"source": "manual", "options": [{"code": "H5", "name": "H5 page"}]},
            },
        ],
    }
    body.update(overrides)
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def send_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "users": [
            {"gid": 1, "attributes": {"memberId": "M1", "phone": "130", "name": "Ann"}},
            {"gid": 2, "attributes": {"memberId": "M2"}},
        ],
        "params": {"title": "Hi {{name}}", "amount": 5},
    }
    body.update(changes)
    return body


def run_test(
    client: httpx.Client, project: dict[str, Any], tp: dict[str, Any], body: dict[str, Any]
) -> httpx.Response:
    return client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=body)


def codes(out: dict[str, Any]) -> list[str]:
    """The diagnosis as codes (the console renders these)."""
    assert [d["message"] for d in out["diagnosis_details"]] == out["diagnosis"]
    return [d["code"] for d in out["diagnosis_details"]]


def notes(out: dict[str, Any]) -> dict[int, tuple[str, dict[str, Any]]]:
    """Per-user notes by gid: (code, params)."""
    return {n["gid"]: (n["code"], n["params"]) for n in out["status_details"]}


def test_successful_test_send_is_signed_shown_redacted_and_recorded(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = reply_ok()
    tp = setup_touchpoint(client, project, endpoint.url + "/touch")
    secret = tp["signing_secret"]
    r = run_test(client, project, tp, send_body())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] is True, out
    assert out["diagnosis"] == [] and out["diagnosis_details"] == []
    assert out["status_details"] == []
    assert out["statuses"] == [
        {"gid": 1, "status": "TOU_SUCC", "error_msg": ""},
        {"gid": 2, "status": "TOU_SUCC", "error_msg": ""},
    ]
    # What the endpoint really got: both signatures valid, placeholders rendered.
    assert len(endpoint.seen) == 1
    got = endpoint.seen[0]
    doc = got.doc
    assert got.path == "/touch"
    assert doc["orderNo"] == out["order_no"]
    expected_sign = (
        hashlib.md5(f"{TOKEN}&{doc['timeStamp']}&{doc['orderNo']}".encode()).hexdigest().upper()
    )
    assert doc["sign"] == expected_sign
    signed = f"{doc['orderNo']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert got.headers["webhook-signature"] == f"v1,{mac}"
    assert doc["dataList"] == [
        {
            "gid": 1,
            "temData": {"title": "Hi Ann", "amount": 5},
            "dynamicData": {"memberId": "M1", "phone": "130", "name": "Ann"},
        },
        {
            "gid": 2,
            "temData": {"title": "Hi ", "amount": 5},
            "dynamicData": {"memberId": "M2", "phone": None, "name": None},
        },
    ]
    # What the API shows: the same request with secrets redacted.
    shown = out["request"]
    assert shown["url"] == endpoint.url + "/touch"
    assert shown["body"]["sign"] == "<redacted>"
    assert shown["headers"]["webhook-signature"] == "<redacted>"
    assert shown["headers"]["webhook-id"] == out["order_no"]
    assert shown["body"]["dataList"] == doc["dataList"]
    assert out["response"]["status"] == 200
    assert out["response"]["body"]["code"] == 0
    assert TOKEN not in r.text
    assert secret not in r.text and mac not in r.text and expected_sign not in r.text
    # The touchpoint remembers the test.
    tp_now = client.get(f"/projects/{project['id']}/touchpoints/{tp['id']}").json()
    assert tp_now["last_test"]["ok"] is True
    assert tp_now["last_test"]["at"]


def test_unreachable_endpoint(client: httpx.Client, project: dict[str, Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        tp = setup_touchpoint(client, project, f"http://127.0.0.1:{port}/touch")
        out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert out["response"]["status"] is None
    assert "unreachable" in out["diagnosis"][0]
    assert "refused" in out["diagnosis"][0]
    assert codes(out) == ["refused"]
    assert out["diagnosis_details"][0]["params"]["url"] == f"http://127.0.0.1:{port}/touch"
    assert {gid: code for gid, (code, _) in notes(out).items()} == {
        1: "no_response",
        2: "no_response",
    }
    assert [s["status"] for s in out["statuses"]] == ["TOU_FAIL", "TOU_FAIL"]
    tp_now = client.get(f"/projects/{project['id']}/touchpoints/{tp['id']}").json()
    assert tp_now["last_test"]["ok"] is False


def test_timeout(client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer) -> None:
    async def slow(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(2.5)
        return web.json_response({"code": 0})

    endpoint.handler = slow
    tp = setup_touchpoint(client, project, endpoint.url, timeout_seconds=1)
    started = time.monotonic()
    out = run_test(client, project, tp, send_body()).json()
    assert time.monotonic() - started < 2.4
    assert out["ok"] is False
    assert "did not answer within 1 s" in out["diagnosis"][0]
    assert out["diagnosis_details"][0]["code"] == "timeout"
    assert out["diagnosis_details"][0]["params"] == {"seconds": 1}


@pytest.mark.parametrize(
    ("status", "words", "code"),
    [
        (500, "HTTP 500. In a campaign the batch would be retried", "http_retryable"),
        (429, "HTTP 429. In a campaign the batch would be retried", "http_retryable"),
        (404, "HTTP 404; only 2xx answers are read", "http_status"),
        (302, "a redirect to /elsewhere. Redirects are not followed", "http_redirect"),
        (401, "HTTP 401: it did not accept the request's credentials", "http_auth"),
        (403, "Check the touchpoint's auth token (it makes `sign`) and the signing", "http_auth"),
    ],
)
def test_http_status(
    client: httpx.Client,
    project: dict[str, Any],
    endpoint: ThreadedServer,
    status: int,
    words: str,
    code: str,
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        if request.path == "/elsewhere":
            return web.json_response({"code": 0})
        headers = {"Location": "/elsewhere"} if status == 302 else {}
        return web.Response(status=status, text="nope", headers=headers)

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url + "/touch")
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert out["response"]["status"] == status
    assert any(words in d for d in out["diagnosis"]), out["diagnosis"]
    assert codes(out) == [code]
    assert out["diagnosis_details"][0]["params"]["status"] == status
    assert notes(out)[1] == ("http_status", {"status": status})
    assert [s.path for s in endpoint.seen] == ["/touch"]  # the redirect is not followed


def test_unauthorised_without_a_token_says_the_token_is_missing(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"code": 401, "message": "sign missing"}, status=401)

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url, token=None)
    out = run_test(client, project, tp, send_body()).json()
    assert codes(out) == ["http_auth_no_token", "sign_missing"]
    assert "does not have (no `sign` is sent)" in out["diagnosis"][0]


@pytest.mark.parametrize(
    ("answer_body", "expected"),
    [
        # The batch refused, the reason in the message.
        ({"code": 1001, "message": "sign error"}, ["endpoint_refused", "sign_rejected"]),
        ({"code": 7, "message": "签名校验失败"}, ["endpoint_refused", "sign_rejected"]),
        ({"code": 7, "message": "Invalid signature"}, ["endpoint_refused", "sign_rejected"]),
        # Users failed one by one, the reason in their errorMsg.
        (
            {
                "code": 0,
                "sendStatusList": [
                    {"gid": 1, "status": "TOU_FAIL", "errorMsg": "bad sign"},
                    {"gid": 2, "status": "TOU_FAIL", "errorMsg": "bad sign"},
                ],
            },
            ["user_failed", "user_failed", "sign_rejected"],
        ),
        # "signed up" or "design" is not about signatures.
        ({"code": 9, "message": "user not signed up; see design doc"}, ["endpoint_refused"]),
    ],
)
def test_a_signature_complaint_is_named(
    client: httpx.Client,
    project: dict[str, Any],
    endpoint: ThreadedServer,
    answer_body: dict[str, Any],
    expected: list[str],
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"orderNo": doc["orderNo"], **answer_body})

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url)
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert codes(out) == expected
    if "sign_rejected" in expected:
        assert "auth token" in out["diagnosis"][-1] and "signing secret" in out["diagnosis"][-1]


@pytest.mark.parametrize(
    ("body", "words", "problem"),
    [
        (b"<html>oops</html>", "response is not JSON", "not_json"),
        (b"[1, 2]", "response is not a JSON object", "not_object"),
        (b'{"ok": true}', "response has no integer 'code'", "no_code"),
        (
            b'{"code": 0, "sendStatusList": {"gid": 1}}',
            "'sendStatusList' is not a list",
            "status_list_not_list",
        ),
        (
            b'{"code": 0, "sendStatusList": [1]}',
            "an entry of 'sendStatusList' is not an object",
            "entry_not_object",
        ),
        (
            b'{"code": 0, "sendStatusList": [{"status": "TOU_SUCC"}]}',
            "an entry of 'sendStatusList' has no integer gid",
            "entry_no_gid",
        ),
        (
            b'{"code": 0, "sendStatusList": [{"gid": 1, "status": "DONE"}]}',
            "gid 1 has status 'DONE'",
            "bad_status",
        ),
    ],
)
def test_body_not_json_or_wrong_shape(
    client: httpx.Client,
    project: dict[str, Any],
    endpoint: ThreadedServer,
    body: bytes,
    words: str,
    problem: str,
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url)
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert "not what the protocol expects" in out["diagnosis"][0]
    assert words in out["diagnosis"][0]
    # Every reason the protocol reader gives has its own problem code.
    assert codes(out) == ["not_protocol"]
    assert out["diagnosis_details"][0]["params"]["problem"] == problem
    assert notes(out)[1] == ("not_protocol", out["diagnosis_details"][0]["params"])
    assert all(s["status"] == "TOU_FAIL" for s in out["statuses"])


def test_nonzero_code(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"code": 500, "message": "service error"})

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url)
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert "code 500 with message 'service error'" in out["diagnosis"][0]
    assert out["statuses"][0] == {"gid": 1, "status": "TOU_FAIL", "error_msg": "service error"}
    assert codes(out) == ["endpoint_refused"]
    assert out["diagnosis_details"][0]["params"] == {"api_code": 500, "said": "service error"}


def test_missing_unexpected_gids_and_order_mismatch(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(
            {
                "code": 0,
                "orderNo": "0" * 32,
                "sendStatusList": [
                    {"gid": 1, "status": "TOU_SUCC", "errorMsg": ""},
                    {"gid": 99, "status": "TOU_SUCC", "errorMsg": ""},
                ],
            }
        )

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url)
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    text = " ".join(out["diagnosis"])
    assert "No status was returned for gid 2" in text
    assert "lists gid 99, which was not in the request" in text
    assert f"orderNo '{'0' * 32}' differs" in text
    assert codes(out) == ["missing_statuses", "unexpected_gids", "order_no_mismatch"]
    assert out["diagnosis_details"][0]["params"] == {"gids": "2", "count": 1}
    assert notes(out) == {2: ("no_status_returned", {})}
    assert out["statuses"] == [
        {"gid": 1, "status": "TOU_SUCC", "error_msg": ""},
        {"gid": 2, "status": "TOU_FAIL", "error_msg": "no status returned"},
    ]


def test_user_reported_as_failed(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(
            {
                "code": 0,
                "orderNo": doc["orderNo"],
                "sendStatusList": [
                    {"gid": 1, "status": "TOU_SUCC", "errorMsg": ""},
                    {"gid": 2, "status": "TOU_FAIL", "errorMsg": "bad phone"},
                ],
            }
        )

    endpoint.handler = answer
    tp = setup_touchpoint(client, project, endpoint.url)
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is False
    assert out["diagnosis"] == ["The endpoint reported gid 2 as not reached (TOU_FAIL): bad phone."]
    assert out["diagnosis_details"][0]["params"] == {"gid": 2, "said": "bad phone"}
    assert notes(out) == {2: ("endpoint_said", {"said": "bad phone"})}


def test_async_mode_leaves_unlisted_users_pending(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    async def answer(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"code": 0, "orderNo": doc["orderNo"], "sendStatusList": []})

    endpoint.handler = answer
    tp = setup_touchpoint(
        client,
        project,
        endpoint.url,
        receipt={"mode": "async", "url": endpoint.url + "/receipt"},
    )
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is True
    assert [s["status"] for s in out["statuses"]] == ["pending", "pending"]
    assert "stays pending until the receipt URL reports it" in out["diagnosis"][0]
    assert codes(out) == ["awaiting_receipt"]
    assert notes(out) == {1: ("awaiting_receipt", {}), 2: ("awaiting_receipt", {})}


def test_disabled_touchpoint_can_be_tested(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = reply_ok()
    tp = setup_touchpoint(client, project, endpoint.url)
    r = client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/disable")
    assert r.status_code == 200, r.text
    out = run_test(client, project, tp, send_body()).json()
    assert out["ok"] is True


def test_invalid_input_names_every_field_and_sends_nothing(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    tp = setup_touchpoint(client, project, endpoint.url)
    users = [
        {"gid": 1, "attributes": {"memberId": "M1", "idCard": "x"}},
        {"gid": 1},
        {"gid": 3},
        {"gid": 4},
    ]
    r = run_test(
        client,
        project,
        tp,
        {"users": users, "params": {"title": "Hi {{idCard}}", "amount": "5", "jump": "APP"}},
    )
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert fields == {
        "users",
        "users[0].attributes.idCard",
        "users[1].gid",
        "params.title",
        "params.amount",
        "params.jump",
    }
    r = run_test(client, project, tp, {"users": [], "params": {"title": "x"}})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "users"
    r = run_test(client, project, tp, {"users": [{"gid": "1"}], "params": {"title": "x"}})
    assert r.status_code == 422
    r = run_test(client, project, tp, {"users": [{"gid": 1}], "params": {}})
    assert r.status_code == 422
    assert [(d["field"], d["message"]) for d in r.json()["error"]["details"]] == [
        ("params.title", "is required")
    ]
    assert endpoint.seen == []
    r = client.post(f"/projects/{project['id']}/touchpoints/999999/test", json=send_body())
    assert r.status_code == 404


def test_blocked_by_the_network_guard(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    # The shared test runtime allows loopback; this one does not, like a default
    # installation. The endpoint is on 127.0.0.1 and must never be contacted.
    tp = setup_touchpoint(client, project, endpoint.url + "/touch")
    guarded = Runtime.from_settings(
        Settings(
            database_url=runtime.settings.database_url,
            secret_key=runtime.settings.secret_key,
        )
    )
    body = testsend.TestSendIn.model_validate(send_body())

    async def main() -> testsend.TestSendOut:
        try:
            with guarded.tx() as session:
                prepared = testsend.prepare(session, guarded, project["id"], tp["id"], body)
            return await testsend.send(guarded, prepared, body)
        finally:
            await http_client.close(guarded)

    try:
        out = asyncio.run(main())
    finally:
        guarded.close()
    assert out.ok is False
    assert endpoint.seen == []
    assert out.diagnosis_details[0].code == "blocked"
    words = out.diagnosis[0]
    assert words.startswith("The request was not sent: it was blocked by the network guard")
    assert "127.0.0.1 is a loopback (127.0.0.0/8)" in words
    assert "TOUCHGATE_ALLOWED_NETWORKS" in words


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("dns", "the host name 'x.invalid' could not be resolved", "Check the host name"),
        ("tls", "the TLS handshake failed", "certificate"),
        ("reset", "the connection was reset by the server", "would be retried"),
        ("too_large", "the response body is larger than 1048576 bytes", "too large"),
    ],
)
def test_other_transport_diagnoses(kind: str, error: str, words: str) -> None:
    # Failures that cannot be provoked on loopback alone (name resolution would
    # query a DNS server) are checked on the diagnosis itself.
    result = HttpResult(None, error_kind=kind, error=error)
    finding = testsend._transport_diagnosis(result, "http://x.invalid/", 5)
    assert error in finding.message and words in finding.message
    assert (finding.code, finding.params) == (kind, {"error": error})


@pytest.mark.parametrize(
    ("api_key", "words"),
    [
        ("sk-busy", "The plugin asked to try again later (RetryableError): the gateway is busy"),
        ("wrong-key", "The plugin failed:"),
    ],
)
def test_plugin_failures_are_diagnosed(
    client: httpx.Client, project: dict[str, Any], tmp_path: Any, api_key: str, words: str
) -> None:
    # The sample plugin package (examples/plugins) run in the real sandbox.
    # (imported by name: that module belongs to the plugins tests)
    import importlib

    plugin_tests: Any = importlib.import_module("test_plugin_delivery")
    tp = plugin_tests.setup_plugin_touchpoint(client, project["id"], tmp_path, api_key)
    r = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test",
        json={"users": [{"gid": 42, "attributes": {"phone": "130"}}], "params": {"title": "Hi"}},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] is False
    assert out["request"]["url"] is None
    assert out["request"]["body"]["users"][0]["gid"] == 42
    assert words in out["diagnosis"][0], out["diagnosis"]
    assert out["statuses"][0]["status"] == "TOU_FAIL"
    assert api_key not in r.text


def test_only_admins_may_test(
    runtime: Runtime,
    client: httpx.Client,
    anon_client: httpx.Client,
    project: dict[str, Any],
    endpoint: ThreadedServer,
) -> None:
    from touchgate.crypto import hash_api_key
    from touchgate.models import ApiKey

    tp = setup_touchpoint(client, project, endpoint.url)
    with runtime.tx() as session:
        session.add(ApiKey(name="op", key_hash=hash_api_key("operator-key"), role="operator"))
    path = f"/projects/{project['id']}/touchpoints/{tp['id']}/test"
    assert anon_client.post(path, json=send_body()).status_code == 401
    r = anon_client.post(path, json=send_body(), headers={"Authorization": "Bearer operator-key"})
    assert r.status_code == 403
    assert endpoint.seen == []
