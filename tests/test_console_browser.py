"""The web console in a real browser (Chromium through Playwright) against the real app.

Each flow runs in both languages (the browser's locale picks the language, as a
user's would) and on both database backends. Fake touchpoint endpoints are
aiohttp servers on 127.0.0.1. Set ``TOUCHGATE_SCREENSHOTS=<dir>`` to keep a
screenshot of every screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import ADMIN_TOKEN, LiveServer, free_port
from touchgate.runtime import Runtime

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
I18N = Path(__file__).resolve().parents[1] / "src/touchgate/console/static/i18n"
LANGS = ["en", "zh-CN"]
SHOTS = os.environ.get("TOUCHGATE_SCREENSHOTS")


def texts(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((I18N / f"{lang}.json").read_text("utf-8"))
    return data


def shot(page: Page, lang: str, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{lang}-{name}.png"))


class Receiver:
    """A touchpoint endpoint on 127.0.0.1 that reaches every user and records each call."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/touch"

    async def _touch(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        statuses = [
            {"gid": entry["gid"], "status": "TOU_SUCC", "errorMsg": ""}
            for entry in body.get("dataList", [])
        ]
        return web.json_response(
            {"code": 0, "message": "", "orderNo": body.get("orderNo"), "sendStatusList": statuses}
        )

    async def _options(self, request: web.Request) -> web.Response:
        # 3 categories of 40 options: 120 choices, over the 100 the console warns about.
        args = [
            {
                "code": f"CAT{c}",
                "description": f"Category {c}",
                "childEnumArgs": [
                    {"code": f"T{c}_{i}", "description": f"Template {c}.{i}"} for i in range(40)
                ],
            }
            for c in range(3)
        ]
        return web.json_response({"code": 0, "enumArgs": args})

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/touch", self._touch)
        app.router.add_post("/options", self._options)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# Module scope, not session: Playwright's sync API keeps an event loop running in
# the main thread while it is open, and tests in other modules call asyncio.run().
# Pytest groups tests by database backend, so this module is entered once per
# backend and the browser is started once for each.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if os.environ.get("TOUCHGATE_SKIP_BROWSER"):
        pytest.skip("TOUCHGATE_SKIP_BROWSER is set")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def page(browser: Browser, live_server: LiveServer, runtime: Any, lang: str) -> Iterator[Page]:
    context = browser.new_context(
        locale=lang, viewport={"width": 1400, "height": 900}, base_url=live_server.url
    )
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    # Text outside code blocks never shows a JavaScript value that slipped through.
    visible = pg.evaluate(
        """() => { const b = document.body.cloneNode(true);
                   b.querySelectorAll('pre, textarea, script').forEach((e) => e.remove());
                   return b.textContent; }"""
    )
    context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"
    leaked = re.findall(r"\bundefined\b|\bnull\b|\[object Object\]|\bNaN\b", visible)
    assert not leaked, f"page text shows {leaked}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def shop(client: httpx.Client) -> dict[str, Any]:
    """A project with two spaces and an attribute catalogue (one sensitive attribute)."""
    pid = client.post("/projects", json={"name": "Shop"}).json()["id"]
    spaces = [
        client.post(f"/projects/{pid}/spaces", json={"name": name}).json()
        for name in ("Growth", "Members")
    ]
    for key, name, type_, sensitive in [
        ("memberId", "Member id", "string", False),
        ("level", "Level", "number", False),
        ("idCard", "ID card", "string", True),
    ]:
        r = client.post(
            f"/projects/{pid}/attributes",
            json={
                "key": key,
                "name": name,
                "type": type_,
                "kind": "attribute",
                "sensitive": sensitive,
            },
        )
        assert r.status_code == 201, r.text
    return {"id": pid, "spaces": spaces}


def sign_in(page: Page, key: str = ADMIN_TOKEN) -> None:
    page.goto("/")
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login-submit").click()
    # Only an admin's key may add touchpoints; every key sees the list.
    expect(page.get_by_test_id("tp-add" if key == ADMIN_TOKEN else "tp-search")).to_be_visible()


def row(page: Page, name: str) -> Any:
    return page.locator(f"[data-testid=tp-row][data-name='{name}']")


def more(tp_row: Any, action: str) -> None:
    """Open a touchpoint row's "More" menu and choose an action in it."""
    tp_row.get_by_test_id("tp-more").click()
    tp_row.get_by_test_id(action).click()


TOUCHPOINT_BODY: dict[str, Any] = {
    "name": "Coupons",
    "type": "benefit",
    "user_attributes": ["memberId", "level"],
    "template_params": [
        {"key": "startDate", "name": "Valid from", "type": "date", "required": True},
        {"key": "amount", "name": "Amount", "type": "number", "required": True},
        {
            "key": "jump",
            "name": "Jump",
            "type": "enum",
            "required": True,
            "enum": {
                "source": "manual",
                "options": [
                    {"code": "H5", "name": "H5 page"},
                    {
                        "code": "APP",
                        "name": "App",
                        "children": [
                            {"code": "APP_HOME", "name": "Home"},
                            {"code": "APP_MINE", "name": "Mine"},
                        ],
                    },
                ],
            },
        },
        {"key": "title", "name": "Title", "type": "text", "required": False},
    ],
}


def test_sign_in_language_and_sign_out(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(lang)
    page.goto("/")
    expect(page.get_by_test_id("login-submit")).to_have_text(t["auth.sign_in"])
    shot(page, lang, "01-sign-in")
    page.get_by_test_id("login-key").fill("not-a-key")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text(t["auth.invalid_key"])
    shot(page, lang, "02-sign-in-error")

    sign_in(page)
    expect(page.locator("h1")).to_have_text(t["tp.title"])
    expect(page.get_by_test_id("project-switch")).to_have_value(str(shop["id"]))
    shot(page, lang, "03-empty-list")

    # Switching the language re-renders in the other one and is remembered.
    other = "en" if lang == "zh-CN" else "zh-CN"
    page.get_by_test_id("lang-switch").select_option(other)
    expect(page.locator("h1")).to_have_text(texts(other)["tp.title"])
    page.reload()
    expect(page.locator("h1")).to_have_text(texts(other)["tp.title"])
    assert page.evaluate("document.documentElement.lang") == other
    page.get_by_test_id("lang-switch").select_option(lang)
    expect(page.locator("h1")).to_have_text(t["tp.title"])

    # The project switcher lists every project the key sees and changes the page's project.
    other_pid = client.post("/projects", json={"name": "Another"}).json()["id"]
    page.reload()
    page.get_by_test_id("project-switch").select_option(str(other_pid))
    expect(page).to_have_url(re.compile(rf"#/p/{other_pid}/touchpoints$"))
    expect(page.get_by_test_id("tp-add")).to_be_visible()

    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.goto("/#/p/1/touchpoints")
    expect(page.get_by_test_id("login-form")).to_be_visible()


def test_add_touchpoint_with_every_parameter_type(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client, receiver: Receiver
) -> None:
    t = texts(lang)
    pid = shop["id"]
    sign_in(page)
    page.get_by_test_id("tp-add").click()
    form = page.get_by_test_id("tp-form")
    expect(form).to_be_visible()

    name = form.get_by_test_id("tp-name")
    name.fill("优惠券中心 Coupons center")  # 20 characters: over the limit
    expect(form.get_by_test_id("name-count")).to_have_text("20/15")
    expect(form.get_by_test_id("name-count")).to_have_class(re.compile(r"\bover\b"))
    form.get_by_test_id("tp-type").select_option("benefit")
    form.get_by_test_id("tp-url").fill(receiver.url)
    form.get_by_test_id("tp-token").fill("s3cret-token")
    form.get_by_test_id("tp-batch").fill("50")
    form.get_by_test_id("attr-memberId").check()
    # A sensitive attribute is shown but cannot be chosen, and says why.
    expect(form.get_by_test_id("attr-idCard")).to_be_disabled()
    assert (
        form.locator("[data-field='user_attr:idCard']").get_attribute("title")
        == t["tp.form.attr_sensitive_reason"]
    )

    def add_param(key: str, label: str, type_: str, required: bool) -> Any:
        form.get_by_test_id("param-add").click()
        param = form.get_by_test_id("param-row").last
        param.get_by_test_id("param-key").fill(key)
        param.get_by_test_id("param-name").fill(label)
        param.get_by_test_id("param-type").select_option(type_)
        if required:
            param.get_by_test_id("param-required").check()
        return form.get_by_test_id("param-row").last

    add_param("startDate", "Valid from", "date", True)
    add_param("amount", "Amount", "number", True)
    jump = add_param("jump", "Jump", "enum", True)
    jump.get_by_test_id("opt-add").click()
    first = jump.get_by_test_id("enum-option").nth(0)
    first.get_by_test_id("opt-code").fill("H5")
    first.get_by_test_id("opt-name").fill("H5 page")
    jump.get_by_test_id("opt-add").click()
    second = jump.get_by_test_id("enum-option").nth(1)
    second.get_by_test_id("opt-code").fill("APP")
    second.get_by_test_id("opt-name").fill("App")
    second.get_by_test_id("opt-add-child").click()
    child = jump.get_by_test_id("enum-child").nth(0)
    child.get_by_test_id("opt-code").fill("APP_HOME")
    child.get_by_test_id("opt-name").fill("Home")
    add_param("9title", "Title", "text", False)  # not an identifier
    shot(page, lang, "04-add-form")

    # The service's field errors land next to their fields.
    form.get_by_test_id("tp-save").click()
    # The service's message is shown in the user's language, from its code.
    too_long = t["field_error.text_too_long"].replace("{max}", "15").replace("{got}", "20")
    expect(form.locator("[data-error-for='name']")).to_have_text(too_long)
    expect(form.locator("[data-error-for='template_params[3].key']")).to_be_visible()
    expect(form.get_by_test_id("form-error")).to_contain_text(t["error.code.invalid_input"])
    shot(page, lang, "05-add-form-errors")

    name.fill("优惠券中心")
    expect(form.get_by_test_id("name-count")).to_have_text("5/15")
    form.get_by_test_id("param-key").nth(3).fill("title")
    form.get_by_test_id("tp-save").click()

    secret_dialog = page.get_by_test_id("secret-dialog")
    expect(secret_dialog).to_be_visible()
    secret = secret_dialog.get_by_test_id("signing-secret").input_value()
    assert secret.startswith("whsec_")
    expect(secret_dialog).to_contain_text(t["tp.secret.once_title"])
    shot(page, lang, "06-signing-secret")
    secret_dialog.get_by_test_id("secret-done").click()

    tp_row = row(page, "优惠券中心")
    expect(tp_row).to_be_visible()
    expect(tp_row.get_by_test_id("tp-status")).to_have_text(t["tp.status.enabled"])
    expect(tp_row.get_by_test_id("tp-last-test")).to_have_text(t["tp.never_tested"])
    shot(page, lang, "07-list")
    # Search and filters narrow the list.
    page.get_by_test_id("tp-search").fill("no such touchpoint")
    expect(page.get_by_text(t["tp.none_match_title"])).to_be_visible()
    page.get_by_test_id("tp-search").fill("")
    page.get_by_test_id("tp-filter-status").select_option("disabled")
    expect(page.get_by_text(t["tp.none_match_title"])).to_be_visible()
    page.get_by_test_id("tp-filter-status").select_option("")
    page.get_by_test_id("tp-filter-type").select_option("benefit")
    expect(tp_row).to_be_visible()
    page.get_by_test_id("tp-filter-type").select_option("")

    stored = client.get(f"/projects/{pid}/touchpoints").json()["items"][0]
    assert stored["token_set"] is True
    assert stored["batch_size"] == 50
    assert stored["user_attributes"] == ["memberId"]
    params = stored["template_params"]
    assert [(p["key"], p["type"], p["required"]) for p in params] == [
        ("startDate", "date", True),
        ("amount", "number", True),
        ("jump", "enum", True),
        ("title", "text", False),
    ]
    assert params[2]["enum"]["options"][1]["children"] == [{"code": "APP_HOME", "name": "Home"}]


def test_authorise_test_disable_edit_delete(
    page: Page,
    lang: str,
    shop: dict[str, Any],
    client: httpx.Client,
    receiver: Receiver,
    runtime: Runtime,
) -> None:
    t = texts(lang)
    pid = shop["id"]
    growth = shop["spaces"][0]
    r = client.post(f"/projects/{pid}/touchpoints", json={**TOUCHPOINT_BODY, "url": receiver.url})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    sign_in(page)
    tp_row = row(page, "Coupons")

    # While enabled, edit and delete are greyed out and say why.
    expect(tp_row.get_by_test_id("tp-edit")).to_be_disabled()
    assert tp_row.get_by_test_id("tp-edit").get_attribute("title") == t["tp.locked_reason"]
    expect(tp_row.get_by_test_id("tp-delete")).to_be_disabled()
    assert tp_row.get_by_test_id("tp-delete").get_attribute("title") == t["tp.delete_locked_reason"]

    # Authorise a space.
    tp_row.get_by_test_id("tp-spaces-btn").click()
    dialog = page.get_by_test_id("spaces-dialog")
    dialog.get_by_test_id("space-Growth").check()
    expect(dialog).not_to_contain_text("null")
    shot(page, lang, "08-spaces")
    dialog.get_by_test_id("spaces-save").click()
    expect(tp_row.get_by_test_id("tp-spaces")).to_have_text("Growth")
    assert client.get(f"/projects/{pid}/touchpoints/{tid}").json()["space_ids"] == [growth["id"]]

    # Test against the local receiver with inputs generated from the configuration.
    tp_row.get_by_test_id("tp-test").click()
    test = page.get_by_test_id("test-dialog")
    test.get_by_test_id("test-gid").fill("42")
    test.get_by_test_id("test-attr-memberId").fill("M042")
    expect(test.get_by_test_id("test-attr-level")).to_have_attribute("type", "number")
    test.get_by_test_id("test-attr-level").fill("3")
    expect(test.get_by_test_id("test-param-startDate")).to_have_attribute("type", "date")
    test.get_by_test_id("test-param-startDate").fill("2026-12-01")
    expect(test.get_by_test_id("test-param-amount")).to_have_attribute("type", "number")
    test.get_by_test_id("test-param-amount").fill("100")
    cascade = test.get_by_test_id("test-param-jump")
    # No second-level select until a category with children is chosen.
    expect(cascade.get_by_test_id("enum-level1")).to_be_visible()
    expect(cascade.get_by_test_id("enum-level2")).to_have_count(0)
    cascade.get_by_test_id("enum-level1").select_option("H5")
    expect(cascade.get_by_test_id("enum-level2")).to_have_count(0)
    cascade.get_by_test_id("enum-level1").select_option("APP")
    cascade.get_by_test_id("enum-level2").select_option("APP_HOME")
    test.get_by_test_id("test-param-title").fill("Hi {{memberId}}")
    test.get_by_test_id("test-send").click()
    verdict = test.get_by_test_id("test-verdict")
    expect(verdict).to_have_attribute("data-ok", "true")
    expect(verdict).to_contain_text(t["test.passed"])
    expect(test.get_by_test_id("test-statuses")).to_contain_text(t["status.TOU_SUCC"])
    expect(test.get_by_test_id("test-request-body")).to_contain_text("APP_HOME")
    shot(page, lang, "09-test-result")
    assert len(receiver.requests) == 1
    sent = receiver.requests[0]["dataList"][0]
    assert sent["gid"] == 42
    assert sent["dynamicData"] == {"memberId": "M042", "level": 3}
    assert sent["temData"] == {
        "startDate": "2026-12-01",
        "amount": 100,
        "jump": "APP_HOME",
        "title": "Hi M042",
    }
    page.keyboard.press("Escape")
    expect(tp_row.get_by_test_id("tp-last-test")).to_contain_text(t["tp.test_ok"])

    # Rotating the signing secret shows the new one once.
    more(tp_row, "tp-rotate")
    page.get_by_test_id("confirm-ok").click()
    rotated = page.get_by_test_id("secret-dialog").get_by_test_id("signing-secret")
    expect(rotated).to_have_value(re.compile(r"^whsec_"))
    assert rotated.input_value() != r.json()["signing_secret"]
    page.get_by_test_id("secret-done").click()

    # Disabling while a campaign uses it is refused, naming the campaign with a link.
    def blocking(session: Any, touchpoint_id: int) -> list[dict[str, Any]]:
        if touchpoint_id != tid:
            return []
        return [{"id": 7, "name": "Birthday coupon", "status": "running"}]

    wired = runtime.touchpoint_usage_checks
    runtime.touchpoint_usage_checks = (*wired, blocking)
    try:
        more(tp_row, "tp-disable")
        # Disabling asks first.
        confirm = page.get_by_test_id("disable-confirm")
        expect(confirm).to_contain_text("Coupons")
        confirm.get_by_test_id("confirm-ok").click()
        refusal = page.get_by_test_id("in-use")
        expect(refusal).to_be_visible()
        link = refusal.get_by_test_id("blocking-campaign")
        expect(link).to_have_text("Birthday coupon")
        assert link.get_attribute("href") == f"#/p/{pid}/campaign/7"
        expect(refusal).to_contain_text(t["campaign.status.running"])
        # What a running campaign's owner can do about it: pause it, then end it.
        expect(refusal.get_by_test_id("unblock-hint")).to_have_text(t["tp.unblock.pause_end"])
        shot(page, lang, "10-disable-refused")
        page.keyboard.press("Escape")
    finally:
        runtime.touchpoint_usage_checks = wired
    expect(tp_row.get_by_test_id("tp-status")).to_have_text(t["tp.status.enabled"])

    # Disable, then edit (type fixed, token write-only) and delete.
    more(tp_row, "tp-disable")
    page.get_by_test_id("confirm-ok").click()
    expect(tp_row.get_by_test_id("tp-status")).to_have_text(t["tp.status.disabled"])
    tp_row.get_by_test_id("tp-edit").click()
    form = page.get_by_test_id("tp-form")
    expect(form.get_by_test_id("tp-type")).to_be_disabled()
    expect(form.get_by_test_id("tp-token")).to_have_value("")
    form.get_by_test_id("tp-name").fill("Coupons 2")
    form.get_by_test_id("tp-description").fill("Issues coupons")
    shot(page, lang, "11-edit-form")
    form.get_by_test_id("tp-save").click()
    expect(form).to_be_hidden()
    edited = row(page, "Coupons 2")
    expect(edited).to_be_visible()
    stored = client.get(f"/projects/{pid}/touchpoints/{tid}").json()
    assert stored["description"] == "Issues coupons"
    assert stored["template_params"] == TOUCHPOINT_BODY["template_params"]
    shot(page, lang, "12-list-disabled")

    more(edited, "tp-delete")
    page.get_by_test_id("confirm-ok").click()
    expect(edited).to_have_count(0)
    assert client.get(f"/projects/{pid}/touchpoints/{tid}").status_code == 404


def test_campaign_editor_refusal_link_and_results(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client, receiver: Receiver
) -> None:
    t = texts(lang)
    pid = shop["id"]
    growth = shop["spaces"][0]
    city = {"key": "city", "name": "City", "type": "string", "kind": "attribute"}
    assert client.post(f"/projects/{pid}/attributes", json=city).status_code == 201
    lines = "\n".join(
        json.dumps({"gid": 100 + i, "attributes": {"memberId": f"M{i}", "level": i, "city": city}})
        for i, city in enumerate(["Shanghai", "Beijing", "Shanghai", "Shenzhen", "Shanghai"])
    )
    r = client.post(
        f"/projects/{pid}/users/import",
        content=lines.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and r.json()["imported"] == 5, r.text
    r = client.post(f"/projects/{pid}/touchpoints", json={**TOUCHPOINT_BODY, "url": receiver.url})
    tid = r.json()["id"]
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [growth["id"]]})

    sign_in(page)
    page.get_by_test_id("nav-campaigns").click()
    expect(page.get_by_test_id("space-tab-Growth")).to_have_class(re.compile(r"\bactive\b"))
    shot(page, lang, "13-campaigns-empty")
    page.get_by_test_id("campaign-new").click()
    page.get_by_test_id("campaign-name-input").fill("Shanghai coupons")
    page.locator("[data-testid=audience-match-filter] + span").click()
    condition = page.get_by_test_id("filter-condition")
    condition.get_by_test_id("filter-attribute").select_option("city")
    condition.get_by_test_id("filter-value").fill("Shanghai")
    # The send step is edited in the canvas's inspector.
    page.locator("[data-testid=node][data-path='strategy']").click()
    channel = page.get_by_test_id("channel")
    channel.get_by_test_id("channel-touchpoint").select_option(str(tid))
    # Parameter inputs follow the touchpoint's declared types.
    expect(channel.get_by_test_id("param-startDate")).to_have_attribute("type", "date")
    expect(channel.get_by_test_id("param-amount")).to_have_attribute("type", "number")
    channel.get_by_test_id("param-startDate").fill("2026-12-24")
    jump = channel.get_by_test_id("param-jump")
    jump.get_by_test_id("enum-level1").select_option("APP")
    jump.get_by_test_id("enum-level2").select_option("APP_MINE")
    channel.get_by_test_id("param-title").fill("Hello {{memberId}}")
    page.get_by_test_id("campaign-save").click()
    # The required amount is missing: the service says so next to the field.
    error = page.locator("[data-error-for='strategy.channels[0].params.amount']")
    expect(error).to_be_visible()
    expect(page.get_by_test_id("form-error")).to_contain_text(t["error.code.invalid_input"])
    shot(page, lang, "14-campaign-editor-error")
    channel.get_by_test_id("param-amount").fill("88")
    page.get_by_test_id("campaign-save").click()
    expect(page.get_by_test_id("campaign-name")).to_contain_text("Shanghai coupons")
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.draft"])
    # The dry run shows the exact body the matching users would get.
    page.get_by_test_id("campaign-preview").click()
    preview = page.get_by_test_id("preview-dialog").get_by_test_id("preview-request")
    expect(preview).to_have_count(1)
    expect(preview).to_contain_text('"title": "Hello M0"')
    expect(preview).to_contain_text('"jump": "APP_MINE"')
    shot(page, lang, "14b-campaign-preview")
    page.keyboard.press("Escape")
    page.get_by_test_id("campaign-submit").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.in_approval"])
    expect(page.get_by_test_id("campaign-edit")).to_have_count(0)
    cid = client.get(f"/projects/{pid}/spaces/{growth['id']}/campaigns").json()["items"][0]["id"]

    # A campaign in approval keeps the touchpoint in use: the refusal links to it.
    page.get_by_test_id("nav-touchpoints").click()
    more(row(page, "Coupons"), "tp-disable")
    page.get_by_test_id("confirm-ok").click()
    refusal = page.get_by_test_id("in-use")
    link = refusal.get_by_test_id("blocking-campaign")
    expect(link).to_have_text("Shanghai coupons")
    expect(refusal).to_contain_text(t["campaign.status.in_approval"])
    link.click()
    expect(page).to_have_url(re.compile(rf"#/p/{pid}/s/{growth['id']}/campaigns/{cid}$"))
    expect(page.get_by_test_id("campaign-name")).to_contain_text("Shanghai coupons")

    page.get_by_test_id("campaign-approve").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text(
        t["campaign.status.awaiting_publish"]
    )
    expect(page.get_by_test_id("toast").last).to_contain_text(
        t["campaign.toast.approve"].replace("{name}", "Shanghai coupons")
    )
    # Publishing asks first, saying whom it reaches now (3 Shanghai users).
    page.get_by_test_id("campaign-publish").click()
    reach = page.get_by_test_id("publish-confirm").get_by_test_id("publish-reach")
    users = t["campaign.reach.users"].replace("{n}", "3")
    expect(reach).to_have_text(t["campaign.reach.now"].replace("{users}", users))
    shot(page, lang, "14c-publish-confirm")
    page.get_by_test_id("publish-confirm").get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("campaign-publish")).to_have_count(0)
    # The page follows the run by itself, no reload: the cards reach 3 and settle.
    expect(page.get_by_test_id("stat-succeeded")).to_contain_text("3", timeout=60_000)
    expect(page.get_by_test_id("live")).to_have_count(0, timeout=60_000)
    expect(page.get_by_test_id("stat-targeted")).to_contain_text("3")
    expect(page.get_by_test_id("deliveries-table").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_test_id("chart-touchpoints").locator("svg rect")).to_have_count(1)
    expect(page.get_by_test_id("chart-time").locator("svg rect").first).to_be_visible()
    shot(page, lang, "15-campaign-results")
    sent = sorted(
        (entry["gid"], entry["temData"]["title"], entry["temData"]["jump"])
        for body in receiver.requests
        for entry in body["dataList"]
    )
    assert sent == [
        (100, "Hello M0", "APP_MINE"),
        (102, "Hello M2", "APP_MINE"),
        (104, "Hello M4", "APP_MINE"),
    ]
    page.goto(f"/#/p/{pid}/s/{growth['id']}/campaigns")
    campaign_row = page.locator(f"[data-testid=campaign-row][data-id='{cid}']")
    expect(campaign_row.get_by_test_id("campaign-copy")).to_be_visible()
    shot(page, lang, "16-campaign-list")


def test_options_api_preview(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client, receiver: Receiver
) -> None:
    t = texts(lang)
    pid = shop["id"]
    options_url = receiver.url.replace("/touch", "/options")
    body = {
        "name": "Templates",
        "type": "notification",
        "url": receiver.url,
        "template_params": [
            {
                "key": "tpl",
                "name": "Template",
                "type": "enum",
                "required": True,
                "enum": {"source": "api", "url": options_url},
            }
        ],
    }
    tid = client.post(f"/projects/{pid}/touchpoints", json=body).json()["id"]
    assert client.post(f"/projects/{pid}/touchpoints/{tid}/disable").status_code == 200
    sign_in(page)
    row(page, "Templates").get_by_test_id("tp-edit").click()
    form = page.get_by_test_id("tp-form")
    param = form.get_by_test_id("param-row")
    expect(param.get_by_test_id("enum-url")).to_have_value(options_url)
    param.get_by_test_id("options-load").click()
    preview = param.get_by_test_id("options-preview")
    expect(preview.get_by_test_id("options-count")).to_have_text(
        t["tp.enum.count"].replace("{n}", "120")
    )
    expect(preview.get_by_test_id("many-options")).to_be_visible()
    expect(preview).to_contain_text("Template 2.39")
    shot(page, lang, "17-options-preview")
    page.get_by_test_id("tp-cancel").click()
    expect(form).to_have_count(0)

    # A new touchpoint's options API is previewed before it is saved.
    page.get_by_test_id("tp-add").click()
    form.get_by_test_id("param-add").click()
    param = form.get_by_test_id("param-row")
    param.get_by_test_id("param-type").select_option("enum")
    param.locator("[data-testid=enum-source-api] + span").click()
    expect(param.get_by_test_id("options-load")).to_be_disabled()
    param.get_by_test_id("enum-url").fill(options_url)
    param.get_by_test_id("options-load").click()
    # The options API receives the parameter's key: it is asked for first.
    expect(param.get_by_test_id("options-error")).to_have_text(t["tp.enum.need_key"])
    param.get_by_test_id("param-key").fill("tpl")
    param.get_by_test_id("options-load").click()
    expect(param.get_by_test_id("options-count")).to_have_text(
        t["tp.enum.count"].replace("{n}", "120")
    )
    # A URL that answers nothing useful says so, in the preview.
    param.get_by_test_id("enum-url").fill(receiver.url.replace("/touch", "/nothing"))
    param.get_by_test_id("options-load").click()
    expect(param.get_by_test_id("options-error")).to_be_visible()
    shot(page, lang, "17b-options-preview-unsaved")


def test_plugin_touchpoint_form(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client, tmp_path: Path
) -> None:
    t = texts(lang)
    pid = shop["id"]
    sample = Path(__file__).resolve().parents[1] / "examples/plugins/sms_gateway"
    package = tmp_path / "sms.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for name in ("touchgate-plugin.toml", "sms_gateway.py"):
            archive.write(sample / name, name)
    r = client.post(
        f"/projects/{pid}/plugins",
        files={"file": ("sms.zip", package.read_bytes(), "application/zip")},
    )
    assert r.status_code == 201, r.text
    plugin_id = r.json()["id"]

    sign_in(page)
    page.get_by_test_id("tp-add").click()
    form = page.get_by_test_id("tp-form")
    form.get_by_test_id("tp-name").fill("SMS plugin")
    form.locator("[data-testid=tp-transport-plugin] + span").click()
    form.get_by_test_id("tp-plugin").select_option(str(plugin_id))
    # The plugin's manifest becomes the form: a secret, an enum with its default, a number.
    expect(form.locator("[data-field='plugin_config.api_key']")).to_have_attribute(
        "type", "password"
    )
    expect(form.locator("[data-field='plugin_config.region']")).to_have_value("cn-east")
    form.locator("[data-field='plugin_config.region']").select_option("cn-north")
    form.get_by_test_id("tp-save").click()
    # The secret is required by the manifest: the service names it, next to its input.
    expect(form.locator("[data-error-for='plugin_config.api_key']")).to_be_visible()
    form.locator("[data-field='plugin_config.api_key']").fill("k-123")
    shot(page, lang, "18-plugin-form")
    form.get_by_test_id("tp-save").click()
    page.get_by_test_id("secret-done").click()
    stored = client.get(f"/projects/{pid}/touchpoints").json()["items"][0]
    assert stored["transport"] == "plugin"
    assert stored["plugin_id"] == plugin_id
    assert stored["plugin_config"]["region"] == "cn-north"
    assert stored["plugin_config"]["api_key_set"] is True
    assert "k-123" not in json.dumps(stored)
    expect(row(page, "SMS plugin")).to_contain_text(t["tp.transport.plugin"])

    # Editing keeps the secret unless a new one is typed.
    client.post(f"/projects/{pid}/touchpoints/{stored['id']}/disable")
    page.reload()
    row(page, "SMS plugin").get_by_test_id("tp-edit").click()
    secret = form.locator("[data-field='plugin_config.api_key']")
    expect(secret).to_have_value("")
    expect(secret).to_have_attribute("placeholder", t["tp.form.token_keep"])
    form.get_by_test_id("tp-description").fill("Outbox")
    form.get_by_test_id("tp-save").click()
    expect(form).to_be_hidden()
    stored = client.get(f"/projects/{pid}/touchpoints/{stored['id']}").json()
    assert stored["plugin_config"]["api_key_set"] is True
    assert stored["description"] == "Outbox"


def test_failed_test_send_is_diagnosed(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(lang)
    pid = shop["id"]
    closed = f"http://127.0.0.1:{free_port()}/touch"  # nothing listens there
    body = {"name": "Offline", "type": "other", "url": closed, "timeout_seconds": 2}
    assert client.post(f"/projects/{pid}/touchpoints", json=body).status_code == 201
    sign_in(page)
    row(page, "Offline").get_by_test_id("tp-test").click()
    test = page.get_by_test_id("test-dialog")
    test.get_by_test_id("test-send").click()
    verdict = test.get_by_test_id("test-verdict")
    expect(verdict).to_have_attribute("data-ok", "false")
    expect(verdict).to_contain_text(t["test.failed"])
    expect(verdict).to_contain_text(t["test.sum.unreachable"])
    expect(test.get_by_test_id("test-diagnosis")).to_be_visible()
    shot(page, lang, "19-test-failed")
    page.keyboard.press("Escape")
    expect(row(page, "Offline").get_by_test_id("tp-last-test")).to_contain_text(t["tp.test_failed"])


def test_campaign_follow_up_steps_and_json_mode(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client, receiver: Receiver
) -> None:
    t = texts(lang)
    pid = shop["id"]
    growth = shop["spaces"][0]
    body = {"name": "Pinger", "type": "other", "url": receiver.url}
    tid = client.post(f"/projects/{pid}/touchpoints", json=body).json()["id"]
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [growth["id"]]})
    sign_in(page)
    page.goto(f"/#/p/{pid}/s/{growth['id']}/campaigns/new")
    page.get_by_test_id("campaign-name-input").fill("Two steps")
    nodes = page.get_by_test_id("node")
    inspector = page.get_by_test_id("inspector")
    nodes.nth(0).click()
    inspector.get_by_test_id("channel-touchpoint").select_option(str(tid))
    page.locator("[data-testid=add-step][data-slot='strategy.next']").click()
    page.get_by_test_id("choose-send").click()
    expect(nodes).to_have_count(2)
    expect(inspector).to_have_attribute("data-path", "strategy.next")
    inspector.locator("[data-testid=timing-delay] + span").click()
    # An hour by default, shown in the largest whole unit.
    expect(inspector.get_by_test_id("delay-amount")).to_have_value("1")
    expect(inspector.get_by_test_id("delay-unit")).to_have_value("60")
    inspector.get_by_test_id("delay-unit").select_option("1")
    inspector.get_by_test_id("delay-amount").fill("0")  # too short: named by the service
    inspector.get_by_test_id("channel-touchpoint").select_option(str(tid))
    page.get_by_test_id("campaign-save").click()
    expect(page.locator("[data-error-for='strategy.next.timing.minutes']")).to_be_visible()
    inspector.get_by_test_id("delay-amount").fill("90")
    shot(page, lang, "20-campaign-two-steps")

    # The JSON view shows the same content, and the canvas comes back from it.
    page.get_by_test_id("campaign-json-toggle").click()
    content = json.loads(page.get_by_test_id("campaign-json").input_value())
    assert content["strategy"]["next"]["timing"] == {"type": "delay", "minutes": 90}
    page.get_by_test_id("campaign-json-toggle").click()
    expect(nodes).to_have_count(2)
    page.get_by_test_id("campaign-save").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.draft"])
    items = client.get(f"/projects/{pid}/spaces/{growth['id']}/campaigns").json()["items"]
    strategy = items[0]["strategy"]
    assert strategy["id"] == "s1" and strategy["next"]["id"] == "s2"
    assert strategy["next"]["channels"] == [{"touchpoint_id": tid, "params": {}}]

    # Editing shows both steps; a control group first step ends the path (after asking).
    page.get_by_test_id("campaign-edit").click()
    expect(nodes).to_have_count(2)
    nodes.nth(0).click()
    inspector.locator("[data-testid=timing-none] + span").click()
    page.get_by_test_id("confirm-ok").click()
    expect(nodes).to_have_count(1)
    expect(page.get_by_test_id("add-step")).to_have_count(0)
    page.get_by_test_id("campaign-save").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.draft"])
    saved = client.get(f"/projects/{pid}/spaces/{growth['id']}/campaigns/{items[0]['id']}").json()
    assert saved["strategy"]["timing"] == {"type": "none"}
    assert "next" not in saved["strategy"]


def test_api_keys_and_audit_pages(page: Page, shop: dict[str, Any], client: httpx.Client) -> None:
    """Create a key in the console (shown once, copyable), see it work and list it
    with its last use, revoke it, and find all of it in the audit log — at desktop
    width and on a phone."""
    pid = shop["id"]
    growth = shop["spaces"][0]["id"]
    sign_in(page)
    page.get_by_test_id("nav-keys").click()
    expect(page.get_by_test_id("keys-table")).to_be_hidden()
    page.get_by_test_id("key-add").click()
    page.get_by_test_id("key-name").fill("campaign team")
    page.get_by_test_id("key-role").select_option("operator")
    page.get_by_test_id(f"key-space-{growth}").check()
    page.get_by_test_id("key-submit").click()
    key = page.get_by_test_id("key-value").input_value()
    assert key.startswith("tg_")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_test_id("key-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.get_by_test_id("key-done").click()
    expect(page.get_by_test_id("key-value")).to_have_count(0)
    # The key works, as far as it reaches.
    headers = {"Authorization": f"Bearer {key}"}
    assert (
        client.get(f"/projects/{pid}/spaces/{growth}/campaigns", headers=headers).status_code == 200
    )
    other = shop["spaces"][1]["id"]
    assert (
        client.get(f"/projects/{pid}/spaces/{other}/campaigns", headers=headers).status_code == 403
    )
    page.reload()
    row_ = page.locator("[data-testid=key-row]").filter(has_text="campaign team")
    expect(row_).to_contain_text("Growth")
    assert key not in page.content()
    # Revoking it stops it at once.
    row_.get_by_test_id("key-revoke").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.locator("[data-testid=key-row]").filter(has_text="campaign team")).to_have_count(0)
    assert client.get(f"/projects/{pid}", headers=headers).status_code == 401

    page.get_by_test_id("nav-audit").click()
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    page.get_by_test_id("audit-type").select_option("api_key")
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("campaign team")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(rows.first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
