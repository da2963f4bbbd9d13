"""Protection settings of a touchpoint: frequency cap, quiet hours and request rate.

The campaigns domain owns the frequency cap and quiet hours (applied when users are
handed to a touchpoint); the delivery worker reads ``rate_limit`` (requests per second
across every worker process). ``GET/PUT …/touchpoints/{tid}/protection`` edits the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


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
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
