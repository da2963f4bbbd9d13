"""The conformance suite of ``touchgate doctor``: real requests to an endpoint,
built and signed by ``delivery.protocol`` and sent through the guarded client,
checking what most webhook integrations get wrong before they go live.

Groups, in the order they run (each item: a ``code`` and ``params`` from
``texts``, English sentences, and whether the check is required):

- ``options``: each options API — shape, at most two levels, the 100-option advice
  (first, so enum values in the batches can be codes the API really offers);
- ``protocol``: batches of 1, 100 and the batch size — a valid answer, every gid
  exactly once, ``code``/``message``/``orderNo``; Chinese text in ``temData``;
- ``idempotency``: the same order again must get the same per-user answer;
- ``security``: a wrong ``sign``, a wrong Standard Webhooks signature and a
  request signed 10 minutes ago must be refused (warnings, never failures);
- ``timing``: p50/p95 per batch size against the timeout, and an in-flight
  limit from a short concurrency probe;
- ``receipts`` (async mode): the orders sent are polled until every gid settles.

Every user is synthetic: gids from ``receiver.DOCTOR_GIDS`` and
``temData[receiver.DOCTOR_MARKER] = "synthetic"``. Nothing here touches the
database; ``service.py`` reads a registered touchpoint into a ``Target`` first.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from .. import receiver
from ..crypto import new_signing_secret
from ..delivery import protocol
from ..delivery.client import HttpResult
from .schemas import CheckItem, Group, Outcome, Report, TimingRow
from .texts import fix, message

Send = Callable[[str, bytes, dict[str, str], float], Awaitable[HttpResult]]
SYNTHETIC = "synthetic"
CHINESE_TEXT = "体检：你好，世界！优惠券 ¥100 — Touchgate ✓"
STALE_SECONDS = 10 * 60
# Concurrent requests tried to suggest an in-flight limit; a level "scales" while
# its median latency stays within this factor of one request alone.
PROBE_LEVELS = (2, 4, 8, 16)
SLOWDOWN_LIMIT = 2.0
NOISE_MS = 20
SHOWN_GIDS = 10


@dataclass(frozen=True)
class OptionsApi:
    """One enum parameter whose options come from an API."""

    key: str
    name: str
    url: str


@dataclass(frozen=True)
class Target:
    """The endpoint under test and what a delivery to it looks like."""

    url: str
    token: str | None = None
    secrets: tuple[str, ...] = ()
    batch_size: int = 500
    timeout: float = 15.0
    receipt_mode: Literal["sync", "async"] = "sync"
    receipt_url: str | None = None
    options_apis: tuple[OptionsApi, ...] = ()
    project_id: int = 0
    touchpoint_id: int | None = None
    user_attributes: tuple[str, ...] = ()
    template_params: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Limits:
    """How long the slow checks may take (tests make them small)."""

    samples: int = 3  # requests per batch size for the latency figures
    max_probe: int = 8  # most requests in flight tried by the concurrency probe
    receipt_poll_seconds: float = 2.0
    receipt_timeout_seconds: float = 60.0


@dataclass
class Exchange:
    """One request of the suite and what came back."""

    order_no: str
    gids: list[int]
    result: HttpResult
    doc: Any = None  # the parsed answer when it is a JSON object

    @property
    def accepted(self) -> bool:
        """A 2xx JSON answer with code 0: the endpoint took the batch."""
        return (
            self.result.ok_transport
            and self.result.status is not None
            and 200 <= self.result.status <= 299
            and isinstance(self.doc, dict)
            and type(self.doc.get("code")) is int  # not a JSON true/false
            and self.doc.get("code") == 0
        )


@dataclass
class _Run:
    target: Target
    limits: Limits
    send: Send
    items: list[CheckItem] = field(default_factory=list)
    timing: list[TimingRow] = field(default_factory=list)
    suggested_in_flight: int | None = None
    latencies: dict[int, list[int]] = field(default_factory=dict)
    timeouts: dict[int, int] = field(default_factory=dict)
    orders: list[Exchange] = field(default_factory=list)  # accepted batches, for receipts
    enum_codes: dict[str, str] = field(default_factory=dict)
    next_gid: int = 0

    # ------------------------------------------------------------ building requests

    def add(
        self,
        check: str,
        group: Group,
        required: bool,
        outcome: Outcome,
        result: str,
        /,
        **params: Any,
    ) -> None:
        """One finding; ``result`` is its code (positional: params may hold a ``code``)."""
        self.items.append(
            CheckItem(
                check=check,
                group=group,
                required=required,
                outcome=outcome,
                code=result,
                params=params,
                message=message(result, params),
                fix=fix(result, params) if outcome in ("fail", "warn") else None,
            )
        )

    def gids(self, n: int) -> list[int]:
        first = self.next_gid
        self.next_gid += n
        return list(range(first, first + n))

    def tem_data(self, text: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        today = datetime.now(UTC).date().isoformat()
        for param in self.target.template_params:
            key = str(param.get("key"))
            kind = param.get("type")
            if kind == "number":
                values[key] = 1
            elif kind == "date":
                values[key] = today
            elif kind == "enum":
                values[key] = self.enum_codes.get(key) or _first_manual_code(param) or ""
            else:
                values[key] = text
        if not self.target.template_params:
            values["title"] = text
        values[receiver.DOCTOR_MARKER] = SYNTHETIC
        return values

    def entries(self, gids: Sequence[int]) -> bytes:
        tem = self.tem_data(CHINESE_TEXT)
        dynamic = dict.fromkeys(self.target.user_attributes)  # no real user: null values
        return protocol.encode_data_list(
            {"gid": g, "temData": tem, "dynamicData": dynamic} for g in gids
        )

    async def deliver(
        self,
        gids: list[int],
        *,
        order_no: str | None = None,
        age_seconds: int = 0,
        wrong_sign: bool = False,
        wrong_signature: bool = False,
    ) -> Exchange:
        """Build, sign and send one delivery (deliberately wrong when asked)."""
        order_no = order_no or protocol.new_order_no()
        ts = int(time.time() * 1000) - age_seconds * 1000
        token = self.target.token
        body = protocol.delivery_body(order_no, self.entries(gids), ts, token)
        if wrong_sign and token:
            real = protocol.legacy_sign(token, ts, order_no).encode()
            body = body.replace(real, protocol.legacy_sign(token + "!", ts, order_no).encode())
        secrets = self.target.secrets
        if wrong_signature:
            secrets = (new_signing_secret(),)  # a valid secret, not the touchpoint's
        headers = protocol.request_headers(body, order_no, ts, secrets)
        if not secrets:  # no signing secret given: no signature to send
            headers.pop("webhook-signature")
        result = await self.send(self.target.url, body, headers, self.target.timeout)
        return Exchange(order_no, gids, result, _json_object(result))

    # ------------------------------------------------------------ reading answers

    def judge_batch(self, check: str, exchange: Exchange) -> bool:
        """Report every way the answer to a batch breaks the protocol; True when none."""
        size = len(exchange.gids)
        result = exchange.result
        problems: list[tuple[str, dict[str, Any]]] = []
        if not result.ok_transport or result.status is None:
            if result.error_kind == "timeout":
                problems.append(("timeout", {"seconds": _num(self.target.timeout)}))
            elif result.error_kind == "blocked":
                problems.append(("blocked", {}))
            else:
                problems.append(("unreachable", {"error_kind": result.error_kind or "other"}))
        elif 300 <= result.status <= 399:
            problems.append(("redirect", {"status": result.status}))
        elif result.status in (401, 403):
            problems.append(("refused_signed", {"status": result.status}))
        elif not 200 <= result.status <= 299:
            problems.append(("http_status", {"status": result.status}))
        elif not _utf8(result.body):
            problems.append(("not_utf8", {}))
        elif not isinstance(exchange.doc, dict):
            problems.append(("not_json", {}))
        else:
            problems.extend(self._answer_problems(exchange))
        for code, params in problems:
            outcome: Outcome = "warn" if code == "order_no_missing" else "fail"
            self.add(
                check,
                "protocol",
                outcome == "fail",
                outcome,
                code,
                size=size,
                **params,
            )
        return not [p for p in problems if p[0] != "order_no_missing"]

    def _answer_problems(self, exchange: Exchange) -> list[tuple[str, dict[str, Any]]]:
        doc = exchange.doc
        code = doc.get("code")
        if isinstance(code, bool) or not isinstance(code, int):
            return [("no_code", {})]
        if code != 0:
            return [("code_nonzero", {"code": code, "message": str(doc.get("message") or "")})]
        raw = doc.get("sendStatusList") or []
        if not isinstance(raw, list) or not all(
            isinstance(e, dict) and _int(e.get("gid")) is not None for e in raw
        ):
            return [("bad_status_list", {})]
        problems: list[tuple[str, dict[str, Any]]] = []
        listed = [(_int(e.get("gid")), e.get("status")) for e in raw]
        for gid, status in listed:
            if status not in (receiver.SUCC, receiver.FAIL, "PENDING"):
                problems.append(("bad_status", {"gid": gid, "status": str(status)}))
                break
        sent = set(exchange.gids)
        counted = Counter(g for g, _ in listed)
        seen = set(counted)
        dupes = sorted(g for g, n in counted.items() if n > 1 and g is not None)
        if dupes:
            problems.append(("duplicate_gids", {"gids": _shown(dupes)}))
        unexpected = sorted(g for g in seen if g not in sent and g is not None)
        if unexpected:
            problems.append(("unexpected_gids", {"gids": _shown(unexpected)}))
        missing = [g for g in exchange.gids if g not in seen]
        if missing and self.target.receipt_mode == "sync":
            problems.append(("missing_gids", {"count": len(missing), "gids": _shown(missing)}))
        echoed = doc.get("orderNo")
        if echoed in (None, ""):
            problems.append(("order_no_missing", {}))
        elif echoed != exchange.order_no:
            problems.append(("order_no_mismatch", {"got": str(echoed)[:64]}))
        return problems

    def statuses(self, exchange: Exchange) -> dict[int, str]:
        reading = protocol.read_document(
            exchange.doc, exchange.gids, order_no=exchange.order_no, mode="async"
        )
        return {gid: status for gid, (status, _msg) in reading.statuses.items()}

    def passed_batch(self, check: str, exchange: Exchange) -> None:
        statuses = self.statuses(exchange)
        size = len(exchange.gids)
        if self.target.receipt_mode == "async":
            pending = size - len(statuses)
            self.add(
                check, "protocol", True, "pass", "batch_accepted_async", size=size, pending=pending
            )
            return
        succeeded = sum(1 for s in statuses.values() if s == receiver.SUCC)
        self.add(
            check,
            "protocol",
            True,
            "pass",
            "batch_ok",
            size=size,
            succeeded=succeeded,
            failed=len(statuses) - succeeded,
        )

    def record_latency(self, exchange: Exchange) -> None:
        size = len(exchange.gids)
        self.latencies.setdefault(size, []).append(exchange.result.duration_ms)
        if exchange.result.error_kind == "timeout":
            self.timeouts[size] = self.timeouts.get(size, 0) + 1


def _first_manual_code(param: dict[str, Any]) -> str | None:
    enum = param.get("enum") or {}
    for option in enum.get("options") or []:
        children = option.get("children") or []
        return str(children[0]["code"] if children else option["code"])
    return None


def _json_object(result: HttpResult) -> Any:
    if not result.body:
        return None
    try:
        doc = orjson.loads(result.body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 2)


def _shown(gids: Sequence[int | None]) -> str:
    return ", ".join(str(g) for g in list(gids)[:SHOWN_GIDS])


def _percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (no interpolation: a handful of samples)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# ---------------------------------------------------------------- the groups


async def _options(run: _Run) -> None:
    if not run.target.options_apis:
        run.add("options", "options", False, "skip", "options_none")
        return
    for api in run.target.options_apis:
        await _one_options_api(run, api)


async def _one_options_api(run: _Run, api: OptionsApi) -> None:
    check = f"options.{api.key}"
    body = orjson.dumps(
        {"projectId": run.target.project_id, "paramDescription": api.name, "paramName": api.key}
    )
    headers = protocol.request_headers(
        body, protocol.new_order_no(), int(time.time() * 1000), run.target.secrets
    )
    if not run.target.secrets:
        headers.pop("webhook-signature")
    result = await run.send(api.url, body, headers, run.target.timeout)
    p = {"param": api.key}
    if not result.ok_transport or result.status is None:
        run.add(
            check,
            "options",
            True,
            "fail",
            "options_unreachable",
            error_kind=result.error_kind or "other",
            **p,
        )
        return
    if not 200 <= result.status <= 299:
        run.add(check, "options", True, "fail", "options_http_status", status=result.status, **p)
        return
    doc = _json_object(result)
    code = doc.get("code") if doc is not None else None
    if doc is not None and isinstance(code, int) and not isinstance(code, bool) and code != 0:
        run.add(
            check,
            "options",
            True,
            "fail",
            "options_refused",
            code=code,
            message=str(doc.get("message") or ""),
            **p,
        )
        return
    shape = _options_shape(doc.get("enumArgs") if doc is not None and code == 0 else None)
    if shape is None:
        run.add(check, "options", True, "fail", "options_malformed", **p)
        return
    depth, count, first_leaf = shape
    if depth > 2:
        run.add(check, "options", True, "fail", "options_too_deep", depth=depth, **p)
        return
    if first_leaf is not None:
        run.enum_codes[api.key] = first_leaf
    if count > receiver.OPTIONS_ADVICE:
        run.add(check, "options", False, "warn", "options_too_many", count=count, **p)
        return
    run.add(check, "options", True, "pass", "options_ok", count=count, levels=depth, **p)


def _options_shape(raw: Any, depth: int = 1) -> tuple[int, int, str | None] | None:
    """(deepest level, selectable options, first selectable code), or None when
    an entry is not ``{code, description?, childEnumArgs?}``."""
    if not isinstance(raw, list):
        return None
    deepest, count, first = depth, 0, None
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str | int):
            return None
        children = item.get("childEnumArgs")
        if children:
            inner = _options_shape(children, depth + 1)
            if inner is None:
                return None
            deepest = max(deepest, inner[0])
            count += inner[1]
            first = first or inner[2]
        else:
            count += 1
            first = first or str(item["code"])
    return deepest, count, first


def _sizes(target: Target) -> list[int]:
    return sorted({1, min(100, target.batch_size), target.batch_size})


async def _protocol(run: _Run) -> bool:
    """The batches; True when the batch of 1 got a valid answer (the rest can run)."""
    baseline = False
    for size in _sizes(run.target):
        exchange = await run.deliver(run.gids(size))
        run.record_latency(exchange)
        if run.judge_batch(f"protocol.batch_{size}", exchange):
            run.passed_batch(f"protocol.batch_{size}", exchange)
            run.orders.append(exchange)
            baseline = baseline or size == 1
    if baseline:
        # Every batch carries Chinese text in temData; the batch of 1 was accepted
        # and its answer decoded as UTF-8 (judge_batch checks that).
        run.add("protocol.utf8", "protocol", True, "pass", "utf8_ok")
    return baseline


async def _idempotency(run: _Run) -> None:
    first = next((e for e in reversed(run.orders) if len(e.gids) > 1), None) or (
        run.orders[0] if run.orders else None
    )
    if first is None:
        return
    # The same order again, as a retry would send it: same orderNo and dataList,
    # fresh timeStamp and signatures.
    again = await run.deliver(first.gids, order_no=first.order_no)
    before = run.statuses(first)
    after = run.statuses(again) if again.accepted else {}
    changed = [g for g in first.gids if before.get(g) != after.get(g)] if again.accepted else []
    if not again.accepted:
        changed = list(first.gids)
    if changed:
        run.add(
            "idempotency.repeat",
            "idempotency",
            False,
            "warn",
            "not_idempotent",
            count=len(changed),
            gids=_shown(changed),
        )
    else:
        run.add("idempotency.repeat", "idempotency", False, "pass", "idempotent")


async def _security(run: _Run) -> None:
    target = run.target
    sign_refused: bool | None = None
    webhook_refused: bool | None = None
    if target.token:
        sign_refused = not (await run.deliver(run.gids(1), wrong_sign=True)).accepted
    if target.secrets:
        webhook_refused = not (await run.deliver(run.gids(1), wrong_signature=True)).accepted

    def judge(check: str, refused: bool | None, other: bool | None, stem: str) -> None:
        if refused is None:
            run.add(check, "security", False, "skip", f"{stem}_skipped")
        elif refused:
            run.add(check, "security", False, "pass", f"{stem}_checked")
        elif other:
            other_stem = "webhook" if stem == "sign" else "sign"
            run.add(check, "security", False, "pass", f"{stem}_not_checked_{other_stem}_checked")
        else:
            run.add(check, "security", False, "warn", f"{stem}_not_checked")

    judge("security.sign", sign_refused, webhook_refused, "sign")
    judge("security.webhook_signature", webhook_refused, sign_refused, "webhook")
    if not (sign_refused or webhook_refused):
        run.add("security.stale", "security", False, "skip", "stale_skipped")
        return
    stale = await run.deliver(run.gids(1), age_seconds=STALE_SECONDS)
    if stale.accepted:
        run.add("security.stale", "security", False, "warn", "stale_accepted")
    else:
        run.add("security.stale", "security", False, "pass", "stale_refused")


async def _timing(run: _Run) -> None:
    timeout_ms = int(run.target.timeout * 1000)
    for size in _sizes(run.target):
        # The protocol check sent one already; a size that timed out is not sent again.
        while len(run.latencies.get(size, [])) < run.limits.samples and not run.timeouts.get(size):
            run.record_latency(await run.deliver(run.gids(size)))
        samples = run.latencies.get(size, [])
        if not samples:
            continue
        p50, p95 = _percentile(samples, 0.5), _percentile(samples, 0.95)
        timeouts = run.timeouts.get(size, 0)
        run.timing.append(
            TimingRow(
                batch_size=size,
                samples=len(samples),
                p50_ms=p50,
                p95_ms=p95,
                timeouts=timeouts,
                timeout_ms=timeout_ms,
            )
        )
        common = {"size": size, "samples": len(samples), "timeout_ms": timeout_ms}
        check = f"timing.batch_{size}"
        if timeouts or p95 >= timeout_ms:
            run.add(
                check,
                "timing",
                True,
                "fail",
                "latency_over_timeout",
                timeouts=max(timeouts, 1),
                **common,
            )
        elif p95 > timeout_ms / 2:
            run.add(
                check,
                "timing",
                False,
                "warn",
                "latency_near_timeout",
                p50_ms=p50,
                p95_ms=p95,
                **common,
            )
        else:
            run.add(check, "timing", True, "pass", "latency_ok", p50_ms=p50, p95_ms=p95, **common)
    await _in_flight(run)


async def _in_flight(run: _Run) -> None:
    size = min(100, run.target.batch_size)
    alone = run.latencies.get(size, [])
    if run.timeouts.get(size) or not alone or not any(len(e.gids) == size for e in run.orders):
        run.add("timing.in_flight", "timing", False, "skip", "in_flight_unmeasured", size=size)
        return
    base = max(1, _percentile(alone, 0.5))
    best, best_latency, tried = 1, base, 1
    for level in (n for n in PROBE_LEVELS if n <= run.limits.max_probe):
        tried = level
        round_ = await asyncio.gather(*(run.deliver(run.gids(size)) for _ in range(level)))
        if not all(e.accepted for e in round_):
            break
        latency = _percentile([e.result.duration_ms for e in round_], 0.5)
        # A few milliseconds either way is noise, not a slowdown.
        if latency > max(SLOWDOWN_LIMIT * base, base + NOISE_MS):
            break
        best, best_latency = level, max(1, latency)
    run.suggested_in_flight = best
    users_per_second = int(best * size * 1000 / best_latency)
    run.add(
        "timing.in_flight",
        "timing",
        False,
        "pass",
        "in_flight_suggestion",
        in_flight=best,
        users_per_second=users_per_second,
        size=size,
        tried=tried,
    )


async def _receipts(run: _Run) -> None:
    target = run.target
    if target.receipt_mode != "async":
        run.add("receipts.settle", "receipts", False, "skip", "receipts_sync")
        return
    if not target.receipt_url:
        run.add("receipts.settle", "receipts", True, "fail", "receipts_no_url")
        return
    url = target.receipt_url
    pending = {e.order_no: set(e.gids) - set(run.statuses(e)) for e in run.orders}
    users = sum(len(e.gids) for e in run.orders)
    started = time.monotonic()
    deadline = started + run.limits.receipt_timeout_seconds
    while True:
        for order_no, gids in pending.items():
            if not gids:
                continue
            ts = int(time.time() * 1000)
            body = protocol.receipt_body(order_no, ts, target.token)
            headers = protocol.request_headers(body, order_no, ts, target.secrets)
            if not target.secrets:
                headers.pop("webhook-signature")
            result = await run.send(url, body, headers, target.timeout)
            doc = _json_object(result)
            if result.status is None or not 200 <= result.status <= 299 or doc is None:
                continue  # as Touchgate does: ask again at the next poll
            reading = protocol.read_document(doc, sorted(gids), order_no=order_no, mode="async")
            gids.difference_update(reading.statuses)
        left = sorted(g for gids in pending.values() for g in gids)
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(run.limits.receipt_poll_seconds, deadline - time.monotonic()))
    seconds = _num(round(time.monotonic() - started, 1))
    if left:
        run.add(
            "receipts.settle",
            "receipts",
            True,
            "fail",
            "receipts_unsettled",
            count=len(left),
            gids=_shown(left),
            seconds=seconds,
        )
    else:
        run.add(
            "receipts.settle",
            "receipts",
            True,
            "pass",
            "receipts_settled",
            users=users,
            orders=len(run.orders),
            seconds=seconds,
        )


_AFTER_BASELINE: tuple[tuple[str, Group], ...] = (
    ("idempotency.repeat", "idempotency"),
    ("security", "security"),
    ("timing", "timing"),
    ("receipts.settle", "receipts"),
)


def _skip_rest(run: _Run) -> None:
    for check, group in _AFTER_BASELINE:
        run.add(check, group, False, "skip", "skipped_no_answer")


async def run_suite(
    target: Target, send: Send, limits: Limits | None = None, *, now: datetime | None = None
) -> Report:
    """Run every check against ``target``; never raises for endpoint problems."""
    limits = limits or Limits()
    started = time.monotonic()
    run = _Run(target, limits, send)
    # A random block of the reserved range per run, so two runs never share a gid.
    span = len(receiver.DOCTOR_GIDS) // 1000 - 1
    run.next_gid = receiver.DOCTOR_GIDS.start + random.randrange(span) * 1000
    first_gid = run.next_gid
    await _options(run)
    if await _protocol(run):
        await _idempotency(run)
        await _security(run)
        await _timing(run)
        await _receipts(run)
    else:
        _skip_rest(run)
    return Report.build(
        url=target.url,
        touchpoint_id=target.touchpoint_id,
        batch_size=target.batch_size,
        timeout_seconds=target.timeout,
        receipt_mode=target.receipt_mode,
        started_at=now or datetime.now(UTC),
        duration_ms=int((time.monotonic() - started) * 1000),
        gids=(first_gid, run.next_gid - 1),
        items=run.items,
        timing=run.timing,
        suggested_in_flight=run.suggested_in_flight,
    )
