"""Typed campaign content, the router and quiet hours, without a database: parsing
with full paths and coded errors, the stored JSON round trip, A/B assignment, and
the quiet-hours window in a time zone. Plus: every code the campaigns domain can
give has a text in both console languages."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from touchgate.campaigns.content import (
    ABStep,
    CampaignContent,
    Condition,
    ContentContext,
    Group,
    PropertyCondition,
    PropertyGroup,
    SendStep,
    TouchpointInfo,
    parse_content,
    stored_content,
)
from touchgate.campaigns.protection import quiet_until
from touchgate.campaigns.router import Router, ab_bucket
from touchgate.campaigns.schemas import QuietHours
from touchgate.errors import FieldErrors

SRC = Path(__file__).parents[1] / "src" / "touchgate"
CATALOGUE = {"city": "string", "age": "number", "vip": "boolean", "birthday": "date"}
PARAMS = [
    {"key": "title", "type": "text", "required": True},
    {"key": "amount", "type": "number", "required": True},
]


def context(**touchpoints: TouchpointInfo) -> ContentContext:
    def lookup(tid: int) -> TouchpointInfo | None:
        return touchpoints.get(f"t{tid}")

    return ContentContext(CATALOGUE, ZoneInfo("Asia/Shanghai"), lookup, options={})


def tp(tid: int, **kw: Any) -> TouchpointInfo:
    fields: dict[str, Any] = {
        "id": tid,
        "name": f"TP{tid}",
        "status": "enabled",
        "deleted": False,
        "authorised": True,
        "template_params": PARAMS,
        "user_attributes": ["memberId"],
    } | kw
    return TouchpointInfo(**fields)


def send(step_id: str, *tids: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "send",
        "id": step_id,
        "channels": [{"touchpoint_id": t, "params": {"title": "Hi", "amount": 1}} for t in tids],
        **extra,
    }


def parse(data: dict[str, Any], ctx: ContentContext | None = None) -> tuple[Any, list[Any]]:
    errors = FieldErrors()
    content = parse_content(CampaignContent, data, errors, ctx or context(t1=tp(1), t2=tp(2)))
    return content, errors.items


def body(strategy: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"trigger": {"type": "once"}, "audience": {"match": "all"}, "strategy": strategy} | kw


def test_every_kind_of_step_round_trips_exactly() -> None:
    strategy = {
        "type": "split",
        "id": "by-city",
        "name": "City",
        "by": "audience",
        "branches": [
            {
                "filter": {
                    "op": "or",
                    "conditions": [
                        {"attribute": "city", "operator": "in", "value": ["Shanghai", "Beijing"]},
                        {"attribute": "age", "operator": "exists"},
                    ],
                },
                "next": send("sms", 1, 2, name="SMS then push", next=send("later", 2)),
            }
        ],
        "otherwise": {
            "type": "ab",
            "id": "ab",
            "branches": [
                {"percent": 60, "next": send("a", 1, mode="all")},
                {"percent": 40, "next": {"type": "send", "id": "b", "timing": {"type": "none"}}},
            ],
        },
    }
    trigger = {"type": "recurring", "every": "weekly", "time": "09:30", "weekday": "fri"}
    content, errors = parse(body(strategy, trigger=trigger))
    assert errors == []
    stored = content.stored()
    # Normalised once (defaults of send steps filled in), then stable.
    assert stored["strategy"]["branches"][0]["next"]["mode"] == "first_success"
    assert stored["strategy"]["branches"][0]["next"]["timing"] == {"type": "now"}
    assert stored["strategy"]["name"] == "City"
    again, errors = parse(stored)
    assert errors == []
    assert again.stored() == stored
    assert json.dumps(stored_content(**stored).stored()) == json.dumps(stored)
    assert [s.id for s in content.steps()] == ["by-city", "sms", "later", "ab", "a", "b"]
    assert content.touchpoint_ids() == {1, 2}


def test_times_are_kept_with_their_zone() -> None:
    content, errors = parse(body(send("s", 1), trigger={"type": "once", "at": "2999-05-01T10:00"}))
    assert errors == []
    # A time without a zone is read in the project's time zone.
    assert content.stored()["trigger"]["at"] == "2999-05-01T10:00:00+08:00"


def test_errors_have_full_paths_codes_and_params() -> None:
    strategy = {
        "type": "split",
        "id": "sp",
        "branches": [
            {"filter": {"attribute": "city", "operator": "eq", "value": "x"}},
            {
                "filter": {"attribute": "age", "operator": "gt", "value": 3},
                "next": {
                    "type": "send",
                    "id": "s",
                    "channels": [{"touchpoint_id": 9, "params": {}}, {"touchpoint_id": 3}],
                },
            },
        ],
        "otherwise": {"type": "ab", "id": "ab", "branches": [{"percent": 30}, {"percent": 30}]},
    }
    ctx = context(t3=tp(3, status="disabled", name="短信"))
    _, errors = parse(body(strategy), ctx)
    by_field = {e["field"]: e for e in errors}
    missing = by_field["strategy.branches[1].next.channels[0].touchpoint_id"]
    assert missing["code"] == "touchpoint_not_found"
    assert missing["params"] == {"touchpoint_id": 9}
    disabled = by_field["strategy.branches[1].next.channels[1].touchpoint_id"]
    assert disabled["code"] == "touchpoint_disabled"
    assert disabled["params"] == {"touchpoint_id": 3, "name": "短信"}
    assert by_field["strategy.otherwise.branches"]["code"] == "percent_sum"
    assert by_field["strategy.otherwise.branches"]["params"] == {"sum": 60}
    assert set(by_field) == {
        "strategy.branches[1].next.channels[0].touchpoint_id",
        "strategy.branches[1].next.channels[1].touchpoint_id",
        "strategy.otherwise.branches",
    }


@pytest.mark.parametrize(
    ("data", "field", "code", "params"),
    [
        ({"trigger": {"type": "sometimes"}}, "trigger.type", "not_one_of", None),
        ({"trigger": []}, "trigger", "not_object", {}),
        # Pydantic's own errors get the API's codes (errors.PYDANTIC_CODES), here too.
        ({"audience": {"match": "list", "gids": "x"}}, "audience.gids", "not_list", {}),
        ({"trigger": {"type": "once", "at": 12}}, "trigger.at", "not_a_time", {}),
        ({"trigger": {"type": "once", "soon": True}}, "trigger.soon", "unknown_field", {}),
        ({"trigger": {"type": "recurring"}}, "trigger", "cron_or_every", {}),
        ({"trigger": {"type": "event"}}, "trigger.event", "required", {}),
        (
            {"participation": {"mode": "every", "days": 0}},
            "participation.days",
            "out_of_range",
            {"min": 1, "max": 3650},
        ),
        (
            {"participation": {"mode": "every", "days": True}},
            "participation.days",
            "wrong_type",
            {"expected": "integer"},
        ),
        (
            {
                "audience": {
                    "match": "filter",
                    "filter": {"attribute": "nope", "operator": "eq", "value": 1},
                }
            },
            "audience.filter.attribute",
            "not_in_catalogue",
            {"attribute": "nope"},
        ),
        (
            {
                "audience": {
                    "match": "filter",
                    "filter": {"attribute": "vip", "operator": "gt", "value": True},
                }
            },
            "audience.filter.operator",
            "operator_not_for_type",
            {"operator": "gt", "type": "boolean"},
        ),
        (
            {
                "audience": {
                    "match": "filter",
                    "filter": {"attribute": "age", "operator": "in", "value": [1, "x"]},
                }
            },
            "audience.filter.value[1]",
            "value_type",
            {"expected": "number"},
        ),
        ({"audience": {"match": "list", "gids": [1, 0]}}, "audience.gids[1]", "out_of_range", None),
        (
            {"strategy": send("s", 1, 1)},
            "strategy.channels[1].touchpoint_id",
            "duplicate_touchpoint",
            {"touchpoint_id": 1},
        ),
        ({"strategy": send("s", 1, name="x" * 41)}, "strategy.name", "text_too_long", {"max": 40}),
        ({"strategy": send("bad id", 1)}, "strategy.id", "invalid_step_id", {}),
        (
            {
                "strategy": {
                    "type": "send",
                    "id": "s",
                    "timing": {"type": "none"},
                    "next": send("t", 1),
                }
            },
            "strategy.next",
            "control_group_ends_path",
            {},
        ),
        ({"strategy": {"type": "send", "id": "s"}}, "strategy.channels", "too_few", {"min": 1}),
        (
            {
                "strategy": {
                    "type": "split",
                    "id": "s",
                    "by": "event",
                    "branches": [{"filter": {"property": "p", "operator": "exists"}}],
                }
            },
            "strategy.by",
            "event_split_needs_event_trigger",
            {},
        ),
    ],
)
def test_one_error(
    data: dict[str, Any], field: str, code: str, params: dict[str, Any] | None
) -> None:
    _, errors = parse(body(send("s0", 1)) | data)
    assert [e["field"] for e in errors] == [field], errors
    assert errors[0]["code"] == code
    if params is not None:
        assert errors[0]["params"] == params


def test_stored_content_needs_no_database() -> None:
    # A stored campaign is read without a catalogue or touchpoints (checked when saved).
    content = stored_content(
        {
            "type": "event",
            "event": "buy",
            "filter": {"property": "n", "operator": "gt", "value": 3, "type": "number"},
        },
        {"match": "list", "gid_count": 3},
        {"mode": "once"},
        send("s", 99),
    )
    assert isinstance(content.strategy, SendStep)
    assert content.stored()["trigger"]["filter"] == {"property": "n", "operator": "gt", "value": 3}
    assert content.stored()["audience"] == {"match": "list"}


class FakeSplitter:
    def audience(self, gids: Sequence[int], flt: Group | Condition) -> set[int]:
        assert isinstance(flt, Condition)
        return {g for g in gids if g % 2 == 0}

    def event(self, gids: Sequence[int], flt: PropertyGroup | PropertyCondition) -> set[int]:
        return {g for g in gids if g % 3 == 0}


def test_ab_branches_are_stable_and_within_three_percent() -> None:
    strategy = {
        "type": "ab",
        "id": "ab",
        "branches": [
            {"percent": 50, "next": send("a", 1)},
            {"percent": 30, "next": send("b", 1)},
            {"percent": 20, "next": send("c", 1)},
        ],
    }
    content, errors = parse(body(strategy))
    assert errors == []
    assert isinstance(content.strategy, ABStep)
    gids = list(range(1, 10_001))
    routed = {s.id: users for s, users in Router(7, FakeSplitter()).route(content.strategy, gids)}
    sizes = {k: len(routed[k]) for k in "abc"}
    assert sum(sizes.values()) == len(gids)
    for step_id, percent in (("a", 50), ("b", 30), ("c", 20)):
        assert abs(sizes[step_id] - percent * 100) <= 300, sizes
    # Stable: the same users on every run, in any order or page size.
    again = {
        s.id: users
        for page in (gids[:3333], gids[3333:])
        for s, users in Router(7, FakeSplitter()).route(content.strategy, page)
    }
    for step_id in "abc":
        assert set(routed[step_id]) == {
            g for s, users in again.items() if s == step_id for g in users
        } or set(routed[step_id]) >= set(again.get(step_id, []))
    assert all(ab_bucket(7, g) == ab_bucket(7, g) for g in gids[:100])
    # Another campaign draws other lots.
    other = Counter(ab_bucket(8, g) < 50 for g in routed["a"])
    assert 0.35 < other[True] / len(routed["a"]) < 0.65


def test_router_walks_splits_and_follows_next_only_for_the_preview() -> None:
    strategy = {
        "type": "split",
        "id": "sp",
        "branches": [
            {
                "filter": {"attribute": "city", "operator": "exists"},
                "next": send("even", 1, next=send("after", 2)),
            }
        ],
        "otherwise": send("odd", 2),
    }
    content, _ = parse(body(strategy))
    gids = list(range(1, 11))
    run = [(s.id, u) for s, u in Router(1, FakeSplitter()).route(content.strategy, gids)]
    assert run == [("sp", gids), ("even", [2, 4, 6, 8, 10]), ("odd", [1, 3, 5, 7, 9])]
    preview = [
        s.id for s, _ in Router(1, FakeSplitter(), follow_next=True).route(content.strategy, gids)
    ]
    assert preview == ["sp", "even", "after", "odd"]


def test_event_split_routes_on_the_event() -> None:
    strategy = {
        "type": "split",
        "id": "sp",
        "by": "event",
        "branches": [
            {
                "filter": {"property": "amount", "operator": "gte", "value": 100},
                "next": send("big", 1),
            }
        ],
        "otherwise": send("small", 2),
    }
    content, errors = parse(body(strategy, trigger={"type": "event", "event": "purchase"}))
    assert errors == []
    routed = dict(
        (s.id, u) for s, u in Router(1, FakeSplitter()).route(content.strategy, range(1, 10))
    )
    assert routed["big"] == [3, 6, 9]
    assert routed["small"] == [1, 2, 4, 5, 7, 8]


SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.mark.parametrize(
    ("start", "end", "now", "until"),
    [
        ("22:00", "08:00", "2026-03-01T23:30", "2026-03-02T08:00"),
        ("22:00", "08:00", "2026-03-02T07:59", "2026-03-02T08:00"),
        ("22:00", "08:00", "2026-03-02T08:00", None),
        ("22:00", "08:00", "2026-03-02T21:59", None),
        ("22:00", "08:00", "2026-03-02T22:00", "2026-03-03T08:00"),
        ("12:00", "14:00", "2026-03-02T13:00", "2026-03-02T14:00"),
        ("12:00", "14:00", "2026-03-02T14:00", None),
        ("12:00", "14:00", "2026-03-02T11:00", None),
    ],
)
def test_quiet_hours_in_the_project_time_zone(
    start: str, end: str, now: str, until: str | None
) -> None:
    window = QuietHours(start=start, end=end, action="hold")
    expected = at(until) if until else None
    assert quiet_until(window, SHANGHAI, at(now)) == expected


def test_quiet_hours_across_a_daylight_saving_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    window = QuietHours(start="01:00", end="04:00", action="hold")
    # 2026-03-29: clocks go from 02:00 to 03:00; the window still ends at 04:00 local.
    now = datetime(2026, 3, 29, 1, 30, tzinfo=paris)
    ends = quiet_until(window, paris, now)
    assert ends is not None
    assert ends.astimezone(paris).hour == 4
    assert ends - now.astimezone(UTC) == timedelta(hours=1, minutes=30)


def _codes_in_source() -> set[str]:
    """Every field or error code the campaigns package can give, read from its code:
    ``PydanticCustomError(code, …)``, ``Problems.add(loc, code, …)``,
    ``BlocklistLines.reject(line, message, code)``, ``code=``/``field_code=``/
    ``custom_error_type=`` keywords."""
    codes: set[str] = set()

    def literal(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value if re.fullmatch(r"[a-z_]+", node.value) else None
        return None

    for path in (SRC / "campaigns").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            positional = {"PydanticCustomError": 0, "add": 1, "reject": 2}.get(name)
            if positional is not None and len(node.args) > positional:
                code = literal(node.args[positional])
                if code and (name != "add" or len(node.args) >= 3):
                    codes.add(code)
            for kw in node.keywords:
                if kw.arg in ("code", "field_code", "custom_error_type"):
                    code = literal(kw.value)
                    if code:
                        codes.add(code)
    codes |= {"required", "unknown_field", "not_object", "too_deep"}
    return codes


def test_every_code_has_a_text_in_both_languages() -> None:
    codes = _codes_in_source()
    assert {"percent_sum", "touchpoint_deleted", "event_split_needs_event_trigger"} <= codes
    for lang in ("en", "zh-CN"):
        texts = json.loads((SRC / "console" / "static" / "i18n" / f"{lang}.json").read_text())
        missing = sorted(
            c for c in codes if f"field_error.{c}" not in texts and f"error.code.{c}" not in texts
        )
        assert not missing, f"{lang}: {missing}"


def test_campaign_content_schema_documents_the_unions() -> None:
    schema = json.dumps(CampaignContent.model_json_schema())
    for word in ("first_success", "event_without", "percent", "by"):
        assert word in schema
