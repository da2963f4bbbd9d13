"""Data store rules: the attribute catalogue, users and events.

Services take a session and never commit. Bulk user imports live in
``importer.py``, which owns one transaction per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from ..errors import Conflict, FieldErrors, NotFound, field_detail, pydantic_details
from ..models import Attribute, Event, User
from ..models.base import utcnow
from ..projects.service import get_project
from . import repository as repo
from .schemas import AttributeCreate, EventIn, EventPropertyOut, PropertyType

MAX_EVENTS_PER_REQUEST = 10_000
# How many of an event's latest occurrences are read to tell which properties it carries.
PROPERTY_SAMPLE = 500


def create_attribute(session: Session, project_id: int, data: AttributeCreate) -> Attribute:
    get_project(session, project_id)
    if repo.attributes_by_key(session, project_id, [data.key]):
        raise Conflict(
            f"The attribute {data.key!r} already exists in this project.",
            code="attribute_exists",
            params={"key": data.key},
            details=[field_detail("key", "already in the project's catalogue", "attribute_exists")],
        )
    attribute = Attribute(
        project_id=project_id,
        key=data.key,
        name=data.name or data.key,
        type=data.type,
        kind=data.kind,
        sensitive=data.sensitive,
    )
    session.add(attribute)
    session.flush()
    return attribute


def list_attributes(session: Session, project_id: int) -> Sequence[Attribute]:
    get_project(session, project_id)
    return repo.list_attributes(session, project_id)


def import_catalogue(session: Session, project_id: int) -> dict[str, str]:
    """``{key: type}`` an import validates against; 404 for an unknown project."""
    get_project(session, project_id)
    return repo.attribute_types(session, project_id)


def get_user(session: Session, project_id: int, gid: int) -> User:
    get_project(session, project_id)
    user = repo.get_user(session, project_id, gid)
    if user is None:
        raise NotFound(f"User {gid} does not exist in project {project_id}.")
    return user


def parse_events(body: Any) -> list[EventIn]:
    """One event ``{name, gid, time?, properties?}`` or ``{"events": [...]}``.

    Every event is checked; the error names each bad field like ``events[3].gid``.
    """
    errors = FieldErrors()
    if isinstance(body, dict) and "events" in body:
        for extra in sorted(k for k in body if k != "events"):
            errors.add(extra, "not allowed beside 'events'", code="only_events")
        items = body["events"]
        if not isinstance(items, list):
            errors.add("events", "must be a list of events", code="not_list")
            items = []
        elif len(items) > MAX_EVENTS_PER_REQUEST:
            errors.add(
                "events",
                f"at most {MAX_EVENTS_PER_REQUEST} events per request",
                code="too_many_items",
                max=MAX_EVENTS_PER_REQUEST,
            )
            items = []
        prefixes = [f"events[{i}]" for i in range(len(items))]
    else:
        items = [body]
        prefixes = [""]
    events: list[EventIn] = []
    for prefix, item in zip(prefixes, items, strict=True):
        try:
            events.append(EventIn.model_validate(item))
        except ValidationError as exc:
            errors.extend(pydantic_details(exc.errors(), prefix))
    errors.raise_if_any("Some events are invalid.")
    return events


def record_events(session: Session, project_id: int, events: Sequence[EventIn]) -> int:
    get_project(session, project_id)
    now = utcnow()
    return repo.insert_events(
        session,
        project_id,
        ((e.name, e.gid, e.time or now, e.properties) for e in events),
    )


def list_events(
    session: Session,
    project_id: int,
    *,
    name: str | None,
    gid: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Event], int]:
    get_project(session, project_id)
    return repo.list_events(
        session,
        project_id,
        name=name,
        gid=gid,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


def list_event_names(session: Session, project_id: int, limit: int) -> list[tuple[str, datetime]]:
    """The names of the events the project has seen (what a campaign trigger may wait for)."""
    get_project(session, project_id)
    return repo.event_names(session, project_id, limit)


def _property_type(value: Any) -> PropertyType | None:
    """The filter type of a property value; None for values a filter cannot compare."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def list_event_properties(session: Session, project_id: int, name: str) -> list[EventPropertyOut]:
    """The properties recent events of ``name`` carry, each with the type of its latest
    value, alphabetical (what an event-property filter can compare)."""
    get_project(session, project_id)
    found: dict[str, PropertyType] = {}
    for properties in repo.recent_event_properties(session, project_id, name, PROPERTY_SAMPLE):
        for key, value in properties.items():
            kind = _property_type(value)
            if kind is not None and key not in found:
                found[key] = kind
    return [EventPropertyOut(key=key, type=found[key]) for key in sorted(found)]
