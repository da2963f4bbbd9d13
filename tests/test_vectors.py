"""The protocol's test vectors (docs/protocol-test-vectors.json), shipped for
integrators in any language, checked against both sides: Touchgate's sender and
its reading of answers (``delivery.protocol``, ``delivery.options``) and the
receiver library (``touchgate.receiver``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from touchgate import receiver
from touchgate.delivery import protocol
from touchgate.delivery.options import OptionsApiFailed, parse_options

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "docs" / "protocol-test-vectors.json").read_text("utf-8")
)


def named(group: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS[group]]


@pytest.mark.parametrize("vector", VECTORS["sign"])
def test_sign(vector: dict[str, Any]) -> None:
    args = (vector["token"], vector["timeStamp"], vector["orderNo"])
    assert protocol.legacy_sign(*args) == vector["sign"]
    assert receiver.legacy_sign(*args) == vector["sign"]
    assert hashlib.md5(vector["signed_text"].encode()).hexdigest().upper() == vector["sign"]


@pytest.mark.parametrize("vector", VECTORS["webhook_signature"])
def test_webhook_signature(vector: dict[str, Any]) -> None:
    secrets = vector.get("secrets") or [vector["secret"]]
    body = vector["body"].encode()
    args = (vector["webhook_id"], vector["webhook_timestamp"], body)
    assert protocol.webhook_signature(secrets, *args) == vector["signature"]
    assert " ".join(receiver.webhook_signature(s, *args) for s in secrets) == vector["signature"]


def _verifier(vector: dict[str, Any]) -> receiver.Verifier:
    return receiver.Verifier(token=vector["token"], secrets=tuple(vector["secrets"]))


@pytest.mark.parametrize("vector", named("requests"))
def test_request_is_accepted_or_refused_by_the_receiver(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    signed_body = vector["kind"] != "options"
    verify = _verifier(vector)
    if vector["expect"] == "accepted":
        doc = verify.read(vector["headers"], body, signed_body=signed_body, now=vector["now"])
        assert doc == json.loads(vector["body"])
        if vector["kind"] == "delivery":
            delivery = receiver.parse_delivery(doc)
            assert delivery.order_no == doc["orderNo"]
            assert [u.gid for u in delivery.users] == [e["gid"] for e in doc["dataList"]]
            assert delivery.users[0].tem_data["title"] == doc["dataList"][0]["temData"]["title"]
        return
    with pytest.raises(receiver.Refused) as refused:
        verify.read(vector["headers"], body, signed_body=signed_body, now=vector["now"])
    assert refused.value.code == vector["expect"]["refused"]
    assert refused.value.status == vector["expect"]["status"]


@pytest.mark.parametrize(
    "vector", [v for v in named("requests") if v.values[0]["expect"] == "accepted"]
)
def test_touchgate_sends_exactly_the_accepted_requests(vector: dict[str, Any]) -> None:
    """Byte for byte: the body Touchgate builds and the headers it signs."""
    body = vector["body"].encode()
    doc = orjson.loads(body)
    ts, order_no = doc.get("timeStamp", 0), doc.get("orderNo", "")
    if vector["kind"] == "delivery":
        data = protocol.encode_data_list(doc["dataList"])
        assert protocol.delivery_body(order_no, data, ts, vector["token"]) == body
    elif vector["kind"] == "receipt":
        assert protocol.receipt_body(order_no, ts, vector["token"]) == body
    secrets = vector["headers"]["webhook-signature"].count("v1,")
    signing = vector["secrets"] if secrets == len(vector["secrets"]) else None
    if signing is not None:
        msg_id = vector["headers"]["webhook-id"]
        stamp_ms = int(vector["headers"]["webhook-timestamp"]) * 1000
        headers = protocol.request_headers(body, msg_id, stamp_ms, signing)
        assert {k: v for k, v in headers.items() if k != "User-Agent"} == {
            k: v for k, v in vector["headers"].items() if k != "User-Agent"
        }


@pytest.mark.parametrize("vector", named("responses"))
def test_reading_of_responses(vector: dict[str, Any]) -> None:
    reading = protocol.read_response(
        vector["http_status"],
        vector["body"].encode(),
        vector["gids"],
        order_no=vector["orderNo"],
        mode=vector["mode"],
    )
    meaning = vector["meaning"]
    assert reading.verdict.value == meaning["verdict"]
    if meaning["verdict"] == "results":
        assert {str(g): list(s) for g, s in reading.statuses.items()} == meaning["statuses"]
        assert [g for g in vector["gids"] if g not in reading.statuses] == meaning["pending"]
        assert reading.unexpected_gids == meaning.get("ignored", [])
    if "reason" in meaning:
        assert reading.reason == meaning["reason"]


@pytest.mark.parametrize("vector", named("options_answers"))
def test_options_answers(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    if not vector["meaning"]["valid"]:
        with pytest.raises(OptionsApiFailed):
            parse_options(body)
        doc = json.loads(body)
        if doc.get("code") == 0:  # the receiver library refuses to build it, too
            with pytest.raises(ValueError, match="two levels at most"):
                receiver.options_answer([_option(o) for o in doc["enumArgs"]])
        return
    assert parse_options(body) == vector["meaning"]["options"]
    doc = json.loads(body)
    assert receiver.options_answer([_option(o) for o in doc["enumArgs"]]) == doc


def _option(raw: dict[str, Any]) -> receiver.Option:
    return receiver.Option(
        raw["code"],
        raw["description"],
        tuple(_option(c) for c in raw.get("childEnumArgs", [])),
    )
