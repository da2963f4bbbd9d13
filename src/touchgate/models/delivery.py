"""Orders (one per batch request), their users' final results and every attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, JSONType, UTCDateTime, utcnow


class Order(Base):
    """One batch request: its state, attempts and lease. Its frozen ``dataList``
    is an ``OrderPayload``: it never changes across retries, nor does ``order_no``."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_due", "state", "next_attempt_at"),
        Index("ix_orders_campaign", "campaign_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    touchpoint_id: Mapped[int] = mapped_column(ForeignKey("touchpoints.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    step_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # sending: due for a delivery attempt · polling: waiting for async receipts · done
    state: Mapped[str] = mapped_column(String(16), default="sending")
    user_count: Mapped[int] = mapped_column(Integer)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    receipt_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    replay_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderPayload(Base):
    """An order's frozen ``dataList`` (orjson bytes), written once at enqueue.

    Apart from the order's row on purpose: claims, heartbeats and settlement
    update that row several times per attempt, and SQLite rewrites a whole row
    (tens of kilobytes of payload for a batch of 500) at each update."""

    __tablename__ = "order_payloads"

    order_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class OrderResult(Base):
    """A user's final result in an order, written once when it settles (append-only).

    The users of an order are named by its frozen payload; a user without a
    row here is still pending. The primary key makes a second result for the
    same user of the same order impossible. No foreign key to ``orders``: it
    would cost a trigger per row on PostgreSQL, orders are never deleted, and
    settlement writes a result only for an order it holds locked.
    """

    __tablename__ = "order_results"

    order_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16))  # TOU_SUCC | TOU_FAIL
    error_msg: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    settled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="delivery")  # delivery | receipt
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)
