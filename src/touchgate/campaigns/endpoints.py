"""Campaign routes (``api.md``, "Campaigns (in a space)") and the scheduler hook."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from ..api.deps import CtxDep, ListOf, PageDep
from ..errors import InvalidInput
from ..projects import service as projects
from ..runtime import Runtime
from . import repository as repo
from . import runner, scheduler, service, stats
from .schemas import (
    STATES,
    CampaignCreate,
    CampaignOut,
    CampaignStats,
    CampaignUpdate,
    DeliveryOut,
    GidsUpload,
    PreviewBody,
    RejectBody,
)

router = APIRouter(tags=["campaigns"])
BASE = "/projects/{pid}/spaces/{sid}/campaigns"
DELIVERY_STATUSES = ("pending", "TOU_SUCC", "TOU_FAIL", "suppressed")


@router.post(BASE, status_code=201, response_model=CampaignOut)
def create_campaign(pid: int, sid: int, body: CampaignCreate, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        return CampaignOut.of(service.create_campaign(session, pid, sid, body, ctx.runtime))


@router.get(BASE, response_model=ListOf[CampaignOut])
def list_campaigns(
    pid: int, sid: int, ctx: CtxDep, page: PageDep, status: str | None = None
) -> ListOf[CampaignOut]:
    ctx.principal.require_space(pid, sid)
    if status is not None and status not in STATES:
        raise InvalidInput(f"status must be one of {', '.join(STATES)}", field="status")
    with ctx.runtime.tx() as session:
        projects.get_space(session, pid, sid)
        rows, total = repo.list_campaigns(session, sid, status, page.limit, page.offset)
        return ListOf[CampaignOut](items=[CampaignOut.of(r) for r in rows], total=total)


@router.get(BASE + "/{cid}", response_model=CampaignOut)
def get_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid)
    with ctx.runtime.tx() as session:
        return CampaignOut.of(service.get_campaign(session, pid, sid, cid))


@router.patch(BASE + "/{cid}", response_model=CampaignOut)
def update_campaign(pid: int, sid: int, cid: int, body: CampaignUpdate, ctx: CtxDep) -> CampaignOut:
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        return CampaignOut.of(service.update_campaign(session, pid, sid, cid, body, ctx.runtime))


@router.delete(BASE + "/{cid}", status_code=204)
def delete_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> Response:
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        service.delete_campaign(session, pid, sid, cid)
    return Response(status_code=204)


@router.post(BASE + "/{cid}/preview")
def preview(
    pid: int, sid: int, cid: int, ctx: CtxDep, body: PreviewBody | None = None
) -> dict[str, Any]:
    ctx.principal.require_space(pid, sid)
    sample = (body or PreviewBody()).sample
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
    gid: Annotated[int | None, Query(ge=1)] = None,
) -> ListOf[DeliveryOut]:
    ctx.principal.require_space(pid, sid)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="status")
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        items, total = repo.list_deliveries(
            session, campaign.id, status=status, gid=gid, limit=page.limit, offset=page.offset
        )
        return ListOf[DeliveryOut](items=[DeliveryOut(**i) for i in items], total=total)


@router.post(BASE + "/{cid}/audience/gids", response_model=CampaignOut)
def upload_gids(pid: int, sid: int, cid: int, body: GidsUpload, ctx: CtxDep) -> CampaignOut:
    """Upload the gids of a ``list`` audience (replacing the list, or adding to it)."""
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        return CampaignOut.of(
            service.upload_list_gids(session, pid, sid, cid, body.gids, replace=body.replace)
        )


@router.post(BASE + "/{cid}/{action}", response_model=CampaignOut)
def campaign_action(
    pid: int, sid: int, cid: int, action: str, ctx: CtxDep, body: RejectBody | None = None
) -> CampaignOut:
    """submit, approve, reject (optional ``{reason}``), withdraw, publish, pause, resume,
    close, or copy (returns the new draft)."""
    ctx.principal.require_space(pid, sid, write=True)
    with ctx.runtime.tx() as session:
        campaign = service.act(
            session,
            pid,
            sid,
            cid,
            action,
            principal=ctx.principal,
            runtime=ctx.runtime,
            reason=body.reason if body else None,
        )
        return CampaignOut.of(campaign)


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
