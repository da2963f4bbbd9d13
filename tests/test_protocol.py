"""The wire protocol's pure functions: bodies, both signatures, response reading."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from touchgate.crypto import new_signing_secret
from touchgate.delivery import protocol
from touchgate.delivery.protocol import FAIL, SUCC, Verdict

ORDER = "1f1d0ea0c457453ab3c80ed376e5c66c"
TS = 1664590280000


def test_legacy_sign_matches_the_spec_example() -> None:
    # md5sum of "abc&1664590280000&1f1d0ea0c457453ab3c80ed376e5c66c", uppercased
    assert protocol.legacy_sign("abc", TS, ORDER) == "42DC07C6C82B4582CD28B1FA873A5436"


def test_order_numbers_are_32_lowercase_hex_and_unique() -> None:
    numbers = {protocol.new_order_no() for _ in range(1000)}
    assert len(numbers) == 1000
    for n in numbers:
        assert len(n) == 32 and n == n.lower() and int(n, 16) >= 0


def test_delivery_body_with_and_without_token() -> None:
    data_list = protocol.encode_data_list(
        [{"gid": 123, "temData": {"title": "生日券"}, "dynamicData": {"memberId": "01"}}]
    )
    body = protocol.delivery_body(ORDER, data_list, TS, "abc")
    doc = orjson.loads(body)
    assert list(doc) == ["timeStamp", "orderNo", "sign", "dataList"]
    assert doc["timeStamp"] == TS and doc["orderNo"] == ORDER
    assert doc["sign"] == "42DC07C6C82B4582CD28B1FA873A5436"
    assert doc["dataList"][0]["temData"]["title"] == "生日券"
    assert "生日券".encode() in body and b"\\u" not in body  # UTF-8, not escapes
    unsigned = orjson.loads(protocol.delivery_body(ORDER, data_list, TS, None))
    assert "sign" not in unsigned
    assert protocol.delivery_body(ORDER, b"[]", TS, "") == (
        b'{"timeStamp":1664590280000,"orderNo":"1f1d0ea0c457453ab3c80ed376e5c66c","dataList":[]}'
    )


def test_receipt_body() -> None:
    assert orjson.loads(protocol.receipt_body(ORDER, TS, "abc")) == {
        "timeStamp": TS,
        "orderNo": ORDER,
        "sign": "42DC07C6C82B4582CD28B1FA873A5436",
    }
    assert orjson.loads(protocol.receipt_body(ORDER, TS, None)) == {
        "timeStamp": TS,
        "orderNo": ORDER,
    }


def test_standard_webhooks_headers_verify_with_the_reference_library() -> None:
    secret = new_signing_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    ts = int(time.time() * 1000)
    body = protocol.delivery_body(ORDER, b"[]", ts, "abc")
    headers = protocol.request_headers(body, ORDER, ts, [secret])
    assert headers["webhook-id"] == ORDER
    assert headers["webhook-timestamp"] == str(ts // 1000)
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["User-Agent"].startswith("Touchgate/")
    Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_rotation_sends_both_signatures() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    ts = int(time.time() * 1000)
    body = b'{"x":1}'
    headers = protocol.request_headers(body, ORDER, ts, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)


def test_render_text_and_placeholders() -> None:
    attrs = {"name": "Ann", "level": 3, "vip": True, "none": None}
    assert protocol.render_text("Hi {{name}} L{{ level }} {{vip}}{{none}}{{gone}}", attrs) == (
        "Hi Ann L3 true"
    )
    assert protocol.render_text("no placeholders", attrs) == "no placeholders"
    assert protocol.render_text("{{ not closed", attrs) == "{{ not closed"
    assert protocol.placeholders("{{a}} and {{ b.c }} and {{1x}}") == ["a", "b.c"]


def test_data_entry() -> None:
    entry = protocol.data_entry(
        7,
        {"memberId": "01", "name": "Ann", "secret": "x"},
        ["memberId", "phone"],
        {"title": "Hi {{name}}", "amount": 5},
        ["title"],
    )
    assert entry == {
        "gid": 7,
        "temData": {"title": "Hi Ann", "amount": 5},
        "dynamicData": {"memberId": "01", "phone": None},
    }


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 599])
def test_retryable_statuses(status: int) -> None:
    reading = protocol.read_response(status, b"", [1], order_no=ORDER)
    assert reading.verdict is Verdict.RETRY
    assert reading.reason == f"HTTP {status}"


@pytest.mark.parametrize("status", [301, 302, 400, 401, 404, 409])
def test_other_statuses_fail_the_batch(status: int) -> None:
    reading = protocol.read_response(status, b'{"code":0}', [1], order_no=ORDER)
    assert reading.verdict is Verdict.FAIL_ALL
    assert reading.reason == f"HTTP {status}"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"nope", "response is not JSON"),
        (b"[]", "response is not a JSON object"),
        (b'{"code":"0"}', "response has no integer 'code'"),
        (b'{"code":true}', "response has no integer 'code'"),
        (b'{"code":0,"sendStatusList":{}}', "'sendStatusList' is not a list"),
        (b'{"code":0,"sendStatusList":[1]}', "an entry of 'sendStatusList' is not an object"),
        (b'{"code":0,"sendStatusList":[{"gid":"x"}]}', "has no integer gid"),
        (b'{"code":0,"sendStatusList":[{"gid":1,"status":"OK"}]}', "gid 1 has status 'OK'"),
    ],
)
def test_malformed_answers_fail_the_batch(body: bytes, reason: str) -> None:
    reading = protocol.read_response(200, body, [1], order_no=ORDER)
    assert reading.verdict is Verdict.FAIL_ALL
    assert reason in reading.reason


def test_nonzero_code_fails_with_message() -> None:
    reading = protocol.read_response(
        200, b'{"code":500,"message":"service error"}', [1, 2], order_no=ORDER
    )
    assert reading.verdict is Verdict.FAIL_ALL
    assert reading.reason == "service error"
    assert reading.code == 500
    assert protocol.read_response(200, b'{"code":3}', [1], order_no=ORDER).reason == "code 3"


def test_sync_results() -> None:
    body = orjson.dumps(
        {
            "code": 0,
            "message": "",
            "orderNo": ORDER,
            "sendStatusList": [
                {"gid": 123, "status": "TOU_SUCC", "errorMsg": ""},
                {"gid": "124", "status": "TOU_FAIL", "errorMsg": "bad user data"},
                {"gid": 999, "status": "TOU_SUCC"},
            ],
        }
    )
    reading = protocol.read_response(200, body, [123, 124, 125], order_no=ORDER)
    assert reading.verdict is Verdict.RESULTS
    assert reading.statuses == {
        123: (SUCC, ""),
        124: (FAIL, "bad user data"),
        125: (FAIL, "no status returned"),
    }
    assert reading.missing_gids == [125]
    assert reading.unexpected_gids == [999]
    assert reading.order_no_mismatch is None


def test_async_results_leave_unlisted_users_pending() -> None:
    body = (
        b'{"code":0,"sendStatusList":[{"gid":1,"status":"TOU_SUCC"},{"gid":2,"status":"PENDING"}]}'
    )
    reading = protocol.read_response(200, body, [1, 2, 3], order_no=ORDER, mode="async")
    assert reading.statuses == {1: (SUCC, "")}
    assert reading.missing_gids == []


def test_order_no_mismatch_is_noted() -> None:
    reading = protocol.read_response(
        200, b'{"code":0,"orderNo":"other","sendStatusList":[]}', [], order_no=ORDER
    )
    assert reading.verdict is Verdict.RESULTS
    assert reading.order_no_mismatch == "other"


def test_plugin_results_use_error_msg() -> None:
    reading = protocol.read_document(
        {"code": 0, "sendStatusList": [{"gid": 1, "status": "TOU_FAIL", "error_msg": "quota"}]},
        [1],
        order_no=ORDER,
    )
    assert reading.statuses == {1: (FAIL, "quota")}


@pytest.mark.parametrize(
    "entries",
    [
        # The usual answer: read in a few passes over the list.
        [{"gid": g, "status": "TOU_SUCC", "errorMsg": ""} for g in range(1, 6)],
        [
            {"gid": 1, "status": "TOU_SUCC"},
            {"gid": 2, "status": "TOU_FAIL", "errorMsg": 404},
            {"gid": 3, "status": "TOU_FAIL", "error_msg": "quota"},
            {"gid": 1, "status": "TOU_FAIL", "errorMsg": "twice: the last one counts"},
        ],
        # Anything else: read entry by entry.
        [{"gid": 1, "status": "TOU_SUCC"}, {"gid": "2", "status": "TOU_SUCC"}],
        [{"gid": 1, "status": "TOU_SUCC"}, {"gid": 77, "status": "TOU_SUCC"}],
        [{"gid": 1, "status": "PENDING"}, {"gid": 2, "status": "TOU_SUCC"}],
        [{"gid": 1, "status": ["TOU_SUCC"]}],
        [{"gid": True, "status": "TOU_SUCC"}],
        [{"gid": 1, "status": "TOU_SUCC"}, "not an object"],
    ],
)
def test_every_answer_reads_as_entry_by_entry(entries: list[Any]) -> None:
    """Whichever way an answer is read, its reading is what the entry-by-entry rules
    give (written out here as the reference)."""
    reading = protocol.read_document(
        {"code": 0, "sendStatusList": entries}, [1, 2, 3, 4, 5], order_no=ORDER
    )
    expected: dict[int, tuple[str, str]] = {}
    unexpected = []
    for item in entries:
        if not isinstance(item, dict):
            assert reading.verdict is Verdict.FAIL_ALL
            assert "not an object" in reading.reason
            return
        gid, status = item["gid"], item["status"]
        if isinstance(gid, bool):
            assert reading.verdict is Verdict.FAIL_ALL
            return
        if not isinstance(status, str):
            assert reading.verdict is Verdict.FAIL_ALL
            assert "expected TOU_SUCC" in reading.reason
            return
        gid = int(gid)
        if gid not in range(1, 6):
            unexpected.append(gid)
        elif status != "PENDING":
            err = item.get("errorMsg", item.get("error_msg"))
            expected[gid] = (status, "" if err is None else str(err))
    missing = [g for g in range(1, 6) if g not in expected]
    expected.update({g: (FAIL, "no status returned") for g in missing})
    assert reading.verdict is Verdict.RESULTS
    assert list(reading.statuses.items()) == list(expected.items())
    assert reading.unexpected_gids == unexpected
    assert reading.missing_gids == missing
