"""The sample receiver (examples/receiver.py) run as a real subprocess against
real sends from Touchgate, and Touchgate's requests checked with the independent
``standardwebhooks`` package."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from test_testsend import TOKEN, ThreadedServer, send_body, setup_touchpoint
from touchgate.delivery import protocol
from touchgate.runtime import Runtime

RECEIVER = Path(__file__).resolve().parent.parent / "examples" / "receiver.py"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    def __init__(self, port: int, *args: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.communicate()[0] if self.proc.poll() is not None else ""
                raise RuntimeError(f"receiver did not start: {out}")
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/stats").json()
        return data

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url + path, content=body, headers=headers)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def test_real_test_sends_are_verified_and_answered(
    client: httpx.Client, project: dict[str, Any], receivers: list[Receiver]
) -> None:
    port = free_port()
    tp = setup_touchpoint(client, project, f"http://127.0.0.1:{port}/touch")
    rx = Receiver(port, "--token", TOKEN, "--secret", tp["signing_secret"])
    receivers.append(rx)
    r = client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=send_body())
    out = r.json()
    assert out["ok"] is True, out
    assert [s["status"] for s in out["statuses"]] == ["TOU_SUCC", "TOU_SUCC"]
    assert out["response"]["body"]["orderNo"] == out["order_no"]
    assert rx.stats() == {
        "orders": 1,
        "users": 2,
        "failed_users": 0,
        "repeats": 0,
        "rejected": 0,
        "synthetic_users": 0,
    }

    # After a rotation both signatures are sent; the receiver still knowing only
    # the old secret accepts the request.
    r = client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    out = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=send_body()
    ).json()
    assert out["ok"] is True, out
    assert rx.stats()["orders"] == 2

    # One line per delivery on stdout, then one per gid it carried.
    out = rx.stop().splitlines()
    lines = [line for line in out if " order " in line]
    assert len(lines) == 2
    assert "2 users, 2 TOU_SUCC, 0 TOU_FAIL" in lines[0]
    gid_lines = [line for line in out if "  gid " in line]
    assert len(gid_lines) == 4
    assert "gid 1 TOU_SUCC" in gid_lines[0] and '"title": "Hi Ann"' in gid_lines[0]
    assert "gid 2 TOU_SUCC" in gid_lines[1]


def test_wrong_token_or_secret_is_rejected(
    client: httpx.Client, project: dict[str, Any], receivers: list[Receiver]
) -> None:
    port = free_port()
    tp = setup_touchpoint(client, project, f"http://127.0.0.1:{port}/touch")
    rx = Receiver(port, "--token", "another-token")
    receivers.append(rx)
    out = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=send_body()
    ).json()
    assert out["ok"] is False
    assert out["response"]["status"] == 401
    assert out["response"]["body"] == {"code": 401, "message": "sign does not match"}
    assert "HTTP 401" in out["diagnosis"][0]

    port2 = free_port()
    r = client.patch(
        f"/projects/{project['id']}/touchpoints/{tp['id']}",
        json={"url": f"http://127.0.0.1:{port2}/touch"},
    )
    assert r.status_code == 409  # enabled: disable first
    assert client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/disable").is_success
    r = client.patch(
        f"/projects/{project['id']}/touchpoints/{tp['id']}",
        json={"url": f"http://127.0.0.1:{port2}/touch"},
    )
    assert r.status_code == 200, r.text
    other_secret = "whsec_" + "A" * 43 + "="
    rx2 = Receiver(port2, "--secret", other_secret)
    receivers.append(rx2)
    out = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=send_body()
    ).json()
    assert out["response"]["body"] == {"code": 401, "message": "no valid webhook-signature"}
    assert rx2.stats()["rejected"] == 1 and rx2.stats()["orders"] == 0


def test_captured_request_verifies_with_standardwebhooks_and_replays_idempotently(
    client: httpx.Client, project: dict[str, Any], receivers: list[Receiver]
) -> None:
    capture = ThreadedServer()
    try:

        async def answer(request: Any, doc: dict[str, Any]) -> Any:
            from aiohttp import web

            return web.json_response({"code": 0, "orderNo": doc["orderNo"], "sendStatusList": []})

        capture.handler = answer
        tp = setup_touchpoint(client, project, capture.url + "/touch")
        client.post(f"/projects/{project['id']}/touchpoints/{tp['id']}/test", json=send_body())
    finally:
        capture.stop()
    assert len(capture.seen) == 1
    seen = capture.seen[0]
    # The independent implementation accepts Touchgate's signature...
    Webhook(tp["signing_secret"]).verify(seen.body, seen.headers)

    # ...and the sample receiver answers the same request, and its retry, once.
    port = free_port()
    rx = Receiver(port, "--token", TOKEN, "--secret", tp["signing_secret"], "--fail-rate", "0.5")
    receivers.append(rx)
    headers = {k: v for k, v in seen.headers.items() if k.lower().startswith("webhook-")}
    first = rx.post("/touch", seen.body, headers)
    again = rx.post("/touch", seen.body, headers)
    assert first.status_code == 200 and again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["orderNo"] == seen.doc["orderNo"]
    assert rx.stats()["orders"] == 1 and rx.stats()["repeats"] == 1
    # A changed body no longer matches its signature.
    tampered = seen.body.replace(b'"Hi Ann"', b'"Hi Bob"')
    assert tampered != seen.body
    assert rx.post("/touch", tampered, headers).status_code == 401


def test_stale_requests_are_rejected(receivers: list[Receiver]) -> None:
    from touchgate.crypto import new_signing_secret

    secret = new_signing_secret()
    port = free_port()
    rx = Receiver(port, "--token", "t", "--secret", secret)
    receivers.append(rx)
    entries = protocol.encode_data_list([{"gid": 1, "temData": {}, "dynamicData": {}}])

    def signed(ts_ms: int, order_no: str) -> tuple[bytes, dict[str, str]]:
        body = protocol.delivery_body(order_no, entries, ts_ms, "t")
        return body, protocol.request_headers(body, order_no, ts_ms, [secret])

    now = int(time.time() * 1000)
    body, headers = signed(now - 10 * 60 * 1000, protocol.new_order_no())
    r = rx.post("/touch", body, headers)
    assert r.status_code == 401
    assert "5 minutes" in r.json()["message"]
    body, headers = signed(now, protocol.new_order_no())
    assert rx.post("/touch", body, headers).json()["sendStatusList"][0]["status"] == "TOU_SUCC"
    del headers["webhook-signature"]
    assert rx.post("/touch", body, headers).status_code == 401


def test_async_mode_receipts_and_options(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], receivers: list[Receiver]
) -> None:
    runtime.options_cache.clear()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tp = setup_touchpoint(
        client,
        project,
        base + "/touch",
        receipt={"mode": "async", "url": base + "/receipt"},
        template_params=[
            {"key": "title", "name": "Title", "type": "text", "required": True},
            {
                "key": "jump",
                "name": "Jump type",
                "type": "enum",
                "required": False,
                "enum": {"source": "api", "url": base + "/options"},
            },
        ],
    )
    rx = Receiver(port, "--token", TOKEN, "--secret", tp["signing_secret"], "--mode", "async")
    receivers.append(rx)
    r = client.get(f"/projects/{project['id']}/touchpoints/{tp['id']}/params/jump/options")
    assert r.status_code == 200, r.text
    assert [o["code"] for o in r.json()] == ["JUMP_H5", "JUMP_APP"]
    assert r.json()[1]["children"][0] == {"code": "JUMP_APP_HOME", "name": "App home"}

    out = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test",
        json=send_body(params={"title": "x", "jump": "JUMP_APP_HOME"}),
    ).json()
    assert out["ok"] is True, out
    assert [s["status"] for s in out["statuses"]] == ["pending", "pending"]

    # The receipt poll Touchgate would make, signed the same way.
    ts = int(time.time() * 1000)
    body = protocol.receipt_body(out["order_no"], ts, TOKEN)
    headers = protocol.request_headers(body, out["order_no"], ts, [tp["signing_secret"]])
    doc = rx.post("/receipt", body, headers).json()
    assert doc["code"] == 0
    assert protocol.read_document(doc, [1, 2], order_no=out["order_no"]).statuses == {
        1: ("TOU_SUCC", ""),
        2: ("TOU_SUCC", ""),
    }
    body = protocol.receipt_body("f" * 32, ts, TOKEN)
    headers = protocol.request_headers(body, "f" * 32, ts, [tp["signing_secret"]])
    assert rx.post("/receipt", body, headers).json()["code"] == 404


def test_fail_rate_and_bad_arguments(receivers: list[Receiver]) -> None:
    port = free_port()
    rx = Receiver(port, "--fail-rate", "1")
    receivers.append(rx)
    order = protocol.new_order_no()
    data = protocol.encode_data_list([{"gid": g, "temData": {}, "dynamicData": {}} for g in (1, 2)])
    body = protocol.delivery_body(order, data, int(time.time() * 1000), None)
    doc = rx.post("/touch", body, {}).json()
    assert [s["status"] for s in doc["sendStatusList"]] == ["TOU_FAIL", "TOU_FAIL"]
    assert rx.post("/touch", b"nope", {}).status_code == 400
    assert (
        rx.post("/touch", orjson.dumps({"orderNo": "x", "dataList": [{}]}), {}).status_code == 400
    )

    bad = subprocess.run(
        [sys.executable, str(RECEIVER), "--fail-rate", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--fail-rate must be between 0 and 1" in bad.stderr
    bad = subprocess.run(
        [sys.executable, str(RECEIVER), "--secret", "whsec_not base64!"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--secret must be whsec_ followed by base64" in bad.stderr


def test_demo_touchpoint_and_receiver(
    runtime: Runtime, client: httpx.Client, tmp_path: Path, receivers: list[Receiver]
) -> None:
    import json
    import stat

    from touchgate.demo import (
        DEMO_TOUCHPOINT,
        demo_settings,
        ensure_demo_touchpoint,
        load_demo,
        start_demo_receiver,
    )

    load_demo(runtime, "http://127.0.0.1:1")
    port = free_port()
    first = ensure_demo_touchpoint(runtime, port, tmp_path)
    again = ensure_demo_touchpoint(runtime, port, tmp_path)  # a restart
    assert (again.touchpoint_id, again.port) == (first.touchpoint_id, port)
    path = tmp_path / "touchgate.demo-receiver.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["port"] == port and saved["secret"].startswith("whsec_") and saved["token"]

    pid = first.project_id
    listed = client.get(f"/projects/{pid}/touchpoints").json()["items"]
    assert [t["name"] for t in listed] == [DEMO_TOUCHPOINT]
    demo_tp = listed[0]
    assert demo_tp["url"] == f"http://127.0.0.1:{port}/touch"
    assert demo_tp["token_set"] is True
    spaces = client.get(f"/projects/{pid}/spaces").json()["items"]
    assert sorted(demo_tp["space_ids"]) == sorted(s["id"] for s in spaces)

    said: list[str] = []
    demo = start_demo_receiver(runtime, port, said.append, tmp_path)
    try:
        assert demo.process is not None
        assert any("127.0.0.1/32" in s and "TOUCHGATE_ALLOWED_NETWORKS" in s for s in said)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(demo.url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "demo receiver did not start"
                time.sleep(0.05)
        out = client.post(
            f"/projects/{pid}/touchpoints/{demo.touchpoint_id}/test",
            json={
                "users": [{"gid": 1001, "attributes": {"memberId": "M0001", "name": "Member 1"}}],
                "params": {"title": "Hello {{name}}", "kind": "PROMO_COUPON"},
            },
        ).json()
        assert out["ok"] is True, out
        assert out["request"]["body"]["dataList"][0]["temData"]["title"] == "Hello Member 1"
    finally:
        demo.stop()
    assert demo.process.poll() is not None

    # Demo settings allow 127.0.0.1 only, keeping what the operator allowed.
    from touchgate.config import Settings

    base = Settings(database_url="sqlite://", allowed_networks="10.0.0.0/8")
    assert [str(n) for n in demo_settings(base).allowed_network_list] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
    ]
    loop_ok = Settings(database_url="sqlite://", allowed_networks="127.0.0.0/8")
    assert demo_settings(loop_ok) is loop_ok
