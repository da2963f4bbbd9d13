"""The console as an operator uses it for a day (issue 10), in Chromium, in both
languages and on both database backends: times in the project's zone in a browser set
to UTC, layouts without horizontal overflow at 1280 px and on a 390 px phone,
confirmations before sending, dialogs that ask before throwing work away, test users
loaded from the data store, plugins uploaded from the form, and results that keep a
deleted touchpoint's name and export as CSV.

Set ``TOUCHGATE_SCREENSHOTS=<dir>`` to keep a screenshot of every screen.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update

from conftest import ADMIN_TOKEN, LiveServer
from test_campaign_support import campaign_body, wait_for
from test_console_api import import_shanghai_users
from test_console_browser import (  # noqa: F401 (fixtures)
    LANGS,
    Receiver,
    browser,
    more,
    receiver,
    row,
    shot,
    sign_in,
    texts,
)
from touchgate.models import Campaign

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# Text squeezed into one character per line, and pages wider than the screen.
LAYOUT_JS = """() => {
  const doc = document.documentElement;
  const squeezed = [];
  const labels = 'label, th, .field-label, .cell-label, h1, h2, h3, .btn, .badge, .nav-link,'
    + ' dt, dd, .stat-label, .chip, .breadcrumb a, td';
  for (const el of document.querySelectorAll(labels)) {
    const text = (el.textContent || '').trim();
    if (text.length < 3 || !el.getClientRects().length) continue;
    const r = el.getBoundingClientRect();
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (r.width < size * 2.2 && r.height > size * 3.5) squeezed.push(text.slice(0, 30));
  }
  const boxes = [...document.querySelectorAll('dialog[open] .modal-body, .table-card')]
    .filter((el) => el.scrollWidth > el.clientWidth + 1)
    .map((el) => el.className);
  return { page: doc.scrollWidth - window.innerWidth, squeezed, boxes };
}"""


def check_layout(page: Page, where: str, *, table_fits: bool = True) -> None:
    found = page.evaluate(LAYOUT_JS)
    assert found["page"] <= 0, f"{where}: the page is {found['page']} px wider than the screen"
    assert not found["squeezed"], f"{where}: text squeezed one character a line: {found}"
    if table_fits:
        assert not found["boxes"], f"{where}: content wider than its box: {found['boxes']}"


@pytest.fixture
def open_page(
    browser: Browser,  # noqa: F811
    live_server: LiveServer,
    runtime: Any,
) -> Iterator[Callable[..., Page]]:
    """A signed-in page in a browser with the given locale, viewport and time zone."""
    contexts = []
    errors: list[str] = []

    def make(
        lang: str, viewport: dict[str, int] = DESKTOP, timezone: str = "UTC", key: str = ADMIN_TOKEN
    ) -> Page:
        context = browser.new_context(
            locale=lang, viewport=viewport, timezone_id=timezone, base_url=live_server.url
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in(pg, key)
        return pg

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def shanghai(client: httpx.Client, receiver: Receiver) -> dict[str, Any]:  # noqa: F811
    """A project in Asia/Shanghai with a space, users and a touchpoint authorised to it."""
    pid = client.post("/projects", json={"name": "Shop", "timezone": "Asia/Shanghai"}).json()["id"]
    space = client.post(f"/projects/{pid}/spaces", json={"name": "Growth"}).json()
    import_shanghai_users(client, pid)
    body = {
        "name": "Coupons",
        "type": "benefit",
        "url": receiver.url,
        "description": "Issues the coupons of the member programme",
        "user_attributes": ["memberId", "city"],
        "template_params": [
            {"key": "title", "name": "Title", "type": "text", "required": True},
            {"key": "amount", "name": "Amount", "type": "number", "required": False},
            {
                "key": "jump",
                "name": "Jump",
                "type": "enum",
                "required": False,
                "enum": {"source": "manual", "options": [{"code": "H5", "name": "H5 page"}]},
            },
        ],
    }
    tp = client.post(f"/projects/{pid}/touchpoints", json=body).json()
    client.put(f"/projects/{pid}/touchpoints/{tp['id']}/spaces", json={"space_ids": [space["id"]]})
    return {
        "id": pid,
        "space": space,
        "touchpoint": tp,
        "base": f"/projects/{pid}/spaces/{space['id']}/campaigns",
    }


def campaign(
    client: httpx.Client,
    shop: dict[str, Any],
    name: str,
    trigger: dict[str, Any],
    actions: tuple[str, ...] = ("submit", "approve", "publish"),
) -> dict[str, Any]:
    body = campaign_body(shop["touchpoint"]["id"], name, trigger=trigger)
    r = client.post(shop["base"], json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    for action in actions:
        r = client.post(f"{shop['base']}/{out['id']}/{action}")
        assert r.status_code == 200, r.text
        out = r.json()
    return out


def test_times_in_the_projects_zone_in_a_utc_browser(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    once = campaign(client, shanghai, "Member day", {"type": "once", "at": "2030-12-01T10:00"})
    assert once["next_run_at"].startswith("2030-12-01T02:00")  # 10:00 in Shanghai is 02:00 UTC
    campaign(client, shanghai, "Daily", {"type": "recurring", "every": "daily", "time": "10:00"})
    page = open_page(lang, timezone="UTC")
    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns")
    listed = page.locator(f"[data-testid=campaign-row][data-id='{once['id']}']")
    expect(listed.get_by_test_id("campaign-next-run")).to_contain_text("10:00")
    expect(listed.get_by_test_id("campaign-next-run")).not_to_contain_text("2:00")
    expect(page.locator("th.col-next_run")).to_contain_text("Asia/Shanghai")
    daily = page.locator("[data-testid=campaign-row][data-name='Daily']")
    expect(daily).to_contain_text("10:00")
    expect(daily).to_contain_text("Asia/Shanghai")
    shot(page, lang, "day-01-times-list")

    listed.get_by_test_id("campaign-link").click()
    expect(page.get_by_test_id("campaign-trigger")).to_contain_text("10:00")
    expect(page.get_by_test_id("campaign-trigger")).to_contain_text("Asia/Shanghai")
    expect(page.get_by_test_id("campaign-next-run")).to_contain_text("10:00")
    expect(page.get_by_test_id("campaign-next-run")).to_contain_text("Asia/Shanghai")
    expect(page.get_by_test_id("summary-trigger")).to_contain_text("10:00")
    # The touchpoint list says which zone its times are in.
    page.get_by_test_id("nav-touchpoints").click()
    expect(page.locator("th.col-updated")).to_contain_text("Asia/Shanghai")
    shot(page, lang, "day-02-times-campaign")


def test_no_horizontal_overflow_on_desktop_and_phone(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    pid = shanghai["id"]
    other = client.post(f"/projects/{pid}/spaces", json={"name": "Membership"}).json()
    client.put(
        f"/projects/{pid}/touchpoints/{shanghai['touchpoint']['id']}/spaces",
        json={"space_ids": [shanghai["space"]["id"], other["id"]]},
    )
    run = campaign(client, shanghai, "Shanghai coupons", {"type": "once"})
    for name, viewport in (("1280", DESKTOP), ("390", PHONE)):
        page = open_page(lang, viewport)
        expect(row(page, "Coupons")).to_be_visible()
        check_layout(page, f"touchpoint list at {name} px")
        shot(page, lang, f"day-03-list-{name}")
        page.get_by_test_id("tp-add").click()
        form = page.get_by_test_id("tp-form")
        form.get_by_test_id("param-add").click()
        form.get_by_test_id("param-type").select_option("enum")
        form.get_by_test_id("opt-add").click()
        form.get_by_test_id("opt-add-child").click()
        check_layout(page, f"touchpoint form at {name} px")
        shot(page, lang, f"day-04-form-{name}")
        page.keyboard.press("Escape")
        page.get_by_test_id("confirm-ok").click()  # discard the half-filled form
        expect(form).to_have_count(0)
        page.goto(f"/#/p/{pid}/s/{shanghai['space']['id']}/campaigns/{run['id']}")
        expect(page.get_by_test_id("stat-succeeded")).to_contain_text("3", timeout=60_000)
        expect(page.get_by_test_id("deliveries-table")).to_be_visible()
        # Wide result tables scroll inside their card on a phone; the page never does.
        check_layout(page, f"campaign page at {name} px", table_fits=name == "1280")
        shot(page, lang, f"day-05-campaign-{name}")
        page.goto(f"/#/p/{pid}/s/{shanghai['space']['id']}/campaigns")
        expect(page.get_by_test_id("campaign-table")).to_be_visible()
        check_layout(page, f"campaign list at {name} px")


def test_publish_asks_first_and_actions_say_what_happened(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(lang)
    made = campaign(client, shanghai, "每日会员提醒", {"type": "once"}, actions=("submit",))
    page = open_page(lang)
    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns/{made['id']}")
    # The approver reads what the campaign does without opening the editor.
    summary = page.get_by_test_id("campaign-summary")
    expect(summary.get_by_test_id("summary-audience-size")).to_have_text(
        t["campaign.summary.size"].replace("{n}", "3")
    )
    expect(summary.get_by_test_id("summary-channel")).to_contain_text("Coupons")
    expect(summary.get_by_test_id("summary-channel")).to_contain_text("Hi {{memberId}}")
    expect(summary.locator("[data-param=amount]")).to_have_text("100")
    expect(summary.get_by_test_id("tp-readiness")).to_contain_text(t["tp.never_tested"])
    expect(summary.get_by_test_id("summary-protection")).to_have_text(
        t["campaign.summary.protection_on"]
    )
    shot(page, lang, "day-06-approver-summary")
    page.get_by_test_id("campaign-approve").click()
    expect(page.get_by_test_id("toast").last).to_have_text(
        t["campaign.toast.approve"].replace("{name}", "每日会员提醒")
    )
    # Publish asks first; cancelling sends nothing.
    page.get_by_test_id("campaign-publish").click()
    confirm = page.get_by_test_id("publish-confirm")
    users = t["campaign.reach.users"].replace("{n}", "3")
    expect(confirm.get_by_test_id("publish-reach")).to_have_text(
        t["campaign.reach.now"].replace("{users}", users)
    )
    confirm.get_by_test_id("confirm-cancel").click()
    expect(confirm).to_have_count(0)
    assert client.get(f"{shanghai['base']}/{made['id']}").json()["status"] == "awaiting_publish"
    page.get_by_test_id("campaign-publish").click()
    confirm.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("toast").last).to_have_text(
        t["campaign.toast.publish"].replace("{name}", "每日会员提醒")
    )
    expect(page.get_by_test_id("stat-succeeded")).to_contain_text("3", timeout=60_000)

    # A paused recurring campaign shows no next run; resuming asks; ending is 结束活动.
    weekly = campaign(
        client, shanghai, "Weekly", {"type": "recurring", "every": "daily", "time": "10:00"}
    )
    client.post(f"{shanghai['base']}/{weekly['id']}/pause")
    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns/{weekly['id']}")
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.paused"])
    expect(page.get_by_test_id("campaign-next-run")).to_have_count(0)
    page.get_by_test_id("campaign-resume").click()
    expect(page.get_by_test_id("resume-confirm")).to_contain_text("Weekly")
    page.get_by_test_id("confirm-cancel").click()
    expect(page.get_by_test_id("campaign-close")).to_have_text(t["campaign.action.close"])
    page.get_by_test_id("campaign-close").click()
    page.get_by_test_id("close-confirm").get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text(t["campaign.status.closed"])
    expect(page.get_by_test_id("toast").last).to_have_text(
        t["campaign.toast.close"].replace("{name}", "Weekly")
    )
    shot(page, lang, "day-07-ended")


def test_dialogs_ask_before_discarding_and_close_with_the_route(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(lang)
    page = open_page(lang)
    page.get_by_test_id("tp-add").click()
    form = page.get_by_test_id("tp-form")
    expect(form.get_by_test_id("tp-name")).to_be_focused()
    # Untouched: Esc closes at once.
    page.keyboard.press("Escape")
    expect(form).to_have_count(0)
    page.get_by_test_id("tp-add").click()
    form.get_by_test_id("tp-name").fill("Half done")
    page.keyboard.press("Escape")
    confirm = page.get_by_test_id("confirm")
    expect(confirm).to_contain_text(t["common.discard_title"])
    shot(page, lang, "day-08-discard")
    confirm.get_by_test_id("confirm-cancel").click()  # keep editing
    expect(form.get_by_test_id("tp-name")).to_have_value("Half done")
    form.get_by_test_id("modal-x").click()
    confirm.get_by_test_id("confirm-ok").click()
    expect(form).to_have_count(0)
    # A click outside asks too.
    page.get_by_test_id("tp-add").click()
    expect(form.get_by_test_id("tp-name")).to_be_focused()
    form.get_by_test_id("tp-name").fill("Again")
    page.mouse.click(5, 5)
    expect(confirm).to_be_visible()
    confirm.get_by_test_id("confirm-ok").click()
    expect(form).to_have_count(0)
    # Dialogs belong to their page: a route change closes them.
    row(page, "Coupons").get_by_test_id("tp-test").click()
    expect(page.get_by_test_id("test-dialog")).to_be_visible()
    page.evaluate(f"location.hash = '#/p/{shanghai['id']}/campaigns'")
    expect(page.get_by_test_id("test-dialog")).to_have_count(0)

    # After creating a campaign the URL names it.
    page.get_by_test_id("campaign-new").click()
    page.get_by_test_id("campaign-name-input").fill("Named")
    page.locator("[data-testid=node][data-path='strategy']").click()
    channel = page.get_by_test_id("channel")
    channel.get_by_test_id("channel-touchpoint").select_option(str(shanghai["touchpoint"]["id"]))
    channel.get_by_test_id("param-title").fill("Hello")
    page.get_by_test_id("campaign-save").click()
    expect(page.get_by_test_id("campaign-name")).to_contain_text("Named")
    cid = client.get(shanghai["base"]).json()["items"][0]["id"]
    expect(page).to_have_url(re.compile(rf"#/p/{shanghai['id']}/s/\d+/campaigns/{cid}$"))


def test_channel_test_loads_a_user_and_plugins_upload_from_the_form(
    open_page: Callable[..., Page],
    lang: str,
    shanghai: dict[str, Any],
    client: httpx.Client,
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    t = texts(lang)
    page = open_page(lang)
    row(page, "Coupons").get_by_test_id("tp-test").click()
    test = page.get_by_test_id("test-dialog")
    test.get_by_test_id("test-gid").fill("102")
    test.get_by_test_id("test-load-user").click()
    expect(test.get_by_test_id("test-attr-memberId")).to_have_value("M2")
    expect(test.get_by_test_id("test-attr-city")).to_have_value("Shanghai")
    expect(test.get_by_test_id("test-user-loaded")).to_have_text(
        t["test.user_loaded"].replace("{gid}", "102").replace("{n}", "2").replace("{total}", "2")
    )
    test.get_by_test_id("test-param-title").fill("Hi {{memberId}}")
    test.get_by_test_id("test-send").click()
    expect(test.get_by_test_id("test-verdict")).to_have_attribute("data-ok", "true")
    assert receiver.requests[-1]["dataList"][0]["dynamicData"] == {
        "memberId": "M2",
        "city": "Shanghai",
    }
    test.get_by_test_id("test-gid").fill("999")
    test.get_by_test_id("test-load-user").click()
    expect(test.get_by_test_id("test-user-loaded")).to_have_text(
        t["test.user_not_found"].replace("{gid}", "999")
    )
    shot(page, lang, "day-09-test-user")
    page.keyboard.press("Escape")
    page.get_by_test_id("confirm-ok").click()

    # A plugin uploaded from the form: a broken package lists its problems.
    page.get_by_test_id("tp-add").click()
    form = page.get_by_test_id("tp-form")
    form.locator("[data-testid=tp-transport-plugin] + span").click()
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("touchgate-plugin.toml", 'name = ""\n')
    form.get_by_test_id("plugin-file").set_input_files(str(broken))
    problems = form.get_by_test_id("plugin-upload-error")
    expect(problems).to_be_visible()
    expect(problems.locator("li").first).to_be_visible()
    shot(page, lang, "day-10-plugin-problems")
    sample = Path(__file__).resolve().parents[1] / "examples/plugins/sms_gateway"
    package = tmp_path / "sms.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for name in ("touchgate-plugin.toml", "sms_gateway.py"):
            archive.write(sample / name, name)
    form.get_by_test_id("plugin-file").set_input_files(str(package))
    expect(form.get_by_test_id("tp-plugin")).to_have_value(re.compile(r"^\d+$"))
    plugins = client.get(f"/projects/{shanghai['id']}/plugins")
    assert plugins.json()["total"] == 1
    expect(form.get_by_test_id("tp-plugin")).to_have_value(str(plugins.json()["items"][0]["id"]))
    expect(problems).to_have_count(0)
    expect(form.locator("[data-field='plugin_config.region']")).to_have_value("cn-east")
    shot(page, lang, "day-11-plugin-uploaded")


def test_results_keep_a_deleted_touchpoints_name_and_export_csv(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    """Needs the campaigns branch (stored touchpoint names, deliveries.csv): skipped
    against a server without them."""
    t = texts(lang)
    run = campaign(client, shanghai, "Shanghai coupons", {"type": "once"})
    csv_url = f"{shanghai['base']}/{run['id']}/deliveries.csv"
    if client.get(csv_url).status_code != 200:
        pytest.skip("this server has no deliveries.csv yet (campaigns branch)")
    # Finished: its touchpoint may then be disabled and deleted.
    url = f"{shanghai['base']}/{run['id']}"
    wait_for(lambda: client.get(url).json()["status"] == "finished", what="the run to finish")
    tid = shanghai["touchpoint"]["id"]
    assert client.post(f"/projects/{shanghai['id']}/touchpoints/{tid}/disable").status_code == 200
    assert client.delete(f"/projects/{shanghai['id']}/touchpoints/{tid}").status_code == 204

    page = open_page(lang)
    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns/{run['id']}")
    deleted = t["campaign.touchpoint_deleted"].replace("{name}", "Coupons")
    expect(page.get_by_test_id("chart-touchpoints")).to_contain_text("Coupons")
    expect(page.get_by_test_id("delivery-touchpoint").first).to_have_text(deleted)
    expect(page.get_by_test_id("campaign-summary")).to_contain_text("Coupons")
    shot(page, lang, "day-12-deleted-touchpoint")

    page.get_by_test_id("deliveries-status").select_option("TOU_SUCC")
    with page.expect_download() as info:
        page.get_by_test_id("deliveries-export").click()
    data = Path(info.value.path()).read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(data)))
    assert sorted(int(r["gid"]) for r in rows) == [100, 102, 103]
    assert {r["status"] for r in rows} == {"TOU_SUCC"}
    assert {r["touchpoint_name"] for r in rows} == {"Coupons"}


def test_the_phone_nav_scrolls_by_itself_and_shows_where_you_are(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any]
) -> None:
    """Five entries do not fit 390 px in English: the nav scrolls inside itself (the
    page never does), with the current entry in view."""
    page = open_page(lang, PHONE)
    page.goto(f"/#/p/{shanghai['id']}/audit")
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    check_layout(page, "audit log at 390 px")
    nav = page.locator(".topbar .nav")
    assert nav.evaluate("n => n.getBoundingClientRect().right") <= PHONE["width"]
    active = page.get_by_test_id("nav-audit")
    box = active.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1
    shot(page, lang, "day-13-phone-nav")


def test_a_viewer_sees_what_its_key_can_do(
    open_page: Callable[..., Page], lang: str, shanghai: dict[str, Any], client: httpx.Client
) -> None:
    """Keys and the audit log need an admin: a viewer's nav has no entry for them and
    the page says why before the API would refuse; touchpoints, protection and
    campaigns read without the actions the key cannot take."""
    t = texts(lang)
    pid = shanghai["id"]
    made = client.post(
        "/api-keys", json={"name": "analyst", "role": "viewer", "project_id": pid}
    ).json()
    me = client.get("/api-keys/current", headers={"Authorization": f"Bearer {made['key']}"})
    assert me.json() == {
        "id": made["id"],
        "name": "analyst",
        "role": "viewer",
        "project_id": pid,
        "space_ids": None,
    }
    run = campaign(client, shanghai, "Shanghai coupons", {"type": "once"})
    page = open_page(lang, key=made["key"])
    expect(page.get_by_test_id("nav-campaigns")).to_be_visible()
    expect(page.get_by_test_id("nav-keys")).to_have_count(0)
    expect(page.get_by_test_id("nav-audit")).to_have_count(0)
    expect(page.get_by_test_id("read-only")).to_have_text(t["tp.read_only"])
    expect(page.get_by_test_id("tp-add")).to_have_count(0)
    expect(row(page, "Coupons").get_by_test_id("tp-test")).to_have_count(0)
    page.goto(f"/#/p/{pid}/keys")
    explained = page.get_by_test_id("admin-only")
    expect(explained).to_contain_text(t["nav.keys"])
    role = t["keys.role.viewer"]
    expect(explained).to_contain_text(
        t["access.admin_only"].replace("{name}", "analyst").replace("{role}", role)
    )
    expect(page.get_by_test_id("error-box")).to_have_count(0)
    shot(page, lang, "day-14-viewer-keys")
    page.goto(f"/#/p/{pid}/protection")
    expect(page.get_by_test_id("project-cap-summary")).to_be_visible()
    expect(page.get_by_test_id("tp-protection-edit")).to_have_count(0)
    expect(page.get_by_test_id("bl-add")).to_have_count(0)
    page.goto(f"/#/p/{pid}/s/{shanghai['space']['id']}/campaigns")
    expect(page.locator(f"[data-testid=campaign-row][data-id='{run['id']}']")).to_be_visible()
    expect(page.get_by_test_id("campaign-new")).to_have_count(0)
    expect(page.get_by_test_id("campaign-pause")).to_have_count(0)


def test_server_and_json_errors_read_in_the_readers_language(
    open_page: Callable[..., Page],
    lang: str,
    shanghai: dict[str, Any],
    client: httpx.Client,
    runtime: Any,
) -> None:
    """A campaign the system ended says why from its code (not the English
    ``last_error``), and the JSON view's parse error says where, in words of the
    reader's language."""
    t = texts(lang)
    made = campaign(client, shanghai, "Broken", {"type": "once"}, actions=())
    # What the scheduler writes when a touchpoint disappears behind a running campaign
    # (tests/test_campaign_runs.py makes it happen for real).
    with runtime.tx() as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == made["id"])
            .values(
                status="closed",
                last_error="Touchpoint 1 is no longer usable.",
                last_error_code="touchpoint_unusable",
                last_error_params={"touchpoint_id": shanghai["touchpoint"]["id"], "name": None},
            )
        )
    reason = t["error.code.touchpoint_unusable"].replace("{name}", "Coupons")
    page = open_page(lang)
    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns")
    listed = page.locator(f"[data-testid=campaign-row][data-id='{made['id']}']")
    expect(listed.get_by_test_id("campaign-last-error")).to_have_text(reason)
    listed.get_by_test_id("campaign-link").click()
    expect(page.get_by_test_id("campaign-last-error")).to_contain_text(reason)
    shot(page, lang, "day-15-ended-by-the-system")

    page.goto(f"/#/p/{shanghai['id']}/s/{shanghai['space']['id']}/campaigns/new")
    page.get_by_test_id("campaign-json-toggle").click()
    page.get_by_test_id("campaign-json").fill('{\n  "trigger": {"type": "once"},\n  oops\n}')
    page.get_by_test_id("campaign-json-toggle").click()
    error = page.get_by_test_id("form-error")
    expect(error).to_have_attribute("data-code", "json_syntax")
    expect(error.get_by_test_id("json-error-place")).to_have_text(
        t["canvas.json_syntax"].replace("{line}", "3").replace("{column}", "3")
    )
    expect(page.get_by_test_id("breadcrumb-current")).to_have_text(t["campaign.new"])
    shot(page, lang, "day-16-json-error")
