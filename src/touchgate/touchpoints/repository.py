"""SQL for the touchpoint registry. Deleted touchpoints are invisible here unless asked for."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.orm import Session

from ..models import Order, Space, Touchpoint, TouchpointHealth, TouchpointSpace


def _live(project_id: int) -> Select[Touchpoint]:
    return select(Touchpoint).where(
        Touchpoint.project_id == project_id, Touchpoint.deleted_at.is_(None)
    )


def get(
    session: Session, project_id: int, touchpoint_id: int, *, for_update: bool = False
) -> Touchpoint | None:
    """A live touchpoint of the project; ``for_update`` locks the row (PostgreSQL)
    so a state change and the checks that allow it are one step."""
    query = _live(project_id).where(Touchpoint.id == touchpoint_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def name_taken(
    session: Session, project_id: int, name: str, *, exclude_id: int | None = None
) -> bool:
    query = select(Touchpoint.id).where(
        Touchpoint.project_id == project_id,
        Touchpoint.name == name,
        Touchpoint.deleted_at.is_(None),
    )
    if exclude_id is not None:
        query = query.where(Touchpoint.id != exclude_id)
    return session.scalars(query.limit(1)).first() is not None


def list_touchpoints(
    session: Session,
    project_id: int,
    *,
    status: str | None,
    type_: str | None,
    q: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Touchpoint], int]:
    query = _live(project_id)
    if status is not None:
        query = query.where(Touchpoint.status == status)
    if type_ is not None:
        query = query.where(Touchpoint.type == type_)
    if q:
        query = query.where(
            Touchpoint.name.icontains(q, autoescape=True)
            | Touchpoint.description.icontains(q, autoescape=True)
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Touchpoint.id).limit(limit).offset(offset)).all()
    return rows, total


def usable_in_space(
    session: Session, project_id: int, space_id: int, limit: int, offset: int
) -> tuple[Sequence[Touchpoint], int]:
    """Enabled, live touchpoints authorised to the space."""
    query = (
        _live(project_id)
        .join(TouchpointSpace, TouchpointSpace.touchpoint_id == Touchpoint.id)
        .where(TouchpointSpace.space_id == space_id, Touchpoint.status == "enabled")
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Touchpoint.id).limit(limit).offset(offset)).all()
    return rows, total


def space_ids_by_touchpoint(
    session: Session, touchpoint_ids: Collection[int]
) -> dict[int, list[int]]:
    """The authorised spaces of many touchpoints in one query."""
    found: dict[int, list[int]] = {tid: [] for tid in touchpoint_ids}
    if not touchpoint_ids:
        return found
    rows = session.execute(
        select(TouchpointSpace.touchpoint_id, TouchpointSpace.space_id)
        .where(TouchpointSpace.touchpoint_id.in_(list(touchpoint_ids)))
        .order_by(TouchpointSpace.touchpoint_id, TouchpointSpace.space_id)
    )
    for touchpoint_id, space_id in rows:
        found[touchpoint_id].append(space_id)
    return found


def existing_space_ids(session: Session, project_id: int, space_ids: Iterable[int]) -> set[int]:
    wanted = list(set(space_ids))
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(Space.id).where(Space.project_id == project_id, Space.id.in_(wanted))
        )
    )


def replace_spaces(session: Session, touchpoint_id: int, space_ids: Collection[int]) -> None:
    current = set(
        session.scalars(
            select(TouchpointSpace.space_id).where(TouchpointSpace.touchpoint_id == touchpoint_id)
        )
    )
    wanted = set(space_ids)
    gone = current - wanted
    if gone:
        session.execute(
            delete(TouchpointSpace).where(
                TouchpointSpace.touchpoint_id == touchpoint_id,
                TouchpointSpace.space_id.in_(list(gone)),
            )
        )
    new = wanted - current
    if new:
        session.execute(
            insert(TouchpointSpace),
            [{"touchpoint_id": touchpoint_id, "space_id": sid} for sid in sorted(new)],
        )


def clear_spaces(session: Session, touchpoint_id: int) -> None:
    session.execute(delete(TouchpointSpace).where(TouchpointSpace.touchpoint_id == touchpoint_id))


def unsettled_order_count(session: Session, touchpoint_id: int) -> int:
    """Orders of the touchpoint still being delivered or waiting for receipts."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.touchpoint_id == touchpoint_id, Order.state != "done")
        )
        or 0
    )


def mark_deleted(session: Session, touchpoint: Touchpoint, at: datetime) -> None:
    touchpoint.deleted_at = at
    session.flush()


def health_by_touchpoint(
    session: Session, touchpoint_ids: Collection[int]
) -> dict[int, TouchpointHealth]:
    """The circuit-breaker rows of many touchpoints (absent: closed)."""
    if not touchpoint_ids:
        return {}
    rows = session.scalars(
        select(TouchpointHealth).where(TouchpointHealth.touchpoint_id.in_(list(touchpoint_ids)))
    )
    return {h.touchpoint_id: h for h in rows}


def close_health(session: Session, touchpoint_id: int, now: datetime) -> None:
    """Close a touchpoint's circuit breaker by hand (no row: already closed)."""
    session.execute(
        update(TouchpointHealth)
        .where(TouchpointHealth.touchpoint_id == touchpoint_id)
        .values(state="closed", since=now, reason=None, failures=0, probe_owner=None)
    )
