"""Every code the server can send has a text in both console languages.

The codes are found in the source, not listed by hand, so a code added anywhere
(by any domain) without its translations fails here. The scan reads ``src/``
with ``ast`` and collects string literals (either branch of ``a if c else b``
too) where a code is given:

- error codes (``error.code.<code>``): ``code = "…"`` in a TouchgateError
  subclass, and ``code="…"`` passed to one;
- field-detail codes (``field_error.<code>``): ``code="…"`` passed to
  ``FieldErrors.add``/``refuse`` or to ``Coded``, ``field_code="…"`` passed to an
  error, ``PydanticCustomError("…", …)``, ``field_detail(field, message, "…")``,
  the codes of ``errors.PYDANTIC_CODES``, and the helpers below;
- test-send findings (``diagnosis.<code>``), per-user notes
  (``status_note.<code>``) and problem codes (``problem.<code>``, in
  ``params["problem"]``) from the helpers that make them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError

from touchgate.errors import PYDANTIC_CODES, PYDANTIC_TYPES, pydantic_details

SRC = Path(__file__).resolve().parents[1] / "src" / "touchgate"
I18N = SRC / "console" / "static" / "i18n"
CODE = re.compile(r"[a-z][a-z0-9_]*")

# Helpers that take a code as a positional argument: name → (index, namespace).
HELPERS = {
    "PydanticCustomError": (0, "field_error"),
    "field_detail": (2, "field_error"),
    "_problem": (2, "field_error"),  # plugins: _problem(field, message, code)
    "_invalid_value": (0, "field_error"),  # delivery.params
    "_finding": (0, "diagnosis"),  # delivery.testsend
    "_user": (3, "status_note"),  # delivery.testsend
    "_failed": (0, "problem"),  # delivery.options
    "_line_problem": (2, "field_error"),  # datastore.importer
    "BadValue": (0, "field_error"),  # datastore.importer
}
# Callables whose ``code=`` keyword is a field-detail code.
FIELD_CODE_CALLS = {"add", "refuse", "Coded", "FieldDetail", "UserNote"}
# Codes the handlers and the console use without a literal in a call.
BUILT_IN = {
    "error.code": {
        "invalid_input",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "internal",
        "method_not_allowed",
        "http_error",
        "network",
    },
    # "invalid" is FieldErrors.add's default; an options API failure under a value
    # (delivery.params) carries the error's own code.
    # out_of_range is the example in errors.py (and in the team's brief).
    "field_error": {"invalid", "required", "options_api_failed", "out_of_range"},
    "problem": {"other"},
}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _strings(node: ast.expr | None) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)


def _error_classes(trees: list[ast.Module]) -> dict[str, set[str]]:
    """TouchgateError and its subclasses (by name) → their class-level codes."""
    bases: dict[str, set[str]] = {}
    codes: dict[str, set[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {n for b in node.bases if (n := _name(b))}
                codes[node.name] = {
                    value
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets)
                    for value in _strings(stmt.value)
                }
    found = {"TouchgateError"}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return {name: codes.get(name, set()) for name in found}
        found |= more


def codes_in_source() -> dict[str, dict[str, set[str]]]:
    """namespace → code → the files it appears in."""
    files = sorted(SRC.rglob("*.py"))
    trees = [ast.parse(path.read_text("utf-8"), str(path)) for path in files]
    errors = _error_classes(trees)
    found: dict[str, dict[str, set[str]]] = {}

    def note(namespace: str, code: str, where: str) -> None:
        found.setdefault(namespace, {}).setdefault(code, set()).add(where)

    for name, class_codes in errors.items():
        for code in class_codes:
            note("error.code", code, f"class {name}")
    for path, tree in zip(files, trees, strict=True):
        where = str(path.relative_to(SRC))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name in errors:
                for code in _strings(keywords.get("code")):
                    note("error.code", code, where)
                for code in _strings(keywords.get("field_code")):
                    note("field_error", code, where)
            elif name in FIELD_CODE_CALLS:
                for code in _strings(keywords.get("code")):
                    note("field_error", code, where)
            if name in HELPERS:
                index, namespace = HELPERS[name]
                if len(node.args) > index:
                    for code in _strings(node.args[index]):
                        note(namespace, code, where)
        # Problem codes also appear as ``"problem": "…"`` and in a reading table.
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if list(_strings(key)) == ["problem"]:
                        for code in _strings(value):
                            note("problem", code, where)
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_PROTOCOL_PROBLEMS" for t in node.targets
            ):
                assert isinstance(node.value, ast.List)
                for item in node.value.elts:
                    assert isinstance(item, ast.Tuple)
                    for code in _strings(item.elts[1]):
                        note("problem", code, where)
    for code, _ in PYDANTIC_CODES.values():
        note("field_error", code, "errors.PYDANTIC_CODES")
    for namespace, codes in BUILT_IN.items():
        for code in codes:
            note(namespace, code, "built in")
    return found


def dictionary(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((I18N / f"{lang}.json").read_text("utf-8"))
    return data


def test_the_scan_finds_codes_of_every_kind() -> None:
    """The scan itself works: it sees codes given in each of the ways above."""
    found = codes_in_source()
    expected = {
        "error.code": {"touchpoint_in_use", "options_api_failed", "invalid_plugin", "name_taken"},
        "field_error": {
            "duplicate_key",  # errors.add(..., code=)
            "too_long",  # PydanticCustomError + PYDANTIC_CODES
            "nul_characters",  # InvalidInput(field_code=)
            "not_zip",  # _problem(field, message, code)
            "member_link",  # Coded(code=)
            "not_an_option",  # _invalid_value
            "required",
            "unknown_field",
        },
        "diagnosis": {"refused", "http_auth", "http_auth_no_token", "sign_rejected"},
        "status_note": {"no_response", "endpoint_said", "no_status_returned"},
        "problem": {"not_json", "bad_status", "http_status", "other"},
    }
    for namespace, codes in expected.items():
        assert codes <= set(found.get(namespace, {})), (namespace, codes - set(found[namespace]))


def test_custom_pydantic_codes_are_not_pydantic_type_names() -> None:
    """``PydanticCustomError("too_long", …)`` would be read as Pydantic's own too_long."""
    clashes = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and _name(node.func) == "PydanticCustomError":
                clashes += [c for c in _strings(node.args[0]) if c in PYDANTIC_TYPES]
    assert not clashes, f"custom codes named like Pydantic's error types: {clashes}"


def test_codes_are_stable_machine_words() -> None:
    bad = {
        code: where
        for codes in codes_in_source().values()
        for code, where in codes.items()
        if not CODE.fullmatch(code)
    }
    assert not bad, f"codes must be snake_case words: {bad}"


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_code_has_a_text(lang: str) -> None:
    texts = dictionary(lang)
    missing = sorted(
        f"{namespace}.{code}  ({', '.join(sorted(where))})"
        for namespace, codes in codes_in_source().items()
        for code, where in codes.items()
        if f"{namespace}.{code}" not in texts
    )
    assert not missing, f"{lang}.json has no text for:\n" + "\n".join(missing)


# ---------------------------------------------------------------- my domains give codes

# The domains whose every message carries a code (issue 10); other domains
# follow as they move over.
CODED = ["projects", "datastore", "touchpoints", "plugins", "delivery/params.py",
         "delivery/options.py", "delivery/testsend.py", "errors.py", "app.py"]  # fmt: skip


def _coded_files() -> list[Path]:
    out: list[Path] = []
    for entry in CODED:
        path = SRC / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def test_every_field_error_in_the_coded_domains_names_its_code() -> None:
    problems = []
    for path in _coded_files():
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                name = _name(node.func)
                keywords = {k.arg for k in node.keywords}
                # errors.add(field, "message") without a code falls back to "invalid".
                if (
                    name in ("add", "refuse")
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant | ast.JoinedStr)
                    and not keywords & {"code", None}
                ):
                    problems.append(f"{where}: {name}() without code=")
                if name == "InvalidInput" and "field" in keywords and "field_code" not in keywords:
                    problems.append(f"{where}: InvalidInput(field=…) without field_code=")
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and _name(node.exc.func) == "ValueError"
                and path.name == "schemas.py"
            ):
                problems.append(f"{where}: ValueError in a schema (use PydanticCustomError)")
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"field", "message"} <= keys and "code" not in keys:
                    problems.append(f"{where}: a field detail without a code (use field_detail)")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- what the API sends


def details(r: httpx.Response) -> dict[str, tuple[str, dict[str, Any]]]:
    """field → (code, params) of a refusal; every detail also keeps its English message."""
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and error["message"]
    assert all(d["message"] for d in error["details"])
    return {d["field"]: (d["code"], d["params"]) for d in error["details"]}


def test_pydantic_errors_get_our_codes_and_params(client: httpx.Client) -> None:
    r = client.post("/projects", json={"name": 5, "colour": "red", "timezone": "Mars/Base"})
    assert details(r) == {
        "name": ("not_text", {}),
        "colour": ("unknown_field", {}),
        "timezone": ("unknown_timezone", {"value": "Mars/Base"}),
    }
    r = client.post("/projects", json={"name": "x" * 101, "approval_required": "perhaps"})
    assert details(r) == {
        "name": ("too_long", {"max": 100}),
        "approval_required": ("not_boolean", {}),
    }
    assert details(client.post("/projects", json={})) == {"name": ("required", {})}
    pid = client.post("/projects", json={"name": "p"}).json()["id"]
    assert details(client.patch(f"/projects/{pid}", json={"name": "  "})) == {"name": ("blank", {})}
    r = client.get("/projects", params={"limit": 0})
    assert details(r) == {"limit": ("min_value", {"min": 1})}


def test_touchpoint_rules_have_codes(client: httpx.Client, project: dict[str, Any]) -> None:
    body = {
        "name": "一个名字超过十五个字的优惠券发放通道",
        "type": "coupon",
        "url": "ftp://example.com/x",
        "batch_size": 0,
        "retry_schedule": [5] * 11,
        "receipt": {"mode": "sync", "url": "https://example.com/r"},
        "template_params": [
            {"key": "title", "name": "Title", "type": "text"},
            {"key": "title", "name": "Again", "type": "text"},
        ],
    }
    r = client.post(f"/projects/{project['id']}/touchpoints", json=body)
    assert details(r) == {
        "name": ("text_too_long", {"max": 15, "got": 18}),
        "type": ("not_one_of", {"expected": "notification, benefit, other"}),
        "url": ("url_not_http", {}),
        "batch_size": ("min_value", {"min": 1}),
        "retry_schedule": ("too_many_items", {"max": 10}),
        "receipt.url": ("only_for_async", {}),
        "template_params[1].key": (
            "duplicate_key",
            {"value": "title", "other_field": "template_params[0].key"},
        ),
    }


def test_conflicts_name_what_they_are_about(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    body = {"name": "短信", "type": "other", "url": "https://example.com/touch"}
    tid = client.post(f"/projects/{pid}/touchpoints", json=body).json()["id"]
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    assert r.status_code == 409
    error = r.json()["error"]
    assert (error["code"], error["params"]) == ("name_taken", {"name": "短信"})
    assert [(d["field"], d["code"]) for d in error["details"]] == [("name", "name_taken")]
    r = client.patch(f"/projects/{pid}/touchpoints/{tid}", json={"batch_size": 10})
    assert r.status_code == 409
    error = r.json()["error"]
    assert (error["code"], error["params"]) == ("touchpoint_enabled", {"name": "短信"})


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"name": "x",', "application/json", "Expecting"),
        (b'{"name": "\xff\xfe"}', "application/json", "not UTF-8"),
    ],
)
@pytest.mark.parametrize("route", ["/projects", "/projects/{pid}/touchpoints"])
def test_unreadable_json_is_invalid_input(
    client: httpx.Client,
    project: dict[str, Any],
    route: str,
    body: bytes,
    content_type: str,
    error: str,
) -> None:
    """Both a typed body and one read as a plain object (the touchpoint routes)."""
    r = client.post(
        route.format(pid=project["id"]), content=body, headers={"Content-Type": content_type}
    )
    [(field, (code, params))] = details(r).items()
    assert (field, code) == ("body", "invalid_json")
    assert error in params["error"]


def test_events_name_each_bad_field(client: httpx.Client, project: dict[str, Any]) -> None:
    r = client.post(
        f"/projects/{project['id']}/events",
        json={"events": [{"name": "buy", "gid": 0}, {"name": " ", "gid": 1, "extra": 1}]},
    )
    assert details(r) == {
        "events[0].gid": ("min_value", {"min": 1}),
        "events[1].name": ("empty", {}),
        "events[1].extra": ("unknown_field", {}),
    }
    r = client.post(
        f"/projects/{project['id']}/events",
        json={"name": "buy", "gid": 1, "properties": {"a": [1, "x\u0000"]}},
    )
    assert details(r) == {"properties": ("nul_characters", {"path": "a[1]"})}


def test_discriminated_unions_say_which_kind_is_wrong() -> None:
    """For the campaign steps and triggers (Pydantic unions with a tag)."""

    class Once(BaseModel):
        type: Literal["once"]

    class Recurring(BaseModel):
        type: Literal["recurring"]
        cron: str

    class Campaign(BaseModel):
        trigger: Annotated[Once | Recurring, Field(discriminator="type")]

    for value, expected in [
        (
            {"type": "weekly"},
            ("unknown_kind", {"key": "type", "value": "weekly", "expected": "once, recurring"}),
        ),
        ({}, ("kind_missing", {"key": "type"})),
    ]:
        with pytest.raises(ValidationError) as info:
            Campaign.model_validate({"trigger": value})
        [detail] = pydantic_details(info.value.errors())
        assert detail["field"] == "trigger"
        assert detail["code"] == expected[0]
        assert detail["params"] == expected[1]
    assert detail["message"]
