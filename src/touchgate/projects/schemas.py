from __future__ import annotations

from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


def _check_timezone(value: str) -> str:
    if value not in available_timezones() and value != "UTC":
        raise PydanticCustomError(
            "unknown_timezone",
            "unknown time zone '{value}'; use an IANA name like 'Asia/Shanghai'",
            {"value": value},
        )
    return value


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("empty", "must not be blank")
    return value


# A project's or a space's name, stripped.
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    timezone: str = "UTC"
    approval_required: bool = True

    _tz = field_validator("timezone")(_check_timezone)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
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
