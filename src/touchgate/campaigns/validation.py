"""Input checking shared by the campaign models: Pydantic errors in this project's
words (a stable ``code``, the ``params`` its sentence needs, the API's field paths),
and small value types whose refusals carry such codes.

Union members are tagged ``<name>`` (see :func:`tagged`) so their tags can be told
from field names and left out of the paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import (
    PYDANTIC_TYPES,
    FieldErrors,
    InvalidInput,
    field_detail,
    field_path,
    pydantic_detail,
)
from ..names import normalize_name

# A request naming a million bad gids gets the first ones, not a million details.
MAX_REPORTED_ERRORS = 200
M = TypeVar("M", bound=BaseModel)


# --- errors -----------------------------------------------------------------------


class Problems:
    """Several errors at locations below the value being validated, raised at once
    (Pydantic prefixes them with the value's own location)."""

    def __init__(self) -> None:
        self.items: list[InitErrorDetails] = []

    def add(self, loc: tuple[str | int, ...], code: str, template: str, **params: Any) -> None:
        self.items.append(
            InitErrorDetails(type=PydanticCustomError(code, template, params), loc=loc, input=None)
        )

    def raise_if_any(self, title: str) -> None:
        if self.items:
            raise ValidationError.from_exception_data(title, self.items)

    def raise_with(self, exc: ValidationError) -> None:
        """Raise ``exc``'s errors and these together (both relative to the value)."""
        carried: list[InitErrorDetails] = []
        for err in exc.errors(include_url=False):
            kind = str(err["type"])
            detail = InitErrorDetails(
                type=PydanticCustomError(kind, str(err["msg"]), dict(err.get("ctx") or {}))
                if kind not in PYDANTIC_TYPES
                else cast(Any, kind),
                loc=tuple(err["loc"]),
                input=err.get("input"),
            )
            if kind in PYDANTIC_TYPES and "ctx" in err:
                detail["ctx"] = err["ctx"]
            carried.append(detail)
        raise ValidationError.from_exception_data(exc.title, carried + self.items)


def field_errors(exc: ValidationError, errors: FieldErrors) -> None:
    """Add every error of ``exc`` to ``errors`` under its API path."""
    for err in exc.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        loc: list[str | int] = [
            p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<"))
        ]
        # One mapping from Pydantic's error types to codes, the API's (errors.py).
        detail = pydantic_detail({**err, "loc": loc})
        discriminator = detail["params"].pop("discriminator", None)
        if discriminator is not None:
            # A tagged union: a value that is no object at all, or the tag word.
            if not isinstance(err.get("input"), dict):
                detail = field_detail(detail["field"], "must be an object", "not_object")
            else:
                detail["field"] = field_path([*loc, str(discriminator)])
        errors.extend([detail])


# --- small typed values -------------------------------------------------------------

INPUT = ConfigDict(extra="forbid", strict=True)


class Model(BaseModel):
    model_config = INPUT


def one_of(*allowed: str) -> BeforeValidator:
    """A closed set of words, refused with the list of what is allowed."""
    words = list(allowed)

    def check(value: Any) -> Any:
        if value not in words:
            raise PydanticCustomError(
                "not_one_of", "must be one of {allowed}", {"allowed": ", ".join(words)}
            )
        return value

    return BeforeValidator(check)


def int_range(low: int, high: int) -> BeforeValidator:
    """A whole number in [low, high] (booleans and strings are not numbers)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError(
                "wrong_type", "must be a whole number", {"expected": "integer"}
            )
        if not low <= value <= high:
            raise PydanticCustomError(
                "out_of_range", "must be {min}–{max}", {"min": low, "max": high}
            )
        return value

    return BeforeValidator(check)


def text(max_len: int) -> BeforeValidator:
    """A name or short text as people type it (NFC, stripped, not blank, no control or
    bidirectional override characters: ``names.normalize_name``), of at most
    ``max_len`` characters."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError("wrong_type", "must be a string", {"expected": "string"})
        cleaned = normalize_name(value)
        if len(cleaned) > max_len:
            raise PydanticCustomError("text_too_long", "at most {max} characters", {"max": max_len})
        return cleaned

    return BeforeValidator(check)


def tagged(
    key: str,
    models: Mapping[str, type[BaseModel]],
    pick: Callable[[Any], str | None] | None = None,
) -> Discriminator:
    """A union told apart by the word at ``key`` (members tagged ``<word>``); a wrong
    or missing word is reported at ``<path>.<key>`` with the words allowed.
    ``pick`` replaces the plain lookup where one word covers several members."""
    words = list(models)

    def by_word(value: Any) -> str | None:
        if isinstance(value, dict):
            word = value.get(key)
            return f"<{word}>" if isinstance(word, str) and word in models else None
        for word, model in models.items():
            if isinstance(value, model):
                return f"<{word}>"
        return None

    return Discriminator(
        pick or by_word,
        custom_error_type="not_one_of",
        custom_error_message=f"must be one of {', '.join(words)}",
        custom_error_context={"discriminator": key, "allowed": ", ".join(words)},
    )


def parse_input(model: type[M], data: Any, *, context: Any = None, message: str = "") -> M:
    """``model`` from request data, or InvalidInput naming every invalid field."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errors = FieldErrors()
        field_errors(exc, errors)
        errors.raise_if_any(message or "Some fields are invalid.")
        raise InvalidInput("Some fields are invalid.") from None


def not_one_of(field: str, allowed: Sequence[str]) -> InvalidInput:
    """A query parameter outside its closed set of words."""
    words = ", ".join(allowed)
    return InvalidInput(
        f"{field} must be one of {words}",
        field=field,
        field_code="not_one_of",
        params={"allowed": words},
    )
