"""Campaign routes (``api.md``, "Campaigns (in a space)"), protection routes
("Protection against over-messaging").

Content bodies are read as plain JSON and parsed by the service with the facts they
are checked against; routes that check enum values against options APIs fetch
those first, outside any transaction (``service.prepare_fetch_record``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from ..api.deps import Ctx, CtxDep, IdQuery, ListOf, PageDep
from ..api.guard import api_router
from ..api.openapi import documented_body
from ..auth import PROJECT_ADMIN, PROJECT_READ, PROJECT_WRITE, SPACE_READ, SPACE_WRITE, requires
from ..datastore.schemas import MAX_GID
from ..errors import InvalidInput
from ..models.base import utcnow
from ..projects import service as projects
from . import protection, runner, service, stats
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

router = api_router(tags=["campaigns"])
BASE = "/projects/{pid}/spaces/{sid}/campaigns"
JsonBody = Annotated[Any, Body()]
OptionalBody = Annotated[Any, Body()]
StepId = Annotated[str | None, Query(max_length=64)]
Gid = Annotated[int | None, Query(ge=1, le=MAX_GID)]
# Fields that change on their own (a run, a clock): not part of what a write changed.
_NOT_AUDITED = {
    "updated_at",
    "allowed_actions",
    "next_run_at",
    "last_error",
    "last_error_code",
    "last_error_params",
    "warnings",
}


def _state(campaign: CampaignOut | None) -> dict[str, Any] | None:
    return None if campaign is None else campaign.model_dump(mode="json", exclude=_NOT_AUDITED)


def _audit(
    ctx: Ctx,
    session: Session,
    action: str,
    campaign: CampaignOut,
    before: CampaignOut | None,
    after: CampaignOut | None,
) -> None:
    ctx.audit(
        session,
        project_id=campaign.project_id,
        action=action,
        resource_type="campaign",
        resource_id=campaign.id,
        summary=f"{action.replace('_', ' ').capitalize()} campaign {campaign.name!r}",
        before=_state(before),
        after=_state(after),
    )


@router.post(
    BASE,
    status_code=201,
    response_model=CampaignOut,
    openapi_extra=documented_body(CampaignCreate),
)
@requires(SPACE_WRITE)
def create_campaign(pid: int, sid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    runtime = ctx.runtime

    def record(session: Session, options: service.FetchedOptions) -> CampaignOut:
        out = service.campaign_out(
            session, service.create_campaign(session, pid, sid, body, options)
        )
        _audit(ctx, session, "create", out, None, out)
        return out

    return service.prepare_fetch_record(
        runtime, lambda s: service.options_for_create(s, runtime, pid, sid, body), record
    )


@router.get(BASE, response_model=ListOf[CampaignOut])
@requires(SPACE_READ)
def list_campaigns(
    pid: int, sid: int, ctx: CtxDep, page: PageDep, status: str | None = None
) -> ListOf[CampaignOut]:
    if status is not None and status not in STATES:
        raise not_one_of("status", STATES)
    with ctx.runtime.tx() as session:
        projects.get_space(session, pid, sid)
        rows, total = repo.list_campaigns(session, sid, status, page.limit, page.offset)
        return ListOf[CampaignOut](
            items=[service.campaign_out(session, r) for r in rows], total=total
        )


@router.get(BASE + "/{cid}", response_model=CampaignOut)
@requires(SPACE_READ)
def get_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignOut:
    with ctx.runtime.tx() as session:
        return service.campaign_out(session, service.get_campaign(session, pid, sid, cid))


@router.patch(
    BASE + "/{cid}", response_model=CampaignOut, openapi_extra=documented_body(CampaignPatch)
)
@requires(SPACE_WRITE)
def update_campaign(pid: int, sid: int, cid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    runtime = ctx.runtime

    def record(session: Session, options: service.FetchedOptions) -> CampaignOut:
        before = service.campaign_out(session, service.get_campaign(session, pid, sid, cid))
        campaign = service.update_campaign(session, pid, sid, cid, body, options)
        out = service.campaign_out(session, campaign)
        _audit(ctx, session, "update", out, before, out)
        return out

    return service.prepare_fetch_record(
        runtime, lambda s: service.options_for_update(s, runtime, pid, sid, cid, body), record
    )


@router.delete(BASE + "/{cid}", status_code=204)
@requires(SPACE_WRITE)
def delete_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> Response:
    with ctx.runtime.tx() as session:
        before = service.campaign_out(session, service.get_campaign(session, pid, sid, cid))
        service.delete_campaign(session, pid, sid, cid)
        _audit(ctx, session, "delete", before, before, None)
    return Response(status_code=204)


@router.post(BASE + "/{cid}/preview")
@requires(SPACE_READ)
def preview(pid: int, sid: int, cid: int, ctx: CtxDep, body: OptionalBody = None) -> dict[str, Any]:
    sample = parse_input(PreviewBody, body if body is not None else {}).sample
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        return runner.preview(session, campaign, sample, ctx.runtime.secrets)


@router.get(BASE + "/{cid}/stats", response_model=CampaignStats)
@requires(SPACE_READ)
def campaign_stats(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignStats:
    with ctx.runtime.tx() as session:
        return stats.campaign_stats(session, service.get_campaign(session, pid, sid, cid))


@router.get(BASE + "/{cid}/deliveries", response_model=ListOf[DeliveryOut])
@requires(SPACE_READ)
def deliveries(
    pid: int,
    sid: int,
    cid: int,
    ctx: CtxDep,
    page: PageDep,
    status: str | None = None,
    gid: Gid = None,
    step_id: StepId = None,
    touchpoint_id: IdQuery = None,
) -> ListOf[DeliveryOut]:
    flt = stats.delivery_filter(status, gid, step_id, touchpoint_id)
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        items, total = stats.deliveries(session, campaign, flt, page.limit, page.offset)
        return ListOf[DeliveryOut](items=items, total=total)


@router.get(BASE + "/{cid}/deliveries.csv", response_class=StreamingResponse)
@requires(SPACE_READ)
def deliveries_csv(
    pid: int,
    sid: int,
    cid: int,
    ctx: CtxDep,
    status: str | None = None,
    step_id: StepId = None,
    touchpoint_id: IdQuery = None,
) -> StreamingResponse:
    """Every matching per-user result as CSV (UTF-8 with BOM), streamed."""
    flt = stats.delivery_filter(status, None, step_id, touchpoint_id)
    with ctx.runtime.tx() as session:
        service.get_campaign(session, pid, sid, cid)
    return StreamingResponse(
        stats.deliveries_csv(ctx.runtime, pid, sid, cid, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{cid}-deliveries.csv"'},
    )


@router.post(BASE + "/{cid}/audience/gids", response_model=CampaignOut)
@requires(SPACE_WRITE)
def upload_gids(pid: int, sid: int, cid: int, body: JsonBody, ctx: CtxDep) -> CampaignOut:
    """Upload the gids of a ``list`` audience (replacing the list, or adding to it)."""
    upload = parse_input(GidsUpload, body)
    with ctx.runtime.tx() as session:
        campaign = service.upload_list_gids(
            session, pid, sid, cid, upload.gids, replace=upload.replace
        )
        out = service.campaign_out(session, campaign)
        ctx.audit(
            session,
            project_id=pid,
            action="replace_gids" if upload.replace else "upload_gids",
            resource_type="campaign",
            resource_id=cid,
            summary=f"{'Replaced' if upload.replace else 'Added to'} the gid list of campaign "
            f"{out.name!r} ({len(upload.gids)} gids)",
            params={"name": out.name, "count": len(upload.gids)},
        )
        return out


@router.post(BASE + "/{cid}/{action}", response_model=CampaignOut)
@requires(SPACE_WRITE)
def campaign_action(
    pid: int, sid: int, cid: int, action: str, ctx: CtxDep, body: OptionalBody = None
) -> CampaignOut:
    """submit, approve, reject (optional ``{reason}``), withdraw, publish, pause, resume,
    close, or copy (optional ``{name}``; returns the new draft)."""
    runtime = ctx.runtime
    reason = copy_name = None
    if action == "reject":
        reason = parse_input(RejectBody, body if body is not None else {}).reason
    elif action == "copy":
        copy_name = parse_input(CopyBody, body if body is not None else {}).name

    def record(session: Session, options: service.FetchedOptions) -> CampaignOut:
        before = service.campaign_out(session, service.get_campaign(session, pid, sid, cid))
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
        out = service.campaign_out(session, campaign)
        if action == "copy":
            _audit(ctx, session, "copy", out, None, out)
        else:
            _audit(ctx, session, action, out, before, out)
        return out

    out = service.prepare_fetch_record(
        runtime,
        lambda s: service.options_for_action(s, runtime, pid, sid, cid, action),
        record,
    )
    # Committed: this process's scheduler starts a published campaign now.
    runtime.campaigns_changed.notify()
    return out


# --- protection ---------------------------------------------------------------------------


@router.get("/projects/{pid}/protection", response_model=ProjectProtection, tags=["protection"])
@requires(PROJECT_READ)
def get_project_protection(pid: int, ctx: CtxDep) -> ProjectProtection:
    with ctx.runtime.tx() as session:
        return protection.project_settings(session, pid)


@router.put(
    "/projects/{pid}/protection",
    response_model=ProjectProtection,
    tags=["protection"],
    openapi_extra=documented_body(ProjectProtection),
)
@requires(PROJECT_ADMIN)
def put_project_protection(pid: int, body: JsonBody, ctx: CtxDep) -> ProjectProtection:
    """The project-wide frequency cap, across all touchpoints (``null``: none)."""
    with ctx.runtime.tx() as session:
        before = protection.project_settings(session, pid)
        after = protection.save_project_settings(session, pid, body, utcnow())
        ctx.audit(
            session,
            project_id=pid,
            action="update",
            resource_type="protection",
            resource_id=pid,
            summary="Changed the project's frequency cap",
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
        return after


TP_PROTECTION = "/projects/{pid}/touchpoints/{tid}/protection"


@router.get(TP_PROTECTION, response_model=TouchpointProtection, tags=["protection"])
@requires(PROJECT_READ)
def get_touchpoint_protection(pid: int, tid: int, ctx: CtxDep) -> TouchpointProtection:
    with ctx.runtime.tx() as session:
        return protection.touchpoint_settings(session, pid, tid)


@router.put(
    TP_PROTECTION,
    response_model=TouchpointProtection,
    tags=["protection"],
    openapi_extra=documented_body(TouchpointProtection),
)
@requires(PROJECT_ADMIN)
def put_touchpoint_protection(
    pid: int, tid: int, body: JsonBody, ctx: CtxDep
) -> TouchpointProtection:
    """Frequency cap, quiet hours and request rate of a touchpoint; a setting left out
    keeps its value, ``null`` removes it. Allowed while the touchpoint is enabled."""
    with ctx.runtime.tx() as session:
        before = protection.touchpoint_settings(session, pid, tid)
        after = protection.save_touchpoint_settings(session, pid, tid, body, utcnow())
        ctx.audit(
            session,
            project_id=pid,
            action="update_protection",
            resource_type="touchpoint",
            resource_id=tid,
            summary=f"Changed the protection of touchpoint {tid}",
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
        return after


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
@requires(PROJECT_WRITE)
async def add_to_blocklist(pid: int, request: Request, ctx: CtxDep) -> BlocklistAdded:
    """Gids that no campaign may reach through the given touchpoints (all when
    ``touchpoint_ids`` is null): a JSON body, or CSV / NDJSON for large lists."""
    media = protection.blocklist_media(request.headers.get("content-type"))
    body = await protection.read_limited(request)
    return await asyncio.to_thread(_add_to_blocklist, ctx, pid, body, media)


def _add_to_blocklist(ctx: Ctx, pid: int, body: bytes, media: str) -> BlocklistAdded:
    with ctx.runtime.tx() as session:
        added = protection.add_to_blocklist(session, pid, body, media, utcnow())
        ctx.audit(
            session,
            project_id=pid,
            action="add",
            resource_type="blocklist",
            resource_id=pid,
            summary=f"Added {added.added} entries to the blocklist ({media})",
            params={"count": added.added},
        )
        return added


@router.get(
    "/projects/{pid}/blocklist", response_model=ListOf[BlocklistEntryOut], tags=["protection"]
)
@requires(PROJECT_READ)
def list_blocklist(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    gid: Gid = None,
    touchpoint_id: Annotated[str | None, Query(max_length=20)] = None,
) -> ListOf[BlocklistEntryOut]:
    """Entries, filtered by gid and by touchpoint (``touchpoint_id=all``: the entries
    that apply to every touchpoint)."""
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
@requires(PROJECT_WRITE)
def delete_from_blocklist(
    pid: int,
    ctx: CtxDep,
    gid: Gid = None,
    touchpoint_id: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Remove the entries matching ``gid`` and/or ``touchpoint_id`` (at least one)."""
    tid, every = protection.touchpoint_filter(touchpoint_id)
    if gid is None and tid is None and not every:
        raise InvalidInput(
            "Say which entries to remove: give gid, touchpoint_id, or both.",
            field="gid",
            field_code="blocklist_filter_required",
        )
    with ctx.runtime.tx() as session:
        projects.get_project(session, pid)
        removed = repo.delete_from_blocklist(session, pid, gid=gid, touchpoint_id=tid, every=every)
        ctx.audit(
            session,
            project_id=pid,
            action="delete",
            resource_type="blocklist",
            resource_id=pid,
            summary=f"Removed {removed} blocklist entries (gid {gid}, touchpoint "
            f"{'all' if every else tid})",
            params={"count": removed, "gid": gid, "touchpoint_id": "all" if every else tid},
        )
    return Response(status_code=204)
