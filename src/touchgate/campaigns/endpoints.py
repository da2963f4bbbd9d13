"""Campaign routes (``api.md``, "Campaigns (in a space)") and the scheduler hook."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Query, Response
from sqlalchemy.orm import Session

from ..api.deps import Ctx, CtxDep, ListOf, PageDep
from ..api.guard import api_router
from ..auth import SPACE_READ, SPACE_WRITE, requires
from ..datastore.schemas import MAX_GID
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

router = api_router(tags=["campaigns"])
BASE = "/projects/{pid}/spaces/{sid}/campaigns"
DELIVERY_STATUSES = ("pending", "TOU_SUCC", "TOU_FAIL", "suppressed")
# Fields that change on their own (a run, a clock): not part of what a write changed.
_NOT_AUDITED = {"updated_at", "allowed_actions", "next_run_at", "last_error"}


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


@router.post(BASE, status_code=201, response_model=CampaignOut)
@requires(SPACE_WRITE)
def create_campaign(pid: int, sid: int, body: CampaignCreate, ctx: CtxDep) -> CampaignOut:
    with ctx.runtime.tx() as session:
        out = CampaignOut.of(service.create_campaign(session, pid, sid, body, ctx.runtime))
        _audit(ctx, session, "create", out, None, out)
        return out


@router.get(BASE, response_model=ListOf[CampaignOut])
@requires(SPACE_READ)
def list_campaigns(
    pid: int, sid: int, ctx: CtxDep, page: PageDep, status: str | None = None
) -> ListOf[CampaignOut]:
    if status is not None and status not in STATES:
        raise InvalidInput(f"status must be one of {', '.join(STATES)}", field="status")
    with ctx.runtime.tx() as session:
        projects.get_space(session, pid, sid)
        rows, total = repo.list_campaigns(session, sid, status, page.limit, page.offset)
        return ListOf[CampaignOut](items=[CampaignOut.of(r) for r in rows], total=total)


@router.get(BASE + "/{cid}", response_model=CampaignOut)
@requires(SPACE_READ)
def get_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> CampaignOut:
    with ctx.runtime.tx() as session:
        return CampaignOut.of(service.get_campaign(session, pid, sid, cid))


@router.patch(BASE + "/{cid}", response_model=CampaignOut)
@requires(SPACE_WRITE)
def update_campaign(pid: int, sid: int, cid: int, body: CampaignUpdate, ctx: CtxDep) -> CampaignOut:
    with ctx.runtime.tx() as session:
        before = CampaignOut.of(service.get_campaign(session, pid, sid, cid))
        out = CampaignOut.of(service.update_campaign(session, pid, sid, cid, body, ctx.runtime))
        _audit(ctx, session, "update", out, before, out)
        return out


@router.delete(BASE + "/{cid}", status_code=204)
@requires(SPACE_WRITE)
def delete_campaign(pid: int, sid: int, cid: int, ctx: CtxDep) -> Response:
    with ctx.runtime.tx() as session:
        before = CampaignOut.of(service.get_campaign(session, pid, sid, cid))
        service.delete_campaign(session, pid, sid, cid)
        _audit(ctx, session, "delete", before, before, None)
    return Response(status_code=204)


@router.post(BASE + "/{cid}/preview")
@requires(SPACE_READ)
def preview(
    pid: int, sid: int, cid: int, ctx: CtxDep, body: PreviewBody | None = None
) -> dict[str, Any]:
    sample = (body or PreviewBody()).sample
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
    gid: Annotated[int | None, Query(ge=1, le=MAX_GID)] = None,
) -> ListOf[DeliveryOut]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}", field="status")
    with ctx.runtime.tx() as session:
        campaign = service.get_campaign(session, pid, sid, cid)
        items, total = repo.list_deliveries(
            session, campaign.id, status=status, gid=gid, limit=page.limit, offset=page.offset
        )
        return ListOf[DeliveryOut](items=[DeliveryOut(**i) for i in items], total=total)


@router.post(BASE + "/{cid}/audience/gids", response_model=CampaignOut)
@requires(SPACE_WRITE)
def upload_gids(pid: int, sid: int, cid: int, body: GidsUpload, ctx: CtxDep) -> CampaignOut:
    """Upload the gids of a ``list`` audience (replacing the list, or adding to it)."""
    with ctx.runtime.tx() as session:
        out = CampaignOut.of(
            service.upload_list_gids(session, pid, sid, cid, body.gids, replace=body.replace)
        )
        ctx.audit(
            session,
            project_id=pid,
            action="upload_gids",
            resource_type="campaign",
            resource_id=cid,
            summary=f"{'Replaced' if body.replace else 'Added to'} the gid list of campaign "
            f"{out.name!r} ({len(body.gids)} gids)",
        )
        return out


@router.post(BASE + "/{cid}/{action}", response_model=CampaignOut)
@requires(SPACE_WRITE)
def campaign_action(
    pid: int, sid: int, cid: int, action: str, ctx: CtxDep, body: RejectBody | None = None
) -> CampaignOut:
    """submit, approve, reject (optional ``{reason}``), withdraw, publish, pause, resume,
    close, or copy (returns the new draft)."""
    with ctx.runtime.tx() as session:
        before = CampaignOut.of(service.get_campaign(session, pid, sid, cid))
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
        out = CampaignOut.of(campaign)
        if action == "copy":
            _audit(ctx, session, "copy", out, None, out)
        else:
            _audit(ctx, session, action, out, before, out)
        return out


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
