"""The receiver library (``touchgate.receiver``) on its own, and the FastAPI and
Flask examples built on it served for real on 127.0.0.1 and called with
requests signed by Touchgate's own protocol code."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from werkzeug.serving import make_server

from conftest import free_port
from touchgate import receiver
from touchgate.crypto import new_signing_secret
from touchgate.delivery import protocol
from touchgate.receiver import DOCTOR_GIDS, DOCTOR_MARKER, Endpoint, Verifier

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOKEN = "lib-token"
SECRET = new_signing_secret()


def signed(
    gids: list[int], *, order_no: str | None = None, ts_ms: int | None = None, **tem: Any
) -> tuple[dict[str, str], bytes]:
    order_no = order_no or protocol.new_order_no()
    ts_ms = ts_ms if ts_ms is not None else int(time.time() * 1000)
    data = protocol.encode_data_list(
        [{"gid": g, "temData": {"title": "你好", **tem}, "dynamicData": {}} for g in gids]
    )
    body = protocol.delivery_body(order_no, data, ts_ms, TOKEN)
    return protocol.request_headers(body, order_no, ts_ms, [SECRET]), body


def receipt_request(order_no: str) -> tuple[dict[str, str], bytes]:
    ts = int(time.time() * 1000)
    body = protocol.receipt_body(order_no, ts, TOKEN)
    return protocol.request_headers(body, order_no, ts, [SECRET]), body


class Counting:
    def __init__(self) -> None:
        self.calls: list[receiver.Delivery] = []

    def __call__(self, delivery: receiver.Delivery) -> list[receiver.Status]:
        self.calls.append(delivery)
        return [
            receiver.reached(u.gid) if u.gid % 2 else receiver.not_reached(u.gid, "空号")
            for u in delivery.users
        ]


def test_sync_endpoint_verifies_answers_and_is_idempotent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = Counting()
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), work)
    headers, body = signed([1, 2, 3])
    with caplog.at_level(logging.INFO, logger="touchgate.receiver"):
        first = endpoint.handle_delivery(headers, body)
    assert first.status == 200
    answer = first.json
    order_no = protocol.read_document(answer, [1, 2, 3], order_no=answer["orderNo"])
    assert order_no.statuses == {1: ("TOU_SUCC", ""), 2: ("TOU_FAIL", "空号"), 3: ("TOU_SUCC", "")}
    assert "空号".encode() in first.body  # UTF-8, not \\u escapes
    # Every gid is logged (an integrator can count them).
    gid_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("  gid ")]
    assert [line.split()[1] for line in gid_lines] == ["1", "2", "3"]
    assert "TOU_FAIL 空号" in gid_lines[1]

    # A retry (fresh timestamp and signatures, same orderNo) gets the same answer, no work.
    again_headers, again_body = signed([1, 2, 3], order_no=answer["orderNo"])
    again = endpoint.handle_delivery(again_headers, again_body)
    assert again.json == answer
    assert len(work.calls) == 1
    assert endpoint.counts.repeats == 1 and endpoint.counts.orders == 1
    assert endpoint.counts.users == 3 and endpoint.counts.failed_users == 1

    # Refusals: tampered body, wrong token, stale, not JSON, no gid.
    tampered = endpoint.handle_delivery(headers, body.replace("你好".encode(), b"hi"))
    assert (tampered.status, tampered.json["message"]) == (401, "no valid webhook-signature")
    other = Endpoint(Verifier(token="other"), work).handle_delivery(headers, body)
    assert (other.status, other.json) == (401, {"code": 401, "message": "sign does not match"})
    old_headers, old_body = signed([1], ts_ms=int(time.time() * 1000) - 10 * 60 * 1000)
    stale = endpoint.handle_delivery(old_headers, old_body)
    assert stale.status == 401 and "5 minutes" in stale.json["message"]
    unsigned = Endpoint(Verifier(), work)
    assert unsigned.handle_delivery({}, b"nope").status == 400
    bad = unsigned.handle_delivery({}, b'{"orderNo": "x", "timeStamp": 1, "dataList": [{}]}')
    assert (bad.status, bad.json["message"]) == (
        400,
        "dataList[0] must be an object with an integer gid",
    )
    assert endpoint.counts.rejected == 2


def test_async_endpoint_answers_receipts_and_options() -> None:
    def offer(query: receiver.OptionsQuery) -> list[receiver.Option]:
        return [receiver.Option("A", query.param_description)]

    endpoint = Endpoint(
        Verifier(token=TOKEN, secrets=(SECRET,)), Counting(), mode="async", options=offer
    )
    headers, body = signed([7, 8])
    answer = endpoint.handle_delivery(headers, body).json
    assert answer["code"] == 0 and answer["sendStatusList"] == []
    polled = endpoint.handle_receipt(*receipt_request(answer["orderNo"])).json
    assert polled["sendStatusList"] == [
        {"gid": 7, "status": "TOU_SUCC", "errorMsg": ""},
        {"gid": 8, "status": "TOU_FAIL", "errorMsg": "空号"},
    ]
    assert endpoint.handle_receipt(*receipt_request("f" * 32)).json["code"] == 404

    opts = b'{"projectId": 1, "paramDescription": "Jump", "paramName": "jump"}'
    ts = int(time.time() * 1000)
    reply = endpoint.handle_options(
        protocol.request_headers(opts, protocol.new_order_no(), ts, [SECRET]), opts
    )
    assert reply.json == {"code": 0, "enumArgs": [{"code": "A", "description": "Jump"}]}
    # The options API is signed with the headers only: a wrong signature is refused.
    assert endpoint.handle_options({"webhook-id": "x"}, opts).status == 401


def test_synthetic_users_and_answer_helpers() -> None:
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), Counting())
    first = DOCTOR_GIDS.start
    headers, body = signed([first, first + 1])
    endpoint.handle_delivery(headers, body)
    assert endpoint.counts.synthetic_users == 2
    data = protocol.encode_data_list([{"gid": 5, "temData": {DOCTOR_MARKER: "synthetic"}}])
    delivery = receiver.parse_delivery(
        {"orderNo": "o", "timeStamp": 1, "dataList": __import__("json").loads(data)}
    )
    assert delivery.synthetic and delivery.users[0].dynamic_data == {}
    assert not receiver.is_synthetic_gid(5)
    assert receiver.is_synthetic_gid(2**53 - 1) and not receiver.is_synthetic_gid(2**53)
    with pytest.raises(ValueError, match="non-zero code"):
        receiver.batch_refused(0, "x")
    assert receiver.batch_refused(500, "service error") == {"code": 500, "message": "service error"}
    with pytest.raises(ValueError, match="whsec_"):
        Verifier(secrets=("whsec_***",))


# ---------------------------------------------------------------- the framework examples


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("RECEIVER_TOKEN", TOKEN)
    monkeypatch.setenv("RECEIVER_SECRET", SECRET)
    monkeypatch.delenv("RECEIVER_MODE", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the examples import channel.py beside them
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.post(url, content=b"{}", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not start"
            time.sleep(0.05)


@pytest.fixture
def fastapi_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    module = load_example("receiver_fastapi", monkeypatch)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/touch")
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def flask_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    module = load_example("receiver_flask", monkeypatch)
    server = make_server("127.0.0.1", 0, module.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    wait_for(url + "/touch")
    yield url
    server.shutdown()
    thread.join(10)


@pytest.mark.parametrize("example", ["fastapi_example", "flask_example"])
def test_framework_examples(example: str, request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue(example)
    headers, body = signed([11, 12])
    r = httpx.post(url + "/touch", content=body, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [s["status"] for s in answer["sendStatusList"]] == ["TOU_SUCC", "TOU_SUCC"]
    again_headers, again_body = signed([11, 12], order_no=answer["orderNo"])
    assert httpx.post(url + "/touch", content=again_body, headers=again_headers).json() == answer
    assert httpx.post(url + "/touch", content=body + b" ", headers=headers).status_code == 401
    # One request: its headers sign its own body (two calls could differ by a millisecond).
    receipt_headers, receipt_body = receipt_request(answer["orderNo"])
    polled = httpx.post(url + "/receipt", content=receipt_body, headers=receipt_headers)
    assert polled.json()["sendStatusList"] == answer["sendStatusList"]
    opts = b'{"projectId": 1, "paramDescription": "Jump", "paramName": "jump"}'
    ts = int(time.time() * 1000)
    r = httpx.post(
        url + "/options",
        content=opts,
        headers=protocol.request_headers(opts, protocol.new_order_no(), ts, [SECRET]),
    )
    assert r.json()["enumArgs"][0]["code"] == "JUMP_H5"
