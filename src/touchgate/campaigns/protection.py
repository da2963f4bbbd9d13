"""Protection against over-messaging (``campaigns.md``, ``api.md``): the blocklist,
quiet hours and frequency caps, applied when a send step hands users to a
touchpoint.

- The blocklist always applies; quiet hours and caps only when the campaign's
  ``anti_disturb`` is on (the default).
- Quiet hours are read in the project's time zone: ``drop`` suppresses the users,
  ``hold`` keeps them until the window ends (the caller schedules them then; the
  caps are checked again at that time).
- A frequency cap (project-wide, and per touchpoint) allows at most
  ``max_messages`` per user in ``days``. What counts is a ``sent_messages`` row,
  written here in the same statement that checks the counts and removed when the
  delivery fails, so a pending or successful message counts and a ``TOU_FAIL``
  does not. Two campaigns deciding about the same user at the same moment take
  turns on the user's ``protection_locks`` row: the second one counts the first
  one's messages.

Everything works on a page of users at once, in SQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.requests import Request

from ..datastore.importer import UnsupportedMediaType
from ..errors import FieldErrors, InvalidInput, TouchgateError
from ..projects import service as projects
from ..touchpoints.service import get_touchpoint
from . import repository as repo
from .schemas import (
    BlocklistAdd,
    BlocklistAdded,
    BlocklistLine,
    FrequencyCap,
    ProjectProtection,
    QuietHours,
    TouchpointProtection,
)
from .validation import MAX_REPORTED_ERRORS, field_errors, parse_input

BLOCKLIST = "blocklist"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"
PARTICIPATION = "participation"
REASONS = (FREQUENCY_CAP, QUIET_HOURS, BLOCKLIST, PARTICIPATION)
# Blocklists up to this size are read once per piece of work (a page of a run, a
# settlement) and kept in memory; larger ones are looked up for each page's gids, so
# a page never reads more than about a page of blocklist.
BLOCKLIST_IN_MEMORY = 5_000


def quiet_until(window: QuietHours, tz: ZoneInfo, now: datetime) -> datetime | None:
    """When the quiet hours covering ``now`` end (UTC), or None outside them.

    ``start`` is inside the window and ``end`` is not; a window whose end is not
    after its start crosses midnight (22:00–08:00)."""
    local = now.astimezone(tz)
    start, end = time.fromisoformat(window.start), time.fromisoformat(window.end)
    at = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= at < end:
            return None
        end_day = local.date()
    else:
        if end <= at < start:
            return None
        end_day = local.date() + timedelta(days=1) if at >= start else local.date()
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class Rules:
    """What applies to one touchpoint for one campaign."""

    project_cap: FrequencyCap | None
    touchpoint_cap: FrequencyCap | None
    quiet_hours: QuietHours | None
    anti_disturb: bool
    # The gids blocked for the touchpoint, read once (most blocklists are small), or
    # None for a large blocklist, looked up page by page.
    blocked: frozenset[int] | None = None


@dataclass
class Screened:
    """A page of users after protection: who goes out now, who waits for the end of
    the quiet hours (``held_until``), and who is held back, by reason."""

    allowed: list[int]
    held: list[int] = field(default_factory=list)
    held_until: datetime | None = None
    suppressed: dict[str, list[int]] = field(default_factory=dict)


def screen(
    session: Session,
    *,
    project_id: int,
    touchpoint_id: int,
    run_id: int,
    step_id: str,
    gids: Sequence[int],
    rules: Rules,
    tz: ZoneInfo,
    now: datetime,
    record: bool = True,
) -> Screened:
    """Apply the blocklist, quiet hours and caps to ``gids`` (users of ``run_id``).

    With ``record`` the allowed users' messages are written as counted; without it
    (the preview) nothing is written and nobody is locked."""
    if rules.blocked is not None:
        blocked = {g for g in gids if g in rules.blocked} if rules.blocked else set()
    else:
        blocked = repo.blocked_gids(session, project_id, touchpoint_id, gids)
    if blocked:
        out = Screened(allowed=[g for g in gids if g not in blocked])
        out.suppressed[BLOCKLIST] = [g for g in gids if g in blocked]
    else:
        out = Screened(allowed=list(gids))
    if rules.anti_disturb and rules.quiet_hours is not None and out.allowed:
        until = quiet_until(rules.quiet_hours, tz, now)
        if until is not None:
            if rules.quiet_hours.action == "hold":
                out.held, out.held_until = out.allowed, until
            else:
                out.suppressed[QUIET_HOURS] = out.allowed
            out.allowed = []
    if not out.allowed:
        return out
    caps = []
    if rules.anti_disturb:
        if rules.project_cap is not None:
            caps.append(repo.CapCheck(None, rules.project_cap.max_messages, rules.project_cap.days))
        if rules.touchpoint_cap is not None:
            cap = rules.touchpoint_cap
            caps.append(repo.CapCheck(touchpoint_id, cap.max_messages, cap.days))
    if record:
        if caps:
            repo.lock_users(session, project_id, out.allowed, now)
        kept = repo.record_messages(
            session,
            project_id=project_id,
            touchpoint_id=touchpoint_id,
            run_id=run_id,
            step_id=step_id,
            gids=out.allowed,
            caps=caps,
            now=now,
        )
    else:
        kept = repo.under_caps(session, project_id, out.allowed, caps, now)
    if len(kept) < len(out.allowed):
        out.suppressed[FREQUENCY_CAP] = [g for g in out.allowed if g not in kept]
        out.allowed = [g for g in out.allowed if g in kept]
    return out


# --- managing the settings and the blocklist ------------------------------------------------


def project_settings(session: Session, project_id: int) -> ProjectProtection:
    projects.get_project(session, project_id)
    row = repo.project_protection(session, project_id)
    return ProjectProtection.model_validate(
        {"frequency_cap": row.frequency_cap if row is not None else None}
    )


def save_project_settings(
    session: Session, project_id: int, data: Any, now: datetime
) -> ProjectProtection:
    projects.get_project(session, project_id)
    body = parse_input(ProjectProtection, data)
    cap = body.frequency_cap.model_dump() if body.frequency_cap is not None else None
    repo.save_project_protection(session, project_id, cap, now)
    return body


def touchpoint_settings(
    session: Session, project_id: int, touchpoint_id: int
) -> TouchpointProtection:
    get_touchpoint(session, project_id, touchpoint_id)
    row = repo.touchpoint_protection(session, touchpoint_id)
    return TouchpointProtection.model_validate(
        {
            "frequency_cap": row.frequency_cap if row is not None else None,
            "quiet_hours": row.quiet_hours if row is not None else None,
            "rate_limit": row.rate_limit if row is not None else None,
        }
    )


def save_touchpoint_settings(
    session: Session, project_id: int, touchpoint_id: int, data: Any, now: datetime
) -> TouchpointProtection:
    """Replace the settings given (a setting left out keeps its value; ``null``
    removes it). Allowed while the touchpoint is enabled: what the endpoint receives
    does not change."""
    get_touchpoint(session, project_id, touchpoint_id)
    body = parse_input(TouchpointProtection, data)
    given = body.model_dump(exclude_unset=True)
    repo.save_touchpoint_protection(session, touchpoint_id, given, now)
    return touchpoint_settings(session, project_id, touchpoint_id)


# Blocklist bodies are read whole: a million gids as CSV is about 10 MB.
MAX_BLOCKLIST_BODY = 64 * 1024 * 1024
BLOCKLIST_MEDIA = ("application/json", "text/csv", "application/x-ndjson")


class BodyTooLarge(TouchgateError):
    status_code = 413
    code = "body_too_large"


def blocklist_media(content_type: str | None) -> str:
    media = (content_type or "application/json").partition(";")[0].strip().lower()
    if media in ("application/jsonl", "application/ndjson"):
        media = "application/x-ndjson"
    if media not in BLOCKLIST_MEDIA:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted for a blocklist; send one of: "
            f"{', '.join(BLOCKLIST_MEDIA)}.",
            params={"accepted": ", ".join(BLOCKLIST_MEDIA)},
            details={"accepted": list(BLOCKLIST_MEDIA)},
        )
    return media


async def read_limited(request: Request) -> bytes:
    """The request body, refused beyond MAX_BLOCKLIST_BODY bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BLOCKLIST_BODY:
            raise BodyTooLarge(
                f"The body is larger than {MAX_BLOCKLIST_BODY // (1024 * 1024)} MB; "
                "send the list in parts.",
                params={"max_mb": MAX_BLOCKLIST_BODY // (1024 * 1024)},
            )
        parts.append(chunk)
    return b"".join(parts)


@dataclass
class BlocklistLines:
    """Entries read from a CSV or NDJSON body, by touchpoint (None: every one), and
    the lines that could not be read."""

    entries: dict[int | None, dict[int, str | None]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0

    def add(self, gid: int, touchpoint_id: int | None, reason: str | None) -> None:
        self.entries.setdefault(touchpoint_id, {})[gid] = reason

    def reject(self, line: int, message: str, code: str, **params: Any) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "code": code, "message": message, "params": params})


def parse_blocklist_lines(body: bytes, media: str) -> BlocklistLines:
    """Read ``text/csv`` (header with ``gid`` and optionally ``touchpoint_id`` and
    ``reason``) or ``application/x-ndjson`` (a gid or ``{gid, touchpoint_id?,
    reason?}`` a line). Bad lines are reported with their number; good lines kept."""
    out = BlocklistLines()
    text_body = body.decode("utf-8-sig", errors="replace")
    if media == "text/csv":
        reader = csv.reader(io.StringIO(text_body))
        header = [h.strip().lower() for h in next(reader, [])]
        if "gid" not in header:
            raise InvalidInput(
                "A CSV blocklist needs a header line naming the column 'gid' "
                "(optionally 'touchpoint_id' and 'reason').",
                field="body",
                field_code="csv_needs_gid_column",
            )
        unknown = [h for h in header if h not in ("gid", "touchpoint_id", "reason")]
        if unknown:
            raise InvalidInput(
                f"Unknown CSV column {unknown[0]!r}; the columns are gid, touchpoint_id, reason.",
                field="body",
                field_code="csv_unknown_column",
                params={"column": unknown[0]},
            )
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            row = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
            gid = row.get("gid", "")
            tid = row.get("touchpoint_id", "")
            raw = {
                "gid": int(gid) if gid.isdigit() else gid,
                "touchpoint_id": int(tid) if tid.isdigit() else (tid or None),
                "reason": row.get("reason") or None,
            }
            _read_line(out, number, raw)
        return out
    for number, line in enumerate(text_body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.reject(number, "not valid JSON", "not_json")
            continue
        bare_gid = isinstance(raw, int) and not isinstance(raw, bool)
        _read_line(out, number, {"gid": raw} if bare_gid else raw)
    return out


def _read_line(out: BlocklistLines, number: int, raw: Any) -> None:
    try:
        line = BlocklistLine.model_validate(raw)
    except ValidationError as exc:
        errors = FieldErrors()
        field_errors(exc, errors)
        first = errors.items[0]
        out.reject(
            number, f"{first['field']}: {first['message']}", first["code"], **first["params"]
        )
        return
    out.add(line.gid, line.touchpoint_id, line.reason)


def add_to_blocklist(
    session: Session, project_id: int, body: bytes, media: str, now: datetime
) -> BlocklistAdded:
    """Add gids to the blocklist from a JSON, CSV or NDJSON body."""
    projects.get_project(session, project_id)
    if media == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput(
                "The body is not valid JSON.", field="body", field_code="not_json"
            ) from None
        add = parse_input(BlocklistAdd, data)
        _check_touchpoints(session, project_id, add.touchpoint_ids or [], "touchpoint_ids")
        targets: list[int | None] = list(add.touchpoint_ids) if add.touchpoint_ids else [None]
        added = repo.add_to_blocklist(
            session, project_id, sorted(set(add.gids)), targets, add.reason, now
        )
        return BlocklistAdded(added=added)
    lines = parse_blocklist_lines(body, media)
    live = repo.touchpoints_by_id(session, project_id, [t for t in lines.entries if t])
    added = 0
    for tid, entries in lines.entries.items():
        if tid is not None and tid not in live:
            for _gid in entries:
                lines.reject(
                    0,
                    f"touchpoint {tid} does not exist in this project",
                    "touchpoint_not_found",
                    touchpoint_id=tid,
                )
            continue
        by_reason: dict[str | None, list[int]] = {}
        for gid, reason in entries.items():
            by_reason.setdefault(reason, []).append(gid)
        for reason, gids in by_reason.items():
            added += repo.add_to_blocklist(session, project_id, sorted(gids), [tid], reason, now)
    return BlocklistAdded(added=added, rejected=lines.rejected, errors=lines.errors)


def _check_touchpoints(
    session: Session, project_id: int, ids: Sequence[int], field_name: str
) -> None:
    live = repo.touchpoints_by_id(session, project_id, ids)
    errors = FieldErrors()
    for i, tid in enumerate(ids):
        if tid not in live:
            errors.add(
                f"{field_name}[{i}]",
                f"touchpoint {tid} does not exist in this project",
                code="touchpoint_not_found",
                touchpoint_id=tid,
            )
    errors.raise_if_any()


def touchpoint_filter(value: str | None) -> tuple[int | None, bool]:
    """``touchpoint_id`` of a blocklist query: a touchpoint id, or ``all`` for the
    entries that apply to every touchpoint."""
    if value is None or value == "":
        return None, False
    if value.lower() in ("all", "null"):
        return None, True
    if value.isdigit() and 0 < int(value) < 2**31:
        return int(value), False
    raise InvalidInput(
        "touchpoint_id must be a touchpoint id, or 'all' for entries that apply to every "
        "touchpoint.",
        field="touchpoint_id",
        field_code="invalid_touchpoint_filter",
    )
