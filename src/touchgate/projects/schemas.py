from __future__ import annotations

from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from ..names import Name, OptionalName


def _check_timezone(value: str) -> str:
    if value not in available_timezones() and value != "UTC":
        raise PydanticCustomError(
            "unknown_timezone",
            "unknown time zone '{value}'; use an IANA name like 'Asia/Shanghai'",
            {"value": value},
        )
    return value


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    timezone: str = "UTC"
    approval_required: bool = True

    _tz = field_validator("timezone")(_check_timezone)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: OptionalName = None
    timezone: str | None = None
    approval_required: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    timezone: str
    approval_required: bool


class SpaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class SpaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
