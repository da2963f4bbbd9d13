"""The console's files: served with the right headers, self-contained (no third-party or
remote code), and every text in both languages."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from touchgate.campaigns.content import OPERATORS
from touchgate.campaigns.schemas import ACTIONS, STATES
from touchgate.console import STATIC_DIR

JS_DIR = STATIC_DIR / "js"
I18N_DIR = STATIC_DIR / "i18n"


def dictionary(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((I18N_DIR / f"{lang}.json").read_text("utf-8"))
    return data


def js_sources() -> dict[str, str]:
    return {p.name: p.read_text("utf-8") for p in sorted(JS_DIR.glob("*.js"))}


def test_index_and_assets_are_served(live_server: Any, runtime: Any) -> None:
    r = httpx.get(live_server.url + "/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/main.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"

    js = httpx.get(live_server.url + "/console/js/main.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert js.headers["cache-control"] == "no-cache"
    assert js.headers["content-security-policy"] == csp
    css = httpx.get(live_server.url + "/console/app.css")
    assert css.headers["content-type"].startswith("text/css")
    for lang in ("en", "zh-CN"):
        data = httpx.get(f"{live_server.url}/console/i18n/{lang}.json").json()
        assert data == dictionary(lang)
    assert httpx.get(live_server.url + "/console/js/nope.js").status_code == 404
    assert httpx.get(live_server.url + "/console/../pyproject.toml").status_code == 404
    # The console is not part of the API's contract.
    paths = httpx.get(live_server.url + "/openapi.json").json()["paths"]
    assert "/" not in paths


def test_every_module_the_page_imports_exists() -> None:
    sources = js_sources()
    for name, text in sources.items():
        for target in re.findall(r"""(?:from|import)\s*\(?\s*["'](\.[^"']+)["']""", text):
            assert (JS_DIR / target).resolve().exists(), f"{name} imports missing {target}"


def test_no_remote_or_third_party_code() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in (".html", ".js", ".css", ".svg"):
            continue
        text = path.read_text("utf-8")
        # Only same-origin URLs: no CDN scripts, styles, fonts or imports.
        remote = re.search(r"""(src|href|url\(|from|import\()\s*=?\s*["']?(https?:)?//""", text)
        assert not remote, f"{path.name} refers to another origin: {remote.group(0)}"
        markup = re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", text)
        assert not markup, f"{path.name} builds markup from strings"


def test_both_languages_have_the_same_keys_and_no_empty_text() -> None:
    en, zh = dictionary("en"), dictionary("zh-CN")
    assert set(en) == set(zh)
    for lang, data in (("en", en), ("zh-CN", zh)):
        empty = [k for k, v in data.items() if not v.strip()]
        assert not empty, f"{lang}: empty texts {empty}"
    # Placeholders match, so a sentence never loses its number or name in translation.
    slot = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")  # {n}, not the {{attributeKey}} users type
    for key in en:
        assert set(slot.findall(en[key])) == set(slot.findall(zh[key])), key
    # Chinese texts are actually Chinese (a copied English text is a missing translation),
    # except short codes, names and formats that read the same in both.
    untranslated = [
        k
        for k in zh
        if zh[k] == en[k]
        and re.search(r"[A-Za-z]{4,}", en[k])
        and not k.endswith(("gid", "cron_summary"))
    ]
    assert not untranslated, untranslated


def test_every_key_the_code_uses_is_translated() -> None:
    en = dictionary("en")
    used: set[str] = set()
    for text in js_sources().values():
        used |= set(re.findall(r"""\bt(?:Maybe)?\(\s*"([^"]+)\"""", text))
    missing = sorted(k for k in used if k not in en)
    assert not missing, f"keys used but not translated: {missing}"
    assert len(used) > 200


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("campaign.status.", STATES),
        ("campaign.action.", (*ACTIONS, "edit", "delete")),
        ("campaign.op.", OPERATORS),
        ("tp.type.", ("notification", "benefit", "other")),
        ("tp.status.", ("enabled", "disabled")),
        ("tp.transport.", ("http", "plugin")),
        ("tp.param.type.", ("date", "number", "enum", "text")),
        ("tp.receipt.", ("sync", "async", "sync_hint", "async_hint")),
        ("status.", ("TOU_SUCC", "TOU_FAIL", "pending", "suppressed")),
        ("tp.col.", ("name", "type", "transport", "status", "spaces", "last_test", "updated")),
        ("campaign.trigger.every.", ("daily", "weekly", "monthly")),
    ],
)
def test_texts_built_from_server_values_exist(prefix: str, values: tuple[str, ...]) -> None:
    """Keys the code builds from API values (`campaign.status.${status}`) exist for each value."""
    for lang in ("en", "zh-CN"):
        data = dictionary(lang)
        missing = [v for v in values if prefix + v not in data]
        assert not missing, f"{lang}: {prefix}{missing}"
