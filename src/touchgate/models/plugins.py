"""Uploaded plugin packages: one row per uploaded version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, UTCDateTime, utcnow


class Plugin(Base):
    """A plugin version. Rows never change after upload: a touchpoint points at one
    version by id, so a new upload cannot alter a touchpoint behind an admin's back.
    Its files live under ``settings.plugin_path/<id>/``."""

    __tablename__ = "plugins"
    # AUTOINCREMENT on SQLite: an id (and so a directory name) is never reused
    # after a delete, so a cached process or a stale directory can't be mistaken
    # for a newer upload.
    __table_args__ = (
        UniqueConstraint("project_id", "name", "version"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    version: Mapped[str] = mapped_column(String(100))
    api_version: Mapped[int] = mapped_column(Integer)
    entry: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The manifest's [[config]] tables, normalised (see touchgate.plugins.manifest).
    config_fields: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    file_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
