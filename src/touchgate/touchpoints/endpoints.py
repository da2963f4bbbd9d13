"""REST routes of the touchpoint registry (``/projects/{pid}/touchpoints…``).

Every write needs an admin key; reads need access to the project (the space
list, access to the space). The test send (``…/test``) lives in ``delivery``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body as FastAPIBody
from fastapi import Query, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ..api.deps import Ctx, CtxDep, ListOf, PageDep
from ..api.guard import api_router
from ..api.openapi import documented_body as _documented_body
from ..auth import PROJECT_ADMIN, PROJECT_READ, SPACE_READ, Role, requires
from ..runtime import Runtime
from . import service
from .schemas import (
    OptionOut,
    OptionsPreviewIn,
    SecretRotated,
    SpacesUpdate,
    Status,
    TouchpointCreate,
    TouchpointCreated,
    TouchpointOut,
    TouchpointPatch,
    TouchpointSaved,
    TouchpointType,
)

router = api_router(tags=["touchpoints"])

BASE = "/projects/{pid}/touchpoints"


Body = Annotated[dict[str, Any], FastAPIBody()]


@router.post(
    BASE,
    status_code=201,
    response_model=TouchpointCreated,
    openapi_extra=_documented_body(TouchpointCreate),
)
@requires(PROJECT_ADMIN)
def create_touchpoint(pid: int, body: Body, ctx: CtxDep) -> TouchpointCreated:
    with ctx.runtime.tx() as session:
        out = TouchpointCreated.model_validate(
            service.create_touchpoint(session, ctx.runtime.secrets, pid, body)
        )
        _audit(ctx, session, pid, "create", out, None, after=out, secrets=_secrets_in(body))
        return out


@router.get(BASE, response_model=ListOf[TouchpointOut])
@requires(PROJECT_READ)
def list_touchpoints(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    status: Status | None = None,
    type_: Annotated[TouchpointType | None, Query(alias="type")] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> ListOf[TouchpointOut]:
    with ctx.runtime.tx() as session:
        items, total = service.list_touchpoints(
            session, pid, status=status, type_=type_, q=q, limit=page.limit, offset=page.offset
        )
        return ListOf[TouchpointOut](
            items=[TouchpointOut.model_validate(i) for i in items], total=total
        )


@router.get(BASE + "/{tid}", response_model=TouchpointOut)
@requires(PROJECT_READ)
def get_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    with ctx.runtime.tx() as session:
        return TouchpointOut.model_validate(service.show_touchpoint(session, pid, tid))


@router.patch(
    BASE + "/{tid}",
    response_model=TouchpointSaved,
    openapi_extra=_documented_body(TouchpointPatch),
)
@requires(PROJECT_ADMIN)
def update_touchpoint(pid: int, tid: int, body: Body, ctx: CtxDep) -> TouchpointSaved:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = TouchpointSaved.model_validate(
            service.update_touchpoint(session, ctx.runtime.secrets, pid, tid, body)
        )
        _audit(ctx, session, pid, "update", out, before, after=out, secrets=_secrets_in(body))
        return out


@router.delete(BASE + "/{tid}", status_code=204, response_class=Response)
@requires(PROJECT_ADMIN)
def delete_touchpoint(pid: int, tid: int, ctx: CtxDep) -> Response:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        service.delete_touchpoint(session, pid, tid)
        _audit(ctx, session, pid, "delete", before, before)
    return Response(status_code=204)


@router.post(BASE + "/{tid}/enable", response_model=TouchpointOut)
@requires(PROJECT_ADMIN)
def enable_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = TouchpointOut.model_validate(service.enable_touchpoint(session, pid, tid))
        _audit(ctx, session, pid, "enable", out, before, after=out)
        return out


@router.post(BASE + "/{tid}/disable", response_model=TouchpointOut)
@requires(PROJECT_ADMIN)
def disable_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = TouchpointOut.model_validate(
            service.disable_touchpoint(session, pid, tid, ctx.runtime.touchpoint_usage_checks)
        )
        _audit(ctx, session, pid, "disable", out, before, after=out)
        return out


@router.put(BASE + "/{tid}/spaces", response_model=TouchpointOut)
@requires(PROJECT_ADMIN)
def set_spaces(pid: int, tid: int, body: SpacesUpdate, ctx: CtxDep) -> TouchpointOut:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = TouchpointOut.model_validate(service.set_spaces(session, pid, tid, body.space_ids))
        _audit(ctx, session, pid, "set_spaces", out, before, after=out)
        return out


@router.post(BASE + "/{tid}/rotate-secret", response_model=SecretRotated)
@requires(PROJECT_ADMIN)
def rotate_secret(pid: int, tid: int, ctx: CtxDep) -> SecretRotated:
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = SecretRotated.model_validate(
            service.rotate_secret(session, ctx.runtime.secrets, pid, tid)
        )
        _audit(
            ctx,
            session,
            pid,
            "rotate_secret",
            before,
            before,
            after=before,
            secrets=["signing_secret"],
        )
        return out


@router.post(BASE + "/{tid}/health/reset", response_model=TouchpointOut)
@requires(PROJECT_ADMIN)
def reset_health(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    """Close the circuit breaker by hand: the touchpoint's orders are sent again."""
    with ctx.runtime.tx() as session:
        before = _shown(session, pid, tid)
        out = TouchpointOut.model_validate(service.reset_health(session, pid, tid))
        _audit(ctx, session, pid, "reset_health", out, before, after=out)
        return out


def _shown(session: Session, pid: int, tid: int) -> TouchpointOut:
    return TouchpointOut.model_validate(service.show_touchpoint(session, pid, tid))


def _secrets_in(body: dict[str, Any]) -> list[str]:
    return ["token"] if body.get("token") is not None else []


def _audit(
    ctx: Ctx,
    session: Session,
    pid: int,
    action: str,
    touchpoint: TouchpointOut,
    before: TouchpointOut | None,
    *,
    after: TouchpointOut | None = None,
    secrets: list[str] | None = None,
) -> None:
    # Only TouchpointOut's fields are compared: warnings and the one-time
    # signing secret of a create are not part of the touchpoint's state.
    fields = set(TouchpointOut.model_fields)
    ctx.audit(
        session,
        project_id=pid,
        action=action,
        resource_type="touchpoint",
        resource_id=touchpoint.id,
        summary=f"{action.replace('_', ' ').capitalize()} touchpoint {touchpoint.name!r}",
        before=None if before is None else before.model_dump(mode="json", include=fields),
        after=None if after is None else after.model_dump(mode="json", include=fields),
        secrets=secrets or (),
    )


def _enum_param(runtime: Runtime, pid: int, tid: int, key: str) -> dict[str, Any]:
    with runtime.tx() as session:
        return service.enum_param(session, pid, tid, key)


@router.get(
    BASE + "/{tid}/params/{key}/options",
    response_model=list[OptionOut],
    response_model_exclude_none=True,
)
@requires(PROJECT_READ)
async def param_options(
    pid: int, tid: int, key: str, ctx: CtxDep, response: Response, refresh: bool = False
) -> list[dict[str, Any]]:
    """An enum parameter's options: the manual ones, or from its options API
    (cached for a few minutes; ``refresh=true`` asks the API again, for admins:
    those who can edit the touchpoint). When the API failed and the last good
    options are shown, the header ``X-Touchgate-Warning`` says so."""
    if refresh:
        ctx.principal.require_role(Role.admin)
    enum = await run_in_threadpool(_enum_param, ctx.runtime, pid, tid, key)
    if enum["source"] == "manual":
        options: list[dict[str, Any]] = enum["options"]
        return options
    # The delivery domain owns outgoing HTTP (network guard, signing, cache).
    from ..delivery import options as options_api

    fetched = await options_api.load_api_options(
        ctx.runtime, tid, key, project_id=pid, refresh=refresh
    )
    warning = options_api.refresh_warning(ctx.runtime, tid, key)
    if warning:
        response.headers["X-Touchgate-Warning"] = warning.encode("ascii", "replace").decode()
    return fetched


@router.post(
    BASE + "/options-preview",
    response_model=list[OptionOut],
    response_model_exclude_none=True,
)
@requires(PROJECT_ADMIN)
async def options_preview(pid: int, body: OptionsPreviewIn, ctx: CtxDep) -> list[dict[str, Any]]:
    """What an options API offers, before the touchpoint (or its new URL) is saved: the
    console previews an enum's options while the integrator sets it up."""
    from ..delivery import options as options_api

    return await options_api.preview_options(
        ctx.runtime,
        pid,
        body.url,
        body.param,
        param_name=body.name,
        touchpoint_id=body.touchpoint_id,
    )


@router.get("/projects/{pid}/spaces/{sid}/touchpoints", response_model=ListOf[TouchpointOut])
@requires(SPACE_READ)
def usable_in_space(pid: int, sid: int, ctx: CtxDep, page: PageDep) -> ListOf[TouchpointOut]:
    """The touchpoints a campaign in this space may use: enabled and authorised."""
    with ctx.runtime.tx() as session:
        items, total = service.usable_in_space(
            session, pid, sid, limit=page.limit, offset=page.offset
        )
        return ListOf[TouchpointOut](
            items=[TouchpointOut.model_validate(i) for i in items], total=total
        )
