"""The error tree. Every error a user can cause is one of these.

    TouchgateError                (500 internal)
    ├── InvalidInput              (422 invalid_input; ``details`` lists every invalid field)
    ├── Unauthorized              (401 unauthorized)
    ├── Forbidden                 (403 forbidden)
    ├── NotFound                  (404 not_found)
    ├── Conflict                  (409, a code naming the state: touchpoint_enabled, …)
    └── DatabaseUnavailable       (503 database_unavailable, with ``Retry-After``)
        └── DatabaseTimeout       (503 database_timeout: a statement ran past its limit)

Each renders as ``{"error": {"code", "message", "params", "details"}}``.

Codes, not sentences, are the contract with the console: ``code`` (and each
detail's ``code``) is a stable machine word and ``params`` holds the values the
sentence needs, so the console renders the error in the reader's language with
field labels instead of paths. ``message`` stays an English sentence for scripts
and logs. A field detail is ``{"field", "code", "message", "params"}``.

How to give a message a code (and its translation):

- an error: ``Conflict("…", code="touchpoint_enabled", params={"name": name})``;
  the console shows ``error.code.<code>`` from its i18n files
  (``console/static/i18n/en.json`` and ``zh-CN.json``), ``{name}`` filled in;
- a field detail: ``errors.add("batch_size", "must be 1-500", code="out_of_range",
  min=1, max=500)`` or ``InvalidInput("…", field="q", field_code="nul_characters")``;
  the console shows ``field_error.<code>`` next to the field, labelled by the
  field's path (``template_params[0].key`` → "Parameter 1 · Key");
- in a Pydantic validator: ``raise PydanticCustomError("not_identifier", "must be
  an identifier", {})`` — its type becomes the detail's code, its ctx the params;
- Pydantic's own errors (``missing``, ``string_too_long``…) get our codes from
  :data:`PYDANTIC_CODES` (``required``, ``too_long`` with ``{max}``…).

A param whose name ends in ``field`` (``other_field``) holds a field path and is
shown as that field's label; a ``problem`` param holds a code of its own, shown
as ``problem.<code>`` (what was wrong with an answer: ``not_json``…). The test
send's findings and per-user notes are :class:`Coded` too (``diagnosis.<code>``,
``status_note.<code>``). Every NEW code needs a text in BOTH i18n files:
``tests/test_error_codes.py`` finds the codes in the source and fails otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core.core_schema import ErrorType


class Coded(BaseModel):
    """A message with its code and params (a diagnosis, a warning) in a response."""

    code: str
    message: str
    params: dict[str, Any] = {}


class FieldDetail(Coded):
    """A field detail (or a warning about one field) in a response."""

    field: str


class TouchgateError(Exception):
    status_code: int = 500
    code: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.params = params or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "params": self.params,
                "details": self.details,
            }
        }


class InvalidInput(TouchgateError):
    """One or more fields are invalid; ``details`` is a list of ``{field, message}``."""

    status_code = 422
    code = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
        field_code: str = "invalid",
        params: dict[str, Any] | None = None,
    ) -> None:
        if details is None:
            details = [field_detail(field, message, field_code, params)] if field else []
        super().__init__(message, code=code, details=details, params=params)


class Unauthorized(TouchgateError):
    status_code = 401
    code = "unauthorized"


class Forbidden(TouchgateError):
    status_code = 403
    code = "forbidden"


class NotFound(TouchgateError):
    status_code = 404
    code = "not_found"


class Conflict(TouchgateError):
    status_code = 409
    code = "conflict"


class DatabaseUnavailable(TouchgateError):
    """The database cannot be reached (an outage, a full pool, a locked SQLite file):
    not the caller's mistake, so a 503 the caller may retry after ``retry_after``."""

    status_code = 503
    code = "database_unavailable"
    retry_after = 5


class DatabaseTimeout(DatabaseUnavailable):
    code = "database_timeout"


def field_detail(
    field: str, message: str, code: str = "invalid", params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One invalid field: its full path, a stable code, an English sentence, and the
    values the sentence needs (``{"max": 15}``) for rendering it in other languages."""
    return {"field": field, "code": code, "message": message, "params": params or {}}


class FieldErrors:
    """Collects field errors so a request reports every problem at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, field: str, message: str, *, code: str = "invalid", **params: Any) -> None:
        """``errors.add("batch_size", "must be 1-500", code="out_of_range", min=1, max=500)``."""
        self.items.append(field_detail(field, message, code, params))

    def extend(self, details: Iterable[dict[str, Any]]) -> None:
        """Add details made elsewhere (``pydantic_details``, another service's error)."""
        self.items.extend(details)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "Some fields are invalid.") -> None:
        if self.items:
            raise invalid_fields(self.items, message)


def invalid_fields(
    details: Sequence[dict[str, Any]], message: str = "Some fields are invalid."
) -> InvalidInput:
    """One 422 for these field details; the English message names the first field."""
    items = list(details) or [field_detail("body", "invalid")]
    first = items[0]
    summary = f"{first['field']}: {first['message']}"
    if len(items) > 1:
        summary += f" (and {len(items) - 1} more)"
    return InvalidInput(f"{message} {summary}", details=items)


# ---------------------------------------------------------------- Pydantic's errors

# Pydantic's error type → (our field-detail code, {ctx key: param name}). Types
# not listed get the generic ``invalid``; a type Pydantic does not define is a
# ``PydanticCustomError`` of ours: its type is the code and its ctx the params.
# (So a custom code must not be one of Pydantic's type names, like ``too_long``:
# it would be read as Pydantic's own. tests/test_error_codes.py checks.)
PYDANTIC_CODES: dict[str, tuple[str, dict[str, str]]] = {
    "missing": ("required", {}),
    "extra_forbidden": ("unknown_field", {}),
    "json_invalid": ("invalid_json", {"error": "error"}),
    "json_type": ("invalid_json", {}),
    "string_too_long": ("too_long", {"max_length": "max"}),
    "string_too_short": ("too_short", {"min_length": "min"}),
    "too_long": ("too_many_items", {"max_length": "max"}),
    "too_short": ("too_few_items", {"min_length": "min"}),
    "greater_than_equal": ("min_value", {"ge": "min"}),
    "greater_than": ("greater_than", {"gt": "limit"}),
    "less_than_equal": ("max_value", {"le": "max"}),
    "less_than": ("less_than", {"lt": "limit"}),
    "multiple_of": ("multiple_of", {"multiple_of": "factor"}),
    "finite_number": ("not_finite", {}),
    "literal_error": ("not_one_of", {"expected": "expected"}),
    "enum": ("not_one_of", {"expected": "expected"}),
    "union_tag_invalid": (
        "unknown_kind",
        {"discriminator": "key", "tag": "value", "expected_tags": "expected"},
    ),
    "union_tag_not_found": ("kind_missing", {"discriminator": "key"}),
    "string_pattern_mismatch": ("pattern_mismatch", {"pattern": "pattern"}),
    "string_type": ("not_text", {}),
    "string_unicode": ("not_text", {}),
    "int_type": ("not_integer", {}),
    "int_parsing": ("not_integer", {}),
    "int_from_float": ("not_integer", {}),
    "int_parsing_size": ("integer_too_large", {}),
    "float_type": ("not_number", {}),
    "float_parsing": ("not_number", {}),
    "bool_type": ("not_boolean", {}),
    "bool_parsing": ("not_boolean", {}),
    "list_type": ("not_list", {}),
    "tuple_type": ("not_list", {}),
    "set_type": ("not_list", {}),
    "iterable_type": ("not_list", {}),
    "dict_type": ("not_object", {}),
    "mapping_type": ("not_object", {}),
    "model_type": ("not_object", {}),
    "model_attributes_type": ("not_object", {}),
    "dataclass_type": ("not_object", {}),
    "date_type": ("not_date", {}),
    "date_parsing": ("not_date", {}),
    "date_from_datetime_parsing": ("not_date", {}),
    "date_from_datetime_inexact": ("not_date", {}),
    "datetime_type": ("not_datetime", {}),
    "datetime_parsing": ("not_datetime", {}),
    "datetime_object_invalid": ("not_datetime", {}),
    "datetime_from_date_parsing": ("not_datetime", {}),
    "timezone_aware": ("needs_timezone", {}),
    "time_type": ("not_time", {}),
    "time_parsing": ("not_time", {}),
    "url_type": ("invalid_url", {}),
    "url_parsing": ("invalid_url", {}),
    "url_syntax_violation": ("invalid_url", {}),
    "url_scheme": ("invalid_url", {}),
    "url_too_long": ("invalid_url", {}),
    "recursion_loop": ("too_deep", {}),
    "recursion_depth_exceeded": ("too_deep", {}),
}
PYDANTIC_TYPES = frozenset(get_args(ErrorType))
_LENGTH_CODES = {"too_long": "too_long", "too_short": "too_short"}
_COLLECTIONS = frozenset({"List", "Tuple", "Set", "Frozenset", "Dict", "Deque", "Generator"})
_PLAIN_MESSAGES = {"missing": "required", "extra_forbidden": "unknown field"}


def field_path(loc: Iterable[int | str], prefix: str = "") -> str:
    """A location as the API names fields: ``("body", "template_params", 1, "key")``
    → ``template_params[1].key`` (under ``prefix`` when given)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _plain(value: Any) -> Any:
    """A param as JSON: text, numbers and booleans as they are, anything else as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _choices(expected: str) -> str:
    """Pydantic's ``"'sync' or 'async'"`` as ``sync, async``: no English word in it."""
    return re.sub(r"'([^']*)'", r"\1", expected).replace(" or ", ", ")


def pydantic_detail(error: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One Pydantic error as a field detail with our code and params."""
    kind = str(error.get("type"))
    ctx = error.get("ctx") or {}
    if kind == "json_invalid":
        # The position is not a field: the whole body is unreadable.
        field = prefix or "body"
        message = "The body is not valid JSON: " + str(ctx.get("error", "invalid"))
    else:
        field = field_path(error.get("loc", ()), prefix)
        message = _PLAIN_MESSAGES.get(kind) or str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
    if kind not in PYDANTIC_TYPES:
        return field_detail(field, message, kind, {k: _plain(v) for k, v in ctx.items()})
    code, renames = PYDANTIC_CODES.get(kind, ("invalid", {}))
    if kind in _LENGTH_CODES and ctx.get("field_type") not in _COLLECTIONS:
        # A length constraint checked after a validator (``names.Name``) comes as
        # the generic too_long of a "Value": for text, that is characters.
        code = _LENGTH_CODES[kind]
    params = {name: _plain(ctx[key]) for key, name in renames.items() if key in ctx}
    for name in ("expected", "key"):  # quoted names and choices, as Pydantic gives them
        if isinstance(params.get(name), str):
            params[name] = _choices(params[name])
    return field_detail(field, message, code, params)


def pydantic_details(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    """Every error of a ``ValidationError`` (``exc.errors()``) as field details."""
    return [pydantic_detail(error, prefix) for error in errors]
