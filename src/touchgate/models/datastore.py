"""The user data store: attribute catalogue, users and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, JSONType, UTCDateTime, utcnow


class Attribute(Base):
    __tablename__ = "attributes"
    __table_args__ = (UniqueConstraint("project_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))  # string | number | date | boolean
    kind: Mapped[str] = mapped_column(String(16))  # attribute | identity
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    # No foreign key to projects: PostgreSQL would check it row by row, a third of
    # a bulk import's time (migration 0009). Projects are never deleted, and an
    # import checks its project before writing.
    project_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_name_time", "project_id", "name", "time"),
        Index("ix_events_project_gid_time", "project_id", "gid", "time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key: PostgreSQL would check it with a trigger per row, and every
    # settled user writes an event (projects are never deleted).
    project_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    gid: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
