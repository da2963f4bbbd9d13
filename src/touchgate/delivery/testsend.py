"""Test send: one real request to a touchpoint now, with users and template values
typed in by hand, showing what was sent, what came back, and — when it failed —
a diagnosis in plain words (``product.md``, "Test").

Three steps, so no database transaction is held while waiting on the network:
``prepare`` (inside a transaction: checks the input and reads what sending
needs), ``send`` (no database: fetches API enum options, validates the values,
sends, reads the answer) and ``record`` (inside a transaction: the touchpoint's
``last_test_at``/``last_test_ok``). A disabled touchpoint can be tested — that
is when integrators test. Nothing is stored besides the last-test fields: a test
send is not an order and reports no ``$ma_channel_touch`` event.

The result redacts secrets: the ``sign`` value and the ``webhook-signature``
header are shown as ``<redacted>``; the token and signing secrets never appear.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from ..errors import Coded, FieldErrors, InvalidInput
from ..models.base import utcnow
from ..plugins import service as plugins
from ..plugins.host import PluginFailed, PluginRetryable
from ..runtime import Runtime
from . import protocol
from .client import HttpResult, get_client
from .options import OptionsSource
from .params import api_option_sources, fetch_enum_options, validate_params
from .protocol import FAIL, PENDING, Reading, Verdict, batch_size_of

REDACTED = "<redacted>"
# How much of a response body the result shows.
SHOWN_BODY_BYTES = 64 * 1024
GID_MIN = -(2**63)
GID_MAX = 2**63 - 1


# ---------------------------------------------------------------- shapes


class TestUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gid: Annotated[int, Field(strict=True, ge=GID_MIN, le=GID_MAX)]
    attributes: dict[str, Any] = Field(default_factory=dict)


class TestSendIn(BaseModel):
    """``{users: [{gid, attributes}], params: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    users: Annotated[list[TestUser], Field(min_length=1, max_length=500)]
    params: dict[str, Any] = Field(default_factory=dict)


class SentRequest(BaseModel):
    url: str | None
    headers: dict[str, str]
    body: Any


class ReceivedResponse(BaseModel):
    status: int | None
    body: Any
    duration_ms: int
    error: str | None = None


class UserStatus(BaseModel):
    gid: int
    status: str
    error_msg: str


class UserNote(Coded):
    """Why a user got its status, as a code (``status_note.<code>`` in the console)."""

    gid: int


class TestSendOut(BaseModel):
    ok: bool
    order_no: str
    request: SentRequest
    response: ReceivedResponse | None
    statuses: list[UserStatus]
    # English sentences for scripts; ``diagnosis_details`` has the same findings
    # with a code and params each (``diagnosis.<code>`` in the console).
    diagnosis: list[str]
    diagnosis_details: list[Coded]
    # ``statuses[].error_msg`` with a code each, for the users that have one.
    status_details: list[UserNote]


def _out(
    ok: bool,
    order_no: str,
    request: SentRequest,
    response: ReceivedResponse | None,
    statuses: list[Noted],
    findings: list[Coded],
) -> TestSendOut:
    return TestSendOut(
        ok=ok,
        order_no=order_no,
        request=request,
        response=response,
        statuses=[status for status, _ in statuses],
        diagnosis=[f.message for f in findings],
        diagnosis_details=findings,
        status_details=[note for _, note in statuses if note is not None],
    )


def _finding(code: str, message: str, **params: Any) -> Coded:
    return Coded(code=code, message=message, params=params)


# A user's status and the note on it (None for a user reached without remark).
Noted = tuple[UserStatus, UserNote | None]


def _user(
    gid: int, status: str, error_msg: str, code: str | None, params: dict[str, Any] | None = None
) -> Noted:
    user = UserStatus(gid=gid, status=status, error_msg=error_msg)
    if code is None:
        return user, None
    return user, UserNote(gid=gid, code=code, message=error_msg, params=params or {})


# ---------------------------------------------------------------- prepare


@dataclass(frozen=True)
class Prepared:
    """What sending needs, read from the database (no ORM object crosses an await)."""

    touchpoint_id: int
    project_id: int
    transport: str
    url: str | None
    token: str | None
    signing_secrets: tuple[str, ...]
    timeout: float
    max_in_flight: int | None
    receipt_mode: str
    user_attributes: tuple[str, ...]
    template_params: tuple[dict[str, Any], ...]
    option_sources: dict[str, OptionsSource]
    plugin_id: int | None = None
    plugin_config: dict[str, Any] | None = None
    plugin_error: str | None = None
    token_set: bool = False
    user_errors: list[dict[str, Any]] = field(default_factory=list)


def prepare(
    session: Session, runtime: Runtime, project_id: int, touchpoint_id: int, body: TestSendIn
) -> Prepared:
    """Check the users against the touchpoint and read its sending configuration.

    Problems with the users are kept (not raised) so they are reported together
    with problems in the template values, which can only be checked once API
    enum options are fetched.
    """
    from ..touchpoints import service as touchpoints

    tp = touchpoints.get_touchpoint(session, project_id, touchpoint_id)
    errors = FieldErrors()
    batch = batch_size_of(tp.batch_size)
    if len(body.users) > batch:
        errors.add(
            "users",
            f"at most {batch} users (the touchpoint's batch size)",
            code="too_many_users",
            max=batch,
        )
    attribute_keys = list(tp.user_attributes or [])
    seen: set[int] = set()
    for i, user in enumerate(body.users):
        if user.gid in seen:
            errors.add(
                f"users[{i}].gid",
                f"gid {user.gid} appears more than once",
                code="duplicate_gid",
                gid=user.gid,
            )
        seen.add(user.gid)
        for key in user.attributes:
            if key not in attribute_keys:
                allowed = ", ".join(attribute_keys) or "none"
                errors.add(
                    f"users[{i}].attributes.{key}",
                    f"is not one of the touchpoint's user attributes ({allowed})",
                    code="not_user_attribute",
                    key=key,
                    allowed=allowed,
                )
    plugin_config: dict[str, Any] | None = None
    plugin_error: str | None = None
    if tp.transport == "plugin":
        try:
            plugin_config = plugins.runtime_config(session, runtime.secrets, tp)
        except Exception as exc:  # PluginFailed: the plugin is gone or misconfigured
            plugin_error = str(exc)
    receipt = tp.receipt or {}
    return Prepared(
        touchpoint_id=tp.id,
        project_id=tp.project_id,
        transport=tp.transport,
        url=tp.url,
        token=touchpoints.auth_token(runtime.secrets, tp),
        token_set=tp.token_encrypted is not None,
        signing_secrets=tuple(touchpoints.signing_secrets(runtime.secrets, tp, utcnow())),
        timeout=float(tp.timeout_seconds or 15),
        max_in_flight=tp.max_in_flight,
        receipt_mode=str(receipt.get("mode") or "sync"),
        user_attributes=tuple(attribute_keys),
        template_params=tuple(dict(p) for p in tp.template_params or []),
        option_sources=api_option_sources(runtime, tp, body.params),
        plugin_id=tp.plugin_id,
        plugin_config=plugin_config,
        plugin_error=plugin_error,
        user_errors=errors.items,
    )


def record(session: Session, project_id: int, touchpoint_id: int, ok: bool) -> None:
    """Remember when the touchpoint was last tested and whether it went well."""
    from ..touchpoints import service as touchpoints

    tp = touchpoints.get_touchpoint(session, project_id, touchpoint_id)
    tp.last_test_at = utcnow()
    tp.last_test_ok = ok


# ---------------------------------------------------------------- send


async def send(runtime: Runtime, prep: Prepared, body: TestSendIn) -> TestSendOut:
    """Validate the template values, send one request, read and diagnose the answer.

    Raises ``InvalidInput`` listing every invalid user and value (nothing is
    sent then); network and endpoint problems are results, not errors.
    """
    details = list(prep.user_errors)
    tem_data: dict[str, Any] = {}
    text_keys: list[str] = []
    try:
        fetched = await fetch_enum_options(runtime, prep.option_sources)
        tem_data, text_keys = validate_params(
            prep.template_params, body.params, fetched, attribute_keys=prep.user_attributes
        )
    except InvalidInput as exc:
        details.extend(exc.details or [])
    if details:
        errors = FieldErrors()
        errors.extend(details)
        errors.raise_if_any("The test send has invalid input.")

    entries = [
        protocol.data_entry(u.gid, u.attributes, prep.user_attributes, tem_data, text_keys)
        for u in body.users
    ]
    gids = [u.gid for u in body.users]
    order_no = protocol.new_order_no()
    if prep.transport == "plugin":
        return await _send_plugin(runtime, prep, order_no, entries, gids)
    return await _send_http(runtime, prep, order_no, entries, gids)


async def _send_http(
    runtime: Runtime,
    prep: Prepared,
    order_no: str,
    entries: list[dict[str, Any]],
    gids: list[int],
) -> TestSendOut:
    ts = int(time.time() * 1000)
    data_list = protocol.encode_data_list(entries)
    payload = protocol.delivery_body(order_no, data_list, ts, prep.token)
    headers = protocol.request_headers(payload, order_no, ts, prep.signing_secrets)
    url = prep.url or ""
    result = await get_client(runtime).post(
        url,
        payload,
        headers,
        timeout=prep.timeout,
        touchpoint_id=prep.touchpoint_id,
        max_in_flight=prep.max_in_flight,
    )
    shown_body = orjson.loads(payload)
    if "sign" in shown_body:
        shown_body["sign"] = REDACTED
    shown_headers = dict(headers)
    shown_headers["webhook-signature"] = REDACTED
    request = SentRequest(url=url, headers=shown_headers, body=shown_body)
    response = ReceivedResponse(
        status=result.status,
        body=_shown(result.body),
        duration_ms=result.duration_ms,
        error=result.error,
    )
    if result.status is None or result.error_kind is not None:
        reason = result.error or "no response"
        return _out(
            False,
            order_no,
            request,
            response,
            [_user(g, FAIL, reason, "no_response", {"error": reason}) for g in gids],
            [_transport_diagnosis(result, url, prep.timeout)],
        )
    reading = protocol.read_response(
        result.status, result.body, gids, order_no=order_no, mode=prep.receipt_mode
    )
    ok, statuses, findings = _diagnose(reading, gids, order_no, prep, result)
    return _out(ok, order_no, request, response, statuses, findings)


async def _send_plugin(
    runtime: Runtime,
    prep: Prepared,
    order_no: str,
    entries: list[dict[str, Any]],
    gids: list[int],
) -> TestSendOut:
    request = SentRequest(
        url=None,
        headers={},
        body={"plugin_id": prep.plugin_id, "orderNo": order_no, "users": entries},
    )

    def failed(finding: Coded, error: str, duration_ms: int = 0) -> TestSendOut:
        response = ReceivedResponse(status=None, body=None, duration_ms=duration_ms, error=error)
        statuses = [_user(g, FAIL, error, "plugin_failed", {"error": error}) for g in gids]
        return _out(False, order_no, request, response, statuses, [finding])

    if prep.plugin_error is not None:
        words = f"The plugin cannot be used: {prep.plugin_error}."
        return failed(_finding("plugin_unusable", words, error=prep.plugin_error), words)
    host = runtime.plugin_host
    if host is None or prep.plugin_id is None:
        words = (
            "The plugin host is not running in this process, so the plugin cannot be "
            "called; start Touchgate with `touchgate serve`."
        )
        return failed(_finding("plugin_host_down", words), words)
    started = time.monotonic()
    try:
        results = await host.call(
            project_id=prep.project_id,
            plugin_id=prep.plugin_id,
            config=prep.plugin_config or {},
            method="send",
            order_no=order_no,
            users=entries,
            timeout=prep.timeout,
        )
    except PluginRetryable as exc:
        ms = int((time.monotonic() - started) * 1000)
        finding = _finding(
            "plugin_retry",
            f"The plugin asked to try again later (RetryableError): {exc}. In a campaign "
            "the batch would be retried on the touchpoint's schedule.",
            error=str(exc),
        )
        return failed(finding, str(exc), ms)
    except PluginFailed as exc:
        ms = int((time.monotonic() - started) * 1000)
        finding = _finding("plugin_failed", f"The plugin failed: {exc}.", error=str(exc))
        return failed(finding, str(exc), ms)
    ms = int((time.monotonic() - started) * 1000)
    response = ReceivedResponse(status=None, body=results, duration_ms=ms)
    reading = protocol.read_document(
        {"code": 0, "sendStatusList": results},
        gids,
        order_no=order_no,
        mode=prep.receipt_mode,
    )
    ok, statuses, findings = _diagnose(reading, gids, order_no, prep, None)
    return _out(ok, order_no, request, response, statuses, findings)


# ---------------------------------------------------------------- diagnosis


def _shown(body: bytes) -> Any:
    """A response body as JSON when it is JSON, else as (truncated) text."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:SHOWN_BODY_BYTES].decode("utf-8", errors="replace")
        if len(body) > SHOWN_BODY_BYTES:
            text += f"… ({len(body)} bytes in all)"
        return text


def _transport_diagnosis(result: HttpResult, url: str, timeout: float) -> Coded:
    kind = result.error_kind
    error = result.error or "unknown error"
    if kind == "blocked":
        return _finding("blocked", f"The request was not sent: it was {error}.", error=error)
    if kind == "refused":
        return _finding(
            "refused",
            f"The endpoint is unreachable: {error}. Check the request URL ({url}) and that "
            "the receiver is running and listening on that address.",
            error=error,
            url=url,
        )
    if kind == "dns":
        return _finding(
            "dns",
            f"The endpoint is unreachable: {error}. Check the host name in the request URL.",
            error=error,
        )
    if kind == "timeout":
        return _finding(
            "timeout",
            f"The endpoint did not answer within {timeout:g} s (the touchpoint's timeout). "
            "Answer faster (do slow work after responding) or raise the timeout; in a "
            "campaign the batch would be retried.",
            seconds=float(f"{timeout:g}"),
        )
    if kind == "tls":
        return _finding(
            "tls",
            f"The secure connection failed: {error}. Check the endpoint's certificate.",
            error=error,
        )
    if kind == "reset":
        return _finding(
            "reset",
            f"The connection broke: {error}. In a campaign the batch would be retried.",
            error=error,
        )
    if kind == "too_large":
        return _finding(
            "too_large",
            f"The response was too large: {error}. An endpoint should answer with the "
            "short status JSON only.",
            error=error,
        )
    return _finding("request_failed", f"The request failed: {error}.", error=error)


# The reasons ``protocol.read_document`` gives for an answer it cannot read, as
# problem codes (``problem.<code>`` in the console) with the values they name.
_PROTOCOL_PROBLEMS = [
    (re.compile(r"response is not JSON: (?P<error>.*)", re.S), "not_json"),
    (re.compile(r"response is not a JSON object"), "not_object"),
    (re.compile(r"response has no integer 'code'"), "no_code"),
    (re.compile(r"'sendStatusList' is not a list"), "status_list_not_list"),
    (re.compile(r"an entry of 'sendStatusList' is not an object"), "entry_not_object"),
    (re.compile(r"an entry of 'sendStatusList' has no integer gid"), "entry_no_gid"),
    (re.compile(r"gid (?P<gid>-?\d+) has status (?P<status>.*); expected"), "bad_status"),
]


def _protocol_problem(reason: str) -> dict[str, Any]:
    """``{"problem": code, ...}`` for a reading's reason (``other`` keeps the words)."""
    for pattern, problem in _PROTOCOL_PROBLEMS:
        match = pattern.match(reason)
        if match:
            return {"problem": problem, **match.groupdict()}
    return {"problem": "other", "reason": reason}


# An endpoint that checks signatures says so in its answer: "sign error",
# "invalid signature", "签名错误"…
_SIGNATURE_WORDS = re.compile(r"(?<![a-z])sign(?:ature)?(?![a-z])|签名|验签", re.I)


def _signature_finding(prep: Prepared, said: str) -> Coded | None:
    """Name a signature problem the endpoint reported (in ``said``), if it did."""
    if not _SIGNATURE_WORDS.search(said):
        return None
    if not prep.token_set:
        return _finding(
            "sign_missing",
            "The endpoint reports a signature problem, and this touchpoint has no auth "
            "token, so the request carries no `sign`: set the token the endpoint expects. "
            "The Standard Webhooks webhook-signature is made with the signing secret.",
        )
    return _finding(
        "sign_rejected",
        "The endpoint reports a signature problem: check that it uses the same auth token "
        "as this touchpoint to verify `sign` (upper(hex(MD5(token&timeStamp&orderNo)))) "
        "and the touchpoint's current signing secret to verify webhook-signature.",
    )


def _answer_text(result: HttpResult | None, reading: Reading) -> str:
    """What the endpoint said, to look for signature complaints in."""
    said = [reading.message or ""]
    if result is not None:
        said.append(result.body[:SHOWN_BODY_BYTES].decode("utf-8", errors="replace"))
    said += [msg for _, msg in reading.statuses.values()]
    return "\n".join(said)


def _diagnose(
    reading: Reading,
    gids: list[int],
    order_no: str,
    prep: Prepared,
    result: HttpResult | None,
) -> tuple[bool, list[Noted], list[Coded]]:
    """(ok, per-user statuses, findings) from a reading of the answer."""
    findings: list[Coded] = []
    if reading.verdict is not Verdict.RESULTS:
        status = result.status if result is not None else None
        reason = reading.reason
        if status is not None and not 200 <= status <= 299:
            findings.append(_status_diagnosis(status, result, prep))
            statuses = [_user(g, FAIL, reason, "http_status", {"status": status}) for g in gids]
        elif reading.code not in (None, 0):
            message = reading.message or "(no message)"
            findings.append(
                _finding(
                    "endpoint_refused",
                    f"The endpoint refused the batch: code {reading.code} with message "
                    f"{message!r}. Every user of the batch counts as TOU_FAIL.",
                    api_code=reading.code,
                    said=reading.message or "",
                )
            )
            said = {"api_code": reading.code, "said": reading.message or ""}
            statuses = [_user(g, FAIL, reason, "endpoint_refused", said) for g in gids]
        else:
            problem = _protocol_problem(reason)
            findings.append(
                _finding(
                    "not_protocol",
                    f"The answer is not what the protocol expects: {reason}. The endpoint must "
                    'answer JSON like {"code": 0, "message": "", "orderNo": "…", '
                    '"sendStatusList": [{"gid": 1, "status": "TOU_SUCC", "errorMsg": ""}]}.',
                    **problem,
                )
            )
            statuses = [_user(g, FAIL, reason, "not_protocol", problem) for g in gids]
        signature = _signature_finding(prep, _answer_text(result, reading))
        if signature is not None:
            findings.append(signature)
        return False, statuses, findings
    ok = True
    statuses = []
    for gid in gids:
        if gid in reading.statuses:
            st, msg = reading.statuses[gid]
            if gid in reading.missing_gids:
                statuses.append(_user(gid, st, msg, "no_status_returned"))
            elif msg:
                statuses.append(_user(gid, st, msg, "endpoint_said", {"said": msg}))
            elif st == FAIL:
                statuses.append(_user(gid, st, msg, "no_reason_given"))
            else:
                statuses.append(_user(gid, st, msg, None))
        else:
            statuses.append(_user(gid, PENDING, "", "awaiting_receipt"))
    if reading.missing_gids:
        ok = False
        findings.append(
            _finding(
                "missing_statuses",
                f"No status was returned for gid {_gids(reading.missing_gids)}: in sync receipt "
                "mode every user of the request must be listed in sendStatusList; unlisted "
                "users count as TOU_FAIL (no status returned).",
                **_gid_params(reading.missing_gids),
            )
        )
    pending = [g for g in gids if g not in reading.statuses]
    if prep.receipt_mode == "async" and pending:
        findings.append(
            _finding(
                "awaiting_receipt",
                f"gid {_gids(pending)} has no status yet: in async receipt mode it stays "
                "pending until the receipt URL reports it.",
                **_gid_params(pending),
            )
        )
    if reading.unexpected_gids:
        ok = False
        findings.append(
            _finding(
                "unexpected_gids",
                f"The answer lists gid {_gids(reading.unexpected_gids)}, which was not in the "
                "request; such entries are ignored.",
                **_gid_params(reading.unexpected_gids),
            )
        )
    if reading.order_no_mismatch is not None:
        ok = False
        findings.append(
            _finding(
                "order_no_mismatch",
                f"The answer's orderNo {reading.order_no_mismatch!r} differs from the request's "
                f"{order_no!r}; echo the orderNo you received (it is the idempotency key).",
                answered=reading.order_no_mismatch,
                sent=order_no,
            )
        )
    failed = [s for s, _ in statuses if s.status == FAIL and s.gid not in reading.missing_gids]
    for s in failed:
        ok = False
        findings.append(
            _finding(
                "user_failed",
                f"The endpoint reported gid {s.gid} as not reached (TOU_FAIL): "
                f"{s.error_msg or 'no reason given'}.",
                gid=s.gid,
                said=s.error_msg,
            )
        )
    if failed:
        signature = _signature_finding(prep, _answer_text(result, reading))
        if signature is not None:
            findings.append(signature)
    return ok, statuses, findings


def _status_diagnosis(status: int, result: HttpResult | None, prep: Prepared) -> Coded:
    if 300 <= status <= 399:
        location = (result.headers.get("location") if result is not None else None) or "?"
        return _finding(
            "http_redirect",
            f"The endpoint answered HTTP {status}, a redirect to {location}. Redirects are "
            "not followed: set the request URL to the final address.",
            status=status,
            location=location,
        )
    if status in (401, 403):
        token = (
            "the touchpoint's auth token (it makes `sign`)"
            if prep.token_set
            else "the auth token, which this touchpoint does not have (no `sign` is sent)"
        )
        return _finding(
            "http_auth" if prep.token_set else "http_auth_no_token",
            f"The endpoint answered HTTP {status}: it did not accept the request's "
            f"credentials. Check {token} and the signing secret (webhook-signature) "
            "against what the endpoint expects. Every user of the batch counts as TOU_FAIL.",
            status=status,
        )
    if protocol.is_retryable_status(status):
        return _finding(
            "http_retryable",
            f"The endpoint answered HTTP {status}. In a campaign the batch would be "
            "retried on the touchpoint's schedule.",
            status=status,
        )
    return _finding(
        "http_status",
        f"The endpoint answered HTTP {status}; only 2xx answers are read. Every user of "
        "the batch counts as TOU_FAIL.",
        status=status,
    )


def _gid_params(gids: list[int]) -> dict[str, Any]:
    """The first gids (``gids``) and how many there are (``count``)."""
    return {"gids": ", ".join(str(g) for g in gids[:10]), "count": len(gids)}


def _gids(gids: list[int]) -> str:
    shown = ", ".join(str(g) for g in gids[:10])
    return shown + (f" and {len(gids) - 10} more" if len(gids) > 10 else "")
