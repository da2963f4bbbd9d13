"""The error tree. Every error a user can cause is one of these.

    TouchgateError                (500 internal)
    ├── InvalidInput              (422 invalid_input; ``details`` lists every invalid field)
    ├── Unauthorized              (401 unauthorized)
    ├── Forbidden                 (403 forbidden)
    ├── NotFound                  (404 not_found)
    └── Conflict                  (409, a code naming the state: touchpoint_enabled, …)

Each renders as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class TouchgateError(Exception):
    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


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
    ) -> None:
        if details is None:
            details = [{"field": field, "message": message}] if field else []
        super().__init__(message, code=code, details=details)


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


class FieldErrors:
    """Collects field errors so a request reports every problem at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "Some fields are invalid.") -> None:
        if self.items:
            first = self.items[0]
            summary = f"{first['field']}: {first['message']}"
            if len(self.items) > 1:
                summary += f" (and {len(self.items) - 1} more)"
            raise InvalidInput(f"{message} {summary}", details=self.items)
