"""Campaign input/output models and the structural rules of a campaign's content.

The content (trigger, audience, participation, strategy) is free-form JSON whose
every invalid field must be named with its full path (``strategy.channels[0].
touchpoint_id``), so it is checked here by hand into a :class:`FieldErrors`
rather than by nested Pydantic models. What needs the database (touchpoints,
template values, the attribute catalogue) is passed in or checked by the service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..datastore.sensitive import SENSITIVE_TYPE
from ..errors import FieldErrors
from ..names import normalize_name

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
OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "exists",
    "not_exists",
)
MAX_FILTER_DEPTH = 5
MAX_CONDITIONS = 100
MAX_IN_VALUES = 1000
MAX_STEPS = 100
MAX_CHANNELS = 10
MAX_LIST_GIDS = 1_000_000
MAX_DELAY_MINUTES = 365 * 24 * 60
MAX_WITHOUT_MINUTES = 7 * 24 * 60
WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}
_STEP_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def check_name(value: str) -> str:
    value = normalize_name(value)
    if len(value) > NAME_MAX:
        raise ValueError(f"at most {NAME_MAX} characters")
    return value


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    trigger: dict[str, Any]
    audience: dict[str, Any]
    participation: dict[str, Any] = Field(default_factory=lambda: {"mode": "once"})
    anti_disturb: bool = True
    strategy: dict[str, Any]

    _name = field_validator("name")(check_name)


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    trigger: dict[str, Any] | None = None
    audience: dict[str, Any] | None = None
    participation: dict[str, Any] | None = None
    anti_disturb: bool | None = None
    strategy: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)


class CampaignOut(BaseModel):
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
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, campaign: Any) -> CampaignOut:
        out = cls.model_validate(campaign)
        out.allowed_actions = list(ALLOWED_ACTIONS.get(out.status, ()))
        return out


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample: int = Field(default=5, ge=1, le=100)


class GidsUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gids: list[int] = Field(max_length=MAX_LIST_GIDS)
    replace: bool = True


class StepStats(BaseModel):
    entered: int = 0
    control: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)


class TouchpointStats(BaseModel):
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)


class CampaignStats(BaseModel):
    targeted: int
    entered: int
    sent: int
    succeeded: int
    failed: int
    pending: int
    suppressed: int
    control: int
    runs: int
    failed_by_reason: dict[str, int]
    suppressed_by_reason: dict[str, int]
    by_step: dict[str, StepStats]
    by_touchpoint: dict[str, TouchpointStats]


class DeliveryOut(BaseModel):
    gid: int
    step_id: str | None
    touchpoint_id: int | None
    order_no: str | None
    status: str
    error_msg: str | None
    attempts: int


# --- content ---------------------------------------------------------------------


@dataclass
class ChannelRef:
    """A touchpoint use found in the strategy, with where it sits (for error paths)."""

    path: str  # e.g. "strategy.channels[0]"
    step_id: str
    touchpoint_id: int
    params: dict[str, Any]


@dataclass
class Content:
    """The normalised content and what the service must still check against the database."""

    trigger: dict[str, Any]
    audience: dict[str, Any]
    participation: dict[str, Any]
    strategy: dict[str, Any]
    channels: list[ChannelRef] = field(default_factory=list)
    list_gids: list[int] | None = None  # gids given inline with a ``list`` audience


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value and abs(value) < 1e300


def parse_when(value: Any, tz: ZoneInfo) -> datetime | None:
    """An ISO 8601 time; a time without a zone is read in the project's time zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def cron_of(trigger: dict[str, Any]) -> str:
    """The cron expression of a recurring trigger (``every`` is sugar for one)."""
    if "cron" in trigger:
        return str(trigger["cron"])
    hh, mm = (int(x) for x in str(trigger.get("time", "00:00")).split(":"))
    every = trigger["every"]
    if every == "daily":
        return f"{mm} {hh} * * *"
    if every == "weekly":
        wd = trigger.get("weekday", "mon")
        num = WEEKDAYS[wd] if isinstance(wd, str) else int(wd) % 7
        return f"{mm} {hh} * * {num}"
    return f"{mm} {hh} {int(trigger.get('day', 1))} * *"


def _check_trigger(raw: Any, errors: FieldErrors, tz: ZoneInfo) -> dict[str, Any]:
    path = "trigger"
    if not isinstance(raw, dict):
        errors.add(path, "must be an object")
        return {}
    kind = raw.get("type")
    if kind in ("event", "event_without"):
        return _check_event_trigger(raw, errors, tz)
    if kind not in ("once", "recurring"):
        errors.add(f"{path}.type", "must be one of once, recurring, event, event_without")
        return dict(raw)
    allowed = (
        {"type", "at"}
        if kind == "once"
        else {
            "type",
            "cron",
            "every",
            "time",
            "weekday",
            "day",
            "start",
            "end",
        }
    )
    for key in raw:
        if key not in allowed:
            errors.add(f"{path}.{key}", f"unknown field for a {kind!r} trigger")
    out: dict[str, Any] = {"type": kind}
    for key in ("at", "start", "end"):
        if key in raw and key in allowed and raw[key] is not None:
            when = parse_when(raw[key], tz)
            if when is None:
                errors.add(f"{path}.{key}", "must be an ISO 8601 date-time")
            else:
                out[key] = when.isoformat()
    if kind == "recurring":
        has_cron, has_every = "cron" in raw, "every" in raw
        if has_cron == has_every:
            errors.add(path, "a recurring trigger needs exactly one of 'cron' or 'every'")
        elif has_cron:
            cron = raw["cron"]
            if not isinstance(cron, str) or not cron.strip():
                errors.add(f"{path}.cron", "must be a cron expression like '0 10 * * *'")
            else:
                fields = cron.split()
                if len(fields) not in (5, 6) or not croniter.is_valid(cron):
                    errors.add(
                        f"{path}.cron",
                        f"{cron!r} is not a valid cron expression (5 fields, or 6 with seconds)",
                    )
                else:
                    out["cron"] = " ".join(fields)
        else:
            every = raw["every"]
            if every not in ("daily", "weekly", "monthly"):
                errors.add(f"{path}.every", "must be daily, weekly or monthly")
            else:
                out["every"] = every
            tod = raw.get("time", "00:00")
            if not isinstance(tod, str) or not _TIME_OF_DAY.match(tod):
                errors.add(f"{path}.time", "must be a time of day 'HH:MM'")
            else:
                out["time"] = tod
            if every == "weekly":
                wd = raw.get("weekday", "mon")
                ok = (isinstance(wd, str) and wd.lower()[:3] in WEEKDAYS) or (
                    _is_int(wd) and 1 <= wd <= 7
                )
                if not ok:
                    errors.add(f"{path}.weekday", "must be mon…sun or 1 (Monday) … 7 (Sunday)")
                else:
                    out["weekday"] = wd.lower()[:3] if isinstance(wd, str) else wd
            elif "weekday" in raw:
                errors.add(f"{path}.weekday", "only for a weekly trigger")
            if every == "monthly":
                day = raw.get("day", 1)
                if not _is_int(day) or not 1 <= day <= 31:
                    errors.add(f"{path}.day", "must be a day of the month, 1–31")
                else:
                    out["day"] = day
            elif "day" in raw:
                errors.add(f"{path}.day", "only for a monthly trigger")
        if "start" in out and "end" in out and out["end"] <= out["start"]:
            start, end = parse_when(out["start"], tz), parse_when(out["end"], tz)
            if start is not None and end is not None and end <= start:
                errors.add(f"{path}.end", "must be after start")
    return out


def _check_event_trigger(raw: dict[str, Any], errors: FieldErrors, tz: ZoneInfo) -> dict[str, Any]:
    path = "trigger"
    kind = raw["type"]
    allowed = {"type", "event", "filter", "start", "end"}
    if kind == "event_without":
        allowed |= {"without", "within_minutes"}
    for key in raw:
        if key not in allowed:
            errors.add(f"{path}.{key}", f"unknown field for an {kind!r} trigger")
    out: dict[str, Any] = {"type": kind}
    names = ("event", "without") if kind == "event_without" else ("event",)
    for key in names:
        name = raw.get(key)
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            errors.add(f"{path}.{key}", "required: an event name, 1–100 characters")
        else:
            out[key] = name
    if kind == "event_without":
        within = raw.get("within_minutes")
        if not _is_int(within) or not 1 <= within <= MAX_WITHOUT_MINUTES:
            errors.add(
                f"{path}.within_minutes",
                f"required: the window in minutes, 1–{MAX_WITHOUT_MINUTES} (7 days)",
            )
        else:
            out["within_minutes"] = within
    if raw.get("filter") is not None:
        out["filter"] = check_property_filter(raw["filter"], f"{path}.filter", errors)
    for key in ("start", "end"):
        if raw.get(key) is not None:
            when = parse_when(raw[key], tz)
            if when is None:
                errors.add(f"{path}.{key}", "must be an ISO 8601 date-time")
            else:
                out[key] = when.isoformat()
    start, end = parse_when(out.get("start"), tz), parse_when(out.get("end"), tz)
    if start is not None and end is not None and end <= start:
        errors.add(f"{path}.end", "must be after start")
    return out


def _value_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _check_group(
    raw: dict[str, Any],
    path: str,
    errors: FieldErrors,
    depth: int,
    check_child: Callable[[Any, str], dict[str, Any]],
    *,
    limit: int | None = None,
) -> dict[str, Any]:
    """An and/or group ``{op, conditions: [...]}`` of audience or property filters;
    ``check_child`` checks one member (a condition or a nested group)."""
    if depth >= MAX_FILTER_DEPTH:
        errors.add(path, f"groups nest at most {MAX_FILTER_DEPTH} levels deep")
        return {}
    for key in raw:
        if key not in ("op", "conditions"):
            errors.add(f"{path}.{key}", "unknown field in a group")
    op = raw.get("op", "and")
    if op not in ("and", "or"):
        errors.add(f"{path}.op", "must be 'and' or 'or'")
    conditions = raw.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        errors.add(f"{path}.conditions", "must be a non-empty list")
        return {"op": op, "conditions": []}
    members = conditions if limit is None else conditions[:limit]
    return {
        "op": op,
        "conditions": [check_child(c, f"{path}.conditions[{i}]") for i, c in enumerate(members)],
    }


def check_property_filter(
    raw: Any, path: str, errors: FieldErrors, depth: int = 0
) -> dict[str, Any]:
    """A filter on the triggering event's properties: the shape of an audience filter
    with ``property`` instead of ``attribute``; a property's type is the type of the
    value it is compared with (kept as ``type`` for the SQL)."""
    if not isinstance(raw, dict):
        errors.add(path, "must be an object: a condition or an and/or group")
        return {}
    if "conditions" in raw or "op" in raw:
        return _check_group(
            raw,
            path,
            errors,
            depth,
            lambda c, p: check_property_filter(c, p, errors, depth + 1),
            limit=MAX_CONDITIONS,
        )
    for key in raw:
        # ``type`` is what a saved campaign stores (recomputed here from the value).
        if key not in ("property", "operator", "value", "type"):
            errors.add(f"{path}.{key}", "unknown field in a property condition")
    prop = raw.get("property")
    if not isinstance(prop, str) or not prop or len(prop) > 100:
        errors.add(f"{path}.property", "required: a property name")
    operator = raw.get("operator")
    if operator not in OPERATORS:
        errors.add(f"{path}.operator", "must be one of " + ", ".join(OPERATORS))
        return dict(raw)
    out: dict[str, Any] = {"property": prop, "operator": operator, "type": "string"}
    value = raw.get("value")
    if operator in ("exists", "not_exists"):
        if value is not None:
            errors.add(f"{path}.value", f"'{operator}' takes no value")
        return out
    values = value if operator in ("in", "not_in") else [value]
    if not isinstance(values, list) or not values or len(values) > MAX_IN_VALUES:
        errors.add(f"{path}.value", f"must be a list of 1–{MAX_IN_VALUES} values")
        return out
    types = {_value_type(v) for v in values}
    if None in types or len(types) != 1:
        errors.add(f"{path}.value", "must be strings, numbers or booleans, all of one type")
        return out
    out["type"] = types.pop()
    if operator == "contains" and out["type"] != "string":
        errors.add(f"{path}.value", "'contains' needs a string")
    elif operator in ("gt", "gte", "lt", "lte") and out["type"] == "boolean":
        errors.add(f"{path}.operator", f"'{operator}' does not apply to a boolean")
    out["value"] = value
    return out


def _typed_value(value: Any, attr_type: str) -> str | None:
    """Why ``value`` does not fit an attribute of ``attr_type`` (None when it fits)."""
    if attr_type == "number":
        return None if _is_number(value) else "must be a number"
    if attr_type == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if attr_type == "date":
        if isinstance(value, str):
            try:
                date.fromisoformat(value)
                if len(value) == 10:
                    return None
            except ValueError:
                pass
        return "must be a date 'YYYY-MM-DD'"
    return None if isinstance(value, str) else "must be a string"


def check_filter(
    raw: Any,
    path: str,
    errors: FieldErrors,
    catalogue: dict[str, str],
    depth: int = 0,
    counter: list[int] | None = None,
) -> dict[str, Any]:
    """A filter: a group ``{op: and|or, conditions: [...]}`` or one condition."""
    counter = counter if counter is not None else [0]
    if not isinstance(raw, dict):
        errors.add(path, "must be an object: a condition or an and/or group")
        return {}
    if "conditions" in raw or "op" in raw:
        return _check_group(
            raw,
            path,
            errors,
            depth,
            lambda c, p: check_filter(c, p, errors, catalogue, depth + 1, counter),
        )
    counter[0] += 1
    if counter[0] == MAX_CONDITIONS + 1:
        errors.add(path, f"a filter has at most {MAX_CONDITIONS} conditions")
    for key in raw:
        if key not in ("attribute", "operator", "value"):
            errors.add(f"{path}.{key}", "unknown field in a condition")
    attr = raw.get("attribute")
    attr_type: str | None = None
    if not isinstance(attr, str) or not attr:
        errors.add(f"{path}.attribute", "required: an attribute key")
    elif attr not in catalogue:
        errors.add(f"{path}.attribute", f"{attr!r} is not in the project's attribute catalogue")
    elif catalogue[attr] == SENSITIVE_TYPE:
        errors.add(
            f"{path}.attribute",
            f"{attr!r} is sensitive (encrypted at rest); audiences cannot filter on it",
            code="attribute_sensitive",
            attribute=attr,
        )
    else:
        attr_type = catalogue[attr]
    operator = raw.get("operator")
    if operator not in OPERATORS:
        errors.add(f"{path}.operator", "must be one of " + ", ".join(OPERATORS))
        return dict(raw)
    out: dict[str, Any] = {"attribute": attr, "operator": operator}
    value = raw.get("value")
    if operator in ("exists", "not_exists"):
        if "value" in raw and value is not None:
            errors.add(f"{path}.value", f"'{operator}' takes no value")
        return out
    if "value" not in raw or value is None:
        errors.add(f"{path}.value", "required")
        return out
    if operator in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            errors.add(f"{path}.value", "must be a non-empty list")
            return out
        if len(value) > MAX_IN_VALUES:
            errors.add(f"{path}.value", f"at most {MAX_IN_VALUES} values")
        if attr_type is not None:
            for i, item in enumerate(value):
                problem = _typed_value(item, attr_type)
                if problem:
                    errors.add(f"{path}.value[{i}]", problem)
    elif attr_type is not None:
        if operator == "contains" and attr_type != "string":
            errors.add(f"{path}.operator", "'contains' works on string attributes only")
        elif operator in ("gt", "gte", "lt", "lte") and attr_type == "boolean":
            errors.add(f"{path}.operator", f"'{operator}' does not apply to a boolean")
        else:
            problem = _typed_value(value, attr_type)
            if problem:
                errors.add(f"{path}.value", problem)
    out["value"] = value
    return out


def _check_audience(
    raw: Any, errors: FieldErrors, catalogue: dict[str, str]
) -> tuple[dict[str, Any], list[int] | None]:
    path = "audience"
    if not isinstance(raw, dict):
        errors.add(path, "must be an object")
        return {}, None
    match = raw.get("match")
    allowed = {"all": {"match"}, "filter": {"match", "filter"}, "list": {"match", "gids"}}
    if match not in allowed:
        errors.add(f"{path}.match", "must be one of all, filter, list")
        return dict(raw), None
    for key in raw:
        if key not in allowed[match] and not (match == "list" and key == "gid_count"):
            errors.add(f"{path}.{key}", f"unknown field for match {match!r}")
    if match == "all":
        return {"match": "all"}, None
    if match == "filter":
        if "filter" not in raw:
            errors.add(f"{path}.filter", "required for match 'filter'")
            return {"match": "filter"}, None
        return {
            "match": "filter",
            "filter": check_filter(raw["filter"], f"{path}.filter", errors, catalogue),
        }, None
    gids = raw.get("gids")
    if gids is None:
        return {"match": "list"}, None
    if not isinstance(gids, list):
        errors.add(f"{path}.gids", "must be a list of gids")
        return {"match": "list"}, None
    if len(gids) > MAX_LIST_GIDS:
        errors.add(f"{path}.gids", f"at most {MAX_LIST_GIDS} gids; upload bigger lists")
    bad = [i for i, g in enumerate(gids) if not _is_int(g) or not 0 < g < 2**63]
    for i in bad[:20]:
        errors.add(f"{path}.gids[{i}]", "must be a positive 64-bit integer")
    return {"match": "list"}, sorted(set(gids)) if not bad else None


def _check_participation(raw: Any, errors: FieldErrors) -> dict[str, Any]:
    path = "participation"
    if not isinstance(raw, dict):
        errors.add(path, "must be an object")
        return {}
    mode = raw.get("mode")
    if mode == "once":
        for key in raw:
            if key != "mode":
                errors.add(f"{path}.{key}", "unknown field for mode 'once'")
        return {"mode": "once"}
    if mode == "every":
        for key in raw:
            if key not in ("mode", "days"):
                errors.add(f"{path}.{key}", "unknown field for mode 'every'")
        days = raw.get("days")
        if not _is_int(days) or not 1 <= days <= 3650:
            errors.add(f"{path}.days", "must be a whole number of days, 1–3650")
        return {"mode": "every", "days": days}
    errors.add(f"{path}.mode", "must be 'once' or 'every'")
    return dict(raw)


class _StrategyChecker:
    def __init__(self, errors: FieldErrors, catalogue: dict[str, str]) -> None:
        self.errors = errors
        self.catalogue = catalogue
        self.ids: set[str] = set()
        self.count = 0
        self.channels: list[ChannelRef] = []

    def step(self, raw: Any, path: str) -> dict[str, Any]:
        errors = self.errors
        if not isinstance(raw, dict):
            errors.add(path, "must be a step object")
            return {}
        self.count += 1
        if self.count == MAX_STEPS + 1:
            errors.add(path, f"a strategy has at most {MAX_STEPS} steps")
            return {}
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
            errors.add(f"{path}.id", "required: 1–64 letters, digits, '_', '-' or '.'")
            step_id = ""
        elif step_id in self.ids:
            errors.add(f"{path}.id", f"step id {step_id!r} is used twice")
        self.ids.add(step_id)
        kind = raw.get("type")
        if kind == "send":
            return self.send(raw, path, step_id)
        if kind == "split":
            return self.split(raw, path, step_id)
        if kind == "ab":
            return self.ab(raw, path, step_id)
        errors.add(f"{path}.type", "must be one of send, split, ab")
        return dict(raw)

    def send(self, raw: dict[str, Any], path: str, step_id: str) -> dict[str, Any]:
        errors = self.errors
        for key in raw:
            if key not in ("type", "id", "mode", "timing", "channels", "next"):
                errors.add(f"{path}.{key}", "unknown field in a send step")
        mode = raw.get("mode", "first_success")
        if mode not in ("first_success", "all"):
            errors.add(f"{path}.mode", "must be 'first_success' or 'all'")
        timing = raw.get("timing", {"type": "now"})
        out_timing: dict[str, Any] = {"type": "now"}
        if not isinstance(timing, dict) or timing.get("type") not in ("now", "delay", "none"):
            errors.add(f"{path}.timing.type", "must be now, delay or none")
        else:
            out_timing = {"type": timing["type"]}
            for key in timing:
                if key not in ("type", "minutes"):
                    errors.add(f"{path}.timing.{key}", "unknown field in timing")
            if timing["type"] == "delay":
                minutes = timing.get("minutes")
                if not _is_int(minutes) or not 1 <= minutes <= MAX_DELAY_MINUTES:
                    errors.add(
                        f"{path}.timing.minutes", f"must be whole minutes, 1–{MAX_DELAY_MINUTES}"
                    )
                out_timing["minutes"] = minutes
            elif "minutes" in timing:
                errors.add(f"{path}.timing.minutes", "only for a delay")
        out: dict[str, Any] = {"type": "send", "id": step_id, "mode": mode, "timing": out_timing}
        channels = raw.get("channels")
        out_channels: list[dict[str, Any]] = []
        if out_timing["type"] == "none" and not channels:
            channels = []
        elif not isinstance(channels, list) or not channels:
            errors.add(f"{path}.channels", "must list at least one touchpoint")
            channels = []
        elif len(channels) > MAX_CHANNELS:
            errors.add(f"{path}.channels", f"at most {MAX_CHANNELS} touchpoints")
        if not isinstance(channels, list):
            errors.add(f"{path}.channels", "must be a list")
            channels = []
        seen: set[int] = set()
        for i, ch in enumerate(channels):
            cpath = f"{path}.channels[{i}]"
            if not isinstance(ch, dict):
                errors.add(cpath, "must be {touchpoint_id, params}")
                continue
            for key in ch:
                if key not in ("touchpoint_id", "params"):
                    errors.add(f"{cpath}.{key}", "unknown field in a channel")
            tid = ch.get("touchpoint_id")
            params = ch.get("params", {})
            if not _is_int(tid) or tid <= 0:
                errors.add(f"{cpath}.touchpoint_id", "required: a touchpoint id")
                tid = None
            elif tid in seen:
                errors.add(f"{cpath}.touchpoint_id", f"touchpoint {tid} is listed twice")
            else:
                seen.add(tid)
            if not isinstance(params, dict):
                errors.add(f"{cpath}.params", "must be an object of template values")
                params = {}
            out_channels.append({"touchpoint_id": tid, "params": params})
            if tid is not None:
                self.channels.append(ChannelRef(cpath, step_id, tid, params))
        out["channels"] = out_channels
        if "next" in raw and raw["next"] is not None:
            if out_timing["type"] == "none":
                errors.add(f"{path}.next", "a control group (timing 'none') ends its path")
            else:
                out["next"] = self.step(raw["next"], f"{path}.next")
        return out

    def split(self, raw: dict[str, Any], path: str, step_id: str) -> dict[str, Any]:
        errors = self.errors
        for key in raw:
            if key not in ("type", "id", "by", "branches", "otherwise"):
                errors.add(f"{path}.{key}", "unknown field in a split step")
        by = raw.get("by", "audience")
        if by == "event":
            errors.add(f"{path}.by", "event splits are not supported yet; split by audience")
        elif by != "audience":
            errors.add(f"{path}.by", "must be 'audience'")
        out: dict[str, Any] = {"type": "split", "id": step_id, "by": "audience", "branches": []}
        branches = raw.get("branches")
        if not isinstance(branches, list) or not 1 <= len(branches) <= 5:
            errors.add(f"{path}.branches", "must list 1–5 branches")
            branches = []
        for i, br in enumerate(branches):
            bpath = f"{path}.branches[{i}]"
            if not isinstance(br, dict):
                errors.add(bpath, "must be {filter, next}")
                continue
            for key in br:
                if key not in ("filter", "next"):
                    errors.add(f"{bpath}.{key}", "unknown field in a branch")
            branch: dict[str, Any] = {
                "filter": check_filter(br.get("filter"), f"{bpath}.filter", errors, self.catalogue)
            }
            if br.get("next") is not None:
                branch["next"] = self.step(br["next"], f"{bpath}.next")
            out["branches"].append(branch)
        if raw.get("otherwise") is not None:
            out["otherwise"] = self.step(raw["otherwise"], f"{path}.otherwise")
        return out

    def ab(self, raw: dict[str, Any], path: str, step_id: str) -> dict[str, Any]:
        errors = self.errors
        for key in raw:
            if key not in ("type", "id", "branches"):
                errors.add(f"{path}.{key}", "unknown field in an A/B step")
        out: dict[str, Any] = {"type": "ab", "id": step_id, "branches": []}
        branches = raw.get("branches")
        if not isinstance(branches, list) or not 2 <= len(branches) <= 10:
            errors.add(f"{path}.branches", "must list 2–10 branches")
            branches = []
        total = 0
        for i, br in enumerate(branches):
            bpath = f"{path}.branches[{i}]"
            if not isinstance(br, dict):
                errors.add(bpath, "must be {percent, next}")
                continue
            for key in br:
                if key not in ("percent", "next"):
                    errors.add(f"{bpath}.{key}", "unknown field in a branch")
            pct = br.get("percent")
            if not _is_int(pct) or not 1 <= pct <= 100:
                errors.add(f"{bpath}.percent", "must be a whole percentage, 1–100")
                pct = 0
            total += pct
            branch: dict[str, Any] = {"percent": pct}
            if br.get("next") is not None:
                branch["next"] = self.step(br["next"], f"{bpath}.next")
            out["branches"].append(branch)
        if branches and total != 100:
            errors.add(f"{path}.branches", f"percentages must sum to 100 (they sum to {total})")
        return out


def check_content(
    data: dict[str, Any], errors: FieldErrors, catalogue: dict[str, str], tz: ZoneInfo
) -> Content:
    """Check the structure of a campaign's content; every problem goes into ``errors``."""
    trigger = _check_trigger(data.get("trigger"), errors, tz)
    audience, list_gids = _check_audience(data.get("audience"), errors, catalogue)
    participation = _check_participation(data.get("participation", {"mode": "once"}), errors)
    checker = _StrategyChecker(errors, catalogue)
    strategy = checker.step(data.get("strategy"), "strategy")
    return Content(
        trigger=trigger,
        audience=audience,
        participation=participation,
        strategy=strategy,
        channels=checker.channels,
        list_gids=list_gids,
    )


def iter_steps(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of a strategy tree, depth first."""
    out = [step]
    for child in child_steps(step):
        out.extend(iter_steps(child))
    return out


def child_steps(step: dict[str, Any]) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = []
    if isinstance(step.get("next"), dict):
        children.append(step["next"])
    for br in step.get("branches", []) or []:
        if isinstance(br, dict) and isinstance(br.get("next"), dict):
            children.append(br["next"])
    if isinstance(step.get("otherwise"), dict):
        children.append(step["otherwise"])
    return children


def find_step(strategy: dict[str, Any], step_id: str) -> dict[str, Any] | None:
    for step in iter_steps(strategy):
        if step.get("id") == step_id:
            return step
    return None


def touchpoint_ids(strategy: dict[str, Any]) -> set[int]:
    ids: set[int] = set()
    for step in iter_steps(strategy):
        for ch in step.get("channels", []) or []:
            if isinstance(ch, dict) and _is_int(ch.get("touchpoint_id")):
                ids.add(ch["touchpoint_id"])
    return ids
