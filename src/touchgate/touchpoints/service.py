"""The touchpoint registry: every rule of adding, editing, authorising, enabling,
disabling, deleting a touchpoint and rotating its signing secret.

Services take a session and never commit. Input has already passed the
per-value checks of ``schemas``; the rules here involve several fields, several
items, other tables or the touchpoint's state, and are collected with
``FieldErrors`` so one answer names every invalid field.

The delivery engine reads a touchpoint's secrets through :func:`auth_token` and
:func:`signing_secrets`; nothing else decrypts them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..crypto import SecretBox, new_signing_secret
from ..datastore import repository as datastore
from ..errors import Conflict, FieldErrors, InvalidInput, NotFound, field_detail, pydantic_details
from ..models import Touchpoint, TouchpointHealth
from ..models.base import utcnow
from ..projects import service as projects
from ..runtime import Runtime
from . import guard
from . import repository as repo
from .schemas import (
    MAX_ID,
    OPTIONS_WARN_THRESHOLD,
    EnumSource,
    Receipt,
    TemplateParam,
    TouchpointCreate,
    TouchpointPatch,
)

ENABLED = "enabled"
DISABLED = "disabled"
# After a rotation the old signing secret still signs this long, so receivers
# can switch to the new one without dropping a request.
SECRET_GRACE = timedelta(hours=24)

View = dict[str, Any]


# ---------------------------------------------------------------- reading


def _stored_id(value: int) -> bool:
    # Ids live in 32-bit columns on PostgreSQL: a larger one names nothing (and
    # must not reach the database, which would refuse to compare it).
    return 0 < value <= MAX_ID


def _get_project(session: Session, project_id: int) -> None:
    if not _stored_id(project_id):
        raise NotFound(f"Project {project_id} does not exist.")
    projects.get_project(session, project_id)


def get_touchpoint(
    session: Session, project_id: int, touchpoint_id: int, *, for_update: bool = False
) -> Touchpoint:
    """A live touchpoint of the project, or NotFound (also for a deleted one)."""
    _get_project(session, project_id)
    touchpoint = None
    if _stored_id(touchpoint_id):
        touchpoint = repo.get(session, project_id, touchpoint_id, for_update=for_update)
    if touchpoint is None:
        raise NotFound(f"Touchpoint {touchpoint_id} does not exist in project {project_id}.")
    return touchpoint


def _plugins() -> ModuleType:
    # The plugins domain owns plugin configuration (validation, secret fields);
    # imported on use so the registry does not depend on it for HTTP touchpoints.
    from ..plugins import service as plugins

    return plugins


def _health(row: TouchpointHealth | None) -> dict[str, Any]:
    if row is None:
        return {"state": "closed", "since": None, "reason": None}
    return {"state": row.state, "since": row.since, "reason": row.reason}


def _view(
    session: Session,
    touchpoint: Touchpoint,
    space_ids: list[int],
    health: TouchpointHealth | None = None,
) -> View:
    plugin_config = None
    if touchpoint.transport == "plugin" and touchpoint.plugin_id is not None:
        plugin_config = _plugins().public_config(
            session, touchpoint.plugin_id, touchpoint.plugin_config
        )
    last_test = None
    if touchpoint.last_test_at is not None:
        last_test = {"at": touchpoint.last_test_at, "ok": bool(touchpoint.last_test_ok)}
    return {
        "id": touchpoint.id,
        "project_id": touchpoint.project_id,
        "name": touchpoint.name,
        "type": touchpoint.type,
        "transport": touchpoint.transport,
        "status": touchpoint.status,
        "url": touchpoint.url,
        "token_set": touchpoint.token_encrypted is not None,
        "batch_size": touchpoint.batch_size,
        "description": touchpoint.description,
        "timeout_seconds": touchpoint.timeout_seconds,
        "retry_schedule": touchpoint.retry_schedule,
        "max_in_flight": touchpoint.max_in_flight,
        "receipt": touchpoint.receipt,
        "user_attributes": touchpoint.user_attributes,
        "template_params": touchpoint.template_params,
        "plugin_id": touchpoint.plugin_id,
        "plugin_config": plugin_config,
        "space_ids": space_ids,
        "last_test": last_test,
        "health": _health(health),
        "created_at": touchpoint.created_at,
        "updated_at": touchpoint.updated_at,
    }


def views(session: Session, touchpoints: Sequence[Touchpoint]) -> list[View]:
    """Output for many touchpoints; their spaces come from one query."""
    ids = [t.id for t in touchpoints]
    spaces = repo.space_ids_by_touchpoint(session, ids)
    health = repo.health_by_touchpoint(session, ids)
    return [_view(session, t, spaces[t.id], health.get(t.id)) for t in touchpoints]


def view(session: Session, touchpoint: Touchpoint) -> View:
    return views(session, [touchpoint])[0]


def show_touchpoint(session: Session, project_id: int, touchpoint_id: int) -> View:
    return view(session, get_touchpoint(session, project_id, touchpoint_id))


def list_touchpoints(
    session: Session,
    project_id: int,
    *,
    status: str | None = None,
    type_: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[View], int]:
    if q is not None and "\x00" in q:
        raise InvalidInput(
            "q: must not contain NUL characters.", field="q", field_code="nul_characters"
        )
    _get_project(session, project_id)
    rows, total = repo.list_touchpoints(
        session,
        project_id,
        status=status,
        type_=type_,
        q=q.strip() if q else None,
        limit=limit,
        offset=offset,
    )
    return views(session, rows), total


def usable_in_space(
    session: Session, project_id: int, space_id: int, *, limit: int = 100, offset: int = 0
) -> tuple[list[View], int]:
    """What a space's campaign editor may choose: enabled and authorised."""
    _get_project(session, project_id)
    if not _stored_id(space_id):
        raise NotFound(f"Space {space_id} does not exist in project {project_id}.")
    projects.get_space(session, project_id, space_id)
    rows, total = repo.usable_in_space(session, project_id, space_id, limit, offset)
    return views(session, rows), total


# ---------------------------------------------------------------- rules


def _top(field: str) -> str:
    return re.split(r"[.\[]", field, maxsplit=1)[0]


class _Errors(FieldErrors):
    """The field errors of one request. A value that fails its own checks is
    ``refused``; the rules then stay silent about that field, so each field gets
    the reason that matters instead of a cascade."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()

    def refuse(self, field: str, message: str, *, code: str = "invalid", **params: Any) -> None:
        super().add(field, message, code=code, **params)
        self.refused.add(_top(field))

    def add(self, field: str, message: str, *, code: str = "invalid", **params: Any) -> None:
        if _top(field) not in self.refused:
            super().add(field, message, code=code, **params)


def _nul_path(value: Any, path: str) -> str | None:
    """Where a NUL character hides in a JSON value (PostgreSQL cannot store one)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"{path}.{key.replace(chr(0), '?')}"
            found = _nul_path(item, f"{path}.{key}")
            if found is not None:
                return found
    return None


def _parse(body: dict[str, Any], errors: _Errors) -> TouchpointPatch:
    """Check each sent field on its own, so one bad value does not hide the
    rules of the others; returns the good values (``model_fields_set``)."""
    values: dict[str, Any] = {}
    for key, value in body.items():
        nul = _nul_path(value, key)
        if nul is not None:
            errors.refuse(nul, "must not contain NUL characters", code="nul_characters")
            continue
        try:
            parsed = TouchpointPatch.model_validate({key: value})
        except ValidationError as exc:
            for detail in pydantic_details(exc.errors()):
                errors.refuse(
                    detail["field"], detail["message"], code=detail["code"], **detail["params"]
                )
            continue
        values[key] = getattr(parsed, key)
    return TouchpointPatch.model_construct(_fields_set=set(values), **values)


def _check_transport(
    errors: FieldErrors,
    transport: str,
    *,
    url: str | None,
    plugin_id: int | None,
    given: set[str],
) -> None:
    """``url`` and ``plugin_id`` are the values the touchpoint will have; ``given``
    the fields this request sets to a value."""
    if transport == "http":
        if url is None:
            errors.add("url", "required for an http touchpoint", code="required_for_http")
        for name in ("plugin_id", "plugin_config"):
            if name in given:
                errors.add(name, 'only for "transport": "plugin"', code="only_for_plugin")
    else:
        if plugin_id is None:
            errors.add("plugin_id", "required for a plugin touchpoint", code="required_for_plugin")
        if "url" in given:
            errors.add(
                "url", "a plugin touchpoint has no URL: the plugin delivers", code="plugin_no_url"
            )
        if "token" in given:
            errors.add(
                "token",
                "a plugin touchpoint has no token: secrets go in plugin_config",
                code="plugin_no_token",
            )


def _check_receipt(errors: FieldErrors, transport: str, receipt: Receipt) -> dict[str, Any]:
    """The stored form: ``{"mode": "sync"}`` or the async settings with defaults."""
    if receipt.mode == "sync":
        for name in ("url", "poll_seconds", "timeout_minutes"):
            if name in receipt.model_fields_set:
                errors.add(
                    f"receipt.{name}", 'only used with "mode": "async"', code="only_for_async"
                )
        return {"mode": "sync"}
    stored: dict[str, Any] = {"mode": "async"}
    if transport == "http":
        if receipt.url is None:
            errors.add(
                "receipt.url",
                "required for async receipts: the URL to fetch them from",
                code="receipt_url_required",
            )
        stored["url"] = receipt.url
    elif receipt.url is not None:
        errors.add(
            "receipt.url",
            "a plugin touchpoint fetches receipts through its plugin (query_receipts); "
            "leave url out",
            code="plugin_no_receipt_url",
        )
    stored["poll_seconds"] = receipt.poll_seconds
    stored["timeout_minutes"] = receipt.timeout_minutes
    return stored


def _check_enum(
    errors: FieldErrors, path: str, label: str, enum: EnumSource, warnings: FieldErrors
) -> dict[str, Any]:
    if enum.source == "api":
        if enum.options is not None:
            errors.add(
                f"{path}.options",
                'only for "source": "manual"; the options API supplies them',
                code="options_from_api",
            )
        if enum.url is None:
            errors.add(
                f"{path}.url",
                'required for "source": "api": the options API URL',
                code="options_url_required",
            )
        return {"source": "api", "url": enum.url}
    if enum.url is not None:
        errors.add(f"{path}.url", 'only for "source": "api"', code="only_for_options_api")
    if enum.options is None:
        errors.add(f"{path}.options", 'required for "source": "manual"', code="options_required")
        return {"source": "manual", "options": []}
    if not enum.options:
        errors.add(f"{path}.options", "needs at least one option", code="options_empty")
    # Codes identify what an operator picked, so they are unique over both levels.
    seen: dict[str, str] = {}
    leaves = 0
    options: list[dict[str, Any]] = []

    def claim(code: str, where: str) -> None:
        if code in seen:
            errors.add(
                f"{where}.code",
                f"duplicate code {code!r} (also {seen[code]})",
                code="duplicate_code",
                value=code,
                other_field=f"{seen[code]}.code",
            )
        else:
            seen[code] = where

    for i, option in enumerate(enum.options):
        where = f"{path}.options[{i}]"
        claim(option.code, where)
        item: dict[str, Any] = {"code": option.code, "name": option.name}
        if option.children:
            children = []
            for j, child in enumerate(option.children):
                claim(child.code, f"{where}.children[{j}]")
                children.append({"code": child.code, "name": child.name})
            item["children"] = children
            leaves += len(children)
        else:
            leaves += 1
        options.append(item)
    if leaves > OPTIONS_WARN_THRESHOLD:
        warnings.add(
            f"{path}.options",
            f"{path.removesuffix('.enum')} ({label}) has {leaves} options; more than "
            f"{OPTIONS_WARN_THRESHOLD} make the dropdown hard to use. Consider the options "
            "API or two levels.",
            code="many_options",
            count=leaves,
            max=OPTIONS_WARN_THRESHOLD,
        )
    return {"source": "manual", "options": options}


def _check_template_params(
    errors: FieldErrors, params: list[TemplateParam], warnings: FieldErrors
) -> list[dict[str, Any]]:
    keys: dict[str, int] = {}
    stored: list[dict[str, Any]] = []
    for i, param in enumerate(params):
        path = f"template_params[{i}]"
        if param.key in keys:
            errors.add(
                f"{path}.key",
                f"duplicate key {param.key!r} (also template_params[{keys[param.key]}])",
                code="duplicate_key",
                value=param.key,
                other_field=f"template_params[{keys[param.key]}].key",
            )
        else:
            keys[param.key] = i
        item: dict[str, Any] = {
            "key": param.key,
            "name": param.name,
            "type": param.type,
            "required": param.required,
        }
        if param.type == "enum":
            if param.enum is None:
                errors.add(
                    f"{path}.enum",
                    'required for an enum parameter: {"source": "manual", "options": [...]} '
                    'or {"source": "api", "url": "..."}',
                    code="enum_required",
                )
            else:
                item["enum"] = _check_enum(errors, f"{path}.enum", param.key, param.enum, warnings)
        elif param.enum is not None:
            errors.add(
                f"{path}.enum",
                f"only enum parameters have options; this one is {param.type}",
                code="only_enum_has_options",
                type=param.type,
            )
        stored.append(item)
    return stored


def _check_user_attributes(
    session: Session, errors: FieldErrors, project_id: int, keys: list[str]
) -> None:
    catalogue = datastore.attributes_by_key(session, project_id, keys)
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        path = f"user_attributes[{i}]"
        if key in seen:
            errors.add(
                path,
                f"{key!r} is listed twice (also user_attributes[{seen[key]}])",
                code="listed_twice",
                value=key,
                other_field=f"user_attributes[{seen[key]}]",
            )
            continue
        seen[key] = i
        attribute = catalogue.get(key)
        if attribute is None:
            errors.add(
                path,
                f"{key!r} is not in the project's attribute catalogue",
                code="attribute_unknown",
                value=key,
            )
        elif attribute.sensitive:
            errors.add(
                path,
                f"{key!r} is sensitive (masked or encrypted in the data store) and cannot be "
                "sent to a touchpoint",
                code="attribute_not_sendable",
                value=key,
            )


def _prepare_plugin_config(
    session: Session,
    secrets: SecretBox,
    errors: FieldErrors,
    project_id: int,
    plugin_id: int,
    config: dict[str, Any] | None,
    previous: dict[str, Any] | None,
) -> dict[str, Any] | None:
    try:
        prepared: dict[str, Any] = _plugins().prepare_touchpoint_config(
            session, secrets, project_id, plugin_id, config, previous
        )
    except InvalidInput as exc:
        for detail in exc.details or [field_detail("plugin_config", exc.message)]:
            errors.add(detail["field"], detail["message"], code=detail["code"], **detail["params"])
        return None
    except NotFound as exc:
        errors.add("plugin_id", exc.message, code="plugin_unknown", id=plugin_id)
        return None
    return prepared


def _plain_plugin_values(session: Session, touchpoint: Touchpoint) -> dict[str, Any]:
    """The stored plugin values that are not secrets (those the public form shows
    under their own key; secrets appear only as ``<key>_set``)."""
    stored = touchpoint.plugin_config or {}
    public = _plugins().public_config(session, touchpoint.plugin_id, stored)
    return {key: value for key, value in stored.items() if key in public}


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        f"A touchpoint named {name!r} already exists in this project.",
        code="name_taken",
        params={"name": name},
        details=[field_detail("name", "already used by another touchpoint", "name_taken")],
    )


def _flush(session: Session, name: str) -> None:
    """Flush, turning a lost race for the name (the partial unique index) into 409."""
    try:
        session.flush()
    except IntegrityError as exc:
        text = str(exc.orig)
        if "uq_touchpoints_project_name_live" in text or "touchpoints.name" in text:
            raise _name_conflict(name) from None
        raise


def _enabled_conflict(touchpoint: Touchpoint, action: str) -> Conflict:
    return Conflict(
        f"Touchpoint {touchpoint.name!r} is enabled; disable it first, then {action} it.",
        code="touchpoint_enabled",
        params={"name": touchpoint.name},
    )


# ---------------------------------------------------------------- writing


def _advice(warnings: FieldErrors) -> dict[str, Any]:
    """Warnings in English (``warnings``) and with codes for the console."""
    return {
        "warnings": [w["message"] for w in warnings.items],
        "warning_details": warnings.items,
    }


def _as_body(data: TouchpointCreate | TouchpointPatch | Mapping[str, Any]) -> dict[str, Any]:
    # Code (the demo, the CLI) may pass a model; requests pass the JSON object.
    if isinstance(data, TouchpointCreate | TouchpointPatch):
        return data.model_dump(exclude_unset=True)
    return dict(data)


def create_touchpoint(
    session: Session,
    secrets: SecretBox,
    project_id: int,
    data: TouchpointCreate | Mapping[str, Any],
) -> View:
    """A new touchpoint (``data`` shaped as ``TouchpointCreate``): enabled,
    authorised to no space, with a fresh signing secret that the returned view
    carries this once as ``signing_secret``."""
    _get_project(session, project_id)
    body = _as_body(data)
    errors = _Errors()
    warnings = FieldErrors()
    sent = _parse(body, errors)
    for name in ("name", "type"):
        if name not in body:
            errors.refuse(name, "required", code="required")
    values = {name: getattr(sent, name) for name in sent.model_fields_set}
    draft = TouchpointCreate.model_construct(_fields_set=set(values), **values)
    given = {name for name, value in values.items() if value is not None}
    receipt: dict[str, Any] = {"mode": "sync"}
    # Which fields belong depends on the transport; unknown when it was refused.
    if "transport" not in errors.refused:
        _check_transport(
            errors, draft.transport, url=draft.url, plugin_id=draft.plugin_id, given=given
        )
        receipt = _check_receipt(errors, draft.transport, draft.receipt)
    params = _check_template_params(errors, draft.template_params, warnings)
    _check_user_attributes(session, errors, project_id, draft.user_attributes)
    plugin_config = None
    if (
        draft.transport == "plugin"
        and draft.plugin_id is not None
        and not errors.refused & {"transport", "plugin_config"}
    ):
        plugin_config = _prepare_plugin_config(
            session, secrets, errors, project_id, draft.plugin_id, draft.plugin_config, None
        )
    errors.raise_if_any()
    if repo.name_taken(session, project_id, draft.name):
        raise _name_conflict(draft.name)

    signing_secret = new_signing_secret()
    is_http = draft.transport == "http"
    touchpoint = Touchpoint(
        project_id=project_id,
        name=draft.name,
        type=draft.type,
        transport=draft.transport,
        status=ENABLED,
        url=draft.url if is_http else None,
        token_encrypted=secrets.encrypt(draft.token) if is_http and draft.token else None,
        signing_secret_encrypted=secrets.encrypt(signing_secret),
        batch_size=draft.batch_size,
        description=draft.description or None,
        timeout_seconds=draft.timeout_seconds,
        retry_schedule=list(draft.retry_schedule),
        max_in_flight=draft.max_in_flight,
        receipt=receipt,
        user_attributes=list(draft.user_attributes),
        template_params=params,
        plugin_id=None if is_http else draft.plugin_id,
        plugin_config=plugin_config,
    )
    session.add(touchpoint)
    _flush(session, draft.name)
    return {**view(session, touchpoint), **_advice(warnings), "signing_secret": signing_secret}


def update_touchpoint(
    session: Session,
    secrets: SecretBox,
    project_id: int,
    touchpoint_id: int,
    changes: TouchpointPatch | Mapping[str, Any],
) -> View:
    """Change the fields sent (``changes`` shaped as ``TouchpointPatch``). The type
    never changes; only a disabled touchpoint can be edited. Input errors are
    reported before the state conflict."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    errors = _Errors()
    warnings = FieldErrors()
    data = _parse(_as_body(changes), errors)
    sent = data.model_fields_set
    given = {name for name in sent if getattr(data, name) is not None}
    # Which fields belong depends on the transport; unknown when it was refused.
    transport_known = "transport" not in errors.refused

    if data.type is not None and data.type != touchpoint.type:
        errors.add(
            "type",
            f"the type of a touchpoint cannot change (this one is {touchpoint.type!r}); "
            "add a new touchpoint instead",
            code="type_fixed",
            type=touchpoint.type,
        )
    transport = data.transport or touchpoint.transport
    switching = transport != touchpoint.transport
    kept_url = None if switching else touchpoint.url
    kept_plugin = None if switching else touchpoint.plugin_id
    url = data.url or kept_url
    plugin_id = data.plugin_id or kept_plugin
    if transport_known:
        _check_transport(errors, transport, url=url, plugin_id=plugin_id, given=given)

    receipt = None
    if transport_known and data.receipt is not None:
        receipt = _check_receipt(errors, transport, data.receipt)
    elif transport_known and switching:
        # The stored receipt settings must still make sense for the new transport;
        # a plugin fetches its receipts itself, so a receipt URL is simply dropped.
        kept = dict(touchpoint.receipt)
        if transport == "plugin":
            kept.pop("url", None)
        receipt = _check_receipt(errors, transport, Receipt.model_validate(kept))
    params = None
    if data.template_params is not None:
        params = _check_template_params(errors, data.template_params, warnings)
    if data.user_attributes is not None:
        _check_user_attributes(session, errors, project_id, data.user_attributes)
    plugin_config: dict[str, Any] | None = None
    plugin_changed = transport == "plugin" and (
        switching or "plugin_config" in sent or plugin_id != touchpoint.plugin_id
    )
    if plugin_changed and plugin_id is not None and transport_known:
        previous = None if switching else touchpoint.plugin_config
        # Omitted secret fields keep their stored value (``previous``); when only
        # the plugin version changes, the other values are carried over too.
        if "plugin_config" in sent:
            config = data.plugin_config
        elif switching:
            config = None
        else:
            config = _plain_plugin_values(session, touchpoint)
        plugin_config = _prepare_plugin_config(
            session, secrets, errors, project_id, plugin_id, config, previous
        )
    errors.raise_if_any()

    if touchpoint.status == ENABLED:
        raise _enabled_conflict(touchpoint, "edit")
    if data.name is not None and data.name != touchpoint.name:
        if repo.name_taken(session, project_id, data.name, exclude_id=touchpoint.id):
            raise _name_conflict(data.name)
        touchpoint.name = data.name

    for name in ("batch_size", "timeout_seconds", "max_in_flight"):
        if name in sent:
            setattr(touchpoint, name, getattr(data, name))
    if "description" in sent:
        touchpoint.description = data.description or None
    if data.retry_schedule is not None:
        touchpoint.retry_schedule = list(data.retry_schedule)
    if data.user_attributes is not None:
        touchpoint.user_attributes = list(data.user_attributes)
    if params is not None:
        touchpoint.template_params = params
    if receipt is not None:
        touchpoint.receipt = receipt
    touchpoint.transport = transport
    if transport == "http":
        touchpoint.url = url
        touchpoint.plugin_id = None
        touchpoint.plugin_config = None
        if "token" in sent:
            token = data.token
            touchpoint.token_encrypted = secrets.encrypt(token) if token else None
        elif switching:
            touchpoint.token_encrypted = None
    else:
        touchpoint.url = None
        touchpoint.token_encrypted = None
        touchpoint.plugin_id = plugin_id
        if plugin_changed:
            touchpoint.plugin_config = plugin_config
    touchpoint.updated_at = utcnow()
    _flush(session, touchpoint.name)
    return {**view(session, touchpoint), **_advice(warnings)}


def set_spaces(session: Session, project_id: int, touchpoint_id: int, space_ids: list[int]) -> View:
    """Authorise exactly these spaces (any status)."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    existing = repo.existing_space_ids(session, project_id, space_ids)
    errors = FieldErrors()
    for i, space_id in enumerate(space_ids):
        if space_id not in existing:
            errors.add(
                f"space_ids[{i}]",
                f"space {space_id} does not exist in project {project_id}",
                code="space_unknown",
                id=space_id,
            )
    errors.raise_if_any()
    repo.replace_spaces(session, touchpoint.id, space_ids)
    touchpoint.updated_at = utcnow()
    session.flush()
    return view(session, touchpoint)


def enable_touchpoint(session: Session, project_id: int, touchpoint_id: int) -> View:
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    if touchpoint.status != ENABLED:
        touchpoint.status = ENABLED
        touchpoint.updated_at = utcnow()
        session.flush()
    return view(session, touchpoint)


def disable_touchpoint(
    session: Session,
    project_id: int,
    touchpoint_id: int,
    usage_checks: Iterable[guard.UsageCheck],
) -> View:
    """Refused while a campaign in a blocking state uses it, as ``usage_checks`` (from
    the composition root) say (see ``guard``)."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    if touchpoint.status == DISABLED:
        return view(session, touchpoint)
    campaigns = guard.blocking_campaigns(session, touchpoint.id, usage_checks)
    if campaigns:
        listed = ", ".join(f"{c['name']!r} ({c['status']})" for c in campaigns[:5])
        if len(campaigns) > 5:
            listed += f" and {len(campaigns) - 5} more"
        raise Conflict(
            f"Touchpoint {touchpoint.name!r} cannot be disabled: campaigns that are running, "
            f"paused, not started, awaiting publish or in approval use it: {listed}.",
            code="touchpoint_in_use",
            params={"name": touchpoint.name, "count": len(campaigns)},
            details={"campaigns": campaigns},
        )
    touchpoint.status = DISABLED
    touchpoint.updated_at = utcnow()
    session.flush()
    return view(session, touchpoint)


def delete_touchpoint(session: Session, project_id: int, touchpoint_id: int) -> None:
    """Soft delete: hidden everywhere and its name free again, while orders,
    results and statistics that refer to it stay intact."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    if touchpoint.status == ENABLED:
        raise _enabled_conflict(touchpoint, "delete")
    pending = repo.unsettled_order_count(session, touchpoint.id)
    if pending:
        raise Conflict(
            f"Touchpoint {touchpoint.name!r} still has {pending} unsettled order(s) "
            "(being delivered or waiting for receipts); delete it once they are done.",
            code="touchpoint_has_pending_orders",
            params={"name": touchpoint.name, "count": pending},
            details={"pending_orders": pending},
        )
    repo.clear_spaces(session, touchpoint.id)
    repo.mark_deleted(session, touchpoint, utcnow())


def rotate_secret(
    session: Session, secrets: SecretBox, project_id: int, touchpoint_id: int
) -> dict[str, Any]:
    """A new signing secret; the current one keeps signing for ``SECRET_GRACE``.
    Rotating again within the grace period drops the oldest secret."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id, for_update=True)
    secret = new_signing_secret()
    now = utcnow()
    touchpoint.previous_signing_secret_encrypted = touchpoint.signing_secret_encrypted
    touchpoint.previous_secret_expires_at = now + SECRET_GRACE
    touchpoint.signing_secret_encrypted = secrets.encrypt(secret)
    touchpoint.updated_at = now
    session.flush()
    return {"signing_secret": secret, "previous_secret_expires_at": now + SECRET_GRACE}


def reset_health(session: Session, project_id: int, touchpoint_id: int) -> View:
    """Close the touchpoint's circuit breaker by hand: its orders flow again at once."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id)
    repo.close_health(session, touchpoint.id, utcnow())
    return view(session, touchpoint)


def enum_param(session: Session, project_id: int, touchpoint_id: int, key: str) -> dict[str, Any]:
    """The ``enum`` settings of one template parameter (``{source, options|url}``)."""
    touchpoint = get_touchpoint(session, project_id, touchpoint_id)
    for param in touchpoint.template_params:
        if param.get("key") == key:
            if param.get("type") != "enum":
                raise InvalidInput(
                    f"Parameter {key!r} is a {param.get('type')} parameter; only enum "
                    "parameters have options.",
                    field="key",
                    field_code="not_enum_param",
                    params={"key": key, "type": param.get("type")},
                )
            enum: dict[str, Any] = param["enum"]
            return enum
    raise NotFound(f"Touchpoint {touchpoint_id} has no template parameter {key!r}.")


# ---------------------------------------------------------------- for delivery


def auth_token(secrets: SecretBox, touchpoint: Touchpoint) -> str | None:
    """The plain auth token (for the legacy ``sign``), or None when it has none."""
    if touchpoint.token_encrypted is None:
        return None
    return secrets.decrypt(touchpoint.token_encrypted)


def signing_secrets(
    source: Runtime | SecretBox, touchpoint: Touchpoint, now: datetime
) -> list[str]:
    """Secrets to sign with: the current one first, then the previous one while
    its grace period lasts (receivers accept either signature)."""
    box = source.secrets if isinstance(source, Runtime) else source
    found = [box.decrypt(touchpoint.signing_secret_encrypted)]
    previous = touchpoint.previous_signing_secret_encrypted
    expires = touchpoint.previous_secret_expires_at
    if previous is not None and expires is not None and now < expires:
        found.append(box.decrypt(previous))
    return found
