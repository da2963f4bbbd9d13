"""The audit log reads in the reader's language (Chromium through Playwright, against
the real app): each entry is a sentence made from its action and params, its changes
list fields by their labels with secrets as ***, and an entry recorded before params
were kept still says what happened to which resource.

Names here are Chinese so that user data cannot hide an English leak on a Chinese
screen (see ``test_console_i18n_browser``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from test_audit_codes import add_old_entry, ok
from test_campaign_support import campaign_body, send_step
from test_console_browser import browser, lang, page, shot, sign_in, texts
from test_console_i18n_browser import ZH, english_in, fill
from touchgate.runtime import Runtime

# The console's browser fixtures: Chromium (one per module), a page in ``lang`` (both).
__all__ = ["browser", "lang", "page"]

pytestmark = pytest.mark.browser


def _writes(client: httpx.Client, runtime: Runtime) -> dict[str, int]:
    """The writes an admin makes in a day, through the API; one old entry besides."""
    pid = ok(client.post("/projects", json={"name": "商城"}))["id"]
    sid = ok(client.post(f"/projects/{pid}/spaces", json={"name": "增长"}))["id"]
    tp_body = {
        "name": "短信通道",
        "type": "notification",
        "url": "http://127.0.0.1:9/touch",
        "token": "s3cret",
        "template_params": [{"key": "title", "name": "标题", "type": "text", "required": True}],
    }
    tid = ok(client.post(f"/projects/{pid}/touchpoints", json=tp_body))["id"]
    tp = f"/projects/{pid}/touchpoints/{tid}"
    ok(client.put(f"{tp}/spaces", json={"space_ids": [sid]}))
    ok(client.post(f"{tp}/disable"))
    ok(client.patch(tp, json={"batch_size": 50, "token": "n3w"}))
    ok(client.post(f"{tp}/enable"))
    ok(
        client.put(
            f"{tp}/protection",
            json={"quiet_hours": {"start": "22:00", "end": "08:00", "action": "hold"}},
        )
    )
    ok(
        client.put(
            f"/projects/{pid}/protection", json={"frequency_cap": {"max_messages": 3, "days": 7}}
        )
    )
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    campaign = campaign_body(
        tid,
        name="会员提醒",
        trigger={"type": "once", "at": later},
        audience={"match": "all"},
        strategy={
            **send_step(tid),
            "channels": [{"touchpoint_id": tid, "params": {"title": "你好"}}],
        },
    )
    base = f"/projects/{pid}/spaces/{sid}/campaigns"
    cid = ok(client.post(base, json=campaign))["id"]
    for action in ("submit", "approve", "publish"):
        ok(client.post(f"{base}/{cid}/{action}"))
    key = ok(
        client.post("/api-keys", json={"name": "运营团队", "role": "viewer", "project_id": pid})
    )
    ok(client.delete(f"/api-keys/{key['id']}"))
    add_old_entry(runtime, pid, datetime.now(UTC) - timedelta(days=400))
    return {"pid": pid, "tid": tid, "cid": cid}


def _row(page: Page, kind: str, action: str) -> Locator:
    return page.locator(f"[data-testid=audit-row][data-type={kind}][data-action={action}]")


def test_the_audit_log_reads_in_the_readers_language(
    page: Page, lang: str, client: httpx.Client, runtime: Runtime
) -> None:
    t = texts(lang)
    ids = _writes(client, runtime)
    total = client.get(f"/projects/{ids['pid']}/audit").json()["total"]
    sign_in(page)
    page.goto(f"/#/p/{ids['pid']}/audit")
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(total)
    shot(page, lang, "audit-log")
    if lang == ZH:
        assert english_in(page.get_by_test_id("audit-table")) == []

    def sentence(kind: str, action: str) -> Locator:
        return _row(page, kind, action).get_by_test_id("audit-sentence")

    label = t["audit.list_sep"].join
    expect(sentence("touchpoint", "update")).to_have_text(
        fill(
            t["audit.entry.touchpoint.update"],
            name="短信通道",
            fields=label([t["field.batch_size"], t["field.token"]]),
        )
    )
    # The English sentence stays for whoever hovers (and for scripts).
    expect(sentence("touchpoint", "update")).to_have_attribute(
        "title", "Update touchpoint '短信通道'"
    )
    expect(sentence("touchpoint", "update_protection")).to_have_text(
        fill(
            t["audit.entry.touchpoint.update_protection"],
            name="短信通道",
            fields=t["field.quiet_hours"],
        )
    )
    expect(sentence("protection", "update")).to_have_text(
        fill(t["audit.entry.protection.update"], fields=t["field.frequency_cap"])
    )
    for action in ("create", "submit", "approve", "publish"):
        expect(sentence("campaign", action)).to_have_text(
            fill(t[f"audit.entry.campaign.{action}"], name="会员提醒")
        )
    expect(sentence("api_key", "revoke")).to_have_text(
        fill(t["audit.entry.api_key.revoke"], name="运营团队", role=t["keys.role.viewer"])
    )
    expect(sentence("touchpoint", "disable")).to_have_text(
        fill(t["audit.entry.touchpoint.disable"], name="短信通道")
    )
    # An entry from before params were kept: what happened to which resource.
    [old] = [r for r in _row(page, "touchpoint", "enable").all() if r.get_by_text("#3").count()]
    expect(old.get_by_test_id("audit-sentence")).to_have_text(
        fill(
            t["audit.legacy"],
            type=t["audit.type.touchpoint"],
            id=3,
            action=t["audit.action.enable"],
        )
    )

    # The changes: fields by their labels, words in the reader's, secrets as ***.
    edit = _row(page, "touchpoint", "update")
    edit.locator("details summary").click()
    token = edit.locator("[data-change=token]")
    expect(token).to_have_text(f"{t['field.token']}***→***")
    expect(edit.locator("[data-change=batch_size]")).to_have_text(f"{t['field.batch_size']}100→50")
    disabled = _row(page, "touchpoint", "disable")
    disabled.locator("details summary").click()
    expect(disabled.locator("[data-change=status]")).to_have_text(
        f"{t['field.status']}{t['tp.status.enabled']}→{t['tp.status.disabled']}"
    )
    published = _row(page, "campaign", "publish")
    published.locator("details summary").click()
    expect(published.locator("[data-change=status]")).to_contain_text(
        t["campaign.status.not_started"]
    )
    shot(page, lang, "audit-log-changes")
    assert "s3cret" not in page.content() and "n3w" not in page.content()
    if lang == ZH:
        assert english_in(page.get_by_test_id("audit-table")) == []

    # The resource filter offers the new kinds of resource too.
    page.get_by_test_id("audit-type").select_option("protection")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("audit-sentence")).to_have_text(
        fill(t["audit.entry.protection.update"], fields=t["field.frequency_cap"])
    )
