"""Touchpoint health: the circuit breaker's state, shared by every worker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime


class TouchpointHealth(Base):
    """One row per touchpoint that has ever failed a request (no row: ``closed``).

    ``failures`` counts failed requests in a row while ``closed``; ``since`` is
    when ``state`` last changed; a ``half_open`` row names the worker sending
    the probe (``probe_owner``).
    """

    __tablename__ = "touchpoint_health"

    touchpoint_id: Mapped[int] = mapped_column(
        ForeignKey("touchpoints.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))  # closed | open | half_open
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    probe_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
