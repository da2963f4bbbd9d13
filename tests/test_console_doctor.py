"""The console's "Check endpoint" (体检) action in Chromium, in both languages:
the doctor's report rendered from codes in the reader's language."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from test_console_browser import browser, lang, more, page, row, shop, shot, sign_in, texts
from test_doctor import all_reached, serve_endpoint
from test_testsend import ThreadedServer
from touchgate.receiver import Endpoint, Verifier

pytestmark = pytest.mark.browser
__all__ = ["browser", "lang", "page", "shop"]  # fixtures used here

TOKEN = "console-doctor-token"


def test_check_endpoint_report_in_the_readers_language(
    page: Page, lang: str, shop: dict[str, Any], client: httpx.Client
) -> None:
    t = texts(lang)
    pid = shop["id"]
    server = ThreadedServer()
    try:
        body = {
            "name": "Gateway",
            "type": "notification",
            "url": server.url + "/touch",
            "token": TOKEN,
            "batch_size": 20,
            "timeout_seconds": 5,
        }
        r = client.post(f"/projects/{pid}/touchpoints", json=body)
        assert r.status_code == 201, r.text
        # An endpoint that verifies nothing: it passes, with security warnings.
        server.handler = serve_endpoint(Endpoint(Verifier(), all_reached))  # type: ignore[assignment]
        sign_in(page)
        more(row(page, "Gateway"), "tp-doctor")
        dialog = page.get_by_test_id("doctor-dialog")
        expect(dialog).to_contain_text(t["doctor.intro"])
        dialog.get_by_test_id("doctor-run").click()
        report = dialog.get_by_test_id("doctor-report")
        expect(report).to_be_visible(timeout=60_000)
        expect(report).to_have_attribute("data-ok", "true")
        expect(dialog.get_by_test_id("doctor-verdict")).to_contain_text(t["doctor.passed"])
        warn = dialog.locator("[data-testid=doctor-item][data-code=sign_not_checked]")
        expect(warn).to_have_attribute("data-outcome", "warn")
        expect(warn.get_by_test_id("doctor-message")).to_have_text(t["doctor.msg.sign_not_checked"])
        expect(warn.get_by_test_id("doctor-fix")).to_contain_text(t["doctor.fix.sign_not_checked"])
        ok = dialog.locator("[data-testid=doctor-item][data-check='protocol.batch_20']")
        expect(ok.get_by_test_id("doctor-message")).to_have_text(
            t["doctor.msg.batch_ok"].format(size=20, succeeded=20, failed=0)
        )
        expect(dialog.get_by_test_id("doctor-timing")).to_be_visible()
        expect(dialog.get_by_test_id("doctor-in-flight")).to_be_visible()
        shot(page, lang, "30-doctor-warnings")
        if lang == "zh-CN":
            # No English sentence of the service on the Chinese screen.
            shown = report.inner_text()
            for english in ("A batch of", "was refused", "How to fix", "Not checked"):
                assert english not in shown, english

        # A signed endpoint with another token: every batch refused, the report says why.
        server.handler = serve_endpoint(Endpoint(Verifier(token="other"), all_reached))  # type: ignore[assignment]
        dialog.get_by_test_id("doctor-run").click()
        expect(report).to_have_attribute("data-ok", "false", timeout=60_000)
        expect(dialog.get_by_test_id("doctor-verdict")).to_contain_text(t["doctor.failed"])
        failed = dialog.locator("[data-testid=doctor-item][data-code=refused_signed]").first
        expect(failed).to_have_attribute("data-outcome", "fail")
        expect(failed.get_by_test_id("doctor-fix")).to_contain_text(t["doctor.fix.refused_signed"])
        expect(dialog.locator("[data-code=skipped_no_answer]").first).to_contain_text(
            t["doctor.msg.skipped_no_answer"]
        )
        shot(page, lang, "31-doctor-failed")
    finally:
        server.stop()
