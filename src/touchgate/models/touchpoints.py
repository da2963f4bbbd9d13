"""Touchpoints and their space authorisations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..delivery.protocol import DEFAULT_BATCH_SIZE
from .base import Base, JSONType, UTCDateTime, utcnow


class Touchpoint(Base):
    __tablename__ = "touchpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(15))
    type: Mapped[str] = mapped_column(String(16))  # notification | benefit | other
    transport: Mapped[str] = mapped_column(String(16))  # http | plugin
    status: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled | disabled
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # Secrets are Fernet tokens (see touchgate.crypto), never plain text.
    token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    signing_secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_signing_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZE)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=15)
    retry_schedule: Mapped[list[int]] = mapped_column(JSONType)
    max_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    receipt: Mapped[dict[str, Any]] = mapped_column(JSONType)
    user_attributes: Mapped[list[str]] = mapped_column(JSONType)
    template_params: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    plugin_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Plugin config; fields the manifest marks secret hold Fernet tokens.
    plugin_config: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Soft delete: orders, results and statistics keep pointing at the row.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# A name is unique among the project's live touchpoints only, so deleting one
# frees its name. Partial indexes work the same on SQLite and PostgreSQL.
Index(
    "uq_touchpoints_project_name_live",
    Touchpoint.project_id,
    Touchpoint.name,
    unique=True,
    sqlite_where=Touchpoint.deleted_at.is_(None),
    postgresql_where=Touchpoint.deleted_at.is_(None),
)


class TouchpointSpace(Base):
    __tablename__ = "touchpoint_spaces"

    touchpoint_id: Mapped[int] = mapped_column(
        ForeignKey("touchpoints.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed for "the touchpoints usable in this space".
    space_id: Mapped[int] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True, index=True
    )
