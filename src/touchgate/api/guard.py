"""The route class of every API route: access is checked before anything else.

A route declares its access with :func:`touchgate.auth.requires` right under its
``@router.<method>`` line. :class:`GuardedRoute` authenticates the caller and
checks that declaration as soon as the path matched — before the body is read,
parsed or validated — so a viewer posting a malformed body gets 403, not 422,
and a route without a declaration refuses every call (and fails the route ×
role test). Domain routers are made with :func:`api_router`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..auth import MAX_ID, Access, Principal, authenticate, authorize, declared_access
from ..errors import Forbidden, InvalidInput, NotFound
from ..models.base import utcnow
from ..runtime import Runtime

PRINCIPAL_STATE = "touchgate_principal"


class ErrorDetail(BaseModel):
    field: str
    code: str | None = None
    message: str
    params: dict[str, Any] | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    params: dict[str, Any] | None = None
    details: Any = None


class ErrorBody(BaseModel):
    """Every error: ``{"error": {"code", "message", "params", "details"}}``."""

    error: ErrorInfo


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What any guarded route can answer besides its own success, so the OpenAPI
# document lists every status the API gives (schemathesis checks it in CI).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The request cannot be read (bad encoding or framing)."),
    401: _error("Missing, unknown, revoked or expired API key."),
    403: _error("The key's role, project or spaces do not allow this."),
    404: _error("An id in the path does not exist (or is out of range)."),
    405: _error("The path exists but not with this method."),
    409: _error("The current state does not allow this; the code names the state."),
    413: _error("body_too_large: the JSON body is over the limit (8 MiB)."),
    415: _error("The content type is not one this route reads."),
    422: _error("Invalid input; details lists every invalid field."),
}


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _is_row_id(name: str) -> bool:
    """Path parameters naming a row (``pid``, ``plugin_id``…); a ``gid`` is a
    64-bit user id and an ``order_no`` is text."""
    return name in ("pid", "sid", "tid", "cid") or name.endswith("_id")


def _check_params(request: Request) -> None:
    """Path and query values no route can use: NUL (PostgreSQL refuses it in text)
    is invalid input; an id beyond what the database holds can only be unknown,
    404, before any query could overflow (SQLite ≥ 2^63, PostgreSQL ≥ 2^31)."""
    path_params: dict[str, Any] = request.path_params
    for name, raw in [*path_params.items(), *request.query_params.multi_items()]:
        if isinstance(raw, str) and "\x00" in raw:
            raise InvalidInput(
                f"{name} must not contain NUL characters.", field=name, field_code="nul_character"
            )
    for name, raw in path_params.items():
        number = isinstance(raw, str) and _INTEGER.fullmatch(raw) is not None
        if _is_row_id(name) and number and not 0 < int(raw) <= MAX_ID:
            raise NotFound(f"{name} {raw} does not exist.", params={"field": name, "value": raw})


def _check(runtime: Runtime, access: Access, request: Request) -> Principal:
    with runtime.tx() as session:
        principal = authenticate(session, request.headers.get("authorization"), utcnow())
        authorize(session, principal, access, request.path_params)
    _check_params(request)
    return principal


class GuardedRoute(APIRoute):
    """Checks the route's declared access before FastAPI reads the request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Set first: APIRoute.__init__ builds the handler (get_route_handler).
        self.access = declared_access(endpoint)
        responses = dict(ERROR_RESPONSES)
        responses.update(kwargs.pop("responses", None) or {})
        super().__init__(path, endpoint, responses=responses, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        access = self.access
        name = f"{','.join(sorted(self.methods or ()))} {self.path}"

        async def guarded(request: Request) -> Response:
            if access is None:  # fail closed; tests/test_access.py names the route
                raise Forbidden(
                    f"The route {name} declares no access, so it refuses every call.",
                    params={"reason": "undeclared"},
                )
            runtime: Runtime = request.app.state.runtime
            principal = await run_in_threadpool(_check, runtime, access, request)
            setattr(request.state, PRINCIPAL_STATE, principal)
            return await handler(request)

        return guarded


def api_router(tags: list[str | Enum], route_class: type[GuardedRoute] = GuardedRoute) -> APIRouter:
    """A domain's router; its routes are guarded."""
    return APIRouter(tags=tags, route_class=route_class)


def request_principal(request: Request) -> Principal:
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(principal, Principal):
        # Only a route outside GuardedRoute could get here; refuse rather than guess.
        raise Forbidden("This route is not guarded.", params={"reason": "undeclared"})
    return principal
