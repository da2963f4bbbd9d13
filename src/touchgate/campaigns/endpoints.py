"""Campaign routes (``api.md``, "Campaigns (in a space)"), protection routes
("Protection against over-messaging") and the scheduler hook.

Content bodies are read as plain JSON and parsed by the service with the facts they
are checked against; routes that check enum values against options APIs fetch
those first, outside any transaction (``service.prepare_fetch_record``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..api.deps import CtxDep, ListOf, PageDep
from ..api.openapi import documented_body
from ..errors import InvalidInput
from ..models.base import utcnow
from ..projects import service as projects
from ..runtime import Runtime
from . import protection, runner, scheduler, service, stats
from . import repository as repo
from .schemas import (
    STATES,
    BlocklistAdd,
    BlocklistAdded,
    BlocklistEntryOut,
    CampaignCreate,
    CampaignOut,
    CampaignPatch,
    CampaignStats,
    CopyBody,
    DeliveryOut,
    GidsUpload,
    PreviewBody,
    ProjectProtection,
    RejectBody,
    TouchpointProtection,
)
from .validation import not_one_of, parse_input

router = APIRouter(tags=["campaigns"])
BASE = "/projects/{pid}/spaces/{sid}/campaigns"
JsonBody = Annotated[Any, Body()]
OptionalBody = Annotated[Any, Body()]
StepId = Annotated[str | None, Query(max_length=64)]
TouchpointId = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Gid = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


@router.post(
    BASE,
    status_code=201,
    response_model=CampaignOut,
    openapi_extra=documented_body(CampaignCreate),
)
def create_campaign(pid: int, sid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid, write=True)
    runtime = ctx.runtime

    def record(session: Any, options: service.FetchedOptions) -> CampaignOut:
        campaign = service.create_campaign(session, pid, sid, body, options)
        return service.campaign_out(session, campaign)

    return service.prepare_fetch_record(
        runtime, lambda s: service.options_for_create(s, runtime, pid, sid, body), record
    )


@router.get(BASE, response_model=ListOf[CampaignOut])
def list_campaigns(
    pid: int, sid: int, ctx: CtxDep, page: PageDep, status: str | None = None
) -> ListOf[CampaignOut]:
    ctx.principal.require_space(pid, sid)
    if status is not None and status not in STATES:
        raise not_one_of("status", STATES)
    with ctx.runtime.tx() as session:
        projects.get_space(session, pid, sid)
        rows, total = repo.list_campaigns(session, sid, status, page.limit, page.offset)
        return ListOf[CampaignOut](
            items=[service.campaign_out(session, r) for r in rows], total=total
        )


@router.get(BASE + "/{cid}", response_model=CampaignOut)
def get_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid)
    with ctx.runtime.tx() as session:
        return service.campaign_out(session, service.get_campaign(session, pid, sid, cid))


@router.patch(
    BASE + "/{cid}", response_model=CampaignOut, openapi_extra=documented_body(CampaignPatch)
)
def update_campaign(pid: int, sid: int, cid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid, write=True)
    runtime = ctx.runtime

    def record(session: Any, options: service.FetchedOptions) -> CampaignOut:
        campaign = service.update_campaign(session, pid, sid, cid, body, options)
        return service.campaign_out(session, campaign)

    return service.prepare_fetch_record(
        runtime, lambda s: service.options_for_update(s, runtime, pid, sid, cid, body), record
    )


@router.delete(BASE + "/{cid}", status_code=204)
def delete_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> Response:
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        service.delete_campaign(session, pid, sid, cid)
    return Response(status_code=204)


@router.post(BASE + "/{cid}/preview")
def preview(pid: int, sid: int, cid: int, ctx: CtxDep, body: OptionalBody = None) -> dict[str, Any]:
    ctx.principal.require_space(pid, sid)
    sample = parse_input(PreviewBody, body if body is not None else {}).sample
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        return runner.preview(session, campaign, sample, ctx.runtime.secrets)


@router.get(BASE + "/{cid}/stats", response_model=CampaignStats)
def campaign_stats(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignStats:
    ctx.principal.require_space(pid, sid)
    with ctx.runtime.tx() as session:
        return stats.campaign_stats(session, service.get_campaign(session, pid, sid, cid))


@router.get(BASE + "/{cid}/deliveries", response_model=ListOf[DeliveryOut])
def deliveries(
    pid: int,
    sid: int,
    cid: int,
    ctx: CtxDep,
    page: PageDep,
    status: str | None = None,
    gid: Gid = None,
    step_id: StepId = None,
    touchpoint_id: TouchpointId = None,
) -> ListOf[DeliveryOut]:
    ctx.principal.require_space(pid, sid)
    flt = stats.delivery_filter(status, gid, step_id, touchpoint_id)
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        items, total = stats.deliveries(session, campaign, flt, page.limit, page.offset)
        return ListOf[DeliveryOut](items=items, total=total)


@router.get(BASE + "/{cid}/deliveries.csv", response_class=StreamingResponse)
def deliveries_csv(
    pid: int,
    sid: int,
    cid: int,
    ctx: CtxDep,
    status: str | None = None,
    step_id: StepId = None,
    touchpoint_id: TouchpointId = None,
) -> StreamingResponse:
    """Every matching per-user result as CSV (UTF-8 with BOM), streamed."""
    ctx.principal.require_space(pid, sid)
    flt = stats.delivery_filter(status, None, step_id, touchpoint_id)
    with ctx.runtime.tx() as session:
        service.get_campaign(session, pid, sid, cid)
    return StreamingResponse(
        stats.deliveries_csv(ctx.runtime, pid, sid, cid, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{cid}-deliveries.csv"'},
    )


@router.post(BASE + "/{cid}/audience/gids", response_model=CampaignOut)
def upload_gids(pid: int, sid: int, cid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    """Upload the gids of a ``list`` audience (replacing the list, or adding to it)."""
    ctx.principal.require_space(pid, sid, write=True)
    upload = parse_input(GidsUpload, body)
    with ctx.runtime.tx() as session:
        campaign = service.upload_list_gids(
            session, pid, sid, cid, upload.gids, replace=upload.replace
        )
        return service.campaign_out(session, campaign)


@router.post(BASE + "/{cid}/{action}", response_model=CampaignOut)
def campaign_action(
    pid: int, sid: int, cid: int, action: str, ctx: CtxDep, body: OptionalBody = None
) -> CampaignOut:
    """submit, approve, reject (optional ``{reason}``), withdraw, publish, pause, resume,
    close, or copy (optional ``{name}``; returns the new draft)."""
    ctx.principal.require_space(pid, sid, write=True)
    runtime = ctx.runtime
    reason = copy_name = None
    if action == "reject":
        reason = parse_input(RejectBody, body if body is not None else {}).reason
    elif action == "copy":
        copy_name = parse_input(CopyBody, body if body is not None else {}).name

    def record(session: Any, options: service.FetchedOptions) -> CampaignOut:
        campaign = service.act(
            session,
            pid,
            sid,
            cid,
            action,
            principal=ctx.principal,
            options=options,
            reason=reason,
            copy_name=copy_name,
        )
        return service.campaign_out(session, campaign)

    return service.prepare_fetch_record(
        runtime,
        lambda s: service.options_for_action(s, runtime, pid, sid, cid, action),
        record,
    )


# --- protection ---------------------------------------------------------------------------


@router.get("/projects/{pid}/protection", response_model=ProjectProtection, tags=["protection"])
def get_project_protection(pid: int, ctx: CtxDep) -> ProjectProtection:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return protection.project_settings(session, pid)


@router.put(
    "/projects/{pid}/protection",
    response_model=ProjectProtection,
    tags=["protection"],
    openapi_extra=documented_body(ProjectProtection),
)
def put_project_protection(pid: int, body: JsonBody, ctx: CtxDep) -> ProjectProtection:
    """The project-wide frequency cap, across all touchpoints (``null``: none)."""
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return protection.save_project_settings(session, pid, body, utcnow())


TP_PROTECTION = "/projects/{pid}/touchpoints/{tid}/protection"


@router.get(TP_PROTECTION, response_model=TouchpointProtection, tags=["protection"])
def get_touchpoint_protection(pid: int, tid: int, ctx: CtxDep) -> TouchpointProtection:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return protection.touchpoint_settings(session, pid, tid)


@router.put(
    TP_PROTECTION,
    response_model=TouchpointProtection,
    tags=["protection"],
    openapi_extra=documented_body(TouchpointProtection),
)
def put_touchpoint_protection(
    pid: int, tid: int, body: JsonBody, ctx: CtxDep
) -> TouchpointProtection:
    """Frequency cap, quiet hours and request rate of a touchpoint; a setting left out
    keeps its value, ``null`` removes it. Allowed while the touchpoint is enabled."""
    ctx.principal.require_admin()
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return protection.save_touchpoint_settings(session, pid, tid, body, utcnow())


_BLOCKLIST_BODY = documented_body(BlocklistAdd)
_BLOCKLIST_BODY["requestBody"]["content"].update(
    {
        "text/csv": {
            "schema": {"type": "string", "description": "header gid[,touchpoint_id,reason]"}
        },
        "application/x-ndjson": {
            "schema": {
                "type": "string",
                "description": 'a gid or {"gid", "touchpoint_id"?, "reason"?} a line',
            }
        },
    }
)


@router.post(
    "/projects/{pid}/blocklist",
    response_model=BlocklistAdded,
    tags=["protection"],
    openapi_extra=_BLOCKLIST_BODY,
)
async def add_to_blocklist(pid: int, request: Request, ctx: CtxDep) -> BlocklistAdded:
    """Gids that no campaign may reach through the given touchpoints (all when
    ``touchpoint_ids`` is null): a JSON body, or CSV / NDJSON for large lists."""
    protection.require_writer(ctx.principal, pid)
    media = protection.blocklist_media(request.headers.get("content-type"))
    body = await protection.read_limited(request)
    return await asyncio.to_thread(_add_to_blocklist, ctx.runtime, pid, body, media)


def _add_to_blocklist(runtime: Runtime, pid: int, body: bytes, media: str) -> BlocklistAdded:
    with runtime.tx() as session:
        return protection.add_to_blocklist(session, pid, body, media, utcnow())


@router.get(
    "/projects/{pid}/blocklist", response_model=ListOf[BlocklistEntryOut], tags=["protection"]
)
def list_blocklist(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    gid: Gid = None,
    touchpoint_id: Annotated[str | None, Query(max_length=20)] = None,
) -> ListOf[BlocklistEntryOut]:
    """Entries, filtered by gid and by touchpoint (``touchpoint_id=all``: the entries
    that apply to every touchpoint)."""
    ctx.principal.require_project(pid)
    tid, every = protection.touchpoint_filter(touchpoint_id)
    with ctx.runtime.tx() as session:
        projects.get_project(session, pid)
        rows, total = repo.list_blocklist(
            session,
            pid,
            gid=gid,
            touchpoint_id=tid,
            every=every,
            limit=page.limit,
            offset=page.offset,
        )
        return ListOf[BlocklistEntryOut](
            items=[BlocklistEntryOut.model_validate(r) for r in rows], total=total
        )


@router.delete("/projects/{pid}/blocklist", status_code=204, tags=["protection"])
def delete_from_blocklist(
    pid: int,
    ctx: CtxDep,
    gid: Gid = None,
    touchpoint_id: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Remove the entries matching ``gid`` and/or ``touchpoint_id`` (at least one)."""
    protection.require_writer(ctx.principal, pid)
    tid, every = protection.touchpoint_filter(touchpoint_id)
    if gid is None and tid is None and not every:
        raise InvalidInput(
            "Say which entries to remove: give gid, touchpoint_id, or both.",
            field="gid",
            field_code="blocklist_filter_required",
        )
    with ctx.runtime.tx() as session:
        projects.get_project(session, pid)
        repo.delete_from_blocklist(session, pid, gid=gid, touchpoint_id=tid, every=every)
    return Response(status_code=204)


def register_hooks(hooks: list[tuple[Any, Any]]) -> None:
    """Run the campaign scheduler inside ``serve`` as an asyncio task."""
    key = "campaign_scheduler"

    async def start(runtime: Runtime) -> None:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(scheduler.run_forever(runtime, stop))
        runtime.extras[key] = (stop, task)

    async def stop(runtime: Runtime) -> None:
        entry = runtime.extras.pop(key, None)
        if entry is not None:
            stop_event, task = entry
            stop_event.set()
            await task

    hooks.append((start, stop))
