"""The outgoing HTTP client every delivery, receipt poll, options call and test
send goes through.

One ``aiohttp.ClientSession`` per process (per event loop: aiohttp sessions are
bound to their loop), kept in
``runtime.http_client``, its sessions created lazily on the running loop:
- its connector resolves through the network guard (``netguard.GuardedResolver``)
  and IP-literal hosts are checked before the request, so refused addresses are
  never connected to;
- a total connection limit (``worker_concurrency`` plus a little headroom for
  test sends and options calls) and, per touchpoint, a limit on requests in
  flight (``max_in_flight`` or ``settings.per_touchpoint_in_flight``);
- redirects are not followed (a 3xx comes back as its status: a failure);
- the response body is read up to ``MAX_RESPONSE_BYTES`` (1 MiB); a longer body
  is a ``too_large`` error (a receipt that big is not a receipt);
- no cookies are kept, and proxy environment variables are ignored, so one
  touchpoint's endpoint cannot influence requests to another's.

``post`` never raises for network problems: it returns an ``HttpResult`` whose
``error_kind`` names the class of failure.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from ..runtime import Runtime
from .netguard import BlockedAddressError, GuardedResolver, check_host

MAX_RESPONSE_BYTES = 1024 * 1024
# Connections beyond the worker's own, for test sends and options calls.
_HEADROOM = 8

ERROR_KINDS = ("refused", "dns", "timeout", "blocked", "tls", "reset", "too_large", "other")


@dataclass
class HttpResult:
    """The outcome of one request. ``status`` is ``None`` when no response arrived."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case keys
    duration_ms: int = 0
    error_kind: str | None = None  # one of ERROR_KINDS
    error: str | None = None  # plain words

    @property
    def ok_transport(self) -> bool:
        """A complete HTTP response was received (whatever its status)."""
        return self.status is not None and self.error_kind is None


def _os_error(exc: BaseException) -> BaseException | None:
    """The underlying OS error of a connector exception, if any."""
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, BaseException):
        return inner
    return exc.__cause__


def _classify_error(exc: BaseException, host: str, timeout: float) -> tuple[str, str]:
    """(error_kind, plain words) for an exception raised while sending."""
    if isinstance(exc, BlockedAddressError):
        return "blocked", exc.plain()
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", f"no complete response within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        inner = _os_error(exc)
        if isinstance(inner, BlockedAddressError):
            return "blocked", inner.plain()
        return "dns", f"the host name {host!r} could not be resolved ({inner or exc})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls", f"the TLS certificate of {host} was not accepted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls", f"the TLS handshake with {host} failed ({exc})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = _os_error(exc)
        if isinstance(inner, ConnectionRefusedError):
            return "refused", f"connection to {host} port {exc.port} refused"
        # Unreachable network/host and similar: nothing listens we can reach.
        return "refused", f"could not connect to {host} port {exc.port} ({inner or exc})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "reset", "the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "reset", f"the response was cut off ({exc})"
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        inner = _os_error(exc) if isinstance(exc, aiohttp.ClientOSError) else exc
        if isinstance(inner, ConnectionResetError) or isinstance(exc, ConnectionResetError):
            return "reset", "the connection was reset by the server"
        return "reset", f"the connection failed ({exc})"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.InvalidUrlClientError):
        return "other", f"invalid URL ({exc})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "other", f"the response could not be read ({exc.message})"
    return "other", f"{type(exc).__name__}: {exc}"


class _LoopState:
    """A session and the touchpoint limits of one event loop (aiohttp sessions and
    asyncio semaphores belong to the loop that made them)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        # touchpoint id → (size, semaphore); a changed size gets a fresh semaphore
        # (requests already in flight finish on the old one).
        self.limits: dict[int, tuple[int, asyncio.Semaphore]] = {}
        self.in_flight: dict[int, int] = {}


class HttpClient:
    """The process-wide sender; get it with ``get_client(runtime)``.

    There is one session per event loop: the server's loop normally, plus a
    short-lived one when synchronous code (a CLI command) sends something.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._settings = runtime.settings
        self._allowed = list(runtime.settings.allowed_network_list)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None or state.session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._allowed),
                limit=self._settings.worker_concurrency + _HEADROOM,
                limit_per_host=0,
                ttl_dns_cache=60,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )
            state = self._states[loop] = _LoopState(session)
        return state

    def session(self) -> aiohttp.ClientSession:
        """The session of the running loop, created on first use."""
        return self._state().session

    def in_flight(self, touchpoint_id: int) -> int:
        """Requests of a touchpoint holding a slot on this loop (metrics and tests)."""
        return self._state().in_flight.get(touchpoint_id, 0)

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        timeout: float,
        touchpoint_id: int | None = None,
        max_in_flight: int | None = None,
    ) -> HttpResult:
        """POST ``body`` to ``url``; never raises for network problems."""
        state = self._state()
        if touchpoint_id is None:
            return await self._post(state.session, url, body, headers, timeout)
        size = max_in_flight or self._settings.per_touchpoint_in_flight
        limit = state.limits.get(touchpoint_id)
        if limit is None or limit[0] != size:
            limit = state.limits[touchpoint_id] = (size, asyncio.Semaphore(size))
        async with limit[1]:
            state.in_flight[touchpoint_id] = state.in_flight.get(touchpoint_id, 0) + 1
            try:
                return await self._post(state.session, url, body, headers, timeout)
            finally:
                state.in_flight[touchpoint_id] -= 1

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> HttpResult:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            target = URL(url)
        except (ValueError, TypeError) as exc:
            return HttpResult(None, duration_ms=0, error_kind="other", error=f"invalid URL ({exc})")
        host = target.raw_host or ""
        if target.scheme not in ("http", "https") or not host:
            return HttpResult(
                None,
                error_kind="other",
                error=f"invalid URL {url!r}: only http:// and https:// URLs with a host work",
            )
        try:
            # Both spellings: the raw one and the decoded one aiohttp connects to.
            for spelling in {host, target.host or host}:
                check_host(spelling, self._allowed)
        except BlockedAddressError as exc:
            return HttpResult(None, error_kind="blocked", error=exc.plain())
        try:
            async with session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                resp_headers = _lower_headers(response.headers)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        return HttpResult(
                            status,
                            body=b"".join(chunks),
                            headers=resp_headers,
                            duration_ms=elapsed(),
                            error_kind="too_large",
                            error=f"the response body is larger than {MAX_RESPONSE_BYTES} bytes",
                        )
                    chunks.append(chunk)
                return HttpResult(
                    status, body=b"".join(chunks), headers=resp_headers, duration_ms=elapsed()
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every network failure becomes a result, not a crash
            kind, words = _classify_error(exc, host, timeout)
            return HttpResult(None, duration_ms=elapsed(), error_kind=kind, error=words)

    async def close(self) -> None:
        """Close the running loop's session (sessions of other loops cannot be
        closed from here; they are dropped with their loop)."""
        loop = asyncio.get_running_loop()
        state = self._states.pop(loop, None)
        if state is not None and not state.session.closed:
            await state.session.close()


def _lower_headers(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


def get_client(runtime: Runtime) -> HttpClient:
    """The process's client, created on first use."""
    if runtime.http_client is None:
        runtime.http_client = HttpClient(runtime)
    return runtime.http_client


async def close(runtime: Runtime) -> None:
    """Close the process's HTTP session (app shutdown, end of a CLI command)."""
    client, runtime.http_client = runtime.http_client, None
    if client is not None:
        await client.close()
