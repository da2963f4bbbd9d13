"""Template parameter values: every rule, every invalid value named."""

from __future__ import annotations

from typing import Any

import pytest

from touchgate.delivery.params import api_enum_keys, leaf_codes, validate_params
from touchgate.errors import InvalidInput

PARAMS: list[dict[str, Any]] = [
    {"key": "title", "name": "Title", "type": "text", "required": True},
    {"key": "note", "name": "Note", "type": "text", "required": False},
    {"key": "amount", "name": "Amount", "type": "number", "required": True},
    {"key": "startDate", "name": "Valid from", "type": "date", "required": False},
    {
        "key": "jump",
        "name": "Jump type",
        "type": "enum",
        "required": True,
        "enum": {
            "source": "manual",
            "options": [
                {"code": "JUMP_H5", "name": "H5 page"},
                {
                    "code": "JUMP_APP",
                    "name": "App",
                    "children": [
                        {"code": "JUMP_APP_HOME", "name": "Home"},
                        {"code": "JUMP_APP_CART", "name": "Cart"},
                    ],
                },
            ],
        },
    },
    {
        "key": "tpl",
        "name": "Template",
        "type": "enum",
        "required": False,
        "enum": {"source": "api", "url": "https://coupons.example.com/options"},
    },
]
ATTRS = ["memberId", "phone"]
API_OPTIONS = {"tpl": [{"code": "T1", "name": "One"}, {"code": "T2", "name": "Two"}]}


def good(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"title": "Hello", "amount": 100, "jump": "JUMP_H5"}
    values.update(changes)
    return values


def errors_of(values: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        validate_params(PARAMS, values, API_OPTIONS, attribute_keys=ATTRS, **kwargs)
    assert info.value.status_code == 422
    return {d["field"]: d["message"] for d in info.value.details}


def test_valid_values_become_tem_data() -> None:
    tem, text_keys = validate_params(
        PARAMS,
        good(startDate="2024-02-29", note="Hi {{memberId}}, call {{ phone }}", tpl="T2"),
        API_OPTIONS,
        attribute_keys=ATTRS,
    )
    assert tem == {
        "title": "Hello",
        "note": "Hi {{memberId}}, call {{ phone }}",
        "amount": 100,
        "startDate": "2024-02-29",
        "jump": "JUMP_H5",
        "tpl": "T2",
    }
    assert text_keys == ["note"]


def test_optional_values_may_be_absent_or_null() -> None:
    tem, text_keys = validate_params(
        PARAMS, good(startDate=None, tpl=None), API_OPTIONS, attribute_keys=ATTRS
    )
    assert "startDate" not in tem and "tpl" not in tem and "note" not in tem
    assert text_keys == []


def test_leaf_code_of_a_two_level_enum() -> None:
    tem, _ = validate_params(PARAMS, good(jump="JUMP_APP_CART"), API_OPTIONS, attribute_keys=ATTRS)
    assert tem["jump"] == "JUMP_APP_CART"
    errs = errors_of(good(jump="JUMP_APP"))
    assert "not one of the offered codes" in errs["params.jump"]
    assert leaf_codes(PARAMS[4]["enum"]["options"]) == {"JUMP_H5", "JUMP_APP_HOME", "JUMP_APP_CART"}


def test_every_invalid_value_is_named() -> None:
    errs = errors_of(
        {
            "title": "   ",
            "amount": True,
            "startDate": "2023-02-29",
            "jump": "NOPE",
            "tpl": "T9",
            "extra": 1,
        }
    )
    assert set(errs) == {
        "params.title",
        "params.amount",
        "params.startDate",
        "params.jump",
        "params.tpl",
        "params.extra",
    }
    assert "blank" in errs["params.title"]
    assert errs["params.amount"] == "must be a number"
    assert "real calendar date" in errs["params.startDate"]
    assert "T1, T2" in errs["params.tpl"]
    assert "not a template parameter" in errs["params.extra"]


def test_required_values_missing() -> None:
    errs = errors_of({})
    assert errs == {
        "params.title": "is required",
        "params.amount": "is required",
        "params.jump": "is required",
    }
    assert set(errors_of(None)) == {"params.title", "params.amount", "params.jump"}
    assert set(errors_of(good(title=None))) == {"params.title"}


@pytest.mark.parametrize(
    "value",
    ["2024-1-01", "20240101", "2024-01-01T00:00:00", "2024-13-01", "2024-04-31", 20240101, None],
)
def test_bad_dates(value: Any) -> None:
    if value is None:
        # null is "no value" for an optional parameter
        validate_params(PARAMS, good(startDate=None), API_OPTIONS, attribute_keys=ATTRS)
        return
    assert "params.startDate" in errors_of(good(startDate=value))


@pytest.mark.parametrize("value", ["100", True, False, float("inf"), float("nan"), [1], {"a": 1}])
def test_bad_numbers(value: Any) -> None:
    assert "params.amount" in errors_of(good(amount=value))


@pytest.mark.parametrize("value", [0, -3, 2.5, 10**15])
def test_good_numbers(value: Any) -> None:
    tem, _ = validate_params(PARAMS, good(amount=value), API_OPTIONS, attribute_keys=ATTRS)
    assert tem["amount"] == value


def test_text_rules() -> None:
    assert "at most 4000" in errors_of(good(title="x" * 4001))["params.title"]
    tem, _ = validate_params(PARAMS, good(title="x" * 4000), API_OPTIONS, attribute_keys=ATTRS)
    assert len(tem["title"]) == 4000
    assert errors_of(good(title=5))["params.title"] == "must be a string"
    msg = errors_of(good(title="Hi {{idCard}}"))["params.title"]
    assert "{{idCard}}" in msg and "memberId, phone" in msg
    # Optional text may be empty; braces that are not a placeholder stay text.
    tem, keys = validate_params(
        PARAMS, good(note="", title="{{ not a placeholder"), API_OPTIONS, attribute_keys=ATTRS
    )
    assert tem["note"] == "" and keys == []


def test_enum_must_be_a_string_code() -> None:
    assert "string" in errors_of(good(jump=1))["params.jump"]


def test_api_options_by_callable_and_missing() -> None:
    asked: list[str] = []

    def load(key: str) -> list[dict[str, Any]]:
        asked.append(key)
        return [{"code": "X", "name": "X", "children": [{"code": "X1", "name": "X1"}]}]

    tem, _ = validate_params(PARAMS, good(tpl="X1"), load, attribute_keys=ATTRS)
    assert tem["tpl"] == "X1" and asked == ["tpl"]
    with pytest.raises(InvalidInput) as info:
        validate_params(PARAMS, good(tpl="T1"), {}, attribute_keys=ATTRS)
    assert "no options were loaded" in info.value.details[0]["message"]


def test_values_must_be_an_object_and_prefix_is_configurable() -> None:
    assert errors_of([1, 2]) == {"params": "must be an object of template parameter values"}
    errs = errors_of({"amount": 1}, field_prefix="strategy.channels[0].params")
    assert "strategy.channels[0].params.title" in errs


def test_api_enum_keys() -> None:
    assert api_enum_keys(PARAMS) == ["tpl"]
    assert api_enum_keys(PARAMS, {"tpl": None}) == []
    assert api_enum_keys(PARAMS, {"tpl": "T1"}) == ["tpl"]
