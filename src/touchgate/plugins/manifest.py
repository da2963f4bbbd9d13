"""The plugin manifest, ``touchgate-plugin.toml``: parsing and every rule of plugins.md.

:func:`parse_manifest` never raises for bad input: it returns the manifest (or
``None``) and the list of problems, each a field detail (``{field, code, message,
params}``, see ``errors``) with ``field`` like ``manifest.version`` or
``manifest.config[1].options``, so an upload can report every problem at once.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..errors import Coded, field_detail

MANIFEST_NAME = "touchgate-plugin.toml"
API_VERSIONS = (1,)
FIELD_TYPES = ("text", "number", "enum", "boolean")
MAX_CONFIG_FIELDS = 100
MAX_ENUM_OPTIONS = 1000
MAX_DESCRIPTION = 2000

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
# Semantic Versioning 2.0.0, the regular expression published with the spec.
SEMVER_RE = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRY_RE = re.compile(rf"({IDENT}(?:\.{IDENT})*):({IDENT})")
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

TOP_LEVEL_KEYS = {"name", "version", "api_version", "entry", "description", "config"}
CONFIG_KEYS = {"key", "label", "type", "required", "secret", "options", "default", "description"}


@dataclass(frozen=True)
class ConfigField:
    """One ``[[config]]`` entry: a form field an admin fills in per touchpoint."""

    key: str
    label: str
    type: str
    required: bool = False
    secret: bool = False
    options: tuple[str, ...] = ()
    default: Any = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "secret": self.secret,
        }
        if self.type == "enum":
            out["options"] = list(self.options)
        if self.default is not None:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigField:
        return cls(
            key=data["key"],
            label=data.get("label") or data["key"],
            type=data["type"],
            required=bool(data.get("required", False)),
            secret=bool(data.get("secret", False)),
            options=tuple(data.get("options") or ()),
            default=data.get("default"),
            description=data.get("description"),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    api_version: int
    entry: str
    description: str | None = None
    config: tuple[ConfigField, ...] = field(default_factory=tuple)

    @property
    def entry_module(self) -> str:
        return self.entry.split(":", 1)[0]

    @property
    def entry_class(self) -> str:
        return self.entry.split(":", 1)[1]


Problem = dict[str, Any]


def _problem(field_name: str, message: str, code: str, **params: Any) -> Problem:
    return field_detail(field_name, message, code, params)


def _unknown_key(field_name: str, allowed: set[str]) -> Problem:
    names = ", ".join(sorted(allowed))
    return _problem(field_name, "unknown key; allowed: " + names, "unknown_key", allowed=names)


def _text_at_most(field_name: str, limit: int) -> Problem:
    return _problem(field_name, f"must be a string of at most {limit}", "text_at_most", max=limit)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def value_matches(cfg: ConfigField, value: Any) -> Coded | None:
    """Why ``value`` is not acceptable for ``cfg`` (``None`` when it is)."""
    if cfg.type == "text":
        if not isinstance(value, str):
            return Coded(code="not_text", message="must be a string")
        if len(value) > 10_000:
            return Coded(
                code="too_long", message="must be at most 10000 characters", params={"max": 10_000}
            )
    elif cfg.type == "number":
        if not _is_number(value):
            return Coded(code="not_number", message="must be a number")
    elif cfg.type == "boolean":
        if not isinstance(value, bool):
            return Coded(code="not_boolean", message="must be true or false")
    elif cfg.type == "enum" and (not isinstance(value, str) or value not in cfg.options):
        expected = ", ".join(cfg.options[:20])
        return Coded(
            code="not_one_of", message="must be one of: " + expected, params={"expected": expected}
        )
    return None


def _mismatch(field_name: str, reason: Coded) -> Problem:
    return field_detail(field_name, reason.message, reason.code, reason.params)


def _parse_config_field(index: int, raw: Any, problems: list[Problem]) -> ConfigField | None:
    where = f"manifest.config[{index}]"
    if not isinstance(raw, dict):
        problems.append(_problem(where, "must be a table ([[config]])", "config_not_table"))
        return None
    ok = True
    for unknown in sorted(set(raw) - CONFIG_KEYS):
        problems.append(_unknown_key(f"{where}.{unknown}", CONFIG_KEYS))
        ok = False
    key = raw.get("key")
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        problems.append(
            _problem(
                f"{where}.key",
                "required: a letter or _ followed by letters, digits or _ (at most 64)",
                "config_key_invalid",
            )
        )
        ok = False
    label = raw.get("label", key)
    if not isinstance(label, str) or not 1 <= len(label.strip()) <= 100:
        problems.append(
            _problem(
                f"{where}.label",
                "must be a string of 1-100 characters",
                "text_length",
                min=1,
                max=100,
            )
        )
        ok = False
    ftype = raw.get("type")
    if ftype not in FIELD_TYPES:
        expected = ", ".join(FIELD_TYPES)
        problems.append(
            _problem(
                f"{where}.type", "must be one of: " + expected, "not_one_of", expected=expected
            )
        )
        ok = False
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append(_problem(f"{where}.required", "must be true or false", "not_boolean"))
        ok = False
    secret = raw.get("secret", False)
    if not isinstance(secret, bool):
        problems.append(_problem(f"{where}.secret", "must be true or false", "not_boolean"))
        ok = False
    elif secret and ftype in FIELD_TYPES and ftype != "text":
        problems.append(
            _problem(f"{where}.secret", "only text fields can be secret", "secret_only_text")
        )
        ok = False
    description = raw.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        problems.append(_text_at_most(f"{where}.description", MAX_DESCRIPTION))
        ok = False
    options: tuple[str, ...] = ()
    raw_options = raw.get("options")
    if ftype == "enum":
        if (
            not isinstance(raw_options, list)
            or not raw_options
            or not all(isinstance(o, str) and o.strip() for o in raw_options)
        ):
            problems.append(
                _problem(
                    f"{where}.options",
                    "an enum needs a list of non-empty strings",
                    "enum_options_required",
                )
            )
            ok = False
        elif len(set(raw_options)) != len(raw_options):
            problems.append(
                _problem(f"{where}.options", "options must be unique", "options_not_unique")
            )
            ok = False
        elif len(raw_options) > MAX_ENUM_OPTIONS:
            problems.append(
                _problem(
                    f"{where}.options",
                    f"at most {MAX_ENUM_OPTIONS} options",
                    "too_many_items",
                    max=MAX_ENUM_OPTIONS,
                )
            )
            ok = False
        else:
            options = tuple(raw_options)
    elif raw_options is not None:
        problems.append(
            _problem(f"{where}.options", "only enum fields have options", "options_only_for_enum")
        )
        ok = False
    default = raw.get("default")
    if not ok:
        return None
    assert isinstance(key, str) and isinstance(label, str) and isinstance(ftype, str)
    cfg = ConfigField(
        key=key,
        label=label.strip(),
        type=ftype,
        required=bool(required),
        secret=bool(secret),
        options=options,
        default=None,
        description=description,
    )
    if default is not None:
        if cfg.secret:
            problems.append(
                _problem(
                    f"{where}.default", "a secret field cannot have a default", "secret_no_default"
                )
            )
            return None
        reason = value_matches(cfg, default)
        if reason:
            problems.append(_mismatch(f"{where}.default", reason))
            return None
        cfg = ConfigField(**{**cfg.__dict__, "default": default})
    return cfg


def parse_manifest(data: bytes) -> tuple[Manifest | None, list[Problem]]:
    """Parse and check ``touchgate-plugin.toml``; returns (manifest or None, problems)."""
    problems: list[Problem] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, [
            _problem("manifest", f"{MANIFEST_NAME} is not UTF-8 text", "manifest_not_utf8")
        ]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [
            _problem(
                "manifest",
                f"{MANIFEST_NAME} is not valid TOML: {exc}",
                "manifest_not_toml",
                error=str(exc),
            )
        ]

    for unknown in sorted(set(raw) - TOP_LEVEL_KEYS):
        problems.append(_unknown_key(f"manifest.{unknown}", TOP_LEVEL_KEYS))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append(
            _problem(
                "manifest.name", "required: 1-40 letters, digits, '-' or '_'", "plugin_name_invalid"
            )
        )
    version = raw.get("version")
    if not isinstance(version, str) or len(version) > 100 or not SEMVER_RE.fullmatch(version):
        problems.append(
            _problem(
                "manifest.version", "required: a semantic version such as 1.2.0", "semver_required"
            )
        )
    api_version = raw.get("api_version")
    if not _is_int(api_version) or api_version not in API_VERSIONS:
        problems.append(
            _problem(
                "manifest.api_version",
                "required: " + " or ".join(str(v) for v in API_VERSIONS),
                "api_version_required",
                expected=", ".join(str(v) for v in API_VERSIONS),
            )
        )
    entry = raw.get("entry")
    if not isinstance(entry, str) or len(entry) > 300 or not ENTRY_RE.fullmatch(entry):
        problems.append(
            _problem(
                "manifest.entry",
                "required: 'module:Class', e.g. 'sms_gateway:Channel'",
                "entry_invalid",
            )
        )
    description = raw.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        problems.append(_text_at_most("manifest.description", MAX_DESCRIPTION))
    fields: list[ConfigField] = []
    raw_config = raw.get("config", [])
    if not isinstance(raw_config, list):
        problems.append(
            _problem(
                "manifest.config", "must be an array of tables ([[config]])", "config_not_tables"
            )
        )
    elif len(raw_config) > MAX_CONFIG_FIELDS:
        problems.append(
            _problem(
                "manifest.config",
                f"at most {MAX_CONFIG_FIELDS} fields",
                "too_many_items",
                max=MAX_CONFIG_FIELDS,
            )
        )
    else:
        seen: set[str] = set()
        for index, item in enumerate(raw_config):
            cfg = _parse_config_field(index, item, problems)
            if cfg is None:
                continue
            if cfg.key in seen:
                problems.append(
                    _problem(
                        f"manifest.config[{index}].key",
                        f"duplicate key {cfg.key!r}",
                        "duplicate_config_key",
                        value=cfg.key,
                    )
                )
                continue
            seen.add(cfg.key)
            fields.append(cfg)
    if problems:
        return None, problems
    assert isinstance(name, str) and isinstance(version, str) and isinstance(entry, str)
    assert isinstance(api_version, int)
    return (
        Manifest(
            name=name,
            version=version,
            api_version=api_version,
            entry=entry,
            description=description,
            config=tuple(fields),
        ),
        [],
    )
