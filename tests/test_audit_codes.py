"""Audit entries in the reader's language (issue 10 item 2, issue 11 item 3).

An entry is a sentence chosen by ``(resource_type, action)`` —
``audit.entry.<type>.<action>`` in the console's i18n files — filled from its
``params``. The pairs are found in the source, not listed by hand (like the error
codes in ``test_error_codes.py``): a write audited anywhere without its texts fails
here. The scan reads ``src/`` with ``ast`` and takes string literals (either branch
of ``a if c else b`` too) from:

- calls with ``resource_type=`` and ``action=`` keywords (``ctx.audit``,
  ``audit.record``);
- ``audit_created(ctx, session, pid, ("<type>", id), …)``: action ``create``;
- helpers: a function whose audit call takes ``action=`` from one of its own
  parameters (``_audit(ctx, session, pid, "enable", …)``); the literal comes from
  each call of the helper in its file.

An action that is not a literal anywhere on that way must be listed in
``FROM_ELSEWHERE`` with the values it can take, or the scan fails.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from pydantic import BaseModel
from sqlalchemy import inspect, text

from conftest import BACKENDS, Database
from test_campaign_support import campaign_body, import_users, make_project, make_touchpoint
from test_error_codes import SRC, _name, _strings, dictionary
from touchgate.audit.service import sentence_params
from touchgate.campaigns.endpoints import _NOT_AUDITED
from touchgate.campaigns.schemas import (
    ACTIONS,
    CampaignOut,
    ProjectProtection,
    TouchpointProtection,
)
from touchgate.datastore.schemas import AttributeOut
from touchgate.db import make_engine
from touchgate.delivery.schemas import ReplayOut
from touchgate.keys.schemas import KeyOut
from touchgate.migrate import alembic_config, current, upgrade
from touchgate.models import AuditEntry
from touchgate.plugins.schemas import PluginOut
from touchgate.projects.schemas import ProjectOut, SpaceOut
from touchgate.runtime import Runtime
from touchgate.touchpoints.schemas import TouchpointOut

LANGS = ("en", "zh-CN")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# (file, function) → the actions an audit call there records from a variable.
FROM_ELSEWHERE: dict[tuple[str, str], tuple[str, ...]] = {
    # POST …/campaigns/{cid}/{action}: the service refuses any other action.
    ("campaigns/endpoints.py", "campaign_action"): ACTIONS,
}
AUDIT_CALLS = {"audit", "record"}
# Wrappers that pass what their callers give on to ``record`` (the callers are read).
WRAPPERS = {("api/deps.py", "audit"), ("api/deps.py", "audit_created")}


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _enclosing(tree: ast.Module) -> dict[ast.AST, set[str]]:
    """Every node → the names of the functions it is in."""
    out: dict[ast.AST, set[str]] = {}
    for func in _functions(tree):
        for node in ast.walk(func):
            out.setdefault(node, set()).add(func.name)
    return out


def _audit_call(node: ast.AST) -> dict[str, ast.expr] | None:
    """The keywords of a call that records an entry, else None."""
    if not isinstance(node, ast.Call) or _name(node.func) not in AUDIT_CALLS:
        return None
    keywords = {k.arg: k.value for k in node.keywords if k.arg}
    return keywords if {"resource_type", "action"} <= keywords.keys() else None


def _helpers(tree: ast.Module) -> dict[str, tuple[int, str, str]]:
    """Functions whose audit call takes ``action`` from a parameter of theirs:
    name → (the parameter's index, its name, the resource type)."""
    helpers: dict[str, tuple[int, str, str]] = {}
    for func in _functions(tree):
        names = [a.arg for a in func.args.args]
        for node in ast.walk(func):
            keywords = _audit_call(node)
            if keywords is None:
                continue
            action = keywords["action"]
            types = list(_strings(keywords["resource_type"]))
            if isinstance(action, ast.Name) and action.id in names and len(types) == 1:
                helpers[func.name] = (names.index(action.id), action.id, types[0])
    return helpers


class _Scan:
    """The pairs one file records."""

    def __init__(self, path: Path) -> None:
        self.rel = str(path.relative_to(SRC))
        self.tree = ast.parse(path.read_text("utf-8"), str(path))
        self.outer = _enclosing(self.tree)
        self.helpers = _helpers(self.tree)
        self.found: dict[tuple[str, str], set[str]] = {}
        self.unknown: list[str] = []

    def note(self, kind: str, actions: list[str], where: str) -> None:
        for action in actions:
            self.found.setdefault((kind, action), set()).add(where)

    def actions(self, value: ast.expr, node: ast.AST, where: str) -> list[str]:
        literal = list(_strings(value))
        if literal:
            return literal
        around = self.outer.get(node, set())
        known = [a for f in around for a in FROM_ELSEWHERE.get((self.rel, f), ())]
        if not known:
            self.unknown.append(where)
        return known

    def run(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self.call(node, f"{self.rel}:{node.lineno}")

    def call(self, node: ast.Call, where: str) -> None:
        keywords = _audit_call(node)
        name = _name(node.func)
        if keywords is not None:
            action = keywords["action"]
            around = self.outer.get(node, set())
            if {(self.rel, f) for f in around} & WRAPPERS:
                return
            if isinstance(action, ast.Name) and around & self.helpers.keys():
                return  # a helper's own call: its callers say which action
            types = list(_strings(keywords["resource_type"]))
            if not types:
                self.unknown.append(where)
            for kind in types:
                self.note(kind, self.actions(action, node, where), where)
        elif name == "audit_created":
            resource = node.args[3] if len(node.args) > 3 else None
            if not isinstance(resource, ast.Tuple):
                self.unknown.append(where)
                return
            for kind in _strings(resource.elts[0]):
                self.note(kind, ["create"], where)
        elif name in self.helpers:
            index, param, kind = self.helpers[name]
            given = {k.arg: k.value for k in node.keywords if k.arg}
            value = node.args[index] if len(node.args) > index else given.get(param)
            if value is None:
                self.unknown.append(where)
                return
            self.note(kind, self.actions(value, node, where), where)


def recorded_pairs() -> dict[tuple[str, str], set[str]]:
    """(resource_type, action) → where the source records it."""
    found: dict[tuple[str, str], set[str]] = {}
    unknown: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        scan = _Scan(path)
        scan.run()
        unknown += scan.unknown
        for pair, where in scan.found.items():
            found.setdefault(pair, set()).update(where)
    assert not unknown, f"audit calls whose type or action the scan cannot read: {unknown}"
    return found


def test_the_scan_finds_writes_of_every_kind() -> None:
    pairs = recorded_pairs()
    expected = {
        ("project", "create"),  # audit_created
        ("touchpoint", "enable"),  # touchpoints' helper
        ("touchpoint", "test"),  # ctx.audit(...)
        ("campaign", "publish"),  # from the path, FROM_ELSEWHERE
        ("campaign", "replace_gids"),  # one branch of an if-expression
        ("api_key", "revoke"),  # the keys' helper, audit.record
        ("users", "import"),  # the command line's audit.record
    }
    assert expected <= set(pairs), expected - set(pairs)


def test_every_recorded_write_has_its_sentence_in_both_languages() -> None:
    pairs = recorded_pairs()
    missing = []
    for lang in LANGS:
        texts = dictionary(lang)
        for (kind, action), where in sorted(pairs.items()):
            for key in (f"audit.entry.{kind}.{action}", f"audit.action.{action}"):
                if key not in texts:
                    missing.append(f"{lang}: {key}  ({', '.join(sorted(where))})")
            if f"audit.type.{kind}" not in texts:
                missing.append(f"{lang}: audit.type.{kind}")
    assert not missing, "no text for:\n" + "\n".join(sorted(set(missing)))


def test_both_languages_name_the_same_values() -> None:
    en, zh = dictionary("en"), dictionary("zh-CN")
    sentences = [key for key in en if key.startswith("audit.entry.")]
    assert sentences and set(sentences) == {k for k in zh if k.startswith("audit.entry.")}
    differ = {
        key: (en[key], zh[key])
        for key in sentences
        if set(PLACEHOLDER.findall(en[key])) != set(PLACEHOLDER.findall(zh[key]))
    }
    assert not differ, differ


def test_the_console_filters_by_every_resource_type() -> None:
    access = (SRC / "console" / "static" / "js" / "access.js").read_text("utf-8")
    listed = re.search(r"const RESOURCE_TYPES = \[(.*?)\];", access)
    assert listed is not None
    shown = set(re.findall(r'"(\w+)"', listed.group(1)))
    assert {kind for kind, _ in recorded_pairs()} <= shown


# What the audit log compares (before → after), by resource: its ``changes`` and
# ``fields`` name these, and the console shows each by its label.
AUDITED: list[tuple[type[BaseModel], frozenset[str]]] = [
    (TouchpointOut, frozenset()),
    (CampaignOut, frozenset(_NOT_AUDITED)),
    (ProjectOut, frozenset()),
    (SpaceOut, frozenset()),
    (AttributeOut, frozenset()),
    (PluginOut, frozenset()),
    (KeyOut, frozenset({"last_used_at"})),
    (ProjectProtection, frozenset()),
    (TouchpointProtection, frozenset()),
    (ReplayOut, frozenset()),
]
# Written secrets are listed by name too (a new token, a new signing secret).
WRITTEN_SECRETS = {"token", "signing_secret"}


def audited_fields() -> set[str]:
    names = set(WRITTEN_SECRETS)
    for model, left_out in AUDITED:
        names |= set(model.model_fields) - left_out
    return names


def label_of(field: str, texts: dict[str, str]) -> str | None:
    """The label the console shows for a field (access.js: auditFieldLabel)."""
    return texts.get(f"audit.field.{field}") or texts.get(f"field.{field}")


def test_every_audited_field_has_a_label() -> None:
    for lang in LANGS:
        texts = dictionary(lang)
        missing = sorted(f for f in audited_fields() if label_of(f, texts) is None)
        assert not missing, f"{lang}.json: no label for {missing}"


def placeholders(kind: str, action: str) -> set[str]:
    """The params the sentence of (kind, action) names, in either language."""
    return {
        name
        for lang in LANGS
        for name in PLACEHOLDER.findall(dictionary(lang).get(f"audit.entry.{kind}.{action}", ""))
    }


# ---------------------------------------------------------------- what the API records


def ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def _writes(client: httpx.Client) -> tuple[int, int]:
    """Most kinds of write, in one project; returns (project id, touchpoint id)."""
    pid, sid = make_project(client, "Audited sentences")
    ok(client.patch(f"/projects/{pid}", json={"timezone": "Asia/Shanghai"}))
    import_users(client, pid, [{"gid": 1, "attributes": {"memberId": "M1", "city": "Shanghai"}}])
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid], name="Coupons")
    tp = f"/projects/{pid}/touchpoints/{tid}"
    ok(client.post(f"{tp}/disable"))
    ok(client.patch(tp, json={"token": "n3w", "batch_size": 7}))
    ok(client.post(f"{tp}/enable"))
    ok(client.post(f"{tp}/rotate-secret"))
    ok(client.put(f"{tp}/protection", json={"frequency_cap": {"max_messages": 3, "days": 1}}))
    test_send = {"users": [{"gid": 1, "attributes": {"memberId": "M1"}}], "params": {}}
    client.post(f"{tp}/test", json={**test_send, "params": {"title": "Hi", "amount": 1}})
    cap = {"frequency_cap": {"max_messages": 5, "days": 7}}
    ok(client.put(f"/projects/{pid}/protection", json=cap))
    ok(client.post(f"/projects/{pid}/blocklist", json={"gids": [5, 6]}))
    ok(client.delete(f"/projects/{pid}/blocklist", params={"gid": 5}))
    other = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid], name="Spare")
    ok(client.post(f"/projects/{pid}/touchpoints/{other}/disable"))
    ok(client.delete(f"/projects/{pid}/touchpoints/{other}"))

    base = f"/projects/{pid}/spaces/{sid}/campaigns"
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    body = campaign_body(tid, name="Spring", trigger={"type": "once", "at": later})
    cid = ok(client.post(base, json=body))["id"]
    ok(client.patch(f"{base}/{cid}", json={"name": "Spring sale"}))
    for action in ("submit", "approve", "publish", "pause", "close"):
        ok(client.post(f"{base}/{cid}/{action}"))
    copy = ok(client.post(f"{base}/{cid}/copy", json={"name": "Spring again"}))
    ok(client.delete(f"{base}/{copy['id']}"))
    listed = campaign_body(tid, name="Listed", audience={"match": "list"})
    lid = ok(client.post(base, json=listed))["id"]
    ok(client.post(f"{base}/{lid}/audience/gids", json={"gids": [1, 2, 3]}))
    ok(client.post(f"{base}/{lid}/audience/gids", json={"gids": [4], "replace": False}))

    key = ok(client.post("/api-keys", json={"name": "team", "role": "viewer", "project_id": pid}))
    ok(client.delete(f"/api-keys/{key['id']}"))
    return pid, tid


def _entry(entries: list[dict[str, Any]], kind: str, action: str) -> dict[str, Any]:
    [found] = [e for e in entries if (e["resource_type"], e["action"]) == (kind, action)]
    return found


def test_every_write_carries_what_its_sentence_names(client: httpx.Client) -> None:
    pid, tid = _writes(client)
    r = client.get(f"/projects/{pid}/audit", params={"limit": 1000})
    entries = r.json()["items"]
    kinds = {(e["resource_type"], e["action"]) for e in entries}
    assert len(kinds) >= 25, kinds
    assert kinds <= set(recorded_pairs()), kinds - set(recorded_pairs())
    texts = {lang: dictionary(lang) for lang in LANGS}
    for e in entries:
        kind, action, params = e["resource_type"], e["action"], e["params"]
        # Every value the sentence names is there, and nothing is left blank.
        wanted = placeholders(kind, action)
        assert wanted <= params.keys(), (kind, action, wanted - params.keys())
        assert all(params[name] is not None for name in wanted), (kind, action, params)
        assert params["id"] == e["resource_id"]
        # Every field it names has a label in both languages.
        for field in [*params.get("fields", []), *e["changes"]]:
            for lang in LANGS:
                assert label_of(field, texts[lang]), (lang, field)
        assert e["summary"]  # the English sentence stays, for scripts
    assert "n3w" not in r.text and "s3cret" not in r.text and "whsec_" not in r.text

    # Names come from the state the caller passed, or from the touchpoint itself.
    edit = _entry(entries, "touchpoint", "update")
    assert edit["params"] == {"id": str(tid), "name": "Coupons", "fields": ["batch_size", "token"]}
    test_params = _entry(entries, "touchpoint", "test")["params"]
    assert {k: test_params[k] for k in ("id", "name", "count", "outcome")} == {
        "id": str(tid),
        "name": "Coupons",
        "count": 1,
        "outcome": test_params["outcome"],
    }
    assert test_params["outcome"] in {"ok", "failed"} and test_params["order_no"]
    guard = _entry(entries, "touchpoint", "update_protection")["params"]
    assert (guard["name"], guard["fields"]) == ("Coupons", ["frequency_cap"])
    assert _entry(entries, "touchpoint", "delete")["params"]["name"] == "Spare"
    assert _entry(entries, "campaign", "update")["params"]["fields"] == ["name"]
    assert _entry(entries, "campaign", "close")["params"]["name"] == "Spring sale"
    assert _entry(entries, "campaign", "copy")["params"]["name"] == "Spring again"
    attribute = [e for e in entries if e["resource_type"] == "attribute"][-1]["params"]
    assert attribute == {"id": "city", "name": "city", "attribute_key": "city"}
    assert _entry(entries, "project", "update")["params"]["fields"] == ["timezone"]
    assert _entry(entries, "protection", "update")["params"]["fields"] == ["frequency_cap"]
    # Counts only the caller knows.
    assert _entry(entries, "campaign", "replace_gids")["params"]["count"] == 3
    assert _entry(entries, "campaign", "upload_gids")["params"]["count"] == 1
    assert _entry(entries, "blocklist", "add")["params"]["count"] == 2
    removed = _entry(entries, "blocklist", "delete")["params"]
    assert (removed["count"], removed["gid"], removed["touchpoint_id"]) == (1, 5, None)
    imported = _entry(entries, "users", "import")["params"]
    assert (imported["imported"], imported["updated"], imported["rejected"]) == (1, 0, 0)
    revoked = _entry(entries, "api_key", "revoke")["params"]
    assert (revoked["name"], revoked["role"]) == ("team", "viewer")


def test_service_wide_entries_carry_params(client: httpx.Client) -> None:
    key = ok(client.post("/api-keys", json={"name": "ops", "role": "admin", "project_id": None}))
    [entry] = client.get("/audit").json()["items"]
    assert (entry["action"], entry["params"]) == (
        "create",
        {"id": str(key["id"]), "name": "ops", "role": "admin"},
    )


def add_old_entry(runtime: Runtime, project_id: int, time: datetime) -> None:
    """An entry as 0007 recorded it: an English summary and no params."""
    with runtime.tx() as session:
        session.add(
            AuditEntry(
                project_id=project_id,
                time=time,
                key_id=None,
                key_name="bootstrap-admin",
                action="enable",
                resource_type="touchpoint",
                resource_id="3",
                summary="Enable touchpoint 'SMS'",
                changes={},
            )
        )


def test_entries_recorded_before_params_were_kept_still_read(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    pid = project["id"]
    add_old_entry(runtime, pid, datetime.now(UTC))
    r = client.get(f"/projects/{pid}/audit", params={"resource_type": "touchpoint"})
    [old] = r.json()["items"]
    assert old["params"] is None
    assert (old["action"], old["resource_id"], old["summary"]) == (
        "enable",
        "3",
        "Enable touchpoint 'SMS'",
    )


def test_a_replay_names_both_orders(runtime: Runtime) -> None:
    """The replay route passes the new order as its state (delivery/endpoints.py)."""
    after = ReplayOut(order_no="N2", replay_of="N1", user_count=4).model_dump(mode="json")
    with runtime.tx() as session:
        params = sentence_params(session, 1, "order", "N1", None, after, [], {}, frozenset())
    assert params == {"id": "N1", "new_order": "N2", "users": 4}
    assert placeholders("order", "replay") == params.keys()


def test_params_never_hold_a_secret(runtime: Runtime) -> None:
    with runtime.tx() as session:
        params = sentence_params(
            session,
            None,
            "project",
            1,
            None,
            {"name": "p"},
            [],
            {"token": "abc", "password": "x", "count": 2},
            frozenset({"password"}),
        )
    assert params == {"id": "1", "name": "p", "token": "***", "password": "***", "count": 2}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_keeps_old_entries_without_params(backend: str, tmp_path: Path) -> None:
    db = Database(backend, tmp_path)
    engine = make_engine(db.url)
    try:
        # Both branches as they were: 0007 made the audit log, 0008 is the other head.
        upgrade(engine, "0007_access")
        upgrade(engine, "0008_campaign_error_code")
        at = "2026-01-01 10:00:00" if backend == "sqlite" else "2026-01-01T10:00:00+00:00"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_log (time, key_name, action, resource_type, "
                    "resource_id, summary, changes) VALUES (:at, 'cli', 'create', "
                    "'project', '1', 'Created project ''p''', '{}')"
                ),
                {"at": at},
            )
        upgrade(engine, "0009_audit_codes")
        assert current(engine) == {"0009_audit_codes"}
        with engine.connect() as conn:
            row = conn.execute(text("SELECT summary, params FROM audit_log")).one()
        assert tuple(row) == ("Created project 'p'", None)
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0008_campaign_error_code")
        assert current(engine) == {"0007_access", "0008_campaign_error_code"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT summary FROM audit_log")).scalar_one()
        assert "params" not in {c["name"] for c in inspect(engine).get_columns("audit_log")}
    finally:
        engine.dispose()
        db.drop()
