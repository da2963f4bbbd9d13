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

import pytest

from touchgate.errors import PYDANTIC_CODES, PYDANTIC_TYPES

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
    "field_error": {"invalid", "required", "options_api_failed"},
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
