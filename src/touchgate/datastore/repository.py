"""SQL for the data store. Bulk paths use Core inserts, never an ORM object per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..models import Event

EventRow = tuple[str, int, datetime, dict[str, Any]]  # name, gid, time, properties


def insert_events(session: Session, project_id: int, events: Iterable[EventRow]) -> int:
    """Insert events in one executemany; returns how many were written."""
    rows: Sequence[dict[str, Any]] = [
        {"project_id": project_id, "name": name, "gid": gid, "time": time, "properties": props}
        for name, gid, time, props in events
    ]
    if rows:
        session.execute(insert(Event), rows)
    return len(rows)
