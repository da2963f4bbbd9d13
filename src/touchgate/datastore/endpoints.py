"""Routes of the data store: attribute catalogue, user import and lookup, events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import Body, Path, Query, Request
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..api.deps import Ctx, CtxDep, ListOf, OffsetQuery, PageDep, audit_created
from ..api.guard import api_router
from ..auth import PROJECT_ADMIN, PROJECT_READ, PROJECT_WRITE, requires
from ..errors import InvalidInput
from . import sensitive, service
from .importer import (
    CONTENT_TYPES,
    UserImport,
    check_content_encoding,
    format_from_content_type,
    gunzip,
)
from .schemas import (
    MAX_GID,
    AttributeCreate,
    AttributeOut,
    EventNameOut,
    EventOut,
    EventPropertyOut,
    EventsAccepted,
    ImportLineError,
    ImportResult,
    UserOut,
)

router = api_router(tags=["data store"])

ProjectId = Annotated[int, Path(description="Project id; an unknown or out-of-range one is 404.")]
GidPath = Annotated[int, Path(ge=1, le=MAX_GID, description="The user's gid.")]


@router.post("/projects/{pid}/attributes", status_code=201, response_model=AttributeOut)
@requires(PROJECT_ADMIN)
def create_attribute(pid: ProjectId, body: AttributeCreate, ctx: CtxDep) -> AttributeOut:
    with ctx.runtime.tx() as session:
        out = AttributeOut.model_validate(service.create_attribute(session, pid, body))
        summary = f"Declared attribute {out.key!r}"
        audit_created(ctx, session, pid, ("attribute", out.key), summary, out)
        return out


@router.get("/projects/{pid}/attributes", response_model=ListOf[AttributeOut])
@requires(PROJECT_READ)
def list_attributes(
    pid: ProjectId,
    ctx: CtxDep,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="All when omitted.")] = None,
    offset: OffsetQuery = 0,
) -> ListOf[AttributeOut]:
    with ctx.runtime.tx() as session:
        rows = service.list_attributes(session, pid)
        # The catalogue is small and pickers want all of it, so it is paged in memory.
        shown = rows[offset : None if limit is None else offset + limit]
        return ListOf[AttributeOut](
            items=[AttributeOut.model_validate(r) for r in shown], total=len(rows)
        )


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'JSON Lines (one {"gid": 1, "attributes": {...}} a line) or CSV '
        "with a header gid,<key>,...; streamed, any size; optionally Content-Encoding: gzip.",
        "content": {media: {"schema": {"type": "string"}} for media in CONTENT_TYPES},
    }
}


# How much of an import's body is read ahead of the importer.
READ_AHEAD_BYTES = 1 << 20


class _BodyReader:
    """The request body read on the event loop ahead of the import's thread.

    A task reads the body while the importer parses (at most
    :data:`READ_AHEAD_BYTES` wait in memory), and each call from the thread takes
    all that has arrived: one hop between the thread and the event loop per
    megabyte rather than per socket read, and the parser rarely waits for the
    network.
    """

    def __init__(self, request: Request) -> None:
        self._stream = request.stream()
        self._parts: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: Exception | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        try:
            async for chunk in self._stream:
                await self._room.wait()
                self._parts.append(chunk)
                self._size += len(chunk)
                if self._size >= READ_AHEAD_BYTES:
                    self._room.clear()
                self._arrived.set()
        except Exception as exc:  # a client gone: raised in the thread after the data
            self._error = exc
        finally:
            self._done = True
            self._arrived.set()

    async def _take(self) -> bytes | None:
        """All that has arrived (waiting for something), or None at the end."""
        if self._task is None:
            self._task = asyncio.create_task(self._read())
        while not self._parts and not self._done:
            self._arrived.clear()
            await self._arrived.wait()
        if self._parts:
            data = b"".join(self._parts)
            self._parts = []
            self._size = 0
            self._room.set()
            return data
        if self._error is not None:
            raise self._error
        return None

    def chunks(self) -> Iterator[bytes]:
        """The body as a sync iterator, for the import running in a worker thread."""
        while (data := anyio.from_thread.run(self._take)) is not None:
            if data:
                yield data

    async def close(self) -> None:
        """Stop reading (an import that failed leaves the rest of the body unread)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@router.post(
    "/projects/{pid}/users/import",
    response_model=ImportResult,
    openapi_extra=_IMPORT_BODY,
)
@requires(PROJECT_WRITE)
async def import_users(pid: ProjectId, request: Request, ctx: CtxDep) -> ImportResult:
    """Import users from a streamed JSON Lines or CSV body; bad lines are reported."""
    fmt = format_from_content_type(request.headers.get("content-type"))
    gzipped = check_content_encoding(request.headers.get("content-encoding"))
    job = await run_in_threadpool(UserImport.open, ctx.runtime, pid, fmt)
    body = _BodyReader(request)
    chunks = body.chunks()
    try:
        report = await run_in_threadpool(job.run, gunzip(chunks) if gzipped else chunks)
    except ClientDisconnect:
        raise InvalidInput(
            "The client disconnected before the body was complete; the lines written "
            f"before were kept ({job.report.written}).",
            field="body",
            field_code="body_incomplete",
            params={"written": job.report.written},
        ) from None
    finally:
        await body.close()
    result = ImportResult(
        imported=report.imported,
        updated=report.updated,
        rejected=report.rejected,
        errors=[ImportLineError(**e) for e in report.errors],
        errors_truncated=report.errors_truncated,
    )
    await run_in_threadpool(_audit_import, ctx, pid, result)
    return result


def _audit_import(ctx: Ctx, pid: int, result: ImportResult) -> None:
    # An import commits chunk by chunk as it streams, so its entry follows the
    # last chunk in a transaction of its own; it counts users, never values.
    with ctx.runtime.tx() as session:
        ctx.audit(
            session,
            project_id=pid,
            action="import",
            resource_type="users",
            resource_id="import",
            summary=f"Imported users: {result.imported} new, {result.updated} updated, "
            f"{result.rejected} lines rejected",
            params=result.model_dump(include={"imported", "updated", "rejected"}),
        )


@router.get("/projects/{pid}/users/{gid}", response_model=UserOut)
@requires(PROJECT_READ)
def get_user(pid: ProjectId, gid: GidPath, ctx: CtxDep) -> UserOut:
    """A user's attributes; sensitive ones show as ``***`` to all but admins."""
    with ctx.runtime.tx() as session:
        user = service.get_user(session, pid, gid)
        reveal = ctx.runtime.secrets if ctx.principal.is_admin else None
        return UserOut(gid=user.gid, attributes=sensitive.shown(user.attributes, reveal))


@router.post("/projects/{pid}/events", status_code=202, response_model=EventsAccepted)
@requires(PROJECT_WRITE)
def record_events(
    pid: ProjectId,
    ctx: CtxDep,
    body: Annotated[
        Any,
        Body(
            description='One event {"name", "gid", "time"?, "properties"?} or '
            '{"events": [...]} (at most 10,000).'
        ),
    ],
) -> EventsAccepted:
    events = service.parse_events(body)
    with ctx.runtime.tx() as session:
        return EventsAccepted(accepted=service.record_events(session, pid, events))


@router.get("/projects/{pid}/events", response_model=ListOf[EventOut])
@requires(PROJECT_READ)
def list_events(
    pid: ProjectId,
    ctx: CtxDep,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=100)] = None,
    gid: Annotated[int | None, Query(ge=1, le=MAX_GID)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Inclusive, with a zone.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Exclusive, with a zone.")] = None,
) -> ListOf[EventOut]:
    if name is not None and "\x00" in name:
        raise InvalidInput(
            "name must not contain NUL characters.", field="name", field_code="nul_characters"
        )
    with ctx.runtime.tx() as session:
        rows, total = service.list_events(
            session,
            pid,
            name=name,
            gid=gid,
            since=since,
            until=until,
            limit=page.limit,
            offset=page.offset,
        )
        return ListOf[EventOut](items=[EventOut.model_validate(r) for r in rows], total=total)


EventName = Annotated[str, Query(min_length=1, max_length=100, description="An event name.")]


@router.get("/projects/{pid}/event-names", response_model=ListOf[EventNameOut])
@requires(PROJECT_READ)
def list_event_names(
    pid: ProjectId,
    ctx: CtxDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> ListOf[EventNameOut]:
    """The names of the events the project has seen, alphabetical, with when each was
    last seen: what an event trigger can wait for."""
    with ctx.runtime.tx() as session:
        rows = service.list_event_names(session, pid, limit)
        items = [EventNameOut(name=name, last_seen_at=seen) for name, seen in rows]
        return ListOf[EventNameOut](items=items, total=len(items))


@router.get("/projects/{pid}/event-properties", response_model=ListOf[EventPropertyOut])
@requires(PROJECT_READ)
def list_event_properties(
    pid: ProjectId, event: EventName, ctx: CtxDep
) -> ListOf[EventPropertyOut]:
    """The properties the latest events of one name carry, with the type of each (what an
    event-property filter compares with)."""
    with ctx.runtime.tx() as session:
        items = service.list_event_properties(session, pid, event)
        return ListOf[EventPropertyOut](items=items, total=len(items))
