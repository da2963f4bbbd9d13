"""Plugin rules: versions, deletion, and the per-touchpoint config contract.

The touchpoints domain stores a plugin touchpoint's ``plugin_config`` through
:func:`prepare_touchpoint_config` and shows it through :func:`public_config`; the
delivery engine hands :func:`runtime_config` to the plugin host. Services take a
session and never commit.

Stored form of ``plugin_config``: a JSON object keyed by the manifest's config
keys; a field the manifest marks ``secret`` holds a Fernet token (SecretBox),
never the plain value. Public form: the same object with every secret key
replaced by ``"<key>_set": true|false``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ..config import Settings
from ..crypto import SecretBox
from ..errors import Conflict, FieldErrors, InvalidInput, NotFound, field_detail
from ..models import Plugin, Touchpoint
from . import repository as repo
from .manifest import ConfigField, value_matches
from .package import StagedPackage


def config_fields(plugin: Plugin) -> list[ConfigField]:
    return [ConfigField.from_dict(item) for item in plugin.config_fields]


def get_plugin(session: Session, project_id: int, plugin_id: int) -> Plugin:
    plugin = repo.get_plugin(session, plugin_id)
    if plugin is None or plugin.project_id != project_id:
        raise NotFound(f"Plugin {plugin_id} does not exist in project {project_id}.")
    return plugin


def plugin_dir(settings: Settings, plugin_id: int) -> Path:
    return settings.plugin_path / str(plugin_id)


# -- upload, list, delete ---------------------------------------------------------


def create_plugin(
    session: Session, settings: Settings, project_id: int, staged: StagedPackage
) -> Plugin:
    """Record a checked package and move its files to ``plugin_path/<id>``.

    The caller checked the package outside the transaction (the sandbox check
    takes a while and must not hold the database's write lock)."""
    manifest = staged.manifest
    if repo.plugin_by_version(session, project_id, manifest.name, manifest.version):
        raise Conflict(
            f"Plugin {manifest.name} {manifest.version} is already uploaded to this project; "
            "bump the version in touchgate-plugin.toml.",
            code="plugin_version_exists",
            params={"name": manifest.name, "version": manifest.version},
            details=[
                field_detail(
                    "file",
                    "this name and version already exist",
                    "plugin_version_exists",
                    {"name": manifest.name, "version": manifest.version},
                )
            ],
        )
    plugin = Plugin(
        project_id=project_id,
        name=manifest.name,
        version=manifest.version,
        api_version=manifest.api_version,
        entry=manifest.entry,
        description=manifest.description,
        config_fields=[cfg.to_dict() for cfg in manifest.config],
        sha256=staged.sha256,
        size=staged.size,
        file_count=staged.file_count,
    )
    session.add(plugin)
    session.flush()
    target = plugin_dir(settings, plugin.id)
    if target.exists():  # left over by an upload whose transaction failed after the move
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.files_dir.rename(target)
    return plugin


def delete_plugin(session: Session, settings: Settings, project_id: int, plugin_id: int) -> Path:
    """Delete a version no live touchpoint uses; returns the directory to remove
    once the transaction has committed."""
    plugin = get_plugin(session, project_id, plugin_id)
    users = repo.touchpoints_using(session, plugin.id)
    if users:
        names = ", ".join(f"{name!r} (id {tid})" for tid, name in users)
        raise Conflict(
            f"Plugin {plugin.name} {plugin.version} is used by touchpoint(s) {names}; "
            "switch them to another plugin or delete them first.",
            code="plugin_in_use",
            params={"name": plugin.name, "version": plugin.version, "count": len(users)},
            details={"touchpoints": [{"id": tid, "name": name} for tid, name in users]},
        )
    session.delete(plugin)
    session.flush()
    return plugin_dir(settings, plugin_id)


# -- the touchpoint config contract -------------------------------------------------


def _plugin_for_touchpoint(session: Session, project_id: int, plugin_id: Any) -> Plugin:
    if not isinstance(plugin_id, int) or isinstance(plugin_id, bool):
        raise InvalidInput(
            "plugin_id: a plugin touchpoint needs the id of an uploaded plugin.",
            field="plugin_id",
            field_code="required_for_plugin",
        )
    plugin = repo.get_plugin(session, plugin_id)
    if plugin is None or plugin.project_id != project_id:
        raise InvalidInput(
            f"plugin_id: plugin {plugin_id} does not exist in this project.",
            field="plugin_id",
            field_code="plugin_unknown",
            params={"id": plugin_id},
        )
    return plugin


def prepare_touchpoint_config(
    session: Session,
    secrets: SecretBox,
    project_id: int,
    plugin_id: Any,
    config: dict[str, Any] | None,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """Check ``config`` against the plugin's ``[[config]]`` fields and return the
    stored form (defaults applied, secret fields encrypted).

    A secret field that is omitted keeps its value from ``previous`` (the stored
    form of the touchpoint being updated); sending ``null`` clears it. Every
    problem is reported at once, each named ``plugin_config.<key>``."""
    plugin = _plugin_for_touchpoint(session, project_id, plugin_id)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InvalidInput(
            "plugin_config must be an object.", field="plugin_config", field_code="not_object"
        )
    previous = previous if isinstance(previous, dict) else {}
    fields = config_fields(plugin)
    known = {cfg.key for cfg in fields}
    errors = FieldErrors()
    for key in config:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "(none)"
            errors.add(
                f"plugin_config.{key}",
                f"unknown field; this plugin accepts: {allowed}",
                code="unknown_config_field",
                allowed=allowed,
            )
    stored: dict[str, Any] = {}
    for cfg in fields:
        name = f"plugin_config.{cfg.key}"
        present = cfg.key in config
        value = config.get(cfg.key)
        if cfg.secret:
            if not present:
                kept = previous.get(cfg.key)
                if isinstance(kept, str) and kept:
                    stored[cfg.key] = kept
                elif cfg.required:
                    errors.add(
                        name,
                        "required (a secret: send it once, it is never shown again)",
                        code="secret_required",
                    )
                continue
            if value is None or value == "":
                if cfg.required:
                    errors.add(name, "required", code="required")
                continue
            reason = value_matches(cfg, value)
            if reason:
                errors.add(name, reason.message, code=reason.code, **reason.params)
                continue
            stored[cfg.key] = secrets.encrypt(value)
            continue
        if value is None:
            if cfg.default is not None:
                stored[cfg.key] = cfg.default
            elif cfg.required:
                errors.add(name, "required", code="required")
            continue
        reason = value_matches(cfg, value)
        if reason:
            errors.add(name, reason.message, code=reason.code, **reason.params)
            continue
        if cfg.required and cfg.type == "text" and not value.strip():
            errors.add(name, "required", code="required")
            continue
        stored[cfg.key] = value
    errors.raise_if_any("The plugin configuration is invalid.")
    return stored


def public_config(
    session: Session, plugin_id: int | None, stored: dict[str, Any] | None
) -> dict[str, Any]:
    """The stored config as the API shows it: secret values replaced by
    ``"<key>_set": true|false``. Unknown plugin → ``{}`` (nothing can be told
    apart from a secret then, so nothing is shown)."""
    if plugin_id is None:
        return {}
    plugin = repo.get_plugin(session, plugin_id)
    if plugin is None:
        return {}
    stored = stored if isinstance(stored, dict) else {}
    out: dict[str, Any] = {}
    for cfg in config_fields(plugin):
        if cfg.secret:
            out[f"{cfg.key}_set"] = bool(stored.get(cfg.key))
        elif cfg.key in stored:
            out[cfg.key] = stored[cfg.key]
    return out


def runtime_config(session: Session, secrets: SecretBox, touchpoint: Touchpoint) -> dict[str, Any]:
    """The plain config handed to the plugin's ``open()``: secrets decrypted,
    defaults filled in. Raises ``PluginFailed`` when the plugin is gone."""
    from .host import PluginFailed

    if touchpoint.plugin_id is None:
        raise PluginFailed(f"Touchpoint {touchpoint.id} has no plugin.")
    plugin = repo.get_plugin(session, touchpoint.plugin_id)
    if plugin is None or plugin.project_id != touchpoint.project_id:
        raise PluginFailed(f"Plugin {touchpoint.plugin_id} of touchpoint {touchpoint.id} is gone.")
    stored = touchpoint.plugin_config if isinstance(touchpoint.plugin_config, dict) else {}
    plain: dict[str, Any] = {}
    for cfg in config_fields(plugin):
        value = stored.get(cfg.key)
        if value is None:
            if cfg.default is not None:
                plain[cfg.key] = cfg.default
            continue
        plain[cfg.key] = secrets.decrypt(value) if cfg.secret else value
    return plain
