"""REST routes of the touchpoint registry (``/projects/{pid}/touchpoints…``).

Every write needs an admin key; reads need access to the project (the space
list, access to the space). The test send (``…/test``) lives in ``delivery``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Body as FastAPIBody
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..api.deps import CtxDep, ListOf, PageDep
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

router = APIRouter(tags=["touchpoints"])

BASE = "/projects/{pid}/touchpoints"


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body's schema for OpenAPI. The routes read the body as a plain
    object so the service can check every field at once, values and rules
    together; the schema (with its definitions inlined) still documents it."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return {**inline(definitions[ref.removeprefix("#/$defs/")]), **rest}
            return rest
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


Body = Annotated[dict[str, Any], FastAPIBody()]


@router.post(
    BASE,
    status_code=201,
    response_model=TouchpointCreated,
    openapi_extra=_documented_body(TouchpointCreate),
)
def create_touchpoint(pid: int, body: Body, ctx: CtxDep) -> TouchpointCreated:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointCreated.model_validate(
            service.create_touchpoint(session, ctx.runtime.secrets, pid, body)
        )


@router.get(BASE, response_model=ListOf[TouchpointOut])
def list_touchpoints(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    status: Status | None = None,
    type_: Annotated[TouchpointType | None, Query(alias="type")] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> ListOf[TouchpointOut]:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        items, total = service.list_touchpoints(
            session, pid, status=status, type_=type_, q=q, limit=page.limit, offset=page.offset
        )
        return ListOf[TouchpointOut](
            items=[TouchpointOut.model_validate(i) for i in items], total=total
        )


@router.get(BASE + "/{tid}", response_model=TouchpointOut)
def get_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointOut.model_validate(service.show_touchpoint(session, pid, tid))


@router.patch(
    BASE + "/{tid}",
    response_model=TouchpointSaved,
    openapi_extra=_documented_body(TouchpointPatch),
)
def update_touchpoint(pid: int, tid: int, body: Body, ctx: CtxDep) -> TouchpointSaved:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointSaved.model_validate(
            service.update_touchpoint(session, ctx.runtime.secrets, pid, tid, body)
        )


@router.delete(BASE + "/{tid}", status_code=204, response_class=Response)
def delete_touchpoint(pid: int, tid: int, ctx: CtxDep) -> Response:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        service.delete_touchpoint(session, pid, tid)
    return Response(status_code=204)


@router.post(BASE + "/{tid}/enable", response_model=TouchpointOut)
def enable_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointOut.model_validate(service.enable_touchpoint(session, pid, tid))


@router.post(BASE + "/{tid}/disable", response_model=TouchpointOut)
def disable_touchpoint(pid: int, tid: int, ctx: CtxDep) -> TouchpointOut:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointOut.model_validate(service.disable_touchpoint(session, pid, tid))


@router.put(BASE + "/{tid}/spaces", response_model=TouchpointOut)
def set_spaces(pid: int, tid: int, body: SpacesUpdate, ctx: CtxDep) -> TouchpointOut:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return TouchpointOut.model_validate(service.set_spaces(session, pid, tid, body.space_ids))


@router.post(BASE + "/{tid}/rotate-secret", response_model=SecretRotated)
def rotate_secret(pid: int, tid: int, ctx: CtxDep) -> SecretRotated:
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return SecretRotated.model_validate(
            service.rotate_secret(session, ctx.runtime.secrets, pid, tid)
        )


def _enum_param(runtime: Runtime, pid: int, tid: int, key: str) -> dict[str, Any]:
    with runtime.tx() as session:
        return service.enum_param(session, pid, tid, key)


@router.get(
    BASE + "/{tid}/params/{key}/options",
    response_model=list[OptionOut],
    response_model_exclude_none=True,
)
async def param_options(
    pid: int, tid: int, key: str, ctx: CtxDep, response: Response, refresh: bool = False
) -> list[dict[str, Any]]:
    """An enum parameter's options: the manual ones, or from its options API
    (cached for a few minutes; ``refresh=true`` asks the API again). When the API
    failed and the last good options are shown, the header ``X-Touchgate-Warning``
    says so."""
    ctx.principal.require_project(pid)
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
async def options_preview(pid: int, body: OptionsPreviewIn, ctx: CtxDep) -> list[dict[str, Any]]:
    """What an options API offers, before the touchpoint (or its new URL) is saved: the
    console previews an enum's options while the integrator sets it up."""
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
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
def usable_in_space(pid: int, sid: int, ctx: CtxDep, page: PageDep) -> ListOf[TouchpointOut]:
    """The touchpoints a campaign in this space may use: enabled and authorised."""
    ctx.principal.require_space(pid, sid)
    with ctx.runtime.tx() as session:
        items, total = service.usable_in_space(
            session, pid, sid, limit=page.limit, offset=page.offset
        )
        return ListOf[TouchpointOut](
            items=[TouchpointOut.model_validate(i) for i in items], total=total
        )
