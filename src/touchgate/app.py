"""The composition root of ``serve``: create_app() builds the REST API and the console
on one ASGI app, whose lifespan starts and stops the runtime's services in order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, console
from .api.limits import install_body_limit
from .api.responses import JSONResponse
from .audit import endpoints as audit_endpoints
from .auth import ensure_bootstrap_key
from .campaigns import endpoints as campaigns_endpoints
from .campaigns import scheduler
from .campaigns import service as campaigns_service
from .datastore import endpoints as datastore_endpoints
from .db import cancel_running_queries, statement_timeout
from .delivery import client as http_client
from .delivery import endpoints as delivery_endpoints
from .delivery import test_endpoints as delivery_test_endpoints
from .delivery import worker
from .doctor import endpoints as doctor_endpoints
from .errors import (
    DatabaseUnavailable,
    TouchgateError,
    field_detail,
    invalid_fields,
    pydantic_details,
)
from .keys import endpoints as keys_endpoints
from .outage import OutageLog, database_error
from .plugins import endpoints as plugins_endpoints
from .plugins.host import close_plugin_host, ensure_plugin_host
from .projects import endpoints as projects_endpoints
from .runtime import BackgroundTask, Runtime
from .touchpoints import endpoints as touchpoints_endpoints

log = logging.getLogger("touchgate")

ROUTERS = [
    projects_endpoints.router,
    keys_endpoints.router,
    audit_endpoints.router,
    datastore_endpoints.router,
    touchpoints_endpoints.router,
    delivery_endpoints.router,
    delivery_test_endpoints.router,
    doctor_endpoints.router,
    plugins_endpoints.router,
    campaigns_endpoints.router,
]


# What FastAPI says when a JSON body cannot even be decoded (invalid UTF-8).
_BODY_PARSE_ERROR = "There was an error parsing the body"


def _error_response(exc: TouchgateError) -> JSONResponse:
    headers = None
    if isinstance(exc, DatabaseUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def _internal_error(exc: BaseException) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    body = TouchgateError("Internal error; the server log has the details.").to_dict()
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI, outages: OutageLog | None = None) -> None:
    """Every error as ``{"error": {"code", "message", "params", "details"}}``, with
    a code for each field (see ``errors``): the console renders codes, not text.
    The database's absence is a 503 (see ``api.outage``), logged once per outage."""
    outages = outages or OutageLog()

    @app.exception_handler(TouchgateError)
    async def _touchgate_error(_: Request, exc: TouchgateError) -> JSONResponse:
        return _error_response(exc)

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        error = database_error(exc)
        if error is None:
            return _internal_error(exc)
        outages.failed(error, exc, f"{request.method} {request.url.path}")
        return _error_response(error)

    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, _database_error)

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
        error = database_error(exc)
        if error is not None:  # raised where the handlers above do not reach
            outages.failed(error, exc, "a request")
            return _error_response(error)
        return _internal_error(exc)


class StatementTimeout:
    """Every database statement of an HTTP request may run
    ``settings.api_statement_timeout`` seconds at most (PostgreSQL; see
    ``db.statement_timeout``), so no request hangs on a query."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = self.runtime.settings.api_statement_timeout
        if scope["type"] != "http" or not seconds:
            await self.app(scope, receive, send)
            return
        with statement_timeout(seconds):
            await self.app(scope, receive, send)


@asynccontextmanager
async def services(runtime: Runtime, *, background: bool = True) -> AsyncIterator[None]:
    """Start the runtime's services and stop them in dependency order.

    Started: the HTTP client (its sessions made on first use) and the plugin host
    (test sends and deliveries through plugins), then — with ``background`` —
    the delivery worker (when ``settings.run_worker``) and the campaign
    scheduler. Stopped in reverse: the
    scheduler stops making orders, the worker stops claiming and drains its
    in-flight sends, and only then do the plugin host and the HTTP client close,
    so no in-flight plugin call or request is cut off (which would burn a retry).
    """
    async with AsyncExitStack() as stack:
        stack.push_async_callback(http_client.close, runtime)
        ensure_plugin_host(runtime)  # its sandbox check shows in /readyz at once
        stack.callback(close_plugin_host, runtime)
        if background:
            worker.start_in_app(runtime)
            stack.push_async_callback(worker.stop_in_app, runtime)
            runtime.campaign_scheduler = BackgroundTask.start(
                "campaign scheduler", lambda stop: scheduler.run_forever(runtime, stop)
            )
            stack.push_async_callback(_stop_scheduler, runtime)
        yield


async def _stop_scheduler(runtime: Runtime) -> None:
    task, runtime.campaign_scheduler = runtime.campaign_scheduler, None
    if task is not None:
        await task.finish(runtime.settings.shutdown_seconds)


def create_app(runtime: Runtime | None = None, *, background: bool = True) -> FastAPI:
    """The API and the console on one app whose lifespan runs :func:`services`
    (``background=False``: no worker and no scheduler, for tests of the API alone)."""
    runtime = runtime or Runtime.from_settings()
    # What other domains must say before a touchpoint may be disabled.
    runtime.touchpoint_usage_checks = (campaigns_service.campaigns_using_touchpoint,)
    outages = OutageLog()
    outages.watch(runtime.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with runtime.tx() as session:
            ensure_bootstrap_key(session, runtime.settings.admin_token)
        try:
            async with services(runtime, background=background):
                yield
        finally:
            # Requests still waiting on the database when the server stops (it has
            # waited shutdown_seconds for them) end now instead of holding the exit.
            if n := cancel_running_queries(runtime.engine):
                log.warning("cancelled the queries of %d requests still running at shutdown", n)

    app = FastAPI(
        title="Touchgate",
        version=__version__,
        description="Custom touchpoints for marketing campaigns.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app, outages)
    install_body_limit(app)
    app.add_middleware(StatementTimeout, runtime=runtime)

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
        if runtime.plugin_host is not None:
            checks["plugin_sandbox"] = runtime.plugin_host.readiness()
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False, response_class=PlainTextResponse)
    def metrics() -> str:
        from .metrics import render

        return render(runtime)

    for router in ROUTERS:
        app.include_router(router, prefix="/api/v1")
    console.mount(app)
    return app
