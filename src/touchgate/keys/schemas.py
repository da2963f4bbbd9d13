from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..auth import MAX_ID
from ..names import Name

RoleName = Literal["admin", "operator", "viewer"]
IdValue = Annotated[int, Field(ge=1, le=MAX_ID)]


class KeyCreate(BaseModel):
    """A new key. ``project_id`` omitted means the creator's own project (none for
    an admin of the whole service); ``null`` means every project."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    role: RoleName
    project_id: IdValue | None = None
    space_ids: Annotated[list[IdValue], Field(max_length=1000)] | None = None
    expires_at: AwareDatetime | None = None


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    project_id: int | None
    space_ids: list[int] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class KeyIdentity(BaseModel):
    """The calling key: what it may do and where (the console shows only the pages it
    can use)."""

    id: int | None
    name: str
    role: RoleName
    project_id: int | None
    space_ids: list[int] | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself, shown this once; only its hash is kept.")
