"""Turning one transport result into an ``Outcome``: delivery attempts and async
receipt polls (wire-protocol.md §2 and §3), for HTTP and plugin touchpoints.

Everything here is about reading what came back; the worker decides when to
send and ``service.settle`` writes the result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .client import HttpResult
from .protocol import Reading, Verdict, read_document, read_response
from .service import ClaimedOrder, Outcome, excerpt_of

log = logging.getLogger("touchgate.delivery")

# Transport failures that another attempt cannot fix: the address is refused by
# the network guard (an operator must allow it or fix the URL).
PERMANENT_ERROR_KINDS = frozenset({"blocked"})


@dataclass(frozen=True)
class TouchpointConfig:
    """What the worker needs of a touchpoint, secrets decrypted, read once per claim."""

    id: int
    project_id: int
    transport: str  # http | plugin
    url: str | None
    token: str | None
    signing_secrets: tuple[str, ...]
    timeout_seconds: float
    retry_schedule: tuple[int, ...] | None
    max_in_flight: int | None
    receipt_mode: str  # sync | async
    receipt_url: str | None
    poll_seconds: int
    timeout_minutes: int
    plugin_id: int | None
    plugin_config: Mapping[str, Any] | None
    # rate limit: requests per second across every worker process (None: no limit)
    requests_per_second: float | None = None


def _base(order: ClaimedOrder, tp: TouchpointConfig, kind: str, at: datetime) -> Outcome:
    return Outcome(
        order=order,
        kind=kind,
        mode=tp.receipt_mode if kind == "delivery" else "async",
        at=at,
        verdict=None,
        retry_schedule=tp.retry_schedule,
        poll_seconds=tp.poll_seconds,
        timeout_minutes=tp.timeout_minutes,
    )


def _note(reading: Reading, order: ClaimedOrder) -> str | None:
    notes = []
    if reading.unexpected_gids:
        log.warning(
            "order %s: response lists gids not in the batch (ignored): %s",
            order.order_no,
            reading.unexpected_gids[:20],
        )
        notes.append(f"ignored {len(reading.unexpected_gids)} gid(s) not in the batch")
    if reading.missing_gids:
        notes.append(f"{len(reading.missing_gids)} gid(s) without a status")
    if reading.order_no_mismatch:
        notes.append(f"response orderNo {reading.order_no_mismatch!r} differs")
    return "; ".join(notes) or None


def from_http(
    order: ClaimedOrder,
    tp: TouchpointConfig,
    kind: str,
    at: datetime,
    gids: list[int],
    res: HttpResult,
) -> Outcome:
    """Read an HTTP result by the rules of §2, in their order."""
    out = _base(order, tp, kind, at)
    out.batch_gids = gids
    out.duration_ms = res.duration_ms
    out.http_status = res.status
    out.headers = res.headers
    out.excerpt = excerpt_of(res.body)
    if res.status is None:
        out.error = res.error or res.error_kind or "no response"
        out.reason = out.error
        out.verdict = Verdict.FAIL_ALL if res.error_kind in PERMANENT_ERROR_KINDS else Verdict.RETRY
        return out
    reading = read_response(res.status, res.body, gids, order_no=order.order_no, mode=out.mode)
    if res.error_kind is not None and reading.verdict is not Verdict.RETRY:
        # A complete status but a body we could not read whole (too large).
        out.verdict = Verdict.FAIL_ALL
        out.reason = out.error = res.error or res.error_kind
        return out
    out.verdict = reading.verdict
    out.reason = reading.reason
    out.statuses = reading.statuses
    out.error = reading.reason or _note(reading, order)
    return out


def from_plugin(
    order: ClaimedOrder,
    tp: TouchpointConfig,
    kind: str,
    at: datetime,
    gids: list[int],
    duration_ms: int,
    results: Any = None,
    *,
    retryable: str | None = None,
    failed: str | None = None,
) -> Outcome:
    """Read a plugin's answer with the same rules as a synchronous HTTP response."""
    out = _base(order, tp, kind, at)
    out.batch_gids = gids
    out.duration_ms = duration_ms
    if retryable is not None:
        out.verdict, out.reason, out.error = Verdict.RETRY, retryable, retryable
        return out
    if failed is not None:
        out.verdict, out.reason, out.error = Verdict.FAIL_ALL, failed, failed
        return out
    if not isinstance(results, list):
        msg = "the plugin returned something other than a list of statuses"
        out.verdict, out.reason, out.error = Verdict.FAIL_ALL, msg, msg
        return out
    doc = {
        "code": 0,
        "sendStatusList": [
            {
                "gid": r.get("gid"),
                "status": r.get("status"),
                "errorMsg": r.get("error_msg", r.get("errorMsg")),
            }
            if isinstance(r, dict)
            else r
            for r in results
        ],
    }
    reading = read_document(doc, gids, order_no=order.order_no, mode=out.mode)
    out.verdict = reading.verdict
    out.reason = reading.reason
    out.statuses = reading.statuses
    out.error = reading.reason or _note(reading, order)
    out.excerpt = excerpt_of(_dump(results))
    return out


def _dump(results: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(results)
    except TypeError:
        return repr(results).encode()


def receipt_timed_out(order: ClaimedOrder, tp: TouchpointConfig, at: datetime) -> Outcome:
    """The receipt deadline passed: still-pending users fail ("receipt timeout")."""
    out = _base(order, tp, "receipt", at)
    out.receipt_timeout = True
    out.record_attempt = False
    return out
