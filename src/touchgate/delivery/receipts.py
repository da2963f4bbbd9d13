"""Turning one transport result into an ``Outcome``: delivery attempts and async
receipt polls (wire-protocol.md §2 and §3), for HTTP and plugin touchpoints.

Everything here is about reading what came back (pure: no I/O); the worker
decides when to send and ``settlement.settle`` writes the result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .client import HttpResult
from .outcomes import (
    AttemptKind,
    AttemptRecord,
    ClaimedOrder,
    Delivered,
    Failed,
    Outcome,
    ReceiptPending,
    ReceiptPolicy,
    ReceiptTimedOut,
    Retryable,
    excerpt_of,
)
from .protocol import Reading, Verdict, read_document, read_response

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


def _kind(kind: str) -> AttemptKind:
    return "receipt" if kind == "receipt" else "delivery"


def _policy(tp: TouchpointConfig, kind: AttemptKind) -> ReceiptPolicy:
    return ReceiptPolicy(
        mode="async" if kind == "receipt" or tp.receipt_mode == "async" else "sync",
        poll_seconds=tp.poll_seconds,
        timeout_minutes=tp.timeout_minutes,
    )


def _outcome(
    order: ClaimedOrder,
    tp: TouchpointConfig,
    attempt: AttemptRecord,
    verdict: Verdict,
    reason: str,
    statuses: Mapping[int, tuple[str, str]],
) -> Outcome:
    """The typed outcome of a reading; a receipt poll never retries nor fails the
    batch: without results it waits for the next poll (or the deadline)."""
    policy = _policy(tp, attempt.kind)
    if verdict is Verdict.RESULTS:
        return Delivered(order, attempt, statuses, policy, reason)
    if attempt.kind == "receipt":
        return ReceiptPending(order, attempt, reason, policy)
    if verdict is Verdict.RETRY:
        return Retryable(order, attempt, reason, tp.retry_schedule)
    return Failed(order, attempt, reason)


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
    """Read an HTTP result by the rules of §2, in their order (``kind``: delivery |
    receipt)."""
    attempt_kind = _kind(kind)

    def attempt(error: str | None) -> AttemptRecord:
        return AttemptRecord(
            attempt_kind, at, res.duration_ms, res.status, error, excerpt_of(res.body), res.headers
        )

    if res.status is None:
        error = res.error or res.error_kind or "no response"
        verdict = Verdict.FAIL_ALL if res.error_kind in PERMANENT_ERROR_KINDS else Verdict.RETRY
        return _outcome(order, tp, attempt(error), verdict, error, {})
    mode = _policy(tp, attempt_kind).mode
    reading = read_response(res.status, res.body, gids, order_no=order.order_no, mode=mode)
    if res.error_kind is not None and reading.verdict is not Verdict.RETRY:
        # A complete status but a body we could not read whole (too large).
        error = res.error or res.error_kind
        return _outcome(order, tp, attempt(error), Verdict.FAIL_ALL, error, {})
    note = reading.reason or _note(reading, order)
    return _outcome(order, tp, attempt(note), reading.verdict, reading.reason, reading.statuses)


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
    attempt_kind = _kind(kind)

    def attempt(error: str | None, excerpt: str | None = None) -> AttemptRecord:
        return AttemptRecord(attempt_kind, at, duration_ms, None, error, excerpt)

    if retryable is not None:
        return _outcome(order, tp, attempt(retryable), Verdict.RETRY, retryable, {})
    if failed is not None:
        return _outcome(order, tp, attempt(failed), Verdict.FAIL_ALL, failed, {})
    if not isinstance(results, list):
        msg = "the plugin returned something other than a list of statuses"
        return _outcome(order, tp, attempt(msg), Verdict.FAIL_ALL, msg, {})
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
    mode = _policy(tp, attempt_kind).mode
    reading = read_document(doc, gids, order_no=order.order_no, mode=mode)
    record = attempt(reading.reason or _note(reading, order), excerpt_of(_dump(results)))
    return _outcome(order, tp, record, reading.verdict, reading.reason, reading.statuses)


def _dump(results: Any) -> bytes:
    try:
        return orjson.dumps(results)
    except TypeError:
        return repr(results).encode()


def receipt_timed_out(
    order: ClaimedOrder, tp: TouchpointConfig | None, at: datetime
) -> ReceiptTimedOut:
    """The receipt deadline passed: still-pending users fail ("receipt timeout").
    (``tp`` is not needed: no request is made.)"""
    return ReceiptTimedOut(order, at)
