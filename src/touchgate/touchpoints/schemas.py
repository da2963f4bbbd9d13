"""Request and response shapes of the touchpoint registry.

Input models check the shape of a request and every rule that concerns a single
value (types, ranges, a name's length, a URL's scheme). They are strict: a
string where a number goes, ``true`` where a number goes, ``null`` where a
value is required and unknown fields are all rejected. Rules that involve
several fields, several items or the database live in ``service``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..delivery.protocol import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from ..delivery.retry import DEFAULT_SCHEDULE
from ..errors import FieldDetail
from ..names import BIDI_CONTROLS

NAME_MAX = 15
PARAM_NAME_MAX = 50
OPTION_TEXT_MAX = 100
DESCRIPTION_MAX = 1000
URL_MAX = 2048
TOKEN_MAX = 1024
MAX_RETRY_STEPS = 10
MAX_RETRY_TOTAL_SECONDS = 72 * 3600
DEFAULT_RETRY_SCHEDULE = list(DEFAULT_SCHEDULE)
DEFAULT_TIMEOUT_SECONDS = 15
MAX_USER_ATTRIBUTES = 200
MAX_TEMPLATE_PARAMS = 100
# A hard ceiling on options per list; above OPTIONS_WARN_THRESHOLD leaves the
# touchpoint is saved with a warning (dropdowns become unusable).
MAX_OPTIONS = 10_000
OPTIONS_WARN_THRESHOLD = 100
# Ids are stored in 32-bit integer columns on PostgreSQL.
MAX_ID = 2**31 - 1

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

TouchpointType = Literal["notification", "benefit", "other"]
Transport = Literal["http", "plugin"]
Status = Literal["enabled", "disabled"]
ParamType = Literal["date", "number", "enum", "text"]

INPUT = ConfigDict(extra="forbid", strict=True)


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def _text(max_len: int) -> Any:
    """A validator: strip, then 1..max_len characters without control characters."""

    def check(value: str) -> str:
        # NFC first, so a length and a uniqueness check see one spelling per name.
        value = unicodedata.normalize("NFC", value).strip()
        if not value:
            raise PydanticCustomError("empty", "must not be empty")
        if len(value) > max_len:
            raise PydanticCustomError(
                "text_too_long",
                "must be at most {max} characters (got {got})",
                {"max": max_len, "got": len(value)},
            )
        if _has_control(value) or not BIDI_CONTROLS.isdisjoint(value):
            raise PydanticCustomError("control_characters", "must not contain control characters")
        return value

    return AfterValidator(check)


def check_http_url(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("empty", "must not be empty")
    if len(value) > URL_MAX:
        raise PydanticCustomError(
            "text_too_long",
            "must be at most {max} characters (got {got})",
            {"max": URL_MAX, "got": len(value)},
        )
    if _has_control(value) or any(ch.isspace() for ch in value):
        raise PydanticCustomError("url_spaces", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError as exc:
        raise PydanticCustomError(
            "invalid_url", "is not a valid URL ({reason})", {"reason": str(exc)}
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise PydanticCustomError("url_not_http", "must be an http:// or https:// URL")
    if not parts.hostname:
        raise PydanticCustomError("url_no_host", "must name a host, like https://example.com/touch")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and responses; the token is the
        # place for a secret.
        raise PydanticCustomError(
            "url_credentials", "must not contain credentials; use the token field for secrets"
        )
    return value


def _check_token(value: str) -> str:
    if not value:
        raise PydanticCustomError("token_empty", "must not be empty; send null to remove the token")
    if _has_control(value):
        raise PydanticCustomError("control_characters", "must not contain control characters")
    return value


def _check_identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise PydanticCustomError(
            "not_identifier",
            "must be an identifier: letters, digits and _, not starting with a digit",
        )
    return value


def _check_description(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise PydanticCustomError(
            "control_characters",
            "must not contain control characters other than tabs and line breaks",
        )
    return value.strip()


def _check_retry_schedule(value: list[int]) -> list[int]:
    total = sum(value)
    if total > MAX_RETRY_TOTAL_SECONDS:
        raise PydanticCustomError(
            "retry_total_too_long",
            "the steps add up to {total} s; at most {max} s (72 h) in total",
            {"total": total, "max": MAX_RETRY_TOTAL_SECONDS},
        )
    return value


def _no_grandchildren(value: list[Any] | None) -> list[Any] | None:
    if value:
        raise PydanticCustomError(
            "options_too_deep",
            "options nest at most two levels (category → option); an option inside a "
            "category cannot have children",
        )
    return None


Name = Annotated[str, _text(NAME_MAX)]
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
Token = Annotated[str, Field(max_length=TOKEN_MAX), AfterValidator(_check_token)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX), AfterValidator(_check_description)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=60)]
RetrySchedule = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_RETRY_TOTAL_SECONDS)]],
    Field(max_length=MAX_RETRY_STEPS),
    AfterValidator(_check_retry_schedule),
]
MaxInFlight = Annotated[int, Field(ge=1, le=256)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=64)]
UserAttributes = Annotated[list[AttributeKey], Field(max_length=MAX_USER_ATTRIBUTES)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Receipt(BaseModel):
    """How results come back: in the response (sync) or from a receipt URL (async)."""

    model_config = INPUT

    mode: Literal["sync", "async"] = "sync"
    url: HttpUrl | None = None
    poll_seconds: Annotated[int, Field(ge=30, le=86_400)] = 300
    timeout_minutes: Annotated[int, Field(ge=1, le=10_080)] = 1440


class EnumChild(BaseModel):
    model_config = INPUT

    code: Annotated[str, _text(OPTION_TEXT_MAX)]
    name: Annotated[str, _text(OPTION_TEXT_MAX)]
    children: Annotated[list[Any] | None, AfterValidator(_no_grandchildren)] = None


class EnumOption(BaseModel):
    """An option, or with ``children`` a category whose children are the options."""

    model_config = INPUT

    code: Annotated[str, _text(OPTION_TEXT_MAX)]
    name: Annotated[str, _text(OPTION_TEXT_MAX)]
    children: Annotated[list[EnumChild], Field(max_length=MAX_OPTIONS)] | None = None


class EnumSource(BaseModel):
    """``{"source": "manual", "options": [...]}`` or ``{"source": "api", "url": ...}``."""

    model_config = INPUT

    source: Literal["manual", "api"]
    options: Annotated[list[EnumOption], Field(max_length=MAX_OPTIONS)] | None = None
    url: HttpUrl | None = None


class TemplateParam(BaseModel):
    model_config = INPUT

    key: Annotated[str, Field(max_length=64), AfterValidator(_check_identifier)]
    name: Annotated[str, _text(PARAM_NAME_MAX)]
    type: ParamType
    required: bool = False
    enum: EnumSource | None = None


TemplateParams = Annotated[list[TemplateParam], Field(max_length=MAX_TEMPLATE_PARAMS)]


class TouchpointCreate(BaseModel):
    model_config = INPUT

    name: Name
    type: TouchpointType
    transport: Transport = "http"
    url: HttpUrl | None = None
    token: Token | None = None
    batch_size: BatchSize = DEFAULT_BATCH_SIZE
    description: Description | None = None
    timeout_seconds: TimeoutSeconds = DEFAULT_TIMEOUT_SECONDS
    retry_schedule: RetrySchedule = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE))
    max_in_flight: MaxInFlight | None = None
    receipt: Receipt = Field(default_factory=Receipt)
    user_attributes: UserAttributes = Field(default_factory=list)
    template_params: TemplateParams = Field(default_factory=list)
    plugin_id: Id | None = None
    plugin_config: dict[str, Any] | None = None


class TouchpointPatch(BaseModel):
    """A partial update: only the fields sent change (see ``model_fields_set``).

    ``None`` here means "not sent": an explicit ``null`` is refused for every field
    but ``token`` (null removes it), ``description``, ``max_in_flight`` and
    ``plugin_config``.
    """

    model_config = INPUT

    name: Name | None = None
    type: TouchpointType | None = None
    transport: Transport | None = None
    url: HttpUrl | None = None
    token: Token | None = None
    batch_size: BatchSize | None = None
    description: Description | None = None
    timeout_seconds: TimeoutSeconds | None = None
    retry_schedule: RetrySchedule | None = None
    max_in_flight: MaxInFlight | None = None
    receipt: Receipt | None = None
    user_attributes: UserAttributes | None = None
    template_params: TemplateParams | None = None
    plugin_id: Id | None = None
    plugin_config: dict[str, Any] | None = None

    @field_validator(
        "name",
        "type",
        "transport",
        "url",
        "batch_size",
        "timeout_seconds",
        "retry_schedule",
        "receipt",
        "user_attributes",
        "template_params",
        "plugin_id",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("not_null", "must not be null")
        return value


class OptionsPreviewIn(BaseModel):
    """An options API to try before the touchpoint is saved: its URL and the
    parameter it is for (the key and display name are sent to the API)."""

    model_config = INPUT

    url: HttpUrl
    param: Annotated[str, Field(max_length=64), AfterValidator(_check_identifier)]
    name: Annotated[str, _text(PARAM_NAME_MAX)] | None = None
    # Editing a saved touchpoint: sign with its secret and use its timeout.
    touchpoint_id: Id | None = None


class SpacesUpdate(BaseModel):
    model_config = INPUT

    space_ids: Annotated[list[Id], Field(max_length=10_000)]


class LastTest(BaseModel):
    at: datetime
    ok: bool


class Health(BaseModel):
    """The touchpoint's circuit breaker: ``open`` pauses its deliveries after
    repeated failed requests, ``half_open`` while one probe tests it."""

    state: Literal["closed", "open", "half_open"]
    since: datetime | None
    reason: str | None


class TouchpointOut(BaseModel):
    """A touchpoint as the API shows it: secrets only as ``token_set``."""

    id: int
    project_id: int
    name: str
    type: str
    transport: str
    status: str
    url: str | None
    token_set: bool
    batch_size: int
    description: str | None
    timeout_seconds: int
    retry_schedule: list[int]
    max_in_flight: int | None
    receipt: dict[str, Any]
    user_attributes: list[str]
    template_params: list[dict[str, Any]]
    plugin_id: int | None
    plugin_config: dict[str, Any] | None
    space_ids: list[int]
    last_test: LastTest | None
    health: Health
    created_at: datetime
    updated_at: datetime


class TouchpointSaved(TouchpointOut):
    """The answer to a create or an update: the touchpoint plus advice."""

    warnings: list[str]
    # The same warnings with a code and params each, for rendering in any language.
    warning_details: list[FieldDetail]


class TouchpointCreated(TouchpointSaved):
    # Shown this once; only the encrypted form is kept.
    signing_secret: str


class SecretRotated(BaseModel):
    signing_secret: str
    previous_secret_expires_at: datetime


class OptionOut(BaseModel):
    code: str
    name: str
    children: list[OptionOut] | None = None
