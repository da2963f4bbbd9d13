"""The touchpoint wire protocol (``wire-protocol.md``): request bodies, both
signatures, and the reading of a response — pure functions, no I/O.

The ``dataList`` of an order is encoded once, at enqueue time, and spliced into
every attempt's body, so retries resend exactly the same users and values while
``timeStamp`` and ``sign`` are fresh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from .. import __version__

SUCC = "TOU_SUCC"
FAIL = "TOU_FAIL"
PENDING = "pending"
USER_AGENT = f"Touchgate/{__version__}"
# Users per request (wire-protocol.md: dataList holds 1–500 entries).
MAX_BATCH_SIZE = 500
DEFAULT_BATCH_SIZE = 100


def batch_size_of(configured: int | None) -> int:
    """A touchpoint's batch size, within the protocol's limits (the default when unset)."""
    return max(1, min(int(configured or DEFAULT_BATCH_SIZE), MAX_BATCH_SIZE))


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


def new_order_no() -> str:
    """32 lowercase hex characters, unique per batch."""
    return uuid.uuid4().hex


def legacy_sign(token: str, timestamp_ms: int, order_no: str) -> str:
    """``upper(hex(MD5(token + "&" + timeStamp + "&" + orderNo)))``."""
    raw = f"{token}&{timestamp_ms}&{order_no}".encode()
    return hashlib.md5(raw, usedforsecurity=False).hexdigest().upper()


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def webhook_signature(secrets: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature``: ``v1,<b64>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    parts = []
    for secret in secrets:
        digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def encode_data_list(entries: Iterable[Mapping[str, Any]]) -> bytes:
    """The frozen ``dataList`` of an order (UTF-8, no ``\\u`` escapes)."""
    return orjson.dumps(list(entries))


def delivery_body(order_no: str, data_list: bytes, timestamp_ms: int, token: str | None) -> bytes:
    """The request body of one attempt, splicing the pre-encoded ``dataList``."""
    head = b'{"timeStamp":%d,"orderNo":"%s"' % (timestamp_ms, order_no.encode())
    if token:
        head += b',"sign":"%s"' % legacy_sign(token, timestamp_ms, order_no).encode()
    return head + b',"dataList":' + data_list + b"}"


def receipt_body(order_no: str, timestamp_ms: int, token: str | None) -> bytes:
    body: dict[str, Any] = {"timeStamp": timestamp_ms, "orderNo": order_no}
    if token:
        body["sign"] = legacy_sign(token, timestamp_ms, order_no)
    return orjson.dumps(body)


def request_headers(
    body: bytes, order_no: str, timestamp_ms: int, signing_secrets: Sequence[str]
) -> dict[str, str]:
    ts = timestamp_ms // 1000
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "webhook-id": order_no,
        "webhook-timestamp": str(ts),
        "webhook-signature": webhook_signature(signing_secrets, order_no, ts, body),
    }


def render_text(template: str, attributes: Mapping[str, Any]) -> str:
    """Fill ``{{attributeKey}}`` from a user's attributes (missing → empty string)."""
    if "{{" not in template:
        return template

    def sub(match: re.Match[str]) -> str:
        value = attributes.get(match.group(1))
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _PLACEHOLDER.sub(sub, template)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def placeholder_keys(
    template_params: Iterable[Mapping[str, Any]], tem_data: Mapping[str, Any]
) -> list[str]:
    """The template values rendered per user: those of text parameters (a key the
    touchpoint does not declare counts as text) that hold ``{{placeholders}}``. The
    one rule for enqueueing, test sends, campaign previews and value checks."""
    types = {p.get("key"): p.get("type") for p in template_params}
    return [
        key
        for key, value in tem_data.items()
        if isinstance(value, str) and types.get(key, "text") == "text" and placeholders(value)
    ]


def data_entry(
    gid: int,
    attributes: Mapping[str, Any],
    dynamic_keys: Sequence[str],
    tem_data: Mapping[str, Any],
    text_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """One ``dataList`` entry. ``text_keys`` name the values that hold placeholders."""
    if text_keys:
        tem = dict(tem_data)
        for key in text_keys:
            tem[key] = render_text(tem[key], attributes)
    else:
        tem = dict(tem_data)
    return {
        "gid": gid,
        "temData": tem,
        "dynamicData": {key: attributes.get(key) for key in dynamic_keys},
    }


def entry_template(tem_data: Mapping[str, Any], dynamic_keys: Sequence[str]) -> str:
    """A ``%``-template of one ``dataList`` entry without placeholders, filled with a
    row ``(gid, value of each dynamic key as JSON text)``: the same bytes
    ``data_entry`` encodes (bar the spelling of numbers the database keeps, e.g.
    ``1.50``), made by one C-level ``%`` per user instead of dicts encoded by orjson."""
    tem = orjson.dumps(dict(tem_data)).decode().replace("%", "%%")
    fields = ",".join(orjson.dumps(key).decode().replace("%", "%%") + ":%s" for key in dynamic_keys)
    return '{"gid":%d,"temData":' + tem + ',"dynamicData":{' + fields + "}}"


def render_entries(template: str, rows: Iterable[tuple[Any, ...]]) -> bytes:
    """A ``dataList`` of entries from ``entry_template`` and their rows, in order."""
    return ("[" + ",".join([template % row for row in rows]) + "]").encode()


class Verdict(Enum):
    RETRY = "retry"  # transport failure, 408, 429, 5xx: the same batch again later
    FAIL_ALL = "fail_all"  # every user TOU_FAIL with ``reason``
    RESULTS = "results"  # per-user statuses in ``statuses``


@dataclass
class Reading:
    """What a response means for the batch."""

    verdict: Verdict
    reason: str = ""
    statuses: dict[int, tuple[str, str]] = field(default_factory=dict)  # gid → (status, msg)
    unexpected_gids: list[int] = field(default_factory=list)
    missing_gids: list[int] = field(default_factory=list)
    order_no_mismatch: str | None = None
    code: int | None = None
    message: str | None = None


RETRY_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status <= 599


def read_response(
    status: int,
    body: bytes,
    batch_gids: Sequence[int],
    *,
    order_no: str,
    mode: str = "sync",
) -> Reading:
    """Read an HTTP response by the rules of wire-protocol.md §2, in their order.

    Transport failures never reach here (the caller treats them as RETRY).
    ``mode`` is ``sync`` (a gid missing from the list fails) or ``async``
    (a missing gid stays pending until a receipt settles it).
    """
    if is_retryable_status(status):
        return Reading(Verdict.RETRY, reason=f"HTTP {status}")
    if not 200 <= status <= 299:
        return Reading(Verdict.FAIL_ALL, reason=f"HTTP {status}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Reading(Verdict.FAIL_ALL, reason=f"response is not JSON: {exc}")
    return read_document(doc, batch_gids, order_no=order_no, mode=mode)


_FINAL = frozenset({SUCC, FAIL})


def _plain_statuses(raw_list: list[Any], wanted: set[int]) -> dict[int, tuple[str, str]] | None:
    """The statuses of the usual answer in a few C-level passes (a full answer has
    hundreds of entries): every entry an object with an integer gid of the batch and
    a final status. None when any entry is otherwise (the entry-by-entry reading
    then says what is wrong, or handles the strings, pendings and strangers)."""
    if not all(type(item) is dict for item in raw_list):
        return None
    gids = [item.get("gid") for item in raw_list]
    if not all(type(gid) is int for gid in gids) or not wanted.issuperset(gids):
        return None
    states = [item.get("status") for item in raw_list]
    if not all(type(st) is str for st in states) or not _FINAL.issuperset(states):
        return None
    errors = [item.get("errorMsg", item.get("error_msg")) for item in raw_list]
    if not all(type(err) is str for err in errors):
        errors = ["" if err is None else str(err) for err in errors]
    return dict(zip(gids, zip(states, errors, strict=True), strict=True))


def read_document(
    doc: Any, batch_gids: Sequence[int], *, order_no: str, mode: str = "sync"
) -> Reading:
    if not isinstance(doc, dict):
        return Reading(Verdict.FAIL_ALL, reason="response is not a JSON object")
    code = doc.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return Reading(Verdict.FAIL_ALL, reason="response has no integer 'code'")
    message = doc.get("message")
    message_text = "" if message is None else str(message)
    if code != 0:
        reason = message_text or f"code {code}"
        return Reading(Verdict.FAIL_ALL, reason=reason, code=code, message=message_text)
    raw_list = doc.get("sendStatusList", [])
    if raw_list is None:
        raw_list = []
    if not isinstance(raw_list, list):
        return Reading(Verdict.FAIL_ALL, reason="'sendStatusList' is not a list", code=code)
    wanted = set(batch_gids)
    unexpected: list[int] = []
    plain = _plain_statuses(raw_list, wanted)
    statuses: dict[int, tuple[str, str]] = {} if plain is None else plain
    for item in raw_list if plain is None else ():
        if not isinstance(item, dict):
            return Reading(
                Verdict.FAIL_ALL, reason="an entry of 'sendStatusList' is not an object", code=code
            )
        gid = item.get("gid")
        if isinstance(gid, str) and gid.lstrip("-").isdigit():
            gid = int(gid)
        if isinstance(gid, bool) or not isinstance(gid, int):
            return Reading(
                Verdict.FAIL_ALL,
                reason="an entry of 'sendStatusList' has no integer gid",
                code=code,
            )
        st = item.get("status")
        if st not in (SUCC, FAIL, "PENDING"):
            return Reading(
                Verdict.FAIL_ALL,
                reason=f"gid {gid} has status {st!r}; expected TOU_SUCC or TOU_FAIL",
                code=code,
            )
        if gid not in wanted:
            unexpected.append(gid)
            continue
        if st == "PENDING":
            continue
        err = item.get("errorMsg", item.get("error_msg"))
        statuses[gid] = (st, "" if err is None else str(err))
    missing = [g for g in batch_gids if g not in statuses]
    reading = Reading(
        Verdict.RESULTS,
        statuses=statuses,
        unexpected_gids=unexpected,
        code=code,
        message=message_text,
    )
    echoed = doc.get("orderNo")
    if echoed not in (None, "") and echoed != order_no:
        reading.order_no_mismatch = str(echoed)
    if mode == "sync":
        for gid in missing:
            statuses[gid] = (FAIL, "no status returned")
        reading.missing_gids = missing
    return reading
