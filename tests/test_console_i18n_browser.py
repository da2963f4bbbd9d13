"""One language at a time: on a Chinese screen, what the server refuses or diagnoses
reads in Chinese, with field labels instead of paths (Chromium through Playwright,
against the real app and real endpoints on 127.0.0.1).

"English" is any run of two or more Latin words in the visible text, outside code
blocks, inputs and the values a message quotes (``.msg-value``: a key, a URL, what the
endpoint said). Touchpoint and parameter names here are Chinese so that user data
cannot hide a leak.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from aiohttp import web
from playwright.sync_api import Browser, Locator, Page, expect

from conftest import LiveServer, free_port
from test_console_browser import browser, page, row, shot, sign_in, texts
from test_testsend import ThreadedServer, endpoint

# The console's browser tests' Chromium (one per module) and page (in ``lang``);
# the test send's endpoint on 127.0.0.1.
__all__ = ["browser", "endpoint", "page"]

pytestmark = pytest.mark.browser

ZH = "zh-CN"
# Two or more Latin words in a row (a word: two letters or more).
ENGLISH = re.compile(r"[A-Za-z][A-Za-z'’-]+(?:[ \t]+[A-Za-z][A-Za-z'’-]+)+")


def english_in(area: Locator) -> list[str]:
    """Runs of English words in the visible text of ``area``."""
    expect(area.first).to_be_visible()
    texts: list[str] = area.evaluate_all(
        """(roots) => roots.map((root) => {
             const copy = root.cloneNode(true);
             copy.querySelectorAll('pre, code, textarea, input, select, script, .msg-value')
                 .forEach((e) => e.remove());
             return copy.textContent;
           })"""
    )
    return [run for text in texts for run in ENGLISH.findall(text)]


def fill(template: str, **params: Any) -> str:
    for name, value in params.items():
        template = template.replace("{" + name + "}", str(value))
    return template


@pytest.fixture
def lang() -> str:
    """The console's browser fixtures (``page``) on a Chinese screen."""
    return ZH


@pytest.fixture
def project(client: httpx.Client) -> dict[str, Any]:
    pid = client.post("/projects", json={"name": "商城"}).json()["id"]
    space = client.post(f"/projects/{pid}/spaces", json={"name": "增长"}).json()
    return {"id": pid, "space": space}


def touchpoint(client: httpx.Client, pid: int, url: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "短信通道",
        "type": "notification",
        "url": url,
        "template_params": [{"key": "title", "name": "标题", "type": "text", "required": True}],
        **extra,
    }
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def answer_401(request: web.Request, doc: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 401, "message": "unauthorized request"}, status=401)


def answer_sign_error(request: web.Request, doc: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 1001, "message": "sign check failed", "orderNo": "x"})


def answer_without_the_user(request: web.Request, doc: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 0, "orderNo": doc["orderNo"], "sendStatusList": []})


def _async(handler: Any) -> Any:
    async def run(request: web.Request, doc: dict[str, Any]) -> web.Response:
        response: web.Response = handler(request, doc)
        return response

    return run


@pytest.mark.parametrize(
    ("case", "handler", "diagnoses", "note"),
    [
        ("unreachable", None, ["refused"], "no_response"),
        ("http-401", answer_401, ["http_auth"], "http_status"),
        (
            "code-not-0",
            answer_sign_error,
            ["endpoint_refused", "sign_rejected"],
            "endpoint_refused",
        ),
        ("missing-user", answer_without_the_user, ["missing_statuses"], "no_status_returned"),
    ],
)
def test_a_failed_test_send_reads_in_chinese(
    page: Page,
    project: dict[str, Any],
    client: httpx.Client,
    endpoint: ThreadedServer,
    case: str,
    handler: Any,
    diagnoses: list[str],
    note: str,
) -> None:
    t = texts(ZH)
    url = f"http://127.0.0.1:{free_port()}/touch" if handler is None else endpoint.url + "/touch"
    endpoint.handler = None if handler is None else _async(handler)
    touchpoint(client, project["id"], url, token="令牌-s3cret", timeout_seconds=2)
    sign_in(page)
    row(page, "短信通道").get_by_test_id("tp-test").click()
    dialog = page.get_by_test_id("test-dialog")
    dialog.get_by_test_id("test-gid").fill("7")
    dialog.get_by_test_id("test-param-title").fill("你好")
    dialog.get_by_test_id("test-send").click()
    expect(dialog.get_by_test_id("test-verdict")).to_have_attribute("data-ok", "false")
    findings = dialog.get_by_test_id("test-diagnosis").locator("li")
    expect(findings).to_have_count(len(diagnoses))
    assert [findings.nth(i).get_attribute("data-code") for i in range(len(diagnoses))] == diagnoses
    # Each finding is the Chinese text of its code (its values aside).
    for i, code in enumerate(diagnoses):
        first_words = re.split(r"\{\w+\}", t[f"diagnosis.{code}"])[0]
        expect(findings.nth(i)).to_contain_text(first_words)
    expect(dialog.get_by_test_id("test-status-note")).to_contain_text(
        re.split(r"\{\w+\}", t[f"status_note.{note}"])[0]
    )
    if code == "http_auth":
        expect(findings.first).to_contain_text("认证 Token")
        expect(findings.first).to_contain_text("签名密钥")
    shot(page, ZH, f"i18n-test-send-{case}")
    result = dialog.locator(".result-pane")
    assert english_in(result) == [], english_in(result)


def test_a_test_send_with_invalid_values_names_the_fields_in_chinese(
    page: Page, project: dict[str, Any], client: httpx.Client, endpoint: ThreadedServer
) -> None:
    t = texts(ZH)
    touchpoint(client, project["id"], endpoint.url)
    sign_in(page)
    row(page, "短信通道").get_by_test_id("tp-test").click()
    dialog = page.get_by_test_id("test-dialog")
    dialog.get_by_test_id("test-send").click()  # the required title is empty
    error = dialog.locator("[data-error-for='params.title']")
    expect(error).to_have_text(t["field_error.required"])
    expect(dialog.get_by_test_id("test-error")).to_contain_text(t["error.code.invalid_input"])
    # The list under the heading names the field by its label, not its path.
    expect(dialog.get_by_test_id("test-error")).to_contain_text(t["field.params"])
    expect(dialog.get_by_test_id("test-error")).not_to_contain_text("params.title")
    assert english_in(dialog) == [], english_in(dialog)
    assert endpoint.seen == []


def test_a_bad_touchpoint_reads_in_chinese(
    page: Page, project: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(ZH)
    sign_in(page)
    page.get_by_test_id("tp-add").click()
    form = page.get_by_test_id("tp-form")
    form.get_by_test_id("tp-name").fill("一个名字超过十五个字的优惠券发放通道")  # 18 characters
    form.get_by_test_id("tp-type").select_option("benefit")
    form.get_by_test_id("tp-url").fill("http://127.0.0.1:9/touch")
    for label in ("标题", "副标题"):
        form.get_by_test_id("param-add").click()
        param = form.get_by_test_id("param-row").last
        param.get_by_test_id("param-key").fill("title")  # the same key twice
        param.get_by_test_id("param-name").fill(label)
        param.get_by_test_id("param-type").select_option("text")
    form.get_by_test_id("tp-save").click()

    expect(form.locator("[data-error-for='name']")).to_have_text(
        fill(t["field_error.text_too_long"], max=15, got=18)
    )
    duplicate = form.locator("[data-error-for='template_params[1].key']")
    expect(duplicate).to_have_text(
        fill(t["field_error.duplicate_key"], value="title", other_field="参数 1 · 键")
    )
    expect(duplicate).to_have_attribute("title", "duplicate key 'title' (also template_params[0])")
    expect(form.get_by_test_id("form-error")).to_contain_text(t["error.code.invalid_input"])
    shot(page, ZH, "i18n-touchpoint-form")
    assert english_in(form.locator(".field-error")) == []
    assert english_in(form.get_by_test_id("form-error")) == []
    assert client.get(f"/projects/{project['id']}/touchpoints").json()["total"] == 0


def test_field_labels_follow_the_path_in_both_languages(
    page: Page, browser: Browser, live_server: LiveServer, project: dict[str, Any]
) -> None:
    """The label of a path is made of its segments, in the reader's language."""
    paths = {
        "template_params[0].key": ("参数 1 · 键", "Parameter 1 · Key"),
        "template_params.2.enum.options[0].children[1].code": (
            "参数 3 · 选项 1 · 子选项 2 · 编码",
            "Parameter 3 · Option 1 · Sub-option 2 · Code",
        ),
        "strategy.channels[0].touchpoint_id": (
            "发送策略 · 触点 1 · 触点",
            "Strategy · Touchpoint 1 · Touchpoint",
        ),
        "strategy.channels[1].params.name": (
            "发送策略 · 触点 2 · 模版参数值 · name",
            "Strategy · Touchpoint 2 · Template values · name",
        ),
        "receipt.url": ("回执地址", "Receipt URL"),
        "users[0].attributes.memberId": (
            "测试用户 1 · 属性 · memberId",
            "Test user 1 · Attributes · memberId",
        ),
        "audience.somethingNew[3]": (
            "受众 · somethingNew 第 4 项",
            "Audience · somethingNew item 4",
        ),
    }
    en_page = browser.new_context(locale="en", base_url=live_server.url).new_page()
    for screen, index in ((page, 0), (en_page, 1)):
        sign_in(screen)
        found = screen.evaluate(
            """async (paths) => {
                 const errors = await import('/console/js/errors.js');
                 return paths.map((p) => errors.fieldLabel(p));
               }""",
            list(paths),
        )
        assert found == [labels[index] for labels in paths.values()]
    en_page.context.close()


def test_an_unknown_code_gets_a_generic_chinese_text(page: Page, project: dict[str, Any]) -> None:
    t = texts(ZH)
    sign_in(page)
    found = page.evaluate(
        """async () => {
             const errors = await import('/console/js/errors.js');
             const { ApiError } = await import('/console/js/api.js');
             const detail = {field: 'strategy.by', code: 'brand_new_rule',
                             message: 'is not allowed here for some reason', params: {}};
             const err = new ApiError(422, 'brand_new_refusal', 'Something new went wrong.',
                                      [detail], {});
             const box = errors.errorBox(err);
             return {text: box.innerText ?? box.textContent, title: box.getAttribute('title'),
                     line: errors.errorText(err)};
           }"""
    )
    assert t["field_error.invalid"] in found["text"]
    assert t["field.strategy"] in found["text"]
    assert "reason" not in found["text"] and "Something" not in found["line"]
    assert found["title"] == "Something new went wrong."
    assert ENGLISH.findall(found["text"]) == []


def test_a_refused_campaign_submit_reads_in_chinese(
    page: Page, project: dict[str, Any], client: httpx.Client, endpoint: ThreadedServer
) -> None:
    # The campaign's own messages are being given codes by the campaigns work; until
    # then a detail without one shows the generic text, never the English sentence.
    t = texts(ZH)
    pid, space = project["id"], project["space"]
    tid = touchpoint(client, pid, endpoint.url)["id"]
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [space["id"]]})
    base = f"/projects/{pid}/spaces/{space['id']}/campaigns"
    body = {
        "name": "会员提醒",
        "trigger": {"type": "once"},
        "audience": {"match": "all"},
        "participation": {"mode": "once"},
        "strategy": {
            "type": "send",
            "id": "s1",
            "mode": "first_success",
            "timing": {"type": "now"},
            "channels": [{"touchpoint_id": tid, "params": {"title": "你好"}}],
        },
    }
    r = client.post(base, json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    # The touchpoint is taken away from the space: the campaign can no longer be submitted.
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": []})
    sign_in(page)
    page.goto(f"/#/p/{pid}/s/{space['id']}/campaigns/{cid}")
    page.get_by_test_id("campaign-submit").click()
    refusal = page.get_by_test_id("action-error")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text(t["error.code.invalid_input"])
    expect(refusal).to_contain_text("发送策略 · 触点 1 · 触点")
    shot(page, ZH, "i18n-campaign-submit")
    assert english_in(refusal) == [], english_in(refusal)
