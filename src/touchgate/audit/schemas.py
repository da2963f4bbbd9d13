from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: datetime
    key_id: int | None
    key_name: str
    action: str
    resource_type: str
    resource_id: str
    summary: str = Field(description="In English, for scripts.")
    params: dict[str, Any] | None = Field(
        description="What the entry's sentence names (the resource's name, counts, the "
        "changed `fields`…); the console says it in the reader's language from "
        "(resource_type, action) and these. null on entries recorded before they were kept."
    )
    changes: dict[str, Any]
