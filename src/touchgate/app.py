"""create_app(): the REST API (and, when present, the console) on one ASGI app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .api.limits import install_body_limit
from .api.responses import JSONResponse
from .auth import ensure_bootstrap_key
from .errors import TouchgateError, field_detail, invalid_fields, pydantic_details
from .runtime import Runtime

log = logging.getLogger("touchgate")

# Each domain registers its router here; ``include_routers`` mounts them all.
ROUTER_MODULES = [
    "touchgate.projects.endpoints",
    "touchgate.keys.endpoints",
    "touchgate.audit.endpoints",
]
OPTIONAL_ROUTER_MODULES = [
    "touchgate.datastore.endpoints",
    "touchgate.touchpoints.endpoints",
    "touchgate.delivery.endpoints",
    "touchgate.delivery.test_endpoints",
    "touchgate.doctor.endpoints",
    "touchgate.plugins.endpoints",
    "touchgate.campaigns.endpoints",
]
# Hooks run at start-up/shut-down (workers, plugin hosts…), registered by domains.
LifecycleHook = Callable[[Runtime], Any]


# What FastAPI says when a JSON body cannot even be decoded (invalid UTF-8).
_BODY_PARSE_ERROR = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"code", "message", "params", "details"}}``, with
    a code for each field (see ``errors``): the console renders codes, not text."""

    @app.exception_handler(TouchgateError)
    async def _touchgate_error(_: Request, exc: TouchgateError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_fields(pydantic_details(exc.errors()), "Invalid input:")
        return JSONResponse(error.to_dict(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            # Bytes that are not UTF-8 never reach the JSON parser: the same
            # answer as any other unreadable body, not a bare 400.
            error = invalid_fields(
                [
                    field_detail(
                        "body",
                        "The body is not valid JSON: it is not UTF-8 text",
                        "invalid_json",
                        {"error": "not UTF-8"},
                    )
                ],
                "Invalid input:",
            )
            return JSONResponse(error.to_dict(), status_code=error.status_code)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        body = TouchgateError(str(exc.detail), code=code).to_dict()
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        body = TouchgateError("Internal error; the server log has the details.").to_dict()
        return JSONResponse(body, status_code=500)


def create_app(runtime: Runtime | None = None, *, start_hooks: bool = True) -> FastAPI:
    runtime = runtime or Runtime.from_settings()
    hooks: list[tuple[LifecycleHook, LifecycleHook | None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with runtime.tx() as session:
            ensure_bootstrap_key(session, runtime.settings.admin_token)
        stops = []
        if start_hooks:
            for start, stop in app.state.hooks:
                res = start(runtime)
                if hasattr(res, "__await__"):
                    await res
                stops.append(stop)
        try:
            yield
        finally:
            for stop in reversed(stops):
                if stop is not None:
                    res = stop(runtime)
                    if hasattr(res, "__await__"):
                        await res

    app = FastAPI(
        title="Touchgate",
        version=__version__,
        description="Custom touchpoints for marketing campaigns.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.hooks = hooks
    install_error_handlers(app)
    install_body_limit(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        checks: dict[str, Any] = {}
        ok = True
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # report, don't crash: this is a probe
            ok = False
            checks["database"] = f"unreachable: {type(exc).__name__}"
        for name, probe in runtime.extras.get("readiness", {}).items():
            checks[name] = probe()
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False, response_class=PlainTextResponse)
    def metrics() -> str:
        from .metrics import render

        return render(runtime)

    import importlib

    for name in ROUTER_MODULES + OPTIONAL_ROUTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_ROUTER_MODULES and exc.name and name.startswith(exc.name):
                continue
            raise
        app.include_router(module.router, prefix="/api/v1")
        register = getattr(module, "register_hooks", None)
        if register is not None:
            register(hooks)

    try:
        console = importlib.import_module("touchgate.console")
    except ModuleNotFoundError as exc:
        if not (exc.name and "touchgate.console".startswith(exc.name)):
            raise
    else:
        console.mount(app)
    return app
