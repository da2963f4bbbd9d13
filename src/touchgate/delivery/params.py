"""Template parameter values: checking what an operator typed in for a touchpoint's
declared template parameters, and turning it into the ``temData`` of the wire
protocol.

Rules (``wire-protocol.md`` §1, ``product.md``):
- every required parameter has a value; keys the touchpoint does not declare are
  rejected; an optional parameter given ``null`` is left out;
- ``date``: a string ``YYYY-MM-DD`` naming a real calendar date;
- ``number``: a JSON number (not a boolean), finite;
- ``enum``: one of the offered codes — for two-level options the leaf code, a
  category's own code is not selectable — from manual options or the options API;
- ``text``: a string of at most 4,000 characters (a required one not blank); it
  may contain ``{{attributeKey}}`` placeholders, filled per user at delivery.

Placeholders may name only the touchpoint's own user attributes (its
``user_attributes``): those are the values every delivery carries, the ones an
integrator types into a test send, and sensitive attributes can never be among
them, so a template cannot leak a masked value.

Every invalid value is reported at once, each under ``params.<key>`` (the prefix
is configurable for callers nesting the values deeper).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date
from typing import Any

from ..errors import Coded, FieldErrors, TouchgateError, field_detail
from ..models import Touchpoint
from ..runtime import Runtime
from .options import OptionsApiFailed, OptionsSource, fetch_options, options_source, run_async
from .protocol import placeholder_keys, placeholders

TEXT_MAX = 4000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Options = list[dict[str, Any]]
# API enum options by parameter key: a mapping fetched beforehand, or a function
# that fetches (``options.load_api_options`` wrapped for one touchpoint) and raises
# LookupError (``from`` the options API's error) when it cannot.
EnumOptions = Mapping[str, Options] | Callable[[str], Options]


def leaf_codes(options: Sequence[Mapping[str, Any]]) -> set[str]:
    """The selectable codes: an option's code, or its children's codes when it is a
    category."""
    codes: set[str] = set()
    for option in options:
        children = option.get("children")
        if children:
            codes.update(str(c.get("code")) for c in children if c.get("code") is not None)
        elif option.get("code") is not None:
            codes.add(str(option["code"]))
    return codes


class OptionsNotLoaded(LookupError):
    """The caller did not load the options of an API enum it asked to check."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no options were loaded for the API enum {key!r}")
        self.key = key


def _invalid_value(code: str, message: str, params: dict[str, Any] | None = None) -> Coded:
    return Coded(code=code, message=message, params=params or {})


def _enum_options(param: Mapping[str, Any], enum_options: EnumOptions | None) -> Options:
    spec = param.get("enum") or {}
    if spec.get("source", "manual") == "api":
        key = str(param.get("key"))
        if enum_options is None:
            raise OptionsNotLoaded(key)
        if callable(enum_options):
            return enum_options(key)
        if key not in enum_options:
            raise OptionsNotLoaded(key)
        return list(enum_options[key])
    return list(spec.get("options") or [])


def _check_value(
    param: Mapping[str, Any],
    value: Any,
    enum_options: EnumOptions | None,
    attribute_keys: Collection[str],
) -> Coded | None:
    """The problem with one non-null value, or ``None`` when it is valid."""
    kind = param.get("type")
    if kind == "date":
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            return _invalid_value("not_date", "must be a date string YYYY-MM-DD")
        try:
            date.fromisoformat(value)
        except ValueError:
            return _invalid_value(
                "not_calendar_date", f"{value!r} is not a real calendar date", {"value": value}
            )
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _invalid_value("not_number", "must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            return _invalid_value("not_finite", "must be a finite number")
        return None
    if kind == "enum":
        if not isinstance(value, str):
            return _invalid_value("option_not_text", "must be one of the option codes (a string)")
        codes = leaf_codes(_enum_options(param, enum_options))
        if value not in codes:
            shown = ", ".join(sorted(codes)[:20]) or "none"
            more = " …" if len(codes) > 20 else ""
            return _invalid_value(
                "not_an_option",
                f"{value!r} is not one of the offered codes ({shown}{more})",
                {"value": value, "codes": shown + more},
            )
        return None
    if kind == "text":
        if not isinstance(value, str):
            return _invalid_value("not_text", "must be a string")
        if len(value) > TEXT_MAX:
            return _invalid_value(
                "too_long",
                f"must be at most {TEXT_MAX} characters (got {len(value)})",
                {"max": TEXT_MAX, "got": len(value)},
            )
        if param.get("required") and not value.strip():
            return _invalid_value("required", "is required and must not be blank")
        unknown = [p for p in placeholders(value) if p not in attribute_keys]
        if unknown:
            allowed = ", ".join(attribute_keys) or "none"
            return _invalid_value(
                "unknown_placeholder",
                f"placeholder {{{{{unknown[0]}}}}} does not name one of the touchpoint's "
                f"user attributes ({allowed})",
                {"placeholder": unknown[0], "allowed": allowed},
            )
        return None
    return _invalid_value(
        "unknown_param_type",
        f"the touchpoint declares an unknown parameter type {kind!r}",
        {"type": str(kind)},
    )


def _options_problem(key: str, exc: LookupError) -> Coded:
    """A loader's failure (an ``EnumOptions`` function raises LookupError, from the
    options API's own error when there is one) as the value's problem."""
    cause = exc.__cause__
    if isinstance(cause, TouchgateError):
        return _invalid_value(cause.code, str(exc), dict(cause.params))
    return _invalid_value("options_not_loaded", str(exc), {"key": key})


def validate_params(
    touchpoint_params: Sequence[Mapping[str, Any]],
    values: Any,
    enum_options: EnumOptions | None = None,
    *,
    attribute_keys: Collection[str] = (),
    field_prefix: str = "params",
) -> tuple[dict[str, Any], list[str]]:
    """Check ``values`` against the declared parameters.

    Returns ``(tem_data, text_keys)``: the values to send, and the keys of the
    text values holding placeholders (rendered per user). Raises ``InvalidInput``
    naming every invalid value; an options API that cannot be reached raises its
    own error (502 ``options_api_failed``).
    """
    errors = FieldErrors()
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        errors.add(
            field_prefix, "must be an object of template parameter values", code="not_object"
        )
        errors.raise_if_any()
    declared = {str(p.get("key")): p for p in touchpoint_params}
    tem_data: dict[str, Any] = {}
    for key in values:
        if key not in declared:
            errors.add(
                f"{field_prefix}.{key}",
                "is not a template parameter of this touchpoint",
                code="not_a_param",
                key=str(key),
            )
    for key, param in declared.items():
        value = values.get(key)
        field_name = f"{field_prefix}.{key}"
        if value is None:
            if param.get("required"):
                errors.add(field_name, "is required", code="required")
            continue
        try:
            problem = _check_value(param, value, enum_options, attribute_keys)
        except LookupError as exc:
            problem = _options_problem(key, exc)
        if problem is not None:
            errors.add(field_name, problem.message, code=problem.code, **problem.params)
            continue
        tem_data[key] = value
    errors.raise_if_any("Some template parameter values are invalid.")
    return tem_data, placeholder_keys(touchpoint_params, tem_data)


def api_enum_keys(touchpoint_params: Sequence[Mapping[str, Any]], values: Any = None) -> list[str]:
    """Keys of the enum parameters whose options come from the options API (only
    those with a value in ``values`` when given: nothing else needs fetching)."""
    keys = [
        str(p.get("key"))
        for p in touchpoint_params
        if p.get("type") == "enum" and (p.get("enum") or {}).get("source") == "api"
    ]
    if isinstance(values, Mapping):
        keys = [k for k in keys if values.get(k) is not None]
    return keys


# ---------------------------------------------------------------- with a touchpoint


def api_option_sources(
    runtime: Runtime, touchpoint: Touchpoint, values: Any = None
) -> dict[str, OptionsSource]:
    """The options APIs to ask for the values given (read inside a transaction)."""
    return {
        key: options_source(runtime, touchpoint, key)
        for key in api_enum_keys(touchpoint.template_params or [], values)
    }


async def fetch_enum_options(
    runtime: Runtime, sources: Mapping[str, OptionsSource], *, field_prefix: str = "params"
) -> dict[str, Options]:
    """Options of every API enum in ``sources``, fetched concurrently (cached for
    5 minutes). A failure names the parameter in ``details``."""
    keys = list(sources)
    results = await asyncio.gather(
        *(fetch_options(runtime, sources[k]) for k in keys), return_exceptions=True
    )
    fetched: dict[str, Options] = {}
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, OptionsApiFailed):
            raise OptionsApiFailed(
                f"The options of {field_prefix}.{key} could not be loaded: {result.message}",
                params=result.params,
                details=[
                    field_detail(
                        f"{field_prefix}.{key}", result.message, result.code, result.params
                    )
                ],
            )
        if isinstance(result, BaseException):
            raise result
        fetched[key] = result
    return fetched


async def validate_for_touchpoint(
    runtime: Runtime, touchpoint: Touchpoint, values: Any, *, field_prefix: str = "params"
) -> tuple[dict[str, Any], list[str]]:
    """``validate_params`` for a touchpoint, fetching the API enum options it needs.

    Everything needed from ``touchpoint`` is read before the first ``await``, so
    the ORM object may belong to a session that is closed afterwards.
    """
    declared = list(touchpoint.template_params or [])
    attribute_keys = list(touchpoint.user_attributes or [])
    sources = api_option_sources(runtime, touchpoint, values)
    fetched = await fetch_enum_options(runtime, sources, field_prefix=field_prefix)
    return validate_params(
        declared, values, fetched, attribute_keys=attribute_keys, field_prefix=field_prefix
    )


def validate_for_touchpoint_sync(
    runtime: Runtime, touchpoint: Touchpoint, values: Any, *, field_prefix: str = "params"
) -> tuple[dict[str, Any], list[str]]:
    """``validate_for_touchpoint`` for synchronous code (a service inside a
    transaction): options are fetched through ``options.run_async``."""
    declared = list(touchpoint.template_params or [])
    attribute_keys = list(touchpoint.user_attributes or [])
    sources = api_option_sources(runtime, touchpoint, values)
    fetched: dict[str, Options] = {}
    if sources:
        fetched = run_async(
            runtime, lambda: fetch_enum_options(runtime, sources, field_prefix=field_prefix)
        )
    return validate_params(
        declared, values, fetched, attribute_keys=attribute_keys, field_prefix=field_prefix
    )
