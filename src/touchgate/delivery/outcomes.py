"""What the worker holds and what an attempt produced: pure, typed values.

``ClaimedOrder`` is an order leased to a worker. Every attempt on it ends as
exactly one ``Outcome`` (built in ``receipts.py`` from what came back, written by
``settlement.settle``)::

    Delivered        the endpoint (or a receipt poll) gave per-user statuses
    Retryable        nothing final: try the delivery again per the retry schedule
    Failed           every user of the batch failed (a permanent error)
    ReceiptPending   a receipt poll without usable results: poll again later
    ReceiptTimedOut  the receipt deadline passed (no request was made)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .hooks import OrderInfo

DEFAULT_POLL_SECONDS = 300
MIN_POLL_SECONDS = 30
DEFAULT_RECEIPT_TIMEOUT_MINUTES = 1440
MAX_RECEIPT_TIMEOUT_MINUTES = 7 * 24 * 60
EXCERPT_BYTES = 2048

# Every dataList entry starts with its gid, then temData (we encode it so);
# inside JSON strings a quote is escaped, so this cannot match string content.
_ENTRY_GID = re.compile(rb'\{"gid":(-?\d+),"temData":')


def protocol_gids(payload: bytes) -> list[int]:
    """The gids of a frozen dataList, in order, without decoding the whole batch."""
    return [int(g) for g in _ENTRY_GID.findall(payload)]


@dataclass
class ClaimedOrder:
    """An order leased to a worker, with what sending it needs."""

    id: int
    order_no: str
    project_id: int
    touchpoint_id: int
    campaign_id: int | None
    run_id: int | None
    step_id: str | None
    state: str
    payload: bytes
    user_count: int
    attempt_count: int
    receipt_deadline: datetime | None
    replay_of: str | None
    context: dict[str, Any] | None
    last_error: str | None
    _gids: list[int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def info(self) -> OrderInfo:
        return OrderInfo(
            order_id=self.id,
            order_no=self.order_no,
            project_id=self.project_id,
            touchpoint_id=self.touchpoint_id,
            campaign_id=self.campaign_id,
            run_id=self.run_id,
            step_id=self.step_id,
            replay_of=self.replay_of,
            context=self.context,
        )

    def batch_gids(self) -> list[int]:
        """The users of the order (read from the frozen payload once)."""
        if self._gids is None:
            self._gids = protocol_gids(self.payload)
        return self._gids


def excerpt_of(body: bytes | None) -> str | None:
    if not body:
        return None
    return body[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def poll_interval(receipt: Mapping[str, Any] | None) -> int:
    seconds = int((receipt or {}).get("poll_seconds") or DEFAULT_POLL_SECONDS)
    return max(MIN_POLL_SECONDS, seconds)


def receipt_timeout_minutes(receipt: Mapping[str, Any] | None) -> int:
    minutes = int((receipt or {}).get("timeout_minutes") or DEFAULT_RECEIPT_TIMEOUT_MINUTES)
    return max(1, min(minutes, MAX_RECEIPT_TIMEOUT_MINUTES))


AttemptKind = Literal["delivery", "receipt"]
# gid → (TOU_SUCC | TOU_FAIL, error message)
Statuses = Mapping[int, tuple[str, str]]


@dataclass(frozen=True)
class AttemptRecord:
    """One request that was made (a row of the attempt log)."""

    kind: AttemptKind
    at: datetime
    duration_ms: int = 0
    http_status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    # Response headers (``Retry-After``), not stored.
    headers: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReceiptPolicy:
    """The touchpoint's receipt settings, as an attempt saw them."""

    mode: Literal["sync", "async"] = "sync"
    poll_seconds: int = DEFAULT_POLL_SECONDS
    timeout_minutes: int = DEFAULT_RECEIPT_TIMEOUT_MINUTES


@dataclass(frozen=True)
class Delivered:
    """Per-user statuses came back (from a delivery or a receipt poll). Users the
    answer does not list stay pending (async mode) or are left to the receipts."""

    order: ClaimedOrder
    attempt: AttemptRecord
    statuses: Statuses
    receipt: ReceiptPolicy = ReceiptPolicy()
    note: str = ""


@dataclass(frozen=True)
class Retryable:
    """The delivery can be tried again (transport error, 5xx, 429…)."""

    order: ClaimedOrder
    attempt: AttemptRecord
    reason: str
    retry_schedule: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Failed:
    """Every user of the batch failed, for ``reason``; no retry helps."""

    order: ClaimedOrder
    attempt: AttemptRecord
    reason: str


@dataclass(frozen=True)
class ReceiptPending:
    """A receipt poll that brought no usable results: poll again later."""

    order: ClaimedOrder
    attempt: AttemptRecord
    reason: str
    receipt: ReceiptPolicy = ReceiptPolicy(mode="async")


@dataclass(frozen=True)
class ReceiptTimedOut:
    """The receipt deadline passed: still-pending users fail ("receipt timeout")."""

    order: ClaimedOrder
    at: datetime
    attempt: None = None


Outcome = Delivered | Retryable | Failed | ReceiptPending | ReceiptTimedOut
