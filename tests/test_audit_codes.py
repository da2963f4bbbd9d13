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
from pathlib import Path

from pydantic import BaseModel

from test_error_codes import SRC, _name, _strings, dictionary
from touchgate.audit.schemas import AuditEntryOut
from touchgate.audit.service import SECRET_FIELDS
from touchgate.campaigns.endpoints import _NOT_AUDITED
from touchgate.campaigns.schemas import (
    ACTIONS,
    CampaignOut,
    ProjectProtection,
    TouchpointProtection,
)
from touchgate.datastore.schemas import AttributeOut
from touchgate.delivery.schemas import ReplayOut
from touchgate.keys.schemas import KeyOut
from touchgate.plugins.schemas import PluginOut
from touchgate.projects.schemas import ProjectOut, SpaceOut
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


def recorded_pairs() -> dict[tuple[str, str], set[str]]:
    """(resource_type, action) → where the source records it."""
    found: dict[tuple[str, str], set[str]] = {}
    unknown: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        tree = ast.parse(path.read_text("utf-8"), str(path))
        outer = _enclosing(tree)

        def actions_of(value: ast.expr, node: ast.AST, where: str) -> list[str]:
            literal = list(_strings(value))
            if literal:
                return literal
            known = [a for f in outer.get(node, ()) for a in FROM_ELSEWHERE.get((rel, f), ())]
            if not known:
                unknown.append(where)
            return known

        # Helpers: function name → (index of the action parameter, its name, resource type).
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
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{rel}:{node.lineno}"
            keywords = _audit_call(node)
            name = _name(node.func)
            if keywords is not None:
                action = keywords["action"]
                around = outer.get(node, set())
                if {(rel, f) for f in around} & WRAPPERS:
                    continue
                if isinstance(action, ast.Name) and around & helpers.keys():
                    continue  # a helper's own call: its callers say which action
                types = list(_strings(keywords["resource_type"]))
                if not types:
                    unknown.append(where)
                for kind in types:
                    for act in actions_of(action, node, where):
                        found.setdefault((kind, act), set()).add(where)
            elif name == "audit_created":
                resource = node.args[3] if len(node.args) > 3 else None
                if not isinstance(resource, ast.Tuple):
                    unknown.append(where)
                    continue
                for kind in _strings(resource.elts[0]):
                    found.setdefault((kind, "create"), set()).add(where)
            elif name in helpers:
                index, param, kind = helpers[name]
                given = {k.arg: k.value for k in node.keywords if k.arg}
                value = node.args[index] if len(node.args) > index else given.get(param)
                if value is None:
                    unknown.append(where)
                    continue
                for act in actions_of(value, node, where):
                    found.setdefault((kind, act), set()).add(where)
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

