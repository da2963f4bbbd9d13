"""Request and response shapes of campaigns, their results and protection.

The content of a campaign (trigger, audience, participation, strategy) is typed in
``content``; request bodies are parsed in the service with the database facts they
are checked against (see ``content.ContentContext``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .content import CampaignContent, Gid, PositiveId, TimeOfDay
from .validation import Model, int_range, one_of, text

# --- the state machine (campaigns.md, "States") ---------------------------------

STATES = (
    "draft",
    "in_approval",
    "rejected",
    "awaiting_publish",
    "not_started",
    "running",
    "paused",
    "finished",
    "closed",
)
ALLOWED_ACTIONS: dict[str, tuple[str, ...]] = {
    "draft": ("edit", "delete", "submit"),
    "in_approval": ("approve", "reject", "withdraw"),
    "rejected": ("edit", "delete"),
    "awaiting_publish": ("publish", "edit", "delete"),
    "not_started": ("pause", "copy"),
    "running": ("pause", "copy"),
    "paused": ("resume", "close", "copy"),
    "finished": ("copy", "delete"),
    "closed": ("copy", "delete"),
}
ACTIONS = ("submit", "approve", "reject", "withdraw", "publish", "pause", "resume", "close", "copy")
# A touchpoint used by a campaign in one of these states cannot be disabled.
BLOCKING_STATES = ("running", "paused", "not_started", "awaiting_publish", "in_approval")
NAME_MAX = 20
Name = Annotated[str, text(NAME_MAX)]


# --- campaigns ---------------------------------------------------------------------


class CampaignCreate(CampaignContent):
    """A new campaign: its content, a name unique in the space, and whether caps and
    quiet hours apply (``anti_disturb``; the blocklist always does)."""

    name: Name
    anti_disturb: bool = True


class CampaignPatch(Model):
    """Fields to change; the result is checked whole, like a new campaign."""

    name: Any = None
    trigger: Any = None
    audience: Any = None
    participation: Any = None
    anti_disturb: Any = None
    strategy: Any = None


class CampaignWarning(BaseModel):
    """Something an operator should fix before submitting (the campaign is kept)."""

    code: str
    field: str
    message: str
    params: dict[str, Any] = Field(default_factory=dict)


class TouchpointRef(BaseModel):
    """A touchpoint a campaign uses or used, by name (kept after it is deleted)."""

    id: int
    name: str | None
    deleted: bool
    status: str | None


class CampaignOut(BaseModel):
    """A campaign. Times are ISO 8601 in UTC; ``timezone`` is the project's, in which
    triggers are read and quiet hours kept."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    space_id: int
    name: str
    status: str
    trigger: dict[str, Any]
    audience: dict[str, Any]
    participation: dict[str, Any]
    anti_disturb: bool
    strategy: dict[str, Any]
    start_at: datetime | None
    end_at: datetime | None
    next_run_at: datetime | None
    published_at: datetime | None
    rejection_reason: str | None
    last_error: str | None
    last_error_code: str | None = Field(
        default=None, description="Why the system closed it, as a code (with its params)."
    )
    last_error_params: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    touchpoints: list[TouchpointRef] = Field(default_factory=list)
    warnings: list[CampaignWarning] = Field(default_factory=list)


class RejectBody(Model):
    reason: Annotated[str, text(1000)] | None = None


class CopyBody(Model):
    """``name``: the copy's name (the console names it in the reader's language);
    without it the copy is named "<name> copy"."""

    name: Name | None = None


class PreviewBody(Model):
    sample: Annotated[int, int_range(1, 100)] = 5


class GidsUpload(Model):
    gids: Annotated[list[Gid], Field(max_length=1_000_000)]
    replace: bool = True


# --- results ----------------------------------------------------------------------------


class StepStats(BaseModel):
    """Users of one step. A send step counts users (not deliveries): ``sent`` were
    handed to a touchpoint, ``succeeded`` on one of them, ``failed`` on every one
    tried, ``suppressed`` held back from every one; ``recovered_by_fallback``
    succeeded after failing on an earlier touchpoint."""

    name: str | None = None
    type: str | None = None
    entered: int = 0
    control: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    suppressed: int = 0
    held: int = 0
    recovered_by_fallback: int = 0
    success_rate: float | None = None
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    suppressed_by_reason: dict[str, int] = Field(default_factory=dict)


class TouchpointStats(BaseModel):
    """Deliveries through one touchpoint: ``failed`` includes the users that then
    ``fell_back`` to the step's next touchpoint."""

    name: str | None = None
    deleted: bool = False
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    fell_back: int = 0
    suppressed: int = 0
    held: int = 0
    success_rate: float | None = None
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    suppressed_by_reason: dict[str, int] = Field(default_factory=dict)


class SeriesPoint(BaseModel):
    at: datetime
    succeeded: int
    failed: int
    suppressed: int


class Series(BaseModel):
    """Outcomes over time, in intervals of ``interval`` (minute, hour, day or week)."""

    interval: str
    points: list[SeriesPoint]


class CampaignStats(BaseModel):
    targeted: int
    entered: int
    sent: int
    succeeded: int
    failed: int
    pending: int
    suppressed: int
    control: int
    held: int
    runs: int
    success_rate: float | None
    recovered_by_fallback: int
    failed_by_reason: dict[str, int]
    suppressed_by_reason: dict[str, int]
    by_step: dict[str, StepStats]
    by_touchpoint: dict[str, TouchpointStats]
    series: Series
    timezone: str


class DeliveryOut(BaseModel):
    gid: int
    step_id: str | None
    step_name: str | None
    touchpoint_id: int | None
    touchpoint_name: str | None
    touchpoint_deleted: bool
    order_no: str | None
    status: str
    reason: str | None
    error_msg: str | None
    attempts: int
    updated_at: datetime | None


DELIVERY_CSV_COLUMNS = (
    "gid",
    "step_id",
    "touchpoint_id",
    "touchpoint_name",
    "status",
    "reason",
    "error_msg",
    "order_no",
    "attempts",
    "updated_at",
)


# --- protection ----------------------------------------------------------------------------


class FrequencyCap(Model):
    """At most ``max_messages`` per user in ``days`` days."""

    max_messages: Annotated[int, int_range(1, 1000)]
    days: Annotated[int, int_range(1, 365)]


class QuietHours(Model):
    """No messages from ``start`` until ``end`` (HH:MM in the project's time zone;
    an end before the start crosses midnight): ``drop`` them or ``hold`` them."""

    start: TimeOfDay
    end: TimeOfDay
    action: Annotated[Literal["drop", "hold"], one_of("drop", "hold")]

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("start"):
            raise PydanticCustomError(
                "empty_window", "must differ from start (the window would be empty)", {}
            )
        return value


def _positive_rate(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("wrong_type", "must be a number", {"expected": "number"})
    if not 0 < value <= 10_000:
        raise PydanticCustomError(
            "out_of_range", "must be more than {min} and at most {max}", {"min": 0, "max": 10_000}
        )
    return float(value)


class RateLimit(Model):
    """Requests per second to the touchpoint, across every worker process."""

    requests_per_second: Annotated[float, BeforeValidator(_positive_rate)]


class ProjectProtection(Model):
    frequency_cap: FrequencyCap | None = None


class TouchpointProtection(Model):
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    rate_limit: RateLimit | None = None


class BlocklistAdd(Model):
    """Gids no campaign may reach through ``touchpoint_ids`` (null: any touchpoint)."""

    gids: Annotated[list[Gid], Field(min_length=1, max_length=1_000_000)]
    touchpoint_ids: Annotated[list[PositiveId], Field(min_length=1, max_length=100)] | None = None
    reason: Annotated[str, text(200)] | None = None


class BlocklistLine(Model):
    """One line of a CSV or NDJSON blocklist body."""

    gid: Gid
    touchpoint_id: PositiveId | None = None
    reason: Annotated[str, text(200)] | None = None


class BlocklistAdded(BaseModel):
    """``added``: new entries (ones already there are left as they were); lines of a
    CSV or NDJSON body that could not be read are listed in ``errors``."""

    added: int
    rejected: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list)


class BlocklistEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    gid: int
    touchpoint_id: int | None
    reason: str | None
    created_at: datetime
