"""Campaign rules: saving and checking content, and the state machine of
``campaigns.md`` (draft → in approval → awaiting publish → not started/running →
paused/finished/closed). Services take a session and never commit.

Saving, submitting and publishing check enum values against options APIs. Those
are network calls, so they never happen inside a transaction: a first, read-only
transaction finds out what to fetch (:func:`options_needed`), the options are
fetched with no transaction open (:func:`fetch_options`), and the transaction that
writes checks against what was fetched (prepare → fetch → record, see
:func:`prepare_fetch_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..auth import Principal
from ..delivery.options import OptionsSource, options_source, run_async
from ..delivery.options import fetch_options as fetch_one
from ..errors import Conflict, FieldErrors, InvalidInput, NotFound, TouchgateError
from ..models import Project
from ..models.base import utcnow
from ..models.campaigns import Campaign
from ..projects import service as projects
from ..runtime import Runtime
from . import repository as repo
from .content import (
    CampaignContent,
    ContentContext,
    EventTrigger,
    EventWithoutTrigger,
    ListAudience,
    OnceTrigger,
    Options,
    RecurringTrigger,
    TouchpointInfo,
    parse_content,
    stored_content,
)
from .schemas import (
    ACTIONS,
    ALLOWED_ACTIONS,
    BLOCKING_STATES,
    NAME_MAX,
    CampaignCreate,
    CampaignOut,
    CampaignPatch,
    CampaignWarning,
    TouchpointRef,
)
from .validation import parse_input

log = logging.getLogger("touchgate.campaigns")

# A one-off time this close to "now" at publish is "now", not "in the past".
PUBLISH_GRACE = timedelta(minutes=1)
# What a first transaction found to fetch, by (touchpoint id, parameter key).
OptionNeeds = dict[tuple[int, str], OptionsSource]
FetchedOptions = dict[tuple[int, str], Options | str]
T = TypeVar("T")


def project_tz(project: Project) -> ZoneInfo:
    try:
        return ZoneInfo(project.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def campaign_content(campaign: Campaign) -> CampaignContent:
    """The typed content of a stored campaign."""
    return stored_content(
        campaign.trigger, campaign.audience, campaign.participation, campaign.strategy
    )


# --- reading ----------------------------------------------------------------------------


def get_campaign(session: Session, project_id: int, space_id: int, campaign_id: int) -> Campaign:
    projects.get_space(session, project_id, space_id)
    campaign = repo.get_campaign(session, space_id, campaign_id)
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} does not exist in space {space_id}.")
    return campaign


def campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    """A campaign as the API shows it: with the project's time zone, the touchpoints
    it uses by name (deleted ones too), and what to fix before submitting."""
    out = CampaignOut.model_validate(campaign)
    out.allowed_actions = list(ALLOWED_ACTIONS.get(campaign.status, ()))
    out.timezone = projects.get_project(session, campaign.project_id).timezone or "UTC"
    content = campaign_content(campaign)
    tps = repo.touchpoints_any(session, campaign.project_id, content.touchpoint_ids())
    out.touchpoints = [
        TouchpointRef(
            id=tid,
            name=tps[tid].name if tid in tps else None,
            deleted=tid not in tps or tps[tid].deleted_at is not None,
            status=tps[tid].status if tid in tps else None,
        )
        for tid in sorted(content.touchpoint_ids())
    ]
    if "edit" in out.allowed_actions:
        for path, _step, _index, channel in content.channels():
            tp = tps.get(channel.touchpoint_id)
            if tp is not None and tp.deleted_at is None:
                continue
            name = tp.name if tp is not None else None
            out.warnings.append(
                CampaignWarning(
                    code="touchpoint_deleted",
                    field=f"{path}.touchpoint_id",
                    message=(
                        f"Touchpoint {name!r} ({channel.touchpoint_id}) was deleted: "
                        "choose another touchpoint for these template values."
                    ),
                    params={"touchpoint_id": channel.touchpoint_id, "name": name},
                )
            )
    return out


# --- checking content ------------------------------------------------------------------


def _context(
    session: Session,
    project: Project,
    space_id: int,
    options: Mapping[tuple[int, str], Options | str] | None,
) -> ContentContext:
    authorised: dict[int, bool] = {}
    found: dict[int, TouchpointInfo | None] = {}

    def touchpoint(tid: int) -> TouchpointInfo | None:
        if tid not in found:
            tp = repo.touchpoints_any(session, project.id, [tid]).get(tid)
            if tp is None:
                found[tid] = None
            else:
                if tid not in authorised:
                    authorised[tid] = bool(repo.authorised_touchpoints(session, space_id, [tid]))
                found[tid] = TouchpointInfo(
                    id=tp.id,
                    name=tp.name,
                    status=tp.status,
                    deleted=tp.deleted_at is not None,
                    authorised=authorised[tid],
                    template_params=list(tp.template_params or []),
                    user_attributes=list(tp.user_attributes or []),
                )
        return found[tid]

    return ContentContext(
        catalogue=repo.catalogue(session, project.id),
        tz=project_tz(project),
        touchpoint=touchpoint,
        options=options,
    )


def validate_campaign(
    session: Session,
    project: Project,
    space_id: int,
    data: Mapping[str, Any],
    *,
    stage: str,
    options: Mapping[tuple[int, str], Options | str] | None = None,
    list_gid_count: int | None = None,
    now: datetime | None = None,
) -> CampaignCreate:
    """Check a campaign; raise InvalidInput naming every invalid field.

    ``stage`` is ``save``, ``submit`` or ``publish``. Every stage checks the
    structure, the touchpoints (enabled, authorised to the space) and the template
    values (options-API enums against ``options``, fetched beforehand); submit and
    publish also need a non-empty list audience, and publish needs a schedule that
    can still fire.
    """
    errors = FieldErrors()
    context = _context(session, project, space_id, options or {})
    parsed = parse_content(CampaignCreate, data, errors, context)
    if parsed is not None:
        audience = parsed.audience
        if stage in ("submit", "publish") and isinstance(audience, ListAudience):
            count = len(set(audience.gids)) if audience.gids is not None else list_gid_count
            if not count:
                errors.add(
                    "audience.gids",
                    "the list audience is empty: give or upload gids",
                    code="list_audience_empty",
                )
        if stage == "publish" and not errors:
            _check_schedulable(parsed, project_tz(project), now or utcnow(), errors)
    errors.raise_if_any("The campaign is invalid.")
    assert parsed is not None
    return parsed


def options_needed(
    session: Session, runtime: Runtime, project_id: int, space_id: int, data: Mapping[str, Any]
) -> OptionNeeds:
    """The options APIs a check of ``data`` will need (read-only; the content's own
    problems are reported by the check itself, later)."""
    project = projects.get_project(session, project_id)
    context = _context(session, project, space_id, None)
    with contextlib.suppress(ValidationError):
        CampaignCreate.model_validate(dict(data), context=context)
    needs: OptionNeeds = {}
    for tid, key in sorted(context.needs):
        tp = repo.touchpoints_by_id(session, project_id, [tid]).get(tid)
        if tp is not None:
            try:
                needs[(tid, key)] = options_source(runtime, tp, key)
            except TouchgateError:
                continue  # not an API enum after all: the check says what is wrong
    return needs


def fetch_options(runtime: Runtime, needs: OptionNeeds) -> FetchedOptions:
    """Fetch what ``options_needed`` found, outside any transaction; a failure is kept
    as the reason (the check names the value it concerns)."""
    if not needs:
        return {}
    keys = list(needs)

    async def fetch_all() -> list[Any]:
        gathered: list[Any] = await asyncio.gather(
            *(fetch_one(runtime, needs[k]) for k in keys), return_exceptions=True
        )
        return gathered

    fetched: FetchedOptions = {}
    results: list[Any] = run_async(runtime, fetch_all)
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, TouchgateError):
            fetched[key] = f"the options API failed: {result.message}"
        elif isinstance(result, BaseException):
            raise result
        else:
            fetched[key] = result
    return fetched


def prepare_fetch_record(
    runtime: Runtime,
    prepare: Callable[[Session], OptionNeeds],
    record: Callable[[Session, FetchedOptions], T],
) -> T:
    """Prepare (read what is needed), fetch (network, no transaction open), record
    (the transaction that checks and writes)."""
    with runtime.tx() as session:
        needs = prepare(session)
    options = fetch_options(runtime, needs)
    with runtime.tx() as session:
        return record(session, options)


def _check_schedulable(
    content: CampaignContent, tz: ZoneInfo, now: datetime, errors: FieldErrors
) -> None:
    trigger = content.trigger
    if isinstance(trigger, OnceTrigger):
        if trigger.at is not None and trigger.at < now - PUBLISH_GRACE:
            errors.add("trigger.at", "is in the past", code="in_the_past")
        return
    if trigger.end is not None and trigger.end <= now:
        errors.add("trigger.end", "is in the past", code="in_the_past")
        return
    if isinstance(trigger, RecurringTrigger):
        start = trigger.start or now
        first = next_fire(trigger, tz, max(start, now) - timedelta(seconds=1))
        if trigger.end is not None and first > trigger.end:
            errors.add(
                "trigger", "the schedule has no run between start and end", code="no_run_scheduled"
            )


def next_fire(trigger: RecurringTrigger, tz: ZoneInfo, after: datetime) -> datetime:
    """The first time strictly after ``after`` that a recurring trigger fires (UTC)."""
    it = croniter(trigger.cron_expression(), after.astimezone(tz))
    nxt: datetime = it.get_next(datetime)
    return nxt.astimezone(UTC)


def next_run_after(
    campaign: Campaign, tz: ZoneInfo, fired: datetime, now: datetime
) -> datetime | None:
    """The run after ``fired``: none for a one-off; for a recurring trigger the next
    time after both the fired one and now (runs missed while nothing ran are
    skipped, not caught up), or none past the end."""
    trigger = campaign_content(campaign).trigger
    if not isinstance(trigger, RecurringTrigger):
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
        params={"name": name},
        details=[
            {
                "field": "name",
                "code": "name_taken",
                "message": "already used by another campaign in this space",
                "params": {"name": name},
            }
        ],
    )


def _flush_name(session: Session, name: str) -> None:
    """Flush; a concurrent save that took the same name first is a 409, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        raise _name_taken(name) from None


def _apply_content(session: Session, campaign: Campaign, content: CampaignContent) -> None:
    stored = content.stored()
    campaign.trigger = stored["trigger"]
    campaign.participation = stored["participation"]
    campaign.strategy = stored["strategy"]
    audience = dict(stored["audience"])
    if isinstance(content.audience, ListAudience):
        if content.audience.gids is not None:
            audience["gid_count"] = repo.replace_list_gids(
                session, campaign.id, sorted(set(content.audience.gids))
            )
        else:
            audience["gid_count"] = repo.count_list_gids(session, campaign.id)
    else:
        repo.replace_list_gids(session, campaign.id, [])
    campaign.audience = audience


def options_for_create(
    session: Session, runtime: Runtime, project_id: int, space_id: int, data: Any
) -> OptionNeeds:
    projects.get_space(session, project_id, space_id)
    if not isinstance(data, Mapping):
        return {}
    return options_needed(session, runtime, project_id, space_id, data)


def create_campaign(
    session: Session,
    project_id: int,
    space_id: int,
    data: Any,
    options: FetchedOptions | None = None,
) -> Campaign:
    space = projects.get_space(session, project_id, space_id)
    project = projects.get_project(session, project_id)
    if not isinstance(data, Mapping):
        raise InvalidInput("The body must be a JSON object.", field="body", field_code="wrong_type")
    body = validate_campaign(session, project, space.id, data, stage="save", options=options)
    if repo.campaign_by_name(session, space_id, body.name) is not None:
        raise _name_taken(body.name)
    campaign = Campaign(
        project_id=project_id,
        space_id=space_id,
        name=body.name,
        status="draft",
        anti_disturb=body.anti_disturb,
        trigger={},
        audience={},
        participation={},
        strategy={},
    )
    session.add(campaign)
    _flush_name(session, body.name)
    _apply_content(session, campaign, body)
    session.flush()
    return campaign


def _stored_body(campaign: Campaign) -> dict[str, Any]:
    audience = dict(campaign.audience)
    audience.pop("gid_count", None)
    return {
        "name": campaign.name,
        "anti_disturb": campaign.anti_disturb,
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
            params={"status": campaign.status, "action": action, "allowed": ", ".join(allowed)},
            details={"status": campaign.status, "action": action, "allowed_actions": list(allowed)},
        )


def _patched(campaign: Campaign, data: Any) -> dict[str, Any]:
    """The campaign as it would be after the patch ``data`` (checked for shape)."""
    patch = parse_input(CampaignPatch, data)
    changes = patch.model_dump(exclude_unset=True)
    errors = FieldErrors()
    for key, value in changes.items():
        if value is None:
            errors.add(key, "must not be null", code="not_null")
    errors.raise_if_any()
    return _stored_body(campaign) | changes


def options_for_update(
    session: Session, runtime: Runtime, project_id: int, space_id: int, campaign_id: int, data: Any
) -> OptionNeeds:
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    if "edit" not in ALLOWED_ACTIONS.get(campaign.status, ()):
        return {}  # refused when recorded; nothing to ask
    try:
        merged = _patched(campaign, data)
    except InvalidInput:
        return {}
    return options_needed(session, runtime, project_id, space_id, merged)


def update_campaign(
    session: Session,
    project_id: int,
    space_id: int,
    campaign_id: int,
    data: Any,
    options: FetchedOptions | None = None,
) -> Campaign:
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    repo.lock_campaign(session, campaign.id)
    _require(campaign, "edit")
    merged = _patched(campaign, data)
    project = projects.get_project(session, project_id)
    body = validate_campaign(session, project, space_id, merged, stage="save", options=options)
    if body.name != campaign.name:
        if repo.campaign_by_name(session, space_id, body.name) is not None:
            raise _name_taken(body.name)
        campaign.name = body.name
    campaign.anti_disturb = body.anti_disturb
    _apply_content(session, campaign, body)
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
            field_code="not_a_list_audience",
        )
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


def _publish_schedule(
    campaign: Campaign, content: CampaignContent, tz: ZoneInfo, now: datetime
) -> None:
    trigger = content.trigger
    if isinstance(trigger, OnceTrigger):
        at = trigger.at or now
        at = max(at, now) if at >= now - PUBLISH_GRACE else at
        campaign.start_at = at
        campaign.end_at = None
        campaign.next_run_at = at
    elif isinstance(trigger, EventTrigger | EventWithoutTrigger):
        # Polled at every scheduler tick from the start until the end.
        campaign.start_at = trigger.start or now
        campaign.end_at = trigger.end
        campaign.next_run_at = campaign.start_at
    else:
        start = trigger.start or now
        campaign.start_at = start
        campaign.end_at = trigger.end
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


def options_for_action(
    session: Session,
    runtime: Runtime,
    project_id: int,
    space_id: int,
    campaign_id: int,
    action: str,
) -> OptionNeeds:
    """What ``action`` will check against options APIs (submit and publish check)."""
    campaign = get_campaign(session, project_id, space_id, campaign_id)
    if action not in ("submit", "publish") or action not in ALLOWED_ACTIONS.get(
        campaign.status, ()
    ):
        return {}
    return options_needed(session, runtime, project_id, space_id, _stored_body(campaign))


def act(
    session: Session,
    project_id: int,
    space_id: int,
    campaign_id: int,
    action: str,
    *,
    principal: Principal,
    options: FetchedOptions | None = None,
    reason: str | None = None,
    copy_name: str | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Apply a state-machine action; returns the campaign (the new one for ``copy``)."""
    now = now or utcnow()
    if action not in ACTIONS:
        raise NotFound(
            f"Unknown campaign action {action!r}.",
            code="invalid_action",
            params={"action": action, "allowed": ", ".join(ACTIONS)},
        )
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
        name = copy_name or _copy_name(session, space_id, campaign.name)
        if copy_name is not None and repo.campaign_by_name(session, space_id, name) is not None:
            raise _name_taken(name)
        copy = Campaign(
            project_id=campaign.project_id,
            space_id=campaign.space_id,
            name=name,
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
    if action in ("submit", "publish"):
        body = validate_campaign(
            session,
            project,
            space_id,
            _stored_body(campaign),
            stage=action,
            options=options,
            list_gid_count=list_count,
            now=now,
        )
        if action == "submit":
            campaign.status = "in_approval" if project.approval_required else "awaiting_publish"
            campaign.rejection_reason = None
        else:
            _publish_schedule(campaign, body, tz, now)
            if isinstance(body.trigger, EventTrigger | EventWithoutTrigger):
                _events_from_now(session, campaign, now)
            campaign.published_at = now
            campaign.last_error = None
            campaign.last_error_code = None
            campaign.last_error_params = None
    elif action == "approve":
        campaign.status = "awaiting_publish"
    elif action == "reject":
        campaign.status = "rejected"
        campaign.rejection_reason = reason
    elif action == "withdraw":
        campaign.status = "draft"
    elif action == "pause":
        campaign.status = "paused"
    elif action == "resume":
        trigger = campaign_content(campaign).trigger
        recurring = isinstance(trigger, RecurringTrigger)
        if recurring and campaign.next_run_at is not None and campaign.next_run_at < now:
            # Runs missed while paused are skipped, not caught up.
            campaign.next_run_at = next_run_after(campaign, tz, now, now)
        if isinstance(trigger, EventTrigger | EventWithoutTrigger):
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


def campaigns_using_touchpoint(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
    """Campaigns in a blocking state whose strategy sends through the touchpoint."""
    project_id = repo.touchpoint_project(session, touchpoint_id)
    if project_id is None:
        return []
    return [
        {"id": c.id, "name": c.name, "status": c.status}
        for c in repo.campaigns_in_states(session, project_id, BLOCKING_STATES)
        if touchpoint_id in campaign_content(c).touchpoint_ids()
    ]
