"""Protection against over-messaging: a touchpoint's frequency cap, quiet hours and
request rate; the project-wide cap; the blocklist; and what caps count.

The campaigns domain owns the frequency caps, quiet hours and blocklist (applied when
users are handed to a touchpoint); the delivery worker reads ``rate_limit`` (requests
per second across every worker process). ``GET/PUT …/touchpoints/{tid}/protection``
edits the touchpoint's row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, JSONType, UTCDateTime, utcnow


class TouchpointProtection(Base):
    """One row per touchpoint that has any protection set (no row: nothing set)."""

    __tablename__ = "touchpoint_protection"

    touchpoint_id: Mapped[int] = mapped_column(
        ForeignKey("touchpoints.id", ondelete="CASCADE"), primary_key=True
    )
    # {"max_messages": int, "days": int} or None
    frequency_cap: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # {"start": "22:00", "end": "08:00", "action": "drop" | "hold"} or None
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # {"requests_per_second": float} or None
    rate_limit: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Where the touchpoint's shared timeline of request slots ends (seconds since the
    # epoch, database clock): workers reserve slots from here (delivery/ratelimit.py).
    next_request_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProjectProtection(Base):
    """The project-wide frequency cap, across every touchpoint (no row: none)."""

    __tablename__ = "project_protection"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    # {"max_messages": int, "days": int} or None
    frequency_cap: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class BlocklistEntry(Base):
    """A gid no campaign may send to through one touchpoint, or through any
    (``touchpoint_id`` None). Unique per (project, gid, touchpoint) in both forms."""

    __tablename__ = "blocklist"
    __table_args__ = (
        Index(
            "uq_blocklist_touchpoint",
            "project_id",
            "gid",
            "touchpoint_id",
            unique=True,
            sqlite_where=text("touchpoint_id IS NOT NULL"),
            postgresql_where=text("touchpoint_id IS NOT NULL"),
        ),
        Index(
            "uq_blocklist_every_touchpoint",
            "project_id",
            "gid",
            unique=True,
            sqlite_where=text("touchpoint_id IS NULL"),
            postgresql_where=text("touchpoint_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    gid: Mapped[int] = mapped_column(BigInteger)
    touchpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("touchpoints.id", ondelete="CASCADE"), nullable=True
    )
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SentMessage(Base):
    """A message a campaign handed to a touchpoint, as frequency caps count it: the
    row is written when the user is queued (pending counts) and deleted when the
    delivery fails (``TOU_FAIL`` does not count). The key starts with the user and
    the time, the order caps count in: one index serves counting, inserting and
    forgetting. No foreign keys (a row per message)."""

    __tablename__ = "sent_messages"

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    touchpoint_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class ProtectionLock(Base):
    """One row per user that has been under a frequency cap. A campaign about to
    count a user's messages updates the user's row first, so two campaigns (or
    worker processes) deciding about the same user take turns: the second one
    counts after the first has committed its messages (PostgreSQL row locks;
    SQLite has one writer anyway)."""

    __tablename__ = "protection_locks"

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
