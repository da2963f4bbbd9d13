"""Enum options from a touchpoint's options API (``wire-protocol.md`` §6).

``load_api_options(runtime, touchpoint_id, param_key)`` POSTs
``{"projectId", "paramDescription", "paramName"}`` to the parameter's options
URL, signed with the Standard Webhooks headers like every other request (the
``webhook-id`` is a fresh id per call), through the guarded HTTP client, and
returns ``[{code, name, children?}]`` (``description`` → ``name``,
``childEnumArgs`` → ``children``; two levels at most).

Answers are cached for ``CACHE_SECONDS`` (5 minutes) per (touchpoint, parameter,
URL). When a refresh fails and earlier options exist, those last good options
are returned: the failure is logged as a warning and kept for the caller to show
(``refresh_warning``). With nothing to fall back on, a failure raises
``OptionsApiFailed`` (HTTP 502, ``options_api_failed``) with a message that says
what went wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..errors import InvalidInput, NotFound, TouchgateError
from ..models import Touchpoint
from ..models.base import utcnow
from ..runtime import Runtime
from . import protocol
from .client import get_client

log = logging.getLogger("touchgate.delivery.options")

CACHE_SECONDS = 300.0
OPTIONS_WARN_THRESHOLD = 100
PREVIEW_TIMEOUT_SECONDS = 15

T = TypeVar("T")


class OptionsApiFailed(TouchgateError):
    """The options API could not give usable options (and none were cached).

    ``params["problem"]`` says what went wrong as a code (``not_json``,
    ``http_status``…), with the values its sentence needs beside it."""

    status_code = 502
    code = "options_api_failed"


def _failed(problem: str, message: str, **params: Any) -> OptionsApiFailed:
    return OptionsApiFailed(message, params={"problem": problem, **params})


@dataclass(frozen=True)
class OptionsSource:
    """Everything needed to call one parameter's options API, read from the
    database before any network I/O (no ORM object crosses an ``await``)."""

    # None for a touchpoint not saved yet (an options-preview).
    touchpoint_id: int | None
    project_id: int
    param_key: str
    param_name: str
    url: str
    signing_secrets: tuple[str, ...]
    timeout: float
    max_in_flight: int | None


@dataclass
class _Entry:
    options: list[dict[str, Any]]
    fetched_at: float
    warning: str | None = None


# (touchpoint id, parameter key, URL) → the options last read; ``Runtime.options_cache``.
OptionsCache = dict[tuple[int | None, str, str], _Entry]


def _cache(runtime: Runtime) -> OptionsCache:
    return runtime.options_cache


def parse_options(body: bytes) -> list[dict[str, Any]]:
    """Read an options API answer; raises ``OptionsApiFailed`` saying what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _failed(
            "not_json",
            f"The options API answered with something that is not JSON ({exc}).",
            error=str(exc),
        ) from None
    if not isinstance(doc, dict):
        raise _failed("not_object", "The options API answer is not a JSON object.")
    code = doc.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise _failed("no_code", "The options API answer has no integer 'code'.")
    if code != 0:
        message = doc.get("message")
        said = f": {message}" if message else ""
        raise _failed(
            "refused",
            f"The options API refused with code {code}{said}.",
            api_code=code,
            said=str(message or ""),
        )
    raw = doc.get("enumArgs")
    if not isinstance(raw, list):
        raise _failed("no_enum_args", "The options API answer has no 'enumArgs' list.")
    return [_option(item, f"enumArgs[{i}]", depth=1) for i, item in enumerate(raw)]


def _option(item: Any, where: str, *, depth: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _failed(
            "option_not_object", f"The options API answer's {where} is not an object.", where=where
        )
    code = item.get("code")
    if isinstance(code, bool) or not isinstance(code, str | int) or str(code).strip() == "":
        raise _failed(
            "option_no_code", f"The options API answer's {where} has no 'code'.", where=where
        )
    name = item.get("description")
    if name is None or (isinstance(name, str) and not name.strip()):
        name = code
    if not isinstance(name, str | int | float) or isinstance(name, bool):
        raise _failed(
            "option_name_not_text",
            f"The options API answer's {where}.description is not text.",
            where=f"{where}.description",
        )
    option: dict[str, Any] = {"code": str(code), "name": str(name)}
    children = item.get("childEnumArgs")
    if children:
        if depth >= 2:
            raise _failed(
                "too_deep",
                f"The options API answer nests options more than two levels deep "
                f"({where}.childEnumArgs); only category → option is supported.",
                where=f"{where}.childEnumArgs",
            )
        if not isinstance(children, list):
            raise _failed(
                "children_not_list",
                f"The options API answer's {where}.childEnumArgs is not a list.",
                where=f"{where}.childEnumArgs",
            )
        option["children"] = [
            _option(child, f"{where}.childEnumArgs[{j}]", depth=depth + 1)
            for j, child in enumerate(children)
        ]
    return option


def _count(options: list[dict[str, Any]]) -> int:
    return sum(len(o["children"]) if o.get("children") else 1 for o in options)


def options_source(runtime: Runtime, touchpoint: Touchpoint, param_key: str) -> OptionsSource:
    """The options API of one parameter of ``touchpoint`` (read inside a transaction)."""
    from ..touchpoints.service import signing_secrets

    param = next((p for p in touchpoint.template_params or [] if p.get("key") == param_key), None)
    if param is None:
        raise NotFound(
            f"The touchpoint has no template parameter {param_key!r}.", params={"key": param_key}
        )
    enum = param.get("enum") or {}
    if param.get("type") != "enum" or enum.get("source") != "api" or not enum.get("url"):
        raise InvalidInput(
            f"Template parameter {param_key!r} is not an enum whose options come from an API.",
            field="key",
            field_code="not_api_enum",
            params={"key": param_key},
        )
    return OptionsSource(
        touchpoint_id=touchpoint.id,
        project_id=touchpoint.project_id,
        param_key=param_key,
        param_name=str(param.get("name") or param_key),
        url=str(enum["url"]),
        signing_secrets=tuple(signing_secrets(runtime.secrets, touchpoint, utcnow())),
        timeout=float(touchpoint.timeout_seconds or 15),
        max_in_flight=touchpoint.max_in_flight,
    )


async def fetch_options(
    runtime: Runtime, source: OptionsSource, *, refresh: bool = False
) -> list[dict[str, Any]]:
    """Options of ``source``, from the cache when fresh (unless ``refresh``)."""
    cache = _cache(runtime)
    key = (source.touchpoint_id, source.param_key, source.url)
    entry = cache.get(key)
    if entry is not None and not refresh and time.monotonic() - entry.fetched_at < CACHE_SECONDS:
        return entry.options
    try:
        options = await _call(runtime, source)
    except OptionsApiFailed as exc:
        if entry is None:
            raise
        entry.warning = (
            f"{exc.message} Showing the options last loaded "
            f"{int(time.monotonic() - entry.fetched_at)} s ago."
        )
        log.warning(
            "options API of touchpoint %s parameter %s failed; keeping the last good options: %s",
            source.touchpoint_id,
            source.param_key,
            exc.message,
        )
        return entry.options
    if _count(options) > OPTIONS_WARN_THRESHOLD:
        log.warning(
            "options API of touchpoint %s parameter %s offers %d options (over %d makes "
            "dropdowns hard to use)",
            source.touchpoint_id,
            source.param_key,
            _count(options),
            OPTIONS_WARN_THRESHOLD,
        )
    cache[key] = _Entry(options, time.monotonic())
    return options


async def _call(runtime: Runtime, source: OptionsSource) -> list[dict[str, Any]]:
    body = orjson.dumps(
        {
            "projectId": source.project_id,
            "paramDescription": source.param_name,
            "paramName": source.param_key,
        }
    )
    timestamp_ms = int(time.time() * 1000)
    headers = protocol.request_headers(
        body, protocol.new_order_no(), timestamp_ms, source.signing_secrets
    )
    result = await get_client(runtime).post(
        source.url,
        body,
        headers,
        timeout=source.timeout,
        touchpoint_id=source.touchpoint_id,
        max_in_flight=source.max_in_flight,
    )
    if result.status is None or result.error_kind is not None:
        raise _failed(
            "unreachable",
            f"The options API at {source.url} could not be used: {result.error}.",
            url=source.url,
            error=str(result.error),
        )
    if not 200 <= result.status <= 299:
        raise _failed(
            "http_status",
            f"The options API at {source.url} answered HTTP {result.status}.",
            url=source.url,
            status=result.status,
        )
    return parse_options(result.body)


def refresh_warning(runtime: Runtime, touchpoint_id: int, param_key: str) -> str | None:
    """Why the options last returned for this parameter are stale, if they are."""
    for (tid, key, _url), entry in _cache(runtime).items():
        if tid == touchpoint_id and key == param_key and entry.warning:
            return entry.warning
    return None


def _read_source(
    runtime: Runtime, touchpoint_id: int, param_key: str, project_id: int | None
) -> OptionsSource:
    with runtime.tx() as session:
        touchpoint = session.get(Touchpoint, touchpoint_id)
        if (
            touchpoint is None
            or touchpoint.deleted_at is not None
            or (project_id is not None and touchpoint.project_id != project_id)
        ):
            raise NotFound(f"Touchpoint {touchpoint_id} does not exist.")
        return options_source(runtime, touchpoint, param_key)


async def load_api_options(
    runtime: Runtime,
    touchpoint_id: int,
    param_key: str,
    *,
    project_id: int | None = None,
    refresh: bool = False,
) -> list[dict[str, Any]]:
    """The options ``[{code, name, children?}]`` of an API-sourced enum parameter.

    Raises ``NotFound`` (no such touchpoint or parameter), ``InvalidInput`` (the
    parameter's options are not from an API) or ``OptionsApiFailed``.
    """
    source = await asyncio.to_thread(_read_source, runtime, touchpoint_id, param_key, project_id)
    return await fetch_options(runtime, source, refresh=refresh)


def _read_preview_source(
    runtime: Runtime,
    project_id: int,
    url: str,
    param_key: str,
    param_name: str | None,
    touchpoint_id: int | None,
) -> OptionsSource:
    from ..projects import service as projects
    from ..touchpoints.service import get_touchpoint, signing_secrets

    secrets: tuple[str, ...] = ()
    timeout = float(PREVIEW_TIMEOUT_SECONDS)
    max_in_flight = None
    with runtime.tx() as session:
        projects.get_project(session, project_id)
        if touchpoint_id is not None:
            touchpoint = get_touchpoint(session, project_id, touchpoint_id)
            secrets = tuple(signing_secrets(runtime.secrets, touchpoint, utcnow()))
            timeout = float(touchpoint.timeout_seconds or PREVIEW_TIMEOUT_SECONDS)
            max_in_flight = touchpoint.max_in_flight
    return OptionsSource(
        touchpoint_id=touchpoint_id,
        project_id=project_id,
        param_key=param_key,
        param_name=param_name or param_key,
        url=url,
        signing_secrets=secrets,
        timeout=timeout,
        max_in_flight=max_in_flight,
    )


async def preview_options(
    runtime: Runtime,
    project_id: int,
    url: str,
    param_key: str,
    *,
    param_name: str | None = None,
    touchpoint_id: int | None = None,
) -> list[dict[str, Any]]:
    """The options an options API offers now, for a touchpoint being set up (not saved
    yet, or saved with another URL). Never cached: the point is to see today's answer.
    Signed with the saved touchpoint's secret when ``touchpoint_id`` is given (a new
    touchpoint has none yet). The read transaction is closed before the call; the
    guarded client refuses private addresses as for every other outgoing request."""
    source = await asyncio.to_thread(
        _read_preview_source, runtime, project_id, url, param_key, param_name, touchpoint_id
    )
    return await _call(runtime, source)


def run_async(runtime: Runtime, make: Callable[[], Awaitable[T]]) -> T:
    """Run async options code from synchronous code.

    From a FastAPI/Starlette worker thread the coroutine runs on the server's
    loop (sharing its HTTP session); elsewhere (CLI, scripts) on a short-lived
    loop whose HTTP session is closed afterwards. Not for use on a thread that
    is running an event loop.
    """
    import anyio
    import anyio.from_thread

    async def call() -> T:
        return await make()

    try:
        return anyio.from_thread.run(call)
    except anyio.NoEventLoopError:
        pass  # not a worker thread of a running loop: use a loop of our own

    async def own_loop() -> T:
        try:
            return await make()
        finally:
            await get_client(runtime).close()

    return asyncio.run(own_loop())


def load_api_options_sync(
    runtime: Runtime, touchpoint_id: int, param_key: str, *, project_id: int | None = None
) -> list[dict[str, Any]]:
    """``load_api_options`` for synchronous callers (see ``run_async``)."""
    source = _read_source(runtime, touchpoint_id, param_key, project_id)
    return run_async(runtime, lambda: fetch_options(runtime, source))
