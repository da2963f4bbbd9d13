"""API shapes for plugin packages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class PluginOut(BaseModel):
    """One uploaded plugin version. ``config_fields`` is the form an admin fills in
    per touchpoint (``secret`` fields are write-only there)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    name: str
    version: str
    api_version: int
    entry: str
    description: str | None
    config_fields: list[dict[str, Any]]
    sha256: str
    size: int
    file_count: int
    created_at: datetime
