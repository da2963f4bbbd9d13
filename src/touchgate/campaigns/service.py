"""Campaign rules: saving and validating content, and the state machine of
``campaigns.md`` (draft → in approval → awaiting publish → not started/running →
paused/finished/closed). Services take a session and never commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..auth import Principal
from ..delivery.params import api_enum_keys, validate_params
from ..errors import Conflict, FieldErrors, InvalidInput, NotFound, TouchgateError
from ..models import Project, Touchpoint
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..projects import service as projects
from ..runtime import Runtime
from ..touchpoints.guard import register_usage_check
from . import repository as repo
from .schemas import (
    ALLOWED_ACTIONS,
    BLOCKING_STATES,
    NAME_MAX,
    CampaignCreate,
    CampaignUpdate,
    Content,
    check_content,
    cron_of,
    parse_when,
    touchpoint_ids,
)

log = logging.getLogger("touchgate.campaigns")

# A one-off time this close to "now" at publish is "now", not "in the past".
PUBLISH_GRACE = timedelta(minutes=1)


def project_tz(project: Project) -> ZoneInfo:
    try:
        return ZoneInfo(project.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


# --- reading ----------------------------------------------------------------------------


def get_campaign(session: Session, project_id: int, space_id: int, campaign_id: int) -> Campaign:
    projects.get_space(session, project_id, space_id)
    campaign = repo.get_campaign(session, space_id, campaign_id)
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} does not exist in space {space_id}.")
    return campaign


# --- validation ---------------------------------------------------------------------------


def _api_options_loader(runtime: Runtime | None, touchpoint: Touchpoint) -> Any:
    """Options of an API enum, through the delivery engine's cached options loader.

    The source is read from the touchpoint already loaded in this transaction (a
    second transaction would wait on this one's SQLite write lock); any failure
    becomes a field error naming the value.
    """

    def load(key: str) -> list[dict[str, Any]]:
        if runtime is None:
            raise LookupError("the options API of this parameter cannot be reached here")
        from ..delivery.options import fetch_options, options_source, run_async

        source = options_source(runtime, touchpoint, key)
        try:
            return run_async(runtime, lambda: fetch_options(runtime, source))
        except TouchgateError as exc:
            raise LookupError(f"the options API failed: {exc.message}") from exc

    return load


def validate_content(
    session: Session,
    project: Project,
    space_id: int,
    data: dict[str, Any],
    *,
    stage: str,
    runtime: Runtime | None = None,
    list_gid_count: int | None = None,
    now: datetime | None = None,
) -> Content:
    """Check a campaign's content; raise InvalidInput naming every invalid field.

    ``stage`` is ``save``, ``submit`` or ``publish``. Every stage checks the
    structure, the touchpoints (enabled, authorised to the space) and the template
    values; submit and publish also need a non-empty list audience, and publish
    needs a schedule that can still fire.
    """
    errors = FieldErrors()
    tz = project_tz(project)
    content = check_content(data, errors, repo.catalogue(session, project.id), tz)
    tps = repo.touchpoints_by_id(session, project.id, (c.touchpoint_id for c in content.channels))
    authorised = repo.authorised_touchpoints(session, space_id, tps)
    for ref in content.channels:
        field = f"{ref.path}.touchpoint_id"
        tp = tps.get(ref.touchpoint_id)
        if tp is None:
            errors.add(field, f"touchpoint {ref.touchpoint_id} does not exist in this project")
            continue
        label = f"touchpoint {tp.name!r} ({tp.id})"
        if tp.status != "enabled":
            errors.add(field, f"{label} is disabled")
            continue
        if tp.id not in authorised:
            errors.add(field, f"{label} is not authorised for this space")
            continue
        loader = (
            _api_options_loader(runtime, tp)
            if api_enum_keys(tp.template_params or [], ref.params)
            else None
        )
        try:
            validate_params(
                tp.template_params or [],
                ref.params,
                loader,
                attribute_keys=list(tp.user_attributes or []),
                field_prefix=f"{ref.path}.params",
            )
        except InvalidInput as exc:
            for item in exc.details or []:
                errors.add(str(item.get("field")), str(item.get("message")))
    if stage in ("submit", "publish") and content.audience.get("match") == "list":
        count = len(content.list_gids) if content.list_gids is not None else list_gid_count
        if not count:
            errors.add("audience.gids", "the list audience is empty: give or upload gids")
    if stage == "publish" and not errors:
        _check_schedulable(content.trigger, tz, now or utcnow(), errors)
    errors.raise_if_any("The campaign is invalid.")
    return content


def _check_schedulable(
    trigger: dict[str, Any], tz: ZoneInfo, now: datetime, errors: FieldErrors
) -> None:
    if trigger.get("type") == "once":
        at = parse_when(trigger.get("at"), tz)
        if at is not None and at < now - PUBLISH_GRACE:
            errors.add("trigger.at", "is in the past")
        return
    end = parse_when(trigger.get("end"), tz)
    if end is not None and end <= now:
        errors.add("trigger.end", "is in the past")
        return
    if trigger.get("type") in ("event", "event_without"):
        return
    start = parse_when(trigger.get("start"), tz) or now
    first = next_fire(trigger, tz, max(start, now) - timedelta(seconds=1))
    if end is not None and first > end:
        errors.add("trigger", "the schedule has no run between start and end")


def next_fire(trigger: dict[str, Any], tz: ZoneInfo, after: datetime) -> datetime:
    """The first time strictly after ``after`` that a recurring trigger fires (UTC)."""
    it = croniter(cron_of(trigger), after.astimezone(tz))
    nxt: datetime = it.get_next(datetime)
    return nxt.astimezone(ZoneInfo("UTC"))


def next_run_after(
    campaign: Campaign, tz: ZoneInfo, fired: datetime, now: datetime
) -> datetime | None:
    """The run after ``fired``: none for a one-off; for a recurring trigger the next
    time after both the fired one and now (runs missed while nothing ran are
    skipped, not caught up), or none past the end."""
    trigger = campaign.trigger
    if trigger.get("type") != "recurring":
        return None
    nxt = next_fire(trigger, tz, max(fired, now))
    if campaign.end_at is not None and nxt > campaign.end_at:
        return None
    return nxt


# --- saving ----------------------------------------------------------------------------------


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A campaign named {name!r} already exists in this space.",
        code="name_taken",
        details=[{"field": "name", "message": "already used by another campaign in this space"}],
    )


def _flush_name(session: Session, name: str) -> None:
    """Flush; a concurrent save that took the same name first is a 409, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        raise _name_taken(name) from None


def _apply_content(session: Session, campaign: Campaign, content: Content) -> None:
    campaign.trigger = content.trigger
    campaign.participation = content.participation
    campaign.strategy = content.strategy
    audience = dict(content.audience)
    if audience.get("match") == "list":
        if content.list_gids is not None:
            audience["gid_count"] = repo.replace_list_gids(session, campaign.id, content.list_gids)
        else:
            audience["gid_count"] = repo.count_list_gids(session, campaign.id)
    else:
        repo.replace_list_gids(session, campaign.id, [])
    campaign.audience = audience


def create_campaign(
    session: Session,
    project_id: int,
    space_id: int,
    data: CampaignCreate,
    runtime: Runtime | None = None,
) -> Campaign:
    space = projects.get_space(session, project_id, space_id)
    project = projects.get_project(session, project_id)
    content = validate_content(
        session, project, space.id, data.model_dump(), stage="save", runtime=runtime
    )
    if repo.campaign_by_name(session, space_id, data.name) is not None:
        raise _name_taken(data.name)
    campaign = Campaign(
        project_id=project_id,
        space_id=space_id,
        name=data.name,
        status="draft",
        anti_disturb=data.anti_disturb,
        trigger={},
        audience={},
        participation={},
        strategy={},
    )
    session.add(campaign)
    _flush_name(session, data.name)
    _apply_content(session, campaign, content)
    session.flush()
    return campaign


def _content_of(campaign: Campaign) -> dict[str, Any]:
    audience = dict(campaign.audience)
    audience.pop("gid_count", None)
    return {
        "trigger": campaign.trigger,
        "audience": audience,
        "participation": campaign.participation,
        "strategy": campaign.strategy,
    }


def _require(campaign: Campaign, action: str) -> None:
    allowed = ALLOWED_ACTIONS.get(campaign.status, ())
    if action not in allowed:
        raise Conflict(
            f"Cannot {action} a campaign that is {campaign.status!r}; "
            f"allowed: {', '.join(allowed) or 'nothing'}.",
            code="invalid_state",
            details={"status": campaign.status, "action": action, "allowed_actions": list(allowed)},
        )


def update_campaign(
    session: Session,
    project_id: int,
    space_id: int,
    campaign_id: int,
    data: CampaignUpdate,
    runtime: Runtime | None = None,
) -> Campaign:
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    _require(campaign, "edit")
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise InvalidInput("must not be null", field=key)
    project = projects.get_project(session, project_id)
    merged = _content_of(campaign) | {
        k: v for k, v in changes.items() if k not in ("name", "anti_disturb")
    }
    content = validate_content(session, project, space_id, merged, stage="save", runtime=runtime)
    if "name" in changes and changes["name"] != campaign.name:
        other = repo.campaign_by_name(session, space_id, changes["name"])
        if other is not None:
            raise _name_taken(changes["name"])
        campaign.name = changes["name"]
    if "anti_disturb" in changes:
        campaign.anti_disturb = changes["anti_disturb"]
    _apply_content(session, campaign, content)
    # Editing a rejected or approved campaign sends it back to draft (re-approval).
    campaign.status = "draft"
    campaign.updated_at = utcnow()
    _flush_name(session, campaign.name)
    return campaign


def upload_list_gids(
    session: Session,
    project_id: int,
    space_id: int,
    campaign_id: int,
    gids: list[int],
    *,
    replace: bool,
) -> Campaign:
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    _require(campaign, "edit")
    if campaign.audience.get("match") != "list":
        raise InvalidInput(
            "Only a campaign whose audience is a list takes uploaded gids.",
            field="audience.match",
        )
    errors = FieldErrors()
    for i, gid in enumerate(gids):
        if not 0 < gid < 2**63:
            errors.add(f"gids[{i}]", "must be a positive 64-bit integer")
            if len(errors.items) >= 20:
                break
    errors.raise_if_any()
    count = repo.replace_list_gids(session, campaign.id, sorted(set(gids)), replace=replace)
    campaign.audience = {"match": "list", "gid_count": count}
    campaign.status = "draft"
    session.flush()
    return campaign


def delete_campaign(session: Session, project_id: int, space_id: int, campaign_id: int) -> None:
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    _require(campaign, "delete")
    repo.delete_user_rows(session, campaign.id)
    session.delete(campaign)
    session.flush()


# --- the state machine ------------------------------------------------------------------------


def _copy_name(session: Session, space_id: int, name: str) -> str:
    taken = repo.names_like(session, space_id, "")
    for n in range(1, 1000):
        suffix = " copy" if n == 1 else f" copy {n}"
        candidate = name[: NAME_MAX - len(suffix)].rstrip() + suffix
        if candidate not in taken:
            return candidate
    raise Conflict("No free name for the copy; rename some copies first.", code="name_taken")


def _publish_schedule(campaign: Campaign, tz: ZoneInfo, now: datetime) -> None:
    trigger = campaign.trigger
    if trigger.get("type") == "once":
        at = parse_when(trigger.get("at"), tz) or now
        at = max(at, now) if at >= now - PUBLISH_GRACE else at
        campaign.start_at = at
        campaign.end_at = None
        campaign.next_run_at = at
    elif trigger.get("type") in ("event", "event_without"):
        # Polled at every scheduler tick from the start until the end.
        campaign.start_at = parse_when(trigger.get("start"), tz) or now
        campaign.end_at = parse_when(trigger.get("end"), tz)
        campaign.next_run_at = campaign.start_at
    else:
        start = parse_when(trigger.get("start"), tz) or now
        campaign.start_at = start
        campaign.end_at = parse_when(trigger.get("end"), tz)
        campaign.next_run_at = next_fire(trigger, tz, max(start, now) - timedelta(seconds=1))
    assert campaign.start_at is not None
    campaign.start_at = campaign.start_at.astimezone(UTC)
    if campaign.end_at is not None:
        campaign.end_at = campaign.end_at.astimezone(UTC)
    if campaign.next_run_at is not None:
        campaign.next_run_at = campaign.next_run_at.astimezone(UTC)
    campaign.status = "running" if campaign.start_at <= now else "not_started"


def _events_from_now(session: Session, campaign: Campaign, now: datetime) -> None:
    """Only events recorded from now on trigger the campaign."""
    latest = repo.max_event_id(session, campaign.project_id)
    campaign.event_cursor = latest
    campaign.event_horizon = latest
    campaign.event_horizon_at = now


def act(
    session: Session,
    project_id: int,
    space_id: int,
    campaign_id: int,
    action: str,
    *,
    principal: Principal,
    runtime: Runtime | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Apply a state-machine action; returns the campaign (the new one for ``copy``)."""
    now = now or utcnow()
    if action not in (
        "submit",
        "approve",
        "reject",
        "withdraw",
        "publish",
        "pause",
        "resume",
        "close",
        "copy",
    ):
        raise NotFound(f"Unknown campaign action {action!r}.")
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    repo.lock_campaign(session, campaign.id)
    _require(campaign, action)
    if action in ("approve", "reject"):
        principal.require_admin()
    project = projects.get_project(session, project_id)
    tz = project_tz(project)
    list_count = (
        repo.count_list_gids(session, campaign.id)
        if campaign.audience.get("match") == "list"
        else None
    )
    if action == "copy":
        copy = Campaign(
            project_id=campaign.project_id,
            space_id=campaign.space_id,
            name=_copy_name(session, space_id, campaign.name),
            status="draft",
            trigger=dict(campaign.trigger),
            audience=dict(campaign.audience),
            participation=dict(campaign.participation),
            anti_disturb=campaign.anti_disturb,
            strategy=dict(campaign.strategy),
        )
        session.add(copy)
        _flush_name(session, copy.name)
        if campaign.audience.get("match") == "list":
            repo.copy_list_gids(session, campaign.id, copy.id)
        return copy
    if action == "submit":
        validate_content(
            session,
            project,
            space_id,
            _content_of(campaign),
            stage="submit",
            runtime=runtime,
            list_gid_count=list_count,
        )
        campaign.status = "in_approval" if project.approval_required else "awaiting_publish"
        campaign.rejection_reason = None
    elif action == "approve":
        campaign.status = "awaiting_publish"
    elif action == "reject":
        campaign.status = "rejected"
        campaign.rejection_reason = reason
    elif action == "withdraw":
        campaign.status = "draft"
    elif action == "publish":
        validate_content(
            session,
            project,
            space_id,
            _content_of(campaign),
            stage="publish",
            runtime=runtime,
            list_gid_count=list_count,
            now=now,
        )
        _publish_schedule(campaign, tz, now)
        if campaign.trigger.get("type") in ("event", "event_without"):
            _events_from_now(session, campaign, now)
        campaign.published_at = now
        campaign.last_error = None
    elif action == "pause":
        campaign.status = "paused"
    elif action == "resume":
        recurring = campaign.trigger.get("type") == "recurring"
        if recurring and campaign.next_run_at is not None and campaign.next_run_at < now:
            # Runs missed while paused are skipped, not caught up.
            campaign.next_run_at = next_run_after(campaign, tz, now, now)
        if campaign.trigger.get("type") in ("event", "event_without"):
            # Events that happened while paused do not trigger anything.
            _events_from_now(session, campaign, now)
        started = campaign.start_at is None or campaign.start_at <= now
        campaign.status = "running" if started else "not_started"
    elif action == "close":
        campaign.status = "closed"
        campaign.next_run_at = None
        repo.drop_due(session, campaign.id)
        repo.drop_waits(session, campaign.id)
    campaign.updated_at = now
    session.flush()
    return campaign


# --- who uses a touchpoint ---------------------------------------------------------------------


@register_usage_check
def campaigns_using_touchpoint(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
    """Campaigns in a blocking state whose strategy sends through the touchpoint."""
    project_id = repo.touchpoint_project(session, touchpoint_id)
    if project_id is None:
        return []
    return [
        {"id": c.id, "name": c.name, "status": c.status}
        for c in repo.campaigns_in_states(session, project_id, BLOCKING_STATES)
        if touchpoint_id in touchpoint_ids(c.strategy)
    ]
