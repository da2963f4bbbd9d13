from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: datetime
    key_id: int | None
    key_name: str
    action: str
    resource_type: str
    resource_id: str
    summary: str
    changes: dict[str, Any]
