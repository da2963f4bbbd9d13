"""``touchgate doctor`` against real local endpoints on 127.0.0.1: a correct one
built on ``touchgate.receiver`` passes; each broken one (no signature check, not
idempotent, missing gids, slow at 500, three-level options, receipts that never
settle) is reported with its fix. Then the same suite through the API (both
backends) and the command line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from typer.testing import CliRunner

from test_testsend import ThreadedServer, setup_touchpoint
from touchgate import receiver
from touchgate.cli import app as cli_app
from touchgate.config import Settings
from touchgate.crypto import new_signing_secret
from touchgate.delivery import client as http_client
from touchgate.doctor import service, texts
from touchgate.doctor.cli import _offline_runtime
from touchgate.doctor.schemas import Report
from touchgate.doctor.suite import Limits, OptionsApi, Target, run_suite
from touchgate.receiver import Endpoint, Option, Verifier
from touchgate.runtime import Runtime

TOKEN = "doctor-token"
SECRET = new_signing_secret()
FAST = Limits(samples=2, max_probe=4, receipt_poll_seconds=0.2, receipt_timeout_seconds=1.5)
I18N = Path(__file__).resolve().parents[1] / "src/touchgate/console/static/i18n"

Handler = Callable[[web.Request, bytes], web.StreamResponse]


def two_levels(query: receiver.OptionsQuery) -> list[Option]:
    return [Option("H5", "H5 页面"), Option("APP", "App", (Option("APP_HOME", "首页"),))]


def three_levels(query: receiver.OptionsQuery) -> list[Option]:
    return [Option("A", "A", (Option("B", "B", (Option("C", "C"),)),))]


def all_reached(delivery: receiver.Delivery) -> list[receiver.Status]:
    return [receiver.reached(u.gid) for u in delivery.users]


def serve_endpoint(endpoint: Endpoint, *, slow_per_500: float = 0.0) -> Handler:
    """Route /touch, /receipt and /options of a ThreadedServer to a library endpoint."""

    async def handle(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/receipt":
            reply = endpoint.handle_receipt(request.headers, body)
        elif request.path == "/options":
            try:
                reply = endpoint.handle_options(request.headers, body)
            except ValueError:  # the library refuses to build three levels: send them anyway
                assert endpoint.options is not None
                opts = endpoint.options(receiver.parse_options_query(doc))
                raw = {"code": 0, "enumArgs": [o.to_json() for o in opts]}
                return web.json_response(raw)
        else:
            if slow_per_500:
                await asyncio.sleep(slow_per_500 * len(doc.get("dataList", [])) / 500)
            reply = endpoint.handle_delivery(request.headers, body)
        return web.Response(status=reply.status, body=reply.body, content_type="application/json")

    return handle  # type: ignore[return-value]


@pytest.fixture
def endpoint_server() -> Iterator[ThreadedServer]:
    server = ThreadedServer()
    yield server
    server.stop()


def run(target: Target, limits: Limits = FAST) -> Report:
    runtime = _offline_runtime(Settings(database_url="sqlite://", allowed_networks="127.0.0.0/8"))

    async def go() -> Report:
        try:
            return await run_suite(target, service.sender(runtime), limits)
        finally:
            await http_client.close(runtime)

    return asyncio.run(go())


def target(server: ThreadedServer, **changes: Any) -> Target:
    base: dict[str, Any] = {
        "url": server.url + "/touch",
        "token": TOKEN,
        "secrets": (SECRET,),
        "batch_size": 200,
        "timeout": 5.0,
        "options_apis": (OptionsApi("jump", "Jump", server.url + "/options"),),
    }
    base.update(changes)
    return Target(**base)


def by_check(report: Report) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in report.items:
        out.setdefault(item.check, []).append(item)
    return out


def codes(report: Report, outcome: str) -> set[str]:
    return {i.code for i in report.items if i.outcome == outcome}


def test_correct_receiver_passes_everything(endpoint_server: ThreadedServer) -> None:
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), all_reached, options=two_levels)
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    report = run(target(endpoint_server))
    assert report.ok, report.model_dump_json(indent=2)
    assert codes(report, "fail") == set() and codes(report, "warn") == set()
    checks = by_check(report)
    assert [i.code for i in checks["protocol.batch_200"]] == ["batch_ok"]
    assert checks["protocol.batch_100"][0].params == {"size": 100, "succeeded": 100, "failed": 0}
    assert checks["options.jump"][0].params == {"param": "jump", "count": 2, "levels": 2}
    for check, code in [
        ("idempotency.repeat", "idempotent"),
        ("security.sign", "sign_checked"),
        ("security.webhook_signature", "webhook_checked"),
        ("security.stale", "stale_refused"),
        ("timing.batch_200", "latency_ok"),
        ("timing.in_flight", "in_flight_suggestion"),
        ("receipts.settle", "receipts_sync"),
    ]:
        assert [i.code for i in checks[check]] == [code], check
    assert [row.batch_size for row in report.timing] == [1, 100, 200]
    assert all(row.samples == 2 for row in report.timing)
    assert report.suggested_in_flight is not None and 1 <= report.suggested_in_flight <= 4
    # The endpoint saw only synthetic users, marked both ways; every batch was signed.
    assert endpoint.counts.synthetic_users == endpoint.counts.users > 0
    seen = [s for s in endpoint_server.seen if s.path == "/touch"]
    for request in seen:
        for entry in request.doc["dataList"]:
            assert entry["gid"] in receiver.DOCTOR_GIDS
            assert entry["temData"][receiver.DOCTOR_MARKER] == "synthetic"
            assert "体检" in entry["temData"]["title"]
    gids = [e["gid"] for r in seen for e in r.doc["dataList"]]
    assert report.synthetic.gid_min == min(gids) and report.synthetic.gid_max == max(gids)


def test_no_signature_check_is_a_warning_that_says_what_it_exposes(
    endpoint_server: ThreadedServer,
) -> None:
    endpoint = Endpoint(Verifier(), all_reached, options=two_levels)
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    report = run(target(endpoint_server))
    assert report.ok  # warnings, not failures
    checks = by_check(report)
    sign, webhook = checks["security.sign"][0], checks["security.webhook_signature"][0]
    assert (sign.outcome, sign.code) == ("warn", "sign_not_checked")
    assert (webhook.outcome, webhook.code) == ("warn", "webhook_not_checked")
    assert "send messages or issue coupons in your name" in (sign.fix or "")
    assert checks["security.stale"][0].code == "stale_skipped"

    # Verifying one of the two signatures is enough: the other is not a warning.
    endpoint_server.handler = serve_endpoint(  # type: ignore[assignment]
        Endpoint(Verifier(token=TOKEN), all_reached, options=two_levels)
    )
    checks = by_check(run(target(endpoint_server)))
    assert checks["security.sign"][0].code == "sign_checked"
    assert checks["security.webhook_signature"][0].code == "webhook_not_checked_sign_checked"
    assert checks["security.webhook_signature"][0].outcome == "pass"


def test_not_idempotent(endpoint_server: ThreadedServer) -> None:
    seen_orders: set[str] = set()

    async def handle(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        repeat = doc["orderNo"] in seen_orders
        seen_orders.add(doc["orderNo"])
        status = "TOU_FAIL" if repeat else "TOU_SUCC"
        return web.json_response(
            {
                "code": 0,
                "orderNo": doc["orderNo"],
                "sendStatusList": [
                    {"gid": e["gid"], "status": status, "errorMsg": "duplicate" if repeat else ""}
                    for e in doc["dataList"]
                ],
            }
        )

    endpoint_server.handler = handle
    report = run(target(endpoint_server, options_apis=()))
    item = by_check(report)["idempotency.repeat"][0]
    assert (item.outcome, item.code) == ("warn", "not_idempotent")
    assert item.params["count"] == 200
    assert "orderNo as the idempotency key" in (item.fix or "")


def test_missing_gids(endpoint_server: ThreadedServer) -> None:
    async def handle(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        listed = doc["dataList"][:-1]  # the last user of every batch is left out
        return web.json_response(
            {
                "code": 0,
                "orderNo": doc["orderNo"],
                "sendStatusList": [
                    {"gid": e["gid"], "status": "TOU_SUCC", "errorMsg": ""} for e in listed
                ],
            }
        )

    endpoint_server.handler = handle
    report = run(target(endpoint_server, options_apis=()))
    assert not report.ok
    missing = [i for i in report.items if i.code == "missing_gids"]
    assert [i.params["size"] for i in missing] == [1, 100, 200]
    assert all(i.outcome == "fail" and i.required for i in missing)
    assert missing[1].params["count"] == 1
    assert "exactly once" in (missing[0].fix or "")
    # With no valid answer to a batch of 1, the later groups are not run.
    assert by_check(report)["security"][0].code == "skipped_no_answer"


def test_slow_at_500(endpoint_server: ThreadedServer) -> None:
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), all_reached)
    # 1.5 s for a batch of 500 against a 1 s timeout; 0.3 s for a batch of 100.
    endpoint_server.handler = serve_endpoint(endpoint, slow_per_500=1.5)  # type: ignore[assignment]
    started = time.monotonic()
    report = run(target(endpoint_server, batch_size=500, timeout=1.0, options_apis=()))
    assert time.monotonic() - started < 30  # bounded: a batch that timed out is not resent
    assert not report.ok
    checks = by_check(report)
    assert [i.code for i in checks["protocol.batch_500"]] == ["timeout"]
    slow = checks["timing.batch_500"][0]
    assert (slow.outcome, slow.code) == ("fail", "latency_over_timeout")
    assert slow.params["timeouts"] == 1 and slow.params["timeout_ms"] == 1000
    assert "async receipt mode" in (slow.fix or "")
    assert checks["protocol.batch_100"][0].code == "batch_ok"
    near = checks["timing.batch_100"][0]
    assert near.code in ("latency_ok", "latency_near_timeout")


def test_three_level_options(endpoint_server: ThreadedServer) -> None:
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), all_reached, options=three_levels)
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    report = run(target(endpoint_server))
    assert not report.ok
    item = by_check(report)["options.jump"][0]
    assert (item.outcome, item.code, item.params["depth"]) == ("fail", "options_too_deep", 3)
    assert "Two levels at most" in (item.fix or "")


def test_receipts_never_settle(endpoint_server: ThreadedServer) -> None:
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), all_reached, mode="async")

    async def handle(request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
        if request.path == "/receipt":  # accepted, but nothing ever settles
            return web.json_response({"code": 0, "orderNo": doc["orderNo"], "sendStatusList": []})
        return await serve_endpoint(endpoint)(request, doc)  # type: ignore[misc,no-any-return]

    endpoint_server.handler = handle
    async_target = target(
        endpoint_server,
        options_apis=(),
        receipt_mode="async",
        receipt_url=endpoint_server.url + "/receipt",
    )
    report = run(async_target)
    assert not report.ok
    item = by_check(report)["receipts.settle"][0]
    assert (item.outcome, item.code) == ("fail", "receipts_unsettled")
    assert item.params["count"] == 1 + 100 + 200
    assert "receipt timeout" in (item.fix or "")

    # The library's own receipts settle every user.
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    report = run(async_target)
    assert report.ok, report.model_dump_json(indent=2)
    item = by_check(report)["receipts.settle"][0]
    assert (item.code, item.params["users"], item.params["orders"]) == ("receipts_settled", 301, 3)
    assert by_check(report)["protocol.batch_1"][0].code == "batch_accepted_async"


def test_unreachable_and_refused(endpoint_server: ThreadedServer) -> None:
    from conftest import free_port

    report = run(Target(url=f"http://127.0.0.1:{free_port()}/touch", batch_size=1, timeout=2))
    assert [(i.code, i.params.get("error_kind")) for i in report.items[:2]] == [
        ("options_none", None),
        ("unreachable", "refused"),
    ]
    endpoint_server.handler = serve_endpoint(  # type: ignore[assignment]
        Endpoint(Verifier(token="another"), all_reached)
    )
    report = run(target(endpoint_server, options_apis=(), batch_size=1))
    item = by_check(report)["protocol.batch_1"][0]
    assert (item.code, item.params["status"]) == ("refused_signed", 401)


# ---------------------------------------------------------------- texts for the console


def test_every_code_has_console_texts_in_both_languages() -> None:
    en = json.loads((I18N / "en.json").read_text("utf-8"))
    zh = json.loads((I18N / "zh-CN.json").read_text("utf-8"))
    for code, template in texts.MESSAGES.items():
        # en.json holds the very sentence (format's {{ }} are literal braces there).
        literal = template.replace("{{", "{").replace("}}", "}")
        assert en[f"doctor.msg.{code}"] == literal, code
        assert f"doctor.msg.{code}" in zh, code
    for code, template in texts.FIXES.items():
        assert en[f"doctor.fix.{code}"] == template.replace("{{", "{").replace("}}", "}"), code
        assert f"doctor.fix.{code}" in zh, code
    for kind in http_client.ERROR_KINDS:
        assert f"doctor.error_kind.{kind}" in en and f"doctor.error_kind.{kind}" in zh


# ---------------------------------------------------------------- API and command line


def test_doctor_through_the_api(
    client: httpx.Client, project: dict[str, Any], endpoint_server: ThreadedServer
) -> None:
    tp = setup_touchpoint(
        client,
        project,
        endpoint_server.url + "/touch",
        timeout_seconds=5,
        template_params=[
            {"key": "title", "name": "Title", "type": "text", "required": True},
            {"key": "amount", "name": "Amount", "type": "number", "required": False},
            {
                "key": "jump",
                "name": "Jump",
                "type": "enum",
                "required": True,
                "enum": {"source": "api", "url": endpoint_server.url + "/options"},
            },
        ],
    )
    endpoint = Endpoint(
        Verifier(token=TOKEN, secrets=(tp["signing_secret"],)), all_reached, options=two_levels
    )
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    path = f"/projects/{project['id']}/touchpoints/{tp['id']}/doctor"
    limits = {"samples": 1, "max_in_flight_probe": 2, "receipt_timeout_seconds": 2}
    r = client.post(path, json=limits)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is False  # the token differs: every signed batch is refused
    assert report["items"][1]["code"] == "refused_signed"
    assert report["items"][1]["fix"].startswith("Give the endpoint the touchpoint's auth token")

    endpoint_server.handler = serve_endpoint(  # type: ignore[assignment]
        Endpoint(
            Verifier(token="tok-test-send-S3CRET", secrets=(tp["signing_secret"],)),
            all_reached,
            options=two_levels,
        )
    )
    report = client.post(path, json=limits).json()
    assert report["ok"] is True, report
    assert report["touchpoint_id"] == tp["id"] and report["batch_size"] == 3
    assert {i["code"] for i in report["items"] if i["outcome"] == "warn"} == set()
    first = next(s for s in endpoint_server.seen if s.path == "/touch").doc["dataList"][0]
    # Enum values come from the options API; declared attributes are null.
    assert first["temData"]["jump"] == "H5" and first["temData"]["amount"] == 1
    assert first["dynamicData"] == {"memberId": None, "phone": None, "name": None}

    r = client.post(path, json={"samples": 0, "surprise": 1})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["error"]["details"]} == {"samples", "surprise"}
    r = client.post(f"/projects/{project['id']}/touchpoints/999999/doctor")
    assert r.status_code == 404


def test_doctor_command_line(
    endpoint_server: ThreadedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from touchgate.config import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOUCHGATE_ALLOWED_NETWORKS", raising=False)
    get_settings.cache_clear()
    endpoint = Endpoint(Verifier(token=TOKEN, secrets=(SECRET,)), all_reached)
    endpoint_server.handler = serve_endpoint(endpoint)  # type: ignore[assignment]
    url = endpoint_server.url + "/touch"
    common = ["doctor", url, "--token", TOKEN, "--secret", SECRET, "--batch-size", "50"]
    fast = ["--samples", "1", "--max-in-flight-probe", "2"]
    runner = CliRunner(env={"COLUMNS": "300"})  # one table row per line
    try:
        # Loopback is refused by the network guard unless allowed.
        out = runner.invoke(cli_app, [*common, *fast])
        assert out.exit_code == 1, out.output
        assert "network guard" in out.output and "--allow-network" in out.output
        out = runner.invoke(cli_app, [*common, *fast, "--allow-network", "127.0.0.1/32"])
        assert out.exit_code == 0, out.output
        assert "PASSED" in out.output and "protocol.batch_50" in out.output
        out = runner.invoke(cli_app, [*common, *fast, "--allow-network", "127.0.0.1/32", "--json"])
        assert out.exit_code == 0, out.output
        assert Report.model_validate_json(out.output).ok
        # A broken endpoint exits 1; --strict turns warnings into failures too.
        endpoint_server.handler = serve_endpoint(  # type: ignore[assignment]
            Endpoint(Verifier(), all_reached)
        )
        allowed = [*common, *fast, "--allow-network", "127.0.0.1/32"]
        assert runner.invoke(cli_app, allowed).exit_code == 0
        out = runner.invoke(cli_app, [*allowed, "--strict"])
        assert out.exit_code == 1 and "security.sign (advice)" in out.output
        # Mistakes on the command line: exit 2 with the option named.
        for args, said in [
            (["doctor"], "--project and --touchpoint"),
            (["doctor", "ftp://x"], "http://"),
            (["doctor", url, "--secret", "nope!"], "whsec_"),
            (["doctor", url, "--allow-network", "lan"], "not a network"),
            (["doctor", url, "--batch-size", "501"], "batch-size"),
        ]:
            out = runner.invoke(cli_app, args)
            assert out.exit_code == 2 and said in out.output, (args, out.output)
        assert list(tmp_path.iterdir()) == []  # no database or key file was created
    finally:
        get_settings.cache_clear()


def test_doctor_command_line_against_a_registered_touchpoint(
    runtime: Runtime,
    client: httpx.Client,
    project: dict[str, Any],
    endpoint_server: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from touchgate.config import get_settings

    tp = setup_touchpoint(client, project, endpoint_server.url + "/touch")
    endpoint_server.handler = serve_endpoint(  # type: ignore[assignment]
        Endpoint(
            Verifier(token="tok-test-send-S3CRET", secrets=(tp["signing_secret"],)), all_reached
        )
    )
    settings = runtime.settings
    monkeypatch.setenv("TOUCHGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TOUCHGATE_SECRET_KEY", settings.secret_key or "")
    monkeypatch.setenv("TOUCHGATE_ALLOWED_NETWORKS", "127.0.0.0/8")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        args = ["doctor", "-p", str(project["id"]), "-t", str(tp["id"]), "--json"]
        out = runner.invoke(cli_app, [*args, "--samples", "1", "--max-in-flight-probe", "1"])
        assert out.exit_code == 0, out.output
        report = Report.model_validate_json(out.output)
        assert report.touchpoint_id == tp["id"] and report.batch_size == 3
        out = runner.invoke(cli_app, ["doctor", "-p", str(project["id"]), "-t", "999999"])
        assert out.exit_code == 2 and "does not exist" in out.output
    finally:
        get_settings.cache_clear()
