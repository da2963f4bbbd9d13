"""Build a touchpoint endpoint that is correct by default — the receiving side of
Touchgate's wire protocol (``docs/wire-protocol.md``), with no web framework and
nothing outside the Python standard library, so it fits any server (FastAPI,
Flask, aiohttp, Django…) or can be copied as one file.

The pieces, smallest first:

- ``legacy_sign`` and ``webhook_signature`` compute both signatures;
  ``Verifier`` checks them, with the tolerance window against replays, and
  raises ``Refused`` (an HTTP status, a stable ``code`` and a sentence);
- ``parse_delivery`` / ``parse_receipt_poll`` / ``parse_options_query`` turn a
  JSON body into typed objects (``Delivery`` of ``User``…);
- ``reached`` / ``not_reached`` / ``delivery_answer`` / ``batch_refused`` /
  ``options_answer`` build the answers (``options_answer`` refuses a third level);
- ``Endpoint`` puts it together: give it the raw headers and body of a request,
  get a ``Reply`` (status and JSON bytes). It verifies, parses, treats ``orderNo``
  as the idempotency key (a repeat gets the first answer and does no work),
  answers receipt polls from what it recorded, and logs every gid it receives
  on the ``touchgate.receiver`` logger.

Requests from ``touchgate doctor`` carry synthetic users: gids in
``DOCTOR_GIDS`` and ``temData[DOCTOR_MARKER]`` set; ``User.synthetic`` and
``Delivery.synthetic`` tell them apart so a staging system can skip the real work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "DOCTOR_GIDS",
    "DOCTOR_MARKER",
    "FAIL",
    "SUCC",
    "TOLERANCE_SECONDS",
    "AnswerBook",
    "Delivery",
    "Endpoint",
    "EndpointCounts",
    "Option",
    "OptionsQuery",
    "ReceiptPoll",
    "Refused",
    "Reply",
    "Status",
    "User",
    "Verifier",
    "batch_refused",
    "delivery_answer",
    "dumps",
    "is_synthetic_gid",
    "legacy_sign",
    "not_reached",
    "options_answer",
    "parse_delivery",
    "parse_options_query",
    "parse_receipt_poll",
    "reached",
    "receipt_answer",
    "webhook_signature",
]

log = logging.getLogger("touchgate.receiver")

SUCC: Final = "TOU_SUCC"
FAIL: Final = "TOU_FAIL"
TOLERANCE_SECONDS = 5 * 60
# Synthetic users of ``touchgate doctor``: the top of the range a JavaScript number
# holds exactly (a receiver written in JavaScript reads these gids correctly).
DOCTOR_GIDS = range(9_007_199_000_000_000, 2**53)
DOCTOR_MARKER = "touchgateDoctor"
# How many answers ``AnswerBook`` keeps for repeats by default (oldest forgotten first).
REMEMBERED_ORDERS = 100_000


class Refused(Exception):
    """A request that is not from Touchgate, too old, or malformed.

    ``status`` is the HTTP status to answer with (401 for a signature or time
    problem, 400 for a malformed body), ``code`` a stable word for logs and
    tests, ``message`` a sentence.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ---------------------------------------------------------------- signatures


def legacy_sign(token: str, timestamp_ms: int, order_no: str) -> str:
    """The body's ``sign``: ``upper(hex(MD5(token + "&" + timeStamp + "&" + orderNo)))``."""
    raw = f"{token}&{timestamp_ms}&{order_no}".encode()
    return hashlib.md5(raw, usedforsecurity=False).hexdigest().upper()


def _secret_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None


def webhook_signature(secret: str, msg_id: str, timestamp_s: int | str, body: bytes) -> str:
    """One Standard Webhooks signature, ``v1,<base64 HMAC-SHA256>`` of
    ``{webhook-id}.{webhook-timestamp}.{raw body}`` keyed by the secret's bytes."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict: look the name up regardless of case, as HTTP does.
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


@dataclass(frozen=True)
class Verifier:
    """Checks that a request comes from Touchgate and is recent.

    ``token`` is the touchpoint's auth token (checks the body's MD5 ``sign``);
    ``secrets`` its signing secret(s) (checks ``webhook-signature``; give the old
    and the new one during a rotation). A check whose key is not given is not
    made — give at least one. ``tolerance_seconds`` is how far from now a
    request's time may be (5 minutes).
    """

    token: str | None = None
    secrets: tuple[str, ...] = ()
    tolerance_seconds: int = TOLERANCE_SECONDS

    def __post_init__(self) -> None:
        for secret in self.secrets:
            _secret_key(secret)  # a malformed secret fails here, not on the first request

    @property
    def checks_anything(self) -> bool:
        return bool(self.token or self.secrets)

    def verify_headers(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        """The Standard Webhooks headers, against the raw bytes received (never a
        re-serialised body). Any one of the space-separated signatures may match."""
        if not self.secrets:
            return
        msg_id = _header(headers, "webhook-id")
        stamp = _header(headers, "webhook-timestamp")
        signatures = _header(headers, "webhook-signature")
        if not msg_id or not stamp or not signatures:
            raise Refused(401, "missing_webhook_headers", "missing Standard Webhooks headers")
        try:
            when = int(stamp)
        except ValueError:
            raise Refused(
                401, "bad_webhook_timestamp", "webhook-timestamp is not a number"
            ) from None
        current = time.time() if now is None else now
        if abs(current - when) > self.tolerance_seconds:
            raise Refused(
                401,
                "stale_webhook_timestamp",
                f"webhook-timestamp is more than {self._window()} away from now",
            )
        expected = [webhook_signature(s, msg_id, stamp, body).encode() for s in self.secrets]
        for candidate in signatures.split(" "):
            if not candidate.startswith("v1,"):
                continue
            for mac in expected:
                if hmac.compare_digest(mac, candidate.encode()):
                    return
        raise Refused(401, "webhook_signature_mismatch", "no valid webhook-signature")

    def verify_sign(self, doc: Mapping[str, Any], *, now: float | None = None) -> None:
        """The body's MD5 ``sign`` and that its ``timeStamp`` is recent (deliveries
        and receipt polls; options requests carry no ``sign``)."""
        if not self.token:
            return
        stamp = doc.get("timeStamp")
        order_no = doc.get("orderNo")
        sign = doc.get("sign")
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int)
            or not isinstance(order_no, str)
            or not isinstance(sign, str)
        ):
            raise Refused(401, "missing_sign", "timeStamp, orderNo and sign are required")
        current_ms = (time.time() if now is None else now) * 1000
        if abs(current_ms - stamp) > self.tolerance_seconds * 1000:
            raise Refused(
                401, "stale_timestamp", f"timeStamp is more than {self._window()} away from now"
            )
        if not hmac.compare_digest(legacy_sign(self.token, stamp, order_no), sign.upper()):
            raise Refused(401, "sign_mismatch", "sign does not match")

    def read(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        signed_body: bool = True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The JSON object of a request that passed every configured check.
        ``signed_body`` is False for options requests (no ``sign`` in the body)."""
        self.verify_headers(headers, body, now=now)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "not_json", "body is not JSON") from None
        if not isinstance(doc, dict):
            raise Refused(400, "not_object", "body is not a JSON object")
        if signed_body:
            self.verify_sign(doc, now=now)
        return doc

    def _window(self) -> str:
        minutes, seconds = divmod(self.tolerance_seconds, 60)
        return f"{minutes} minutes" if not seconds else f"{self.tolerance_seconds} seconds"


# ---------------------------------------------------------------- requests


def is_synthetic_gid(gid: int) -> bool:
    """A gid of ``touchgate doctor``'s reserved range."""
    return gid in DOCTOR_GIDS


@dataclass(frozen=True)
class User:
    """One ``dataList`` entry: who (``dynamic_data``) and what (``tem_data``)."""

    gid: int
    tem_data: dict[str, Any]
    dynamic_data: dict[str, Any]

    @property
    def synthetic(self) -> bool:
        """A user made up by ``touchgate doctor``: do no real work for it."""
        return is_synthetic_gid(self.gid) or DOCTOR_MARKER in self.tem_data


@dataclass(frozen=True)
class Delivery:
    """A delivery request: a batch of users under one ``orderNo``."""

    order_no: str
    time_stamp: int
    users: tuple[User, ...]
    sign: str | None = None

    @property
    def synthetic(self) -> bool:
        return bool(self.users) and all(u.synthetic for u in self.users)


@dataclass(frozen=True)
class ReceiptPoll:
    """A receipt poll (async receipt mode): which order's results are wanted."""

    order_no: str
    time_stamp: int
    sign: str | None = None


@dataclass(frozen=True)
class OptionsQuery:
    """An options API request for one enum template parameter."""

    project_id: int
    param_name: str
    param_description: str


def _order_no(doc: Mapping[str, Any]) -> str:
    order_no = doc.get("orderNo")
    if not isinstance(order_no, str) or not order_no:
        raise Refused(400, "bad_order_no", "orderNo is required")
    return order_no


def _time_stamp(doc: Mapping[str, Any]) -> int:
    stamp = doc.get("timeStamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise Refused(400, "bad_time_stamp", "timeStamp must be an integer (milliseconds)")
    return stamp


def _sign(doc: Mapping[str, Any]) -> str | None:
    sign = doc.get("sign")
    return sign if isinstance(sign, str) else None


def parse_delivery(doc: Mapping[str, Any]) -> Delivery:
    """A delivery from its JSON object; ``Refused(400)`` naming what is wrong."""
    raw = doc.get("dataList")
    if not isinstance(raw, list):
        raise Refused(400, "bad_data_list", "dataList must be a list")
    users = []
    for i, entry in enumerate(raw):
        gid = entry.get("gid") if isinstance(entry, dict) else None
        if isinstance(gid, bool) or not isinstance(gid, int):
            raise Refused(
                400,
                "bad_data_list",
                f"dataList[{i}] must be an object with an integer gid",
            )
        tem = entry.get("temData")
        dyn = entry.get("dynamicData")
        users.append(
            User(
                gid=gid,
                tem_data=tem if isinstance(tem, dict) else {},
                dynamic_data=dyn if isinstance(dyn, dict) else {},
            )
        )
    return Delivery(
        order_no=_order_no(doc), time_stamp=_time_stamp(doc), users=tuple(users), sign=_sign(doc)
    )


def parse_receipt_poll(doc: Mapping[str, Any]) -> ReceiptPoll:
    return ReceiptPoll(order_no=_order_no(doc), time_stamp=_time_stamp(doc), sign=_sign(doc))


def parse_options_query(doc: Mapping[str, Any]) -> OptionsQuery:
    name = doc.get("paramName")
    if not isinstance(name, str) or not name:
        raise Refused(400, "bad_param_name", "paramName is required")
    project = doc.get("projectId")
    description = doc.get("paramDescription")
    return OptionsQuery(
        project_id=project if isinstance(project, int) and not isinstance(project, bool) else 0,
        param_name=name,
        param_description=description if isinstance(description, str) else name,
    )


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class Status:
    """One user's result: ``TOU_SUCC`` (reached) or ``TOU_FAIL`` with a reason."""

    gid: int
    status: Literal["TOU_SUCC", "TOU_FAIL"]
    error_msg: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"gid": self.gid, "status": self.status, "errorMsg": self.error_msg}


def reached(gid: int) -> Status:
    return Status(gid, SUCC)


def not_reached(gid: int, reason: str) -> Status:
    return Status(gid, FAIL, reason)


def delivery_answer(order_no: str, statuses: Iterable[Status]) -> dict[str, Any]:
    """``{"code": 0, "message": "", "orderNo", "sendStatusList": [...]}`` — in sync
    mode list every user of the request exactly once; in async mode list none (or
    those already known) and report the rest through receipts."""
    return {
        "code": 0,
        "message": "",
        "orderNo": order_no,
        "sendStatusList": [s.to_json() for s in statuses],
    }


receipt_answer = delivery_answer  # a receipt answer has exactly the delivery format


def batch_refused(code: int, message: str) -> dict[str, Any]:
    """The whole batch failed (every user ``TOU_FAIL`` with ``message``). Not for
    per-user problems: those are ``not_reached`` entries of a ``code: 0`` answer."""
    if code == 0:
        raise ValueError("a refused batch has a non-zero code")
    return {"code": code, "message": message}


@dataclass(frozen=True)
class Option:
    """An enum option; an option with ``children`` is a category (two levels at most)."""

    code: str
    description: str
    children: tuple[Option, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "description": self.description}
        if self.children:
            out["childEnumArgs"] = [c.to_json() for c in self.children]
        return out


OPTIONS_ADVICE = 100  # more options than this make a dropdown unusable


def options_answer(options: Sequence[Option]) -> dict[str, Any]:
    """``{"code": 0, "enumArgs": [...]}``; raises ``ValueError`` for a third level
    (Touchgate rejects it). Over ``OPTIONS_ADVICE`` options is allowed but logged."""
    count = 0
    for option in options:
        for child in option.children:
            if child.children:
                raise ValueError(
                    f"option {option.code}/{child.code} has children: two levels at most"
                )
        count += len(option.children) or 1
    if count > OPTIONS_ADVICE:
        log.warning(
            "%d options offered; over %d make the operator's dropdown hard to use",
            count,
            OPTIONS_ADVICE,
        )
    return {"code": 0, "enumArgs": [o.to_json() for o in options]}


def dumps(doc: Any) -> bytes:
    """JSON as UTF-8 (Chinese text as is, not ``\\u`` escapes)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------- the endpoint


class AnswerBook:
    """Answers by ``orderNo``, so a repeat gets the first answer (idempotency).

    In memory and bounded (the oldest are forgotten first). A production endpoint
    keeps this in its database, written in the same transaction as the work.
    """

    def __init__(self, size: int = REMEMBERED_ORDERS) -> None:
        self.size = size
        self._answers: OrderedDict[str, tuple[dict[str, Any], tuple[Status, ...]]] = OrderedDict()

    def get(self, order_no: str) -> tuple[dict[str, Any], tuple[Status, ...]] | None:
        return self._answers.get(order_no)

    def remember(self, order_no: str, answer: dict[str, Any], statuses: Sequence[Status]) -> None:
        self._answers[order_no] = (answer, tuple(statuses))
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)


@dataclass
class Reply:
    """What to answer: an HTTP status and a JSON body (already encoded)."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class EndpointCounts:
    """What the endpoint has seen (the sample receiver shows it at ``/stats``)."""

    orders: int = 0
    users: int = 0
    failed_users: int = 0
    repeats: int = 0
    rejected: int = 0
    synthetic_users: int = 0


Deliver = Callable[[Delivery], Sequence[Status]]
OfferOptions = Callable[[OptionsQuery], Sequence[Option]]


def _refusal(exc: Refused) -> Reply:
    return Reply(exc.status, dumps({"code": exc.status, "message": exc.message}))


@dataclass
class Endpoint:
    """A framework-agnostic touchpoint endpoint.

    ``deliver`` does the work for a batch and returns one ``Status`` per user
    (a user it leaves out is answered ``TOU_FAIL`` "no status returned" by
    Touchgate in sync mode). In ``mode="async"`` the delivery is answered
    ``code: 0`` with an empty list and the statuses are given to receipt polls.
    ``options`` answers the options API (``None``: the route refuses).
    """

    verifier: Verifier
    deliver: Deliver
    mode: Literal["sync", "async"] = "sync"
    options: OfferOptions | None = None
    answers: AnswerBook = field(default_factory=AnswerBook)
    counts: EndpointCounts = field(default_factory=EndpointCounts)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        deliver: Deliver,
        *,
        options: OfferOptions | None = None,
    ) -> Endpoint:
        """An endpoint configured like the sample receivers: ``RECEIVER_TOKEN``,
        ``RECEIVER_SECRET`` (space-separated during a rotation) and
        ``RECEIVER_MODE`` (``sync`` or ``async``)."""
        verifier = Verifier(
            token=environ.get("RECEIVER_TOKEN") or None,
            secrets=tuple(environ.get("RECEIVER_SECRET", "").split()),
        )
        mode: Literal["sync", "async"] = (
            "async" if environ.get("RECEIVER_MODE") == "async" else "sync"
        )
        return cls(verifier, deliver, mode=mode, options=options)

    def handle_delivery(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Reply:
        try:
            delivery = parse_delivery(self.verifier.read(headers, body, now=now))
        except Refused as exc:
            return self._rejected("delivery", exc)
        known = self.answers.get(delivery.order_no)
        if known is not None:  # a retry of an order already done: same answer, no work
            self.counts.repeats += 1
            log.info(
                "order %s repeated (%d users): same answer, nothing redone",
                delivery.order_no,
                len(delivery.users),
            )
            return Reply(200, dumps(known[0]))
        statuses = list(self.deliver(delivery))
        # Only users of this request: a gid that was not in it would be ignored anyway.
        in_request = {u.gid for u in delivery.users}
        listed = [s for s in statuses if s.gid in in_request]
        shown = [] if self.mode == "async" else listed
        answer = delivery_answer(delivery.order_no, shown)
        self.answers.remember(delivery.order_no, answer, listed)
        failed = sum(1 for s in listed if s.status == FAIL)
        self.counts.orders += 1
        self.counts.users += len(delivery.users)
        self.counts.failed_users += failed
        self.counts.synthetic_users += sum(1 for u in delivery.users if u.synthetic)
        log.info(
            "order %s: %d users, %d TOU_SUCC, %d TOU_FAIL%s",
            delivery.order_no,
            len(delivery.users),
            len(listed) - failed,
            failed,
            " (synthetic: touchgate doctor)" if delivery.synthetic else "",
        )
        by_gid = {s.gid: s for s in listed}
        for user in delivery.users:
            status = by_gid.get(user.gid)
            log.info(
                "  gid %d %s%s temData %s dynamicData %s",
                user.gid,
                status.status if status else "(no status)",
                f" {status.error_msg}" if status and status.error_msg else "",
                json.dumps(user.tem_data, ensure_ascii=False),
                json.dumps(user.dynamic_data, ensure_ascii=False),
            )
        return Reply(200, dumps(answer))

    def handle_receipt(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Reply:
        try:
            poll = parse_receipt_poll(self.verifier.read(headers, body, now=now))
        except Refused as exc:
            return self._rejected("receipt", exc)
        known = self.answers.get(poll.order_no)
        if known is None:
            # Not an HTTP error: Touchgate asks again at the next poll.
            return Reply(200, dumps(batch_refused(404, "unknown orderNo")))
        log.info("receipt for order %s: %d statuses", poll.order_no, len(known[1]))
        return Reply(200, dumps(receipt_answer(poll.order_no, known[1])))

    def handle_options(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Reply:
        try:
            query = parse_options_query(
                self.verifier.read(headers, body, signed_body=False, now=now)
            )
        except Refused as exc:
            return self._rejected("options", exc)
        if self.options is None:
            return Reply(404, dumps(batch_refused(404, "no options API here")))
        offered = self.options(query)
        log.info("options for %r: %d entries", query.param_name, len(offered))
        return Reply(200, dumps(options_answer(offered)))

    def _rejected(self, what: str, exc: Refused) -> Reply:
        self.counts.rejected += 1
        log.warning("rejected %s request: %s (%s)", what, exc.message, exc.code)
        return _refusal(exc)
