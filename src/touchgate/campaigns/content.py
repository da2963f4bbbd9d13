"""A campaign's content as types: trigger, audience, participation and the strategy
tree (``campaigns.md``, ``api.md`` "Campaigns"), each a Pydantic discriminated union.

Parsing is the whole check of a campaign's structure. What needs the database (the
attribute catalogue, the touchpoints and their template values, the options-API
enum options fetched beforehand) reaches the validators through a
:class:`ContentContext` passed as the validation context; without one (reading a
campaign already stored) those checks are skipped. Every problem, structural or
not, comes out of one ``ValidationError``; :func:`field_errors` turns it into the
API's field details, each with its full path
(``strategy.branches[1].next.channels[0].touchpoint_id``), a stable code and the
params its sentence needs.

Stored JSON is ``CampaignContent.stored()``: what came in,
normalised (defaults of a send step filled in), so it round-trips exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, cast
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from ..datastore.sensitive import SENSITIVE_TYPE
from ..errors import FieldErrors, field_path
from .validation import Model, Problems, field_errors, int_range, one_of, tagged, text

MAX_FILTER_DEPTH = 5
MAX_CONDITIONS = 100
MAX_IN_VALUES = 1000
MAX_STEPS = 100
MAX_CHANNELS = 10
MAX_SPLIT_BRANCHES = 5
MAX_LIST_GIDS = 1_000_000
MAX_DELAY_MINUTES = 365 * 24 * 60
MAX_WITHOUT_MINUTES = 7 * 24 * 60
MAX_PARTICIPATION_DAYS = 3650
STEP_NAME_MAX = 40
EVENT_NAME_MAX = 100
MAX_GID = 2**63 - 1
WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}
EVENT_TRIGGERS = ("event", "event_without")
_STEP_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")

Options = list[dict[str, Any]]
C = TypeVar("C", bound="CampaignContent")


# --- what validation may consult --------------------------------------------------


@dataclass(frozen=True)
class TouchpointInfo:
    """What a channel's checks need to know of a touchpoint (deleted ones included)."""

    id: int
    name: str
    status: str
    deleted: bool
    authorised: bool
    template_params: list[dict[str, Any]]
    user_attributes: list[str]


@dataclass
class ContentContext:
    """The database facts content is checked against.

    ``options`` holds the options-API enum options fetched before the transaction,
    by ``(touchpoint_id, key)``; a string is why they could not be fetched. While
    ``options`` is None the API enums are only collected into ``needs`` (the first,
    read-only pass that finds out what to fetch)."""

    catalogue: Mapping[str, str]
    tz: ZoneInfo
    touchpoint: Callable[[int], TouchpointInfo | None]
    options: Mapping[tuple[int, str], Options | str] | None = None
    needs: set[tuple[int, str]] = field(default_factory=set)
    step_ids: set[str] = field(default_factory=set)


def _context(info: ValidationInfo) -> ContentContext | None:
    ctx = info.context
    if isinstance(ctx, ContentContext):
        return ctx
    return None


def _tz(info: ValidationInfo) -> ZoneInfo:
    ctx = _context(info)
    return ctx.tz if ctx is not None else ZoneInfo("UTC")


def parse_when(value: Any, tz: ZoneInfo) -> datetime | None:
    """An ISO 8601 time; a time without a zone is read in the project's time zone."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _when(value: Any, info: ValidationInfo) -> datetime:
    parsed = parse_when(value, _tz(info))
    if parsed is None:
        raise PydanticCustomError("not_a_time", "must be an ISO 8601 date-time", {})
    return parsed


# A time with its zone, stored as written (``2026-05-01T10:00:00+08:00``).
ZonedTime = Annotated[
    datetime, BeforeValidator(_when), PlainSerializer(lambda d: d.isoformat(), return_type=str)
]


def _time_of_day(value: Any) -> Any:
    if not isinstance(value, str) or not _TIME_OF_DAY.fullmatch(value):
        raise PydanticCustomError("not_a_time_of_day", "must be a time of day 'HH:MM'", {})
    return value


TimeOfDay = Annotated[str, BeforeValidator(_time_of_day)]
EventName = Annotated[str, text(EVENT_NAME_MAX)]
PositiveId = Annotated[int, int_range(1, 2**31 - 1)]
Gid = Annotated[int, int_range(1, MAX_GID)]


# --- filters ---------------------------------------------------------------------------

Operator = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
]
OPERATORS: tuple[str, ...] = (
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
)  # fmt: skip
_ORDERING = ("gt", "gte", "lt", "lte")
_LIST_OPERATORS = ("in", "not_in")
_NO_VALUE = ("exists", "not_exists")


def _is_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value == value
        and abs(value) < 1e300
    )


def value_type(value: Any) -> str | None:
    """The filter type of a JSON value (None: not a string, number or boolean)."""
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _fits(value: Any, attr_type: str) -> bool:
    if attr_type == "number":
        return _is_number(value)
    if attr_type == "boolean":
        return isinstance(value, bool)
    if attr_type == "date":
        if not isinstance(value, str) or len(value) != 10:
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return isinstance(value, str)


_TYPE_WORDS = {
    "number": "a number",
    "boolean": "true or false",
    "date": "a date 'YYYY-MM-DD'",
    "string": "a string",
}


def _check_operands(problems: Problems, operator: str, value: Any, attr_type: str | None) -> None:
    """The value of a condition for ``operator`` on a value of ``attr_type`` (None:
    the type follows from the value itself, as for event properties)."""
    if operator in _NO_VALUE:
        if value is not None:
            problems.add(
                ("value",), "takes_no_value", "'{operator}' takes no value", operator=operator
            )
        return
    if value is None:
        problems.add(("value",), "required", "required")
        return
    if operator in _LIST_OPERATORS:
        if not isinstance(value, list) or not value:
            problems.add(("value",), "wrong_type", "must be a non-empty list", expected="list")
            return
        if len(value) > MAX_IN_VALUES:
            problems.add(("value",), "too_many", "at most {max} values", max=MAX_IN_VALUES)
            return
        items = value
    else:
        items = [value]
    if attr_type is None:
        types = {value_type(v) for v in items}
        if None in types or len(types) != 1:
            problems.add(
                ("value",),
                "mixed_value_types",
                "must be strings, numbers or booleans, all of one type",
            )
            return
        attr_type = cast(str, types.pop())
        loc_of: Callable[[int], tuple[str | int, ...]] = lambda _i: ("value",)  # noqa: E731
    else:
        many = operator in _LIST_OPERATORS
        loc_of = lambda i: ("value", i) if many else ("value",)  # noqa: E731
    if operator == "contains" and attr_type != "string":
        problems.add(
            ("operator",),
            "operator_not_for_type",
            "'{operator}' does not apply to a {type}",
            operator=operator,
            type=attr_type,
        )
        return
    if operator in _ORDERING and attr_type == "boolean":
        problems.add(
            ("operator",),
            "operator_not_for_type",
            "'{operator}' does not apply to a {type}",
            operator=operator,
            type=attr_type,
        )
        return
    for i, item in enumerate(items):
        if not _fits(item, attr_type):
            problems.add(
                loc_of(i),
                "value_type",
                "must be " + _TYPE_WORDS[attr_type],
                expected=attr_type,
            )


class Condition(Model):
    """``{attribute, operator, value}`` on a user attribute of the catalogue."""

    attribute: Annotated[str, text(200)]
    operator: Annotated[Operator, one_of(*OPERATORS)]
    value: Any = None

    @field_validator("attribute")
    @classmethod
    def _in_catalogue(cls, value: str, info: ValidationInfo) -> str:
        ctx = _context(info)
        if ctx is not None and value not in ctx.catalogue:
            raise PydanticCustomError(
                "not_in_catalogue",
                "'{attribute}' is not in the project's attribute catalogue",
                {"attribute": value},
            )
        if ctx is not None and ctx.catalogue[value] == SENSITIVE_TYPE:
            # Sealed at rest: the database cannot compare it.
            raise PydanticCustomError(
                "attribute_sensitive",
                "'{attribute}' is sensitive (encrypted at rest); audiences cannot filter on it",
                {"attribute": value},
            )
        return value

    @model_validator(mode="after")
    def _operands(self, info: ValidationInfo) -> Condition:
        ctx = _context(info)
        if ctx is not None:  # the value's type is the attribute's, from the catalogue
            problems = Problems()
            _check_operands(problems, self.operator, self.value, ctx.catalogue[self.attribute])
            problems.raise_if_any("Condition")
        return self


class PropertyCondition(Model):
    """``{property, operator, value}`` on a property of the triggering event; its type
    is the type of the value it is compared with."""

    property: Annotated[str, text(EVENT_NAME_MAX)]
    operator: Annotated[Operator, one_of(*OPERATORS)]
    value: Any = None
    # Written by earlier versions (the value's type); recomputed, never stored.
    type: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _operands(self) -> PropertyCondition:
        problems = Problems()
        _check_operands(problems, self.operator, self.value, None)
        problems.raise_if_any("PropertyCondition")
        return self

    def compared_type(self) -> str:
        """The type the property is read as: the type of the value(s) compared with."""
        items = self.value if isinstance(self.value, list) else [self.value]
        return next((t for t in map(value_type, items) if t), "string")


def _filter_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "<group>" if "conditions" in value or "op" in value else "<condition>"
    if isinstance(value, Group | PropertyGroup):
        return "<group>"
    if isinstance(value, Condition | PropertyCondition):
        return "<condition>"
    return None


def _filter_union() -> Discriminator:
    return Discriminator(
        _filter_kind,
        custom_error_type="wrong_type",
        custom_error_message="must be an object: a condition or an and/or group",
        custom_error_context={"expected": "object"},
    )


class Group(Model):
    op: Annotated[Literal["and", "or"], one_of("and", "or")] = "and"
    conditions: Annotated[list[Filter], Field(min_length=1)]


class PropertyGroup(Model):
    op: Annotated[Literal["and", "or"], one_of("and", "or")] = "and"
    conditions: Annotated[list[PropertyFilter], Field(min_length=1)]


Filter = TypeAliasType(
    "Filter",
    Annotated[
        Annotated[Group, Tag("<group>")] | Annotated[Condition, Tag("<condition>")],
        _filter_union(),
    ],
)
PropertyFilter = TypeAliasType(
    "PropertyFilter",
    Annotated[
        Annotated[PropertyGroup, Tag("<group>")] | Annotated[PropertyCondition, Tag("<condition>")],
        _filter_union(),
    ],
)


def _filter_limits(flt: Any) -> Any:
    """Depth and size of a whole filter (checked on its root)."""
    count = 0

    def walk(node: Any, depth: int) -> int:
        nonlocal count
        if isinstance(node, Group | PropertyGroup):
            return max((walk(c, depth + 1) for c in node.conditions), default=depth)
        count += 1
        return depth

    depth = walk(flt, 0)
    if depth > MAX_FILTER_DEPTH:
        raise PydanticCustomError(
            "too_deep", "groups nest at most {max} levels deep", {"max": MAX_FILTER_DEPTH}
        )
    if count > MAX_CONDITIONS:
        raise PydanticCustomError(
            "too_many_conditions", "a filter has at most {max} conditions", {"max": MAX_CONDITIONS}
        )
    return flt


RootFilter = Annotated[Filter, AfterValidator(_filter_limits)]
RootPropertyFilter = Annotated[PropertyFilter, AfterValidator(_filter_limits)]


# --- triggers ----------------------------------------------------------------------------


class OnceTrigger(Model):
    type: Literal["once"]
    at: ZonedTime | None = None


class RecurringTrigger(Model):
    """Daily/weekly/monthly at a time of day (``every``), or a cron expression."""

    type: Literal["recurring"]
    cron: str | None = None
    every: (
        Annotated[Literal["daily", "weekly", "monthly"], one_of("daily", "weekly", "monthly")]
        | None
    ) = None
    time: TimeOfDay | None = None
    weekday: str | int | None = None
    day: Annotated[int, int_range(1, 31)] | None = None
    start: ZonedTime | None = None
    end: ZonedTime | None = None

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str) or not value.strip():
            raise PydanticCustomError(
                "not_a_cron", "must be a cron expression like '0 10 * * *'", {"value": str(value)}
            )
        fields = value.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(value):
            raise PydanticCustomError(
                "not_a_cron",
                "'{value}' is not a valid cron expression (5 fields, or 6 with seconds)",
                {"value": value},
            )
        return " ".join(fields)

    @field_validator("weekday", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str) and value.lower()[:3] in WEEKDAYS:
            return value.lower()[:3]
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7:
            return value
        raise PydanticCustomError("not_a_weekday", "must be mon…sun or 1 (Monday) … 7 (Sunday)", {})

    @model_validator(mode="after")
    def _shape(self) -> RecurringTrigger:
        problems = Problems()
        if (self.cron is None) == (self.every is None):
            problems.add(
                (), "cron_or_every", "a recurring trigger needs exactly one of 'cron' or 'every'"
            )
        for key, only in (("weekday", "weekly"), ("day", "monthly")):
            if getattr(self, key) is not None and self.every != only:
                problems.add((key,), "only_for", "only for a {every} trigger", every=only)
        if self.cron is not None and self.time is not None:
            problems.add(("time",), "only_for", "only for a {every} trigger", every="daily")
        if self.start is not None and self.end is not None and self.end <= self.start:
            problems.add(("end",), "end_before_start", "must be after start")
        problems.raise_if_any("RecurringTrigger")
        return self

    def cron_expression(self) -> str:
        """The cron expression (``every`` is sugar for one)."""
        if self.cron is not None:
            return self.cron
        hh, mm = (int(x) for x in (self.time or "00:00").split(":"))
        if self.every == "daily":
            return f"{mm} {hh} * * *"
        if self.every == "weekly":
            wd = self.weekday if self.weekday is not None else "mon"
            num = WEEKDAYS[wd] if isinstance(wd, str) else wd % 7
            return f"{mm} {hh} * * {num}"
        return f"{mm} {hh} {self.day or 1} * *"


class _EventTriggerBase(Model):
    event: EventName
    filter: RootPropertyFilter | None = None
    start: ZonedTime | None = None
    end: ZonedTime | None = None

    @model_validator(mode="after")
    def _window(self) -> _EventTriggerBase:
        _check_window(self.start, self.end, type(self).__name__)
        return self


class EventTrigger(_EventTriggerBase):
    """Each time a user does ``event`` (matching ``filter`` on its properties)."""

    type: Literal["event"]


class EventWithoutTrigger(_EventTriggerBase):
    """A user did ``event`` and then not ``without`` within ``within_minutes``."""

    type: Literal["event_without"]
    without: EventName
    within_minutes: Annotated[int, int_range(1, MAX_WITHOUT_MINUTES)]


def _check_window(start: datetime | None, end: datetime | None, title: str) -> None:
    if start is not None and end is not None and end <= start:
        problems = Problems()
        problems.add(("end",), "end_before_start", "must be after start")
        problems.raise_if_any(title)


_TRIGGERS: dict[str, type[BaseModel]] = {
    "once": OnceTrigger,
    "recurring": RecurringTrigger,
    "event": EventTrigger,
    "event_without": EventWithoutTrigger,
}
Trigger = Annotated[
    Annotated[OnceTrigger, Tag("<once>")]
    | Annotated[RecurringTrigger, Tag("<recurring>")]
    | Annotated[EventTrigger, Tag("<event>")]
    | Annotated[EventWithoutTrigger, Tag("<event_without>")],
    tagged("type", _TRIGGERS),
]


# --- audience and participation -------------------------------------------------------------


class AllAudience(Model):
    match: Literal["all"]


class FilterAudience(Model):
    match: Literal["filter"]
    filter: RootFilter


class ListAudience(Model):
    """An uploaded list of gids; ``gids`` given inline are stored in their own table."""

    match: Literal["list"]
    gids: Annotated[list[Gid], Field(max_length=MAX_LIST_GIDS)] | None = Field(
        default=None, exclude=True
    )
    # Stored beside the list (how many gids it holds); recomputed, never taken as input.
    gid_count: int | None = Field(default=None, exclude=True)


_AUDIENCES: dict[str, type[BaseModel]] = {
    "all": AllAudience,
    "filter": FilterAudience,
    "list": ListAudience,
}
Audience = Annotated[
    Annotated[AllAudience, Tag("<all>")]
    | Annotated[FilterAudience, Tag("<filter>")]
    | Annotated[ListAudience, Tag("<list>")],
    tagged("match", _AUDIENCES),
]


class OnceParticipation(Model):
    """Each user at most once per campaign."""

    mode: Literal["once"]


class EveryParticipation(Model):
    """Each user at most once every ``days`` days."""

    mode: Literal["every"]
    days: Annotated[int, int_range(1, MAX_PARTICIPATION_DAYS)]


_PARTICIPATIONS: dict[str, type[BaseModel]] = {
    "once": OnceParticipation,
    "every": EveryParticipation,
}
Participation = Annotated[
    Annotated[OnceParticipation, Tag("<once>")] | Annotated[EveryParticipation, Tag("<every>")],
    tagged("mode", _PARTICIPATIONS),
]


# --- the strategy tree --------------------------------------------------------------------------


def _step_id(value: Any) -> Any:
    if not isinstance(value, str) or not _STEP_ID.fullmatch(value):
        raise PydanticCustomError(
            "invalid_step_id", "required: 1–64 letters, digits, '_', '-' or '.'", {}
        )
    return value


class StepBase(Model):
    type: str  # each kind of step narrows it to its own word (first in stored JSON)
    id: Annotated[str, BeforeValidator(_step_id)]
    # What operators call the node on the canvas; results show it instead of the id.
    name: Annotated[str, text(STEP_NAME_MAX)] | None = None

    @field_validator("id")
    @classmethod
    def _unique(cls, value: str, info: ValidationInfo) -> str:
        # Checked as the tree is read (parents first), so a repeated id is named even
        # when another step of the tree is invalid.
        ctx = _context(info)
        if ctx is not None:
            if value in ctx.step_ids:
                raise PydanticCustomError(
                    "duplicate_step_id", "step id '{id}' is used twice", {"id": value}
                )
            ctx.step_ids.add(value)
        return value

    def children(self) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        """The steps directly below this one, with their location relative to it."""
        return []

    @property
    def label(self) -> str:
        return self.name or self.id


class NowTiming(Model):
    type: Literal["now"]


class DelayTiming(Model):
    type: Literal["delay"]
    minutes: Annotated[int, int_range(1, MAX_DELAY_MINUTES)]


class NoTiming(Model):
    """A control group: users are counted, not sent."""

    type: Literal["none"]


_TIMINGS: dict[str, type[BaseModel]] = {"now": NowTiming, "delay": DelayTiming, "none": NoTiming}
Timing = Annotated[
    Annotated[NowTiming, Tag("<now>")]
    | Annotated[DelayTiming, Tag("<delay>")]
    | Annotated[NoTiming, Tag("<none>")],
    tagged("type", _TIMINGS),
]


class Channel(Model):
    """A touchpoint of a send step with its template parameter values."""

    touchpoint_id: PositiveId
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _usable(self, info: ValidationInfo) -> Channel:
        ctx = _context(info)
        if ctx is not None:
            problems = Problems()
            check_channel(self, ctx, problems)
            problems.raise_if_any("Channel")
        return self


def check_channel(channel: Channel, ctx: ContentContext, problems: Problems) -> None:
    """The touchpoint exists, is enabled and authorised, and the values fit its
    declared template parameters (options-API enums against fetched options)."""
    from ..delivery.params import api_enum_keys, validate_params
    from ..errors import InvalidInput

    tid = channel.touchpoint_id
    tp = ctx.touchpoint(tid)
    where = ("touchpoint_id",)
    if tp is None:
        problems.add(
            where,
            "touchpoint_not_found",
            "touchpoint {touchpoint_id} does not exist in this project",
            touchpoint_id=tid,
        )
        return
    named = {"touchpoint_id": tid, "name": tp.name}
    if tp.deleted:
        problems.add(
            where,
            "touchpoint_deleted",
            "touchpoint '{name}' ({touchpoint_id}) was deleted: choose another one",
            **named,
        )
        return
    if tp.status != "enabled":
        problems.add(
            where,
            "touchpoint_disabled",
            "touchpoint '{name}' ({touchpoint_id}) is disabled",
            **named,
        )
        return
    if not tp.authorised:
        problems.add(
            where,
            "touchpoint_not_authorised",
            "touchpoint '{name}' ({touchpoint_id}) is not authorised for this space",
            **named,
        )
        return
    api_keys = api_enum_keys(tp.template_params, channel.params)
    if ctx.options is None:
        ctx.needs.update((tid, key) for key in api_keys)
        loader: Any = {key: [] for key in api_keys}  # checked in the pass with options
        lenient = set(api_keys)
    else:
        fetched = {key: ctx.options.get((tid, key), "options were not loaded") for key in api_keys}
        lenient = set()

        def loader(key: str) -> Options:
            found = fetched[key]
            if isinstance(found, str):
                raise LookupError(found)
            return found

    try:
        validate_params(
            tp.template_params,
            channel.params,
            loader,
            attribute_keys=tp.user_attributes,
            field_prefix="params",
        )
    except InvalidInput as exc:
        for item in exc.details or []:
            path = str(item.get("field", "params"))
            key = path.removeprefix("params.") if path.startswith("params.") else None
            if key is not None and key in lenient:
                continue
            loc: tuple[str | int, ...] = ("params", key) if key is not None else ("params",)
            code = str(item.get("code") or "invalid")
            params = dict(item.get("params") or {})
            message = str(item.get("message", "invalid"))
            problems.add(loc, code, message, **params)


class SendStep(StepBase):
    """Send through one or more touchpoints: in priority order, falling back on
    ``TOU_FAIL`` (``first_success``), or through all of them (``all``)."""

    type: Literal["send"]
    mode: Annotated[Literal["first_success", "all"], one_of("first_success", "all")] = (
        "first_success"
    )
    timing: Timing = Field(default_factory=lambda: NowTiming(type="now"))
    channels: list[Channel] = Field(default_factory=list)
    next: Step | None = None

    @model_validator(mode="after")
    def _shape(self) -> SendStep:
        problems = Problems()
        control = isinstance(self.timing, NoTiming)
        if not self.channels and not control:
            problems.add(("channels",), "too_few", "must list at least {min} touchpoint", min=1)
        if len(self.channels) > MAX_CHANNELS:
            problems.add(("channels",), "too_many", "at most {max} touchpoints", max=MAX_CHANNELS)
        seen: set[int] = set()
        for i, ch in enumerate(self.channels):
            if ch.touchpoint_id in seen:
                problems.add(
                    ("channels", i, "touchpoint_id"),
                    "duplicate_touchpoint",
                    "touchpoint {touchpoint_id} is listed twice",
                    touchpoint_id=ch.touchpoint_id,
                )
            seen.add(ch.touchpoint_id)
        if control and self.next is not None:
            problems.add(
                ("next",),
                "control_group_ends_path",
                "a control group (timing 'none') ends its path",
            )
        problems.raise_if_any("SendStep")
        return self

    @property
    def is_control(self) -> bool:
        return isinstance(self.timing, NoTiming)

    @property
    def keeps_user_state(self) -> bool:
        """Mode ``all`` through several touchpoints: each user's open deliveries are
        kept (``campaign_step_users``) until the last one settles."""
        return self.mode == "all" and len(self.channels) > 1 and not self.is_control

    def children(self) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        return [(("next",), self.next)] if self.next is not None else []


class AudienceBranch(Model):
    filter: RootFilter
    next: Step | None = None


class EventBranch(Model):
    filter: RootPropertyFilter
    next: Step | None = None


class _SplitBase(StepBase):
    def _split_children(
        self, branches: Sequence[AudienceBranch | EventBranch], otherwise: AnyStep | None
    ) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        out: list[tuple[tuple[str | int, ...], AnyStep]] = [
            (("branches", i, "next"), br.next) for i, br in enumerate(branches) if br.next
        ]
        if otherwise is not None:
            out.append((("otherwise",), otherwise))
        return out


class AudienceSplit(_SplitBase):
    """Up to 5 branches on user attributes plus "everyone else"; a user matching
    several takes the first."""

    type: Literal["split"]
    by: Annotated[Literal["audience"], one_of("audience", "event")] = "audience"
    branches: Annotated[list[AudienceBranch], Field(min_length=1, max_length=MAX_SPLIT_BRANCHES)]
    otherwise: Step | None = None

    def children(self) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        return self._split_children(self.branches, self.otherwise)


class EventSplit(_SplitBase):
    """Up to 5 branches on the triggering event's properties plus "otherwise"
    (event-triggered campaigns only)."""

    type: Literal["split"]
    by: Literal["event"]
    branches: Annotated[list[EventBranch], Field(min_length=1, max_length=MAX_SPLIT_BRANCHES)]
    otherwise: Step | None = None

    def children(self) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        return self._split_children(self.branches, self.otherwise)


class ABBranch(Model):
    percent: Annotated[int, int_range(1, 100)]
    next: Step | None = None


def _raw_percents(value: Any) -> list[int] | None:
    """The percentages as given, when every branch has a whole one."""
    if not isinstance(value, list):
        return None
    raw = [b.get("percent") if isinstance(b, dict) else getattr(b, "percent", None) for b in value]
    if all(isinstance(p, int) and not isinstance(p, bool) for p in raw):
        return [int(p) for p in raw if p is not None]
    return None


def _check_sum(problems: Problems, percents: list[int] | None) -> None:
    if percents and 2 <= len(percents) <= 10 and sum(percents) != 100:
        problems.add(
            (),
            "percent_sum",
            "percentages must sum to 100 (they sum to {sum})",
            sum=sum(percents),
        )


class ABStep(StepBase):
    """2–10 branches whose percentages sum to 100; a user's branch is stable."""

    type: Literal["ab"]
    branches: Annotated[list[ABBranch], Field(min_length=2, max_length=10)]

    @field_validator("branches", mode="wrap")
    @classmethod
    def _sum(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Percentages sum to 100, reported with the branches' own problems."""
        problems = Problems()
        try:
            branches = handler(value)
        except ValidationError as exc:
            _check_sum(problems, _raw_percents(value))
            problems.raise_with(exc)
            raise
        _check_sum(problems, [b.percent for b in branches])
        problems.raise_if_any("ABStep")
        return branches

    def bounds(self) -> list[int]:
        """The upper bound (exclusive, of 0–99) of each branch's positions."""
        out, acc = [], 0
        for branch in self.branches:
            acc += branch.percent
            out.append(acc)
        return out

    def children(self) -> list[tuple[tuple[str | int, ...], AnyStep]]:
        return [(("branches", i, "next"), b.next) for i, b in enumerate(self.branches) if b.next]


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "split":
            return "<split:event>" if value.get("by") == "event" else "<split:audience>"
        return f"<{kind}>" if kind in ("send", "ab") else None
    for tag, model in _STEP_MODELS.items():
        if isinstance(value, model):
            return tag
    return None


_STEP_MODELS: dict[str, type[BaseModel]] = {
    "<send>": SendStep,
    "<split:audience>": AudienceSplit,
    "<split:event>": EventSplit,
    "<ab>": ABStep,
}
AnyStep: TypeAlias = SendStep | AudienceSplit | EventSplit | ABStep
Step = TypeAliasType(
    "Step",
    Annotated[
        Annotated[SendStep, Tag("<send>")]
        | Annotated[AudienceSplit, Tag("<split:audience>")]
        | Annotated[EventSplit, Tag("<split:event>")]
        | Annotated[ABStep, Tag("<ab>")],
        tagged("type", {"send": SendStep, "split": AudienceSplit, "ab": ABStep}, _step_kind),
    ],
)

for _model in (SendStep, AudienceBranch, EventBranch, AudienceSplit, EventSplit, ABBranch, ABStep):
    _model.model_rebuild()


def walk(
    step: AnyStep, loc: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], AnyStep]]:
    """Every step of a tree with its location, depth first (parents before children)."""
    yield loc, step
    for sub, child in step.children():
        yield from walk(child, loc + sub)


# --- the whole content ----------------------------------------------------------------------------


class CampaignContent(Model):
    """What a campaign does: who, when, and the strategy tree."""

    trigger: Trigger
    audience: Audience
    participation: Participation = Field(default_factory=lambda: OnceParticipation(mode="once"))
    strategy: Step

    @model_validator(mode="after")
    def _tree(self) -> CampaignContent:
        problems = Problems()
        seen: set[str] = set()
        event_triggered = self.trigger.type in EVENT_TRIGGERS
        for count, (loc, step) in enumerate(walk(self.strategy, ("strategy",)), start=1):
            if count == MAX_STEPS + 1:
                problems.add(
                    loc, "too_many_steps", "a strategy has at most {max} steps", max=MAX_STEPS
                )
            if step.id in seen:
                problems.add(
                    (*loc, "id"), "duplicate_step_id", "step id '{id}' is used twice", id=step.id
                )
            seen.add(step.id)
            if isinstance(step, EventSplit) and not event_triggered:
                problems.add(
                    (*loc, "by"),
                    "event_split_needs_event_trigger",
                    "an event split needs an event-triggered campaign",
                )
        problems.raise_if_any("CampaignContent")
        return self

    def steps(self) -> Iterator[AnyStep]:
        for _, step in walk(self.strategy):
            yield step

    def step(self, step_id: str) -> AnyStep | None:
        return next((s for s in self.steps() if s.id == step_id), None)

    def channels(self) -> Iterator[tuple[str, SendStep, int, Channel]]:
        """Every touchpoint use: ``(path, step, index, channel)``."""
        for loc, step in walk(self.strategy, ("strategy",)):
            if isinstance(step, SendStep):
                for i, ch in enumerate(step.channels):
                    yield field_path((*loc, "channels", i)), step, i, ch

    def touchpoint_ids(self) -> set[int]:
        return {ch.touchpoint_id for _, _, _, ch in self.channels()}

    def stored(self) -> dict[str, Any]:
        """The JSON kept in the campaign row (and shown by the API)."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_content(
    model: type[C], data: Mapping[str, Any], errors: FieldErrors, context: ContentContext | None
) -> C | None:
    """Parse content (or a body holding it, ``model``); every problem goes into
    ``errors`` (then None is returned)."""
    try:
        return model.model_validate(dict(data), context=context)
    except ValidationError as exc:
        field_errors(exc, errors)
        return None


def stored_content(
    trigger: Mapping[str, Any],
    audience: Mapping[str, Any],
    participation: Mapping[str, Any],
    strategy: Mapping[str, Any],
) -> CampaignContent:
    """The typed content of a stored campaign (checked when it was saved)."""
    return CampaignContent.model_validate(
        {
            "trigger": trigger,
            "audience": audience,
            "participation": participation,
            "strategy": strategy,
        }
    )
