"""Request and response bodies of the data store API."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..errors import FieldDetail

MAX_GID = 2**63 - 1
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# ``gid`` is the user id column of every import; an attribute cannot shadow it.
RESERVED_KEYS = frozenset({"gid"})

# Every JSON value a client gives is stored as JSONB on PostgreSQL and returned
# through orjson: both refuse NUL characters in text, NaN/Infinity and integers
# beyond 64 bits, so such values are refused here with a clear message.
MAX_JSON_DEPTH = 32
INT_RANGE = (-(2**63), 2**64 - 1)


def _storable(text: str) -> tuple[str, str] | None:
    """Why ``text`` cannot be stored, as (code, English words), or None when it can."""
    if "\x00" in text:
        return "nul_characters", "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode", "must be valid Unicode (no lone surrogates)"
    return None


def check_text(value: str) -> str:
    problem = _storable(value)
    if problem is not None:
        raise PydanticCustomError(*problem)
    return value


def _unstorable(code: str, words: str, path: str, **params: Any) -> PydanticCustomError:
    where = " at {path}" if path else ""
    return PydanticCustomError(code, words + where, {**params, "path": path})


def check_json(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise a ``PydanticCustomError`` naming the first value that cannot be stored
    as JSON (``path`` is where it is inside the value)."""
    if depth > MAX_JSON_DEPTH:
        raise _unstorable("too_deep", "nested deeper than {max} levels", path, max=MAX_JSON_DEPTH)
    if isinstance(value, str):
        problem = _storable(value)
        if problem is not None:
            raise _unstorable(problem[0], "text " + problem[1], path)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise _unstorable("integer_too_large", "integer out of the 64-bit range", path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _unstorable("not_finite", "numbers must be finite", path)
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _storable(str(key))
            if problem is not None:
                raise _unstorable(problem[0], "keys " + problem[1], path)
            check_json(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)
    else:
        raise _unstorable("unsupported_value", "unsupported value", path)


AttributeType = Literal["string", "number", "date", "boolean"]
AttributeKind = Literal["attribute", "identity"]
Gid = Annotated[int, Field(strict=True, ge=1, le=MAX_GID)]


class AttributeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    name: str | None = Field(default=None, max_length=100)
    type: AttributeType
    kind: AttributeKind = "attribute"
    sensitive: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_PATTERN.fullmatch(value):
            raise PydanticCustomError(
                "attribute_key_invalid",
                "must be 1-64 letters, digits or '_', starting with a letter or '_'",
            )
        if value in RESERVED_KEYS:
            raise PydanticCustomError(
                "reserved_key", "'{key}' is reserved for the user id", {"key": value}
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = check_text(value).strip()
        if not value:
            raise PydanticCustomError("empty", "must not be blank")
        return value


class AttributeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    type: str
    kind: str
    sensitive: bool
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    gid: int
    attributes: dict[str, Any]


class ImportLineError(BaseModel):
    line: int
    message: str
    # What is wrong, a field detail each (``attributes.city``, ``gid``, ``line``…)
    # with its code and params; ``message`` joins them in English.
    details: list[FieldDetail]


class ImportResult(BaseModel):
    imported: int = Field(description="Lines that created a user.")
    updated: int = Field(description="Lines that updated an existing user.")
    rejected: int = Field(description="Lines refused; the first ones are in errors.")
    errors: list[ImportLineError]
    errors_truncated: bool = Field(
        description="True when more lines were rejected than errors lists."
    )


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    gid: Gid
    time: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with a time zone; now when omitted."
    )
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = check_text(value).strip()
        if not value:
            raise PydanticCustomError("empty", "must not be blank")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json(value)
        return value


class EventBatchIn(BaseModel):
    events: list[EventIn]


class EventsAccepted(BaseModel):
    accepted: int


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    gid: int
    time: datetime
    properties: dict[str, Any]


class EventNameOut(BaseModel):
    name: str
    last_seen_at: datetime = Field(description="When the latest event of this name happened.")


PropertyType = Literal["string", "number", "boolean"]


class EventPropertyOut(BaseModel):
    key: str
    type: PropertyType = Field(
        description="The type of the latest value seen (what a filter compares with)."
    )
