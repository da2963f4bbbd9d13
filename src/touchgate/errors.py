"""The error tree. Every error a user can cause is one of these.

    TouchgateError                (500 internal)
    ├── InvalidInput              (422 invalid_input; ``details`` lists every invalid field)
    ├── Unauthorized              (401 unauthorized)
    ├── Forbidden                 (403 forbidden)
    ├── NotFound                  (404 not_found)
    └── Conflict                  (409, a code naming the state: touchpoint_enabled, …)

Each renders as ``{"error": {"code", "message", "params", "details"}}``.

Codes, not sentences, are the contract with the console: ``code`` (and each
detail's ``code``) is a stable machine word and ``params`` holds the values the
sentence needs, so the console renders the error in the reader's language with
field labels instead of paths. ``message`` stays an English sentence for scripts
and logs. A field detail is ``{"field", "code", "message", "params"}``.
"""

from __future__ import annotations

from typing import Any


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

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "Some fields are invalid.") -> None:
        if self.items:
            first = self.items[0]
            summary = f"{first['field']}: {first['message']}"
            if len(self.items) > 1:
                summary += f" (and {len(self.items) - 1} more)"
            raise InvalidInput(f"{message} {summary}", details=self.items)
