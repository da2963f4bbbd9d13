"""The outgoing HTTP client against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from touchgate.config import Settings
from touchgate.delivery import client as http
from touchgate.delivery.netguard import BlockedAddressError
from touchgate.runtime import Runtime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_runtime(tmp_path: Path, **extra: Any) -> Runtime:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'client.db'}",
        secret_key="k",
        **extra,
    )
    return Runtime.from_settings(settings)


def loopback_runtime(tmp_path: Path, **extra: Any) -> Runtime:
    return make_runtime(tmp_path, allowed_networks="127.0.0.0/8", **extra)


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_post_returns_status_body_and_lowercase_headers(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def hook(request: web.Request) -> web.Response:
        seen["body"] = await request.read()
        seen["headers"] = dict(request.headers)
        return web.json_response({"code": 0}, headers={"X-Answer": "42"})

    async def main() -> http.HttpResult:
        rt = loopback_runtime(tmp_path)
        async with serve({"/hook": hook}) as base:
            try:
                return await http.get_client(rt).post(
                    base + "/hook", b'{"a":1}', {"webhook-id": "abc"}, timeout=5
                )
            finally:
                await http.close(rt)

    result = asyncio.run(main())
    assert result.status == 200
    assert result.error_kind is None and result.error is None
    assert result.ok_transport
    assert result.body == b'{"code": 0}'
    assert result.headers["x-answer"] == "42"
    assert "content-type" in result.headers
    assert result.duration_ms >= 0
    assert seen["body"] == b'{"a":1}'
    assert seen["headers"]["webhook-id"] == "abc"


def test_one_session_per_process(tmp_path: Path) -> None:
    async def main() -> None:
        rt = loopback_runtime(tmp_path)
        c1 = http.get_client(rt)
        c2 = http.get_client(rt)
        assert c1 is c2
        assert rt.http_client is c1
        s1 = c1.session()
        assert c1.session() is s1
        await http.close(rt)
        assert rt.http_client is None
        assert s1.closed

    asyncio.run(main())


def test_slow_server_times_out(tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"code": 0})

    async def main() -> http.HttpResult:
        rt = loopback_runtime(tmp_path)
        async with serve({"/slow": slow}) as base:
            try:
                return await http.get_client(rt).post(base + "/slow", b"{}", {}, timeout=0.3)
            finally:
                await http.close(rt)

    result = asyncio.run(main())
    assert result.status is None
    assert result.error_kind == "timeout"
    assert result.error is not None and "0.3 s" in result.error
    assert 250 <= result.duration_ms < 2500


def test_closed_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        # bound but not listening: connections to it are refused

        async def main() -> http.HttpResult:
            rt = loopback_runtime(tmp_path)
            try:
                return await http.get_client(rt).post(
                    f"http://127.0.0.1:{port}/x", b"{}", {}, timeout=5
                )
            finally:
                await http.close(rt)

        result = asyncio.run(main())
    assert result.status is None
    assert result.error_kind == "refused"
    assert result.error is not None and "refused" in result.error


def test_redirect_is_not_followed(tmp_path: Path) -> None:
    hits: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/target")

    async def target(request: web.Request) -> web.Response:
        hits.append("target")
        return web.json_response({"code": 0})

    async def main() -> http.HttpResult:
        rt = loopback_runtime(tmp_path)
        async with serve({"/moved": moved, "/target": target}) as base:
            try:
                return await http.get_client(rt).post(base + "/moved", b"{}", {}, timeout=5)
            finally:
                await http.close(rt)

    result = asyncio.run(main())
    assert result.status == 302
    assert result.headers["location"] == "/target"
    assert hits == []


def test_reset_connection_is_reported(tmp_path: Path) -> None:
    async def rude(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response(text="never")

    async def main() -> http.HttpResult:
        rt = loopback_runtime(tmp_path)
        async with serve({"/rude": rude}) as base:
            try:
                return await http.get_client(rt).post(base + "/rude", b"{}", {}, timeout=5)
            finally:
                await http.close(rt)

    result = asyncio.run(main())
    assert result.status is None
    assert result.error_kind == "reset"


def test_response_body_is_capped(tmp_path: Path) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(40):  # 2.5 MiB
            await response.write(chunk)
        await response.write_eof()
        return response

    async def main() -> http.HttpResult:
        rt = loopback_runtime(tmp_path)
        async with serve({"/huge": huge}) as base:
            try:
                return await http.get_client(rt).post(base + "/huge", b"{}", {}, timeout=10)
            finally:
                await http.close(rt)

    result = asyncio.run(main())
    assert result.status == 200
    assert result.error_kind == "too_large"
    assert len(result.body) <= http.MAX_RESPONSE_BYTES


def test_per_touchpoint_limit_bounds_requests_in_flight(tmp_path: Path) -> None:
    current = 0
    peak = 0

    async def slowish(request: web.Request) -> web.Response:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.1)
        current -= 1
        return web.json_response({"code": 0})

    async def main() -> list[http.HttpResult]:
        rt = loopback_runtime(tmp_path)
        async with serve({"/h": slowish}) as base:
            try:
                c = http.get_client(rt)
                limited = [
                    c.post(base + "/h", b"{}", {}, timeout=10, touchpoint_id=7, max_in_flight=2)
                    for _ in range(8)
                ]
                return await asyncio.gather(*limited)
            finally:
                await http.close(rt)

    results = asyncio.run(main())
    assert [r.status for r in results] == [200] * 8
    assert peak == 2

    # The default limit comes from settings.per_touchpoint_in_flight, and other
    # touchpoints have their own slots.
    current = 0
    peak = 0

    async def main2() -> list[http.HttpResult]:
        rt = loopback_runtime(tmp_path, per_touchpoint_in_flight=3)
        async with serve({"/h": slowish}) as base:
            try:
                c = http.get_client(rt)
                calls = [
                    c.post(base + "/h", b"{}", {}, timeout=10, touchpoint_id=tp)
                    for tp in (1, 2)
                    for _ in range(6)
                ]
                return await asyncio.gather(*calls)
            finally:
                await http.close(rt)

    results = asyncio.run(main2())
    assert all(r.status == 200 for r in results)
    assert peak == 6


def test_loopback_is_blocked_unless_allowed_and_never_connected(tmp_path: Path) -> None:
    hits: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({"code": 0})

    async def main() -> tuple[list[http.HttpResult], http.HttpResult]:
        guarded = make_runtime(tmp_path)  # no allowed networks
        open_rt = loopback_runtime(tmp_path)
        async with serve({"/hook": hook}) as base:
            port = base.rsplit(":", 1)[1]
            spellings = [
                base,
                f"http://2130706433:{port}",
                f"http://0x7f000001:{port}",
                f"http://0177.0.0.1:{port}",
                f"http://127.1:{port}",
                f"http://localhost:{port}",
                f"http://127.0.0.1.:{port}",
                f"http://[::ffff:127.0.0.1]:{port}",
                f"http://[::ffff:7f00:1]:{port}",
            ]
            try:
                blocked = [
                    await http.get_client(guarded).post(u + "/hook", b"{}", {}, timeout=5)
                    for u in spellings
                ]
                allowed = await http.get_client(open_rt).post(base + "/hook", b"{}", {}, timeout=5)
            finally:
                await http.close(guarded)
                await http.close(open_rt)
        return blocked, allowed

    blocked, allowed = asyncio.run(main())
    for result in blocked:
        assert result.status is None
        assert result.error_kind == "blocked", result
        assert result.error is not None
        assert "TOUCHGATE_ALLOWED_NETWORKS" in result.error
        assert "loopback" in result.error
    assert allowed.status == 200
    assert hits == [1]  # only the allowed request reached the server


def test_error_classes_are_named() -> None:
    # Name resolution failures are classified without resolving anything (tests send
    # nothing but loopback traffic, and a DNS query would leave the machine).
    key = ConnectionKey("touchgate-test.invalid", 80, False, True, None, None, None)
    dns = aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known"))
    assert http._classify_error(dns, "touchgate-test.invalid", 5)[0] == "dns"
    blocked = aiohttp.ClientConnectorDNSError(
        key, BlockedAddressError("evil.example", "10.0.0.1", "private network (10.0.0.0/8)")
    )
    kind, words = http._classify_error(blocked, "evil.example", 5)
    assert kind == "blocked"
    assert "evil.example (10.0.0.1)" in words and "TOUCHGATE_ALLOWED_NETWORKS" in words
    assert http._classify_error(TimeoutError(), "h", 2)[0] == "timeout"
    cert = aiohttp.ClientConnectorCertificateError(key, ValueError("self-signed"))
    assert http._classify_error(cert, "h", 2)[0] == "tls"


def test_bad_urls_are_reported_not_raised(tmp_path: Path) -> None:
    async def main() -> list[http.HttpResult]:
        rt = make_runtime(tmp_path)
        try:
            return [
                await http.get_client(rt).post(url, b"{}", {}, timeout=1)
                for url in ("ftp://example.invalid/x", "not a url", "http://", "http://[::1")
            ]
        finally:
            await http.close(rt)

    for result in asyncio.run(main()):
        assert result.status is None
        assert result.error_kind == "other"
        assert result.error
