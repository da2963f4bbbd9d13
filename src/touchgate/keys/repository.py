from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import ApiKey, Space


def add(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def get_active(session: Session, key_id: int) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    return key if key is not None and key.revoked_at is None else None


def list_active(
    session: Session, project_id: int | None, limit: int, offset: int
) -> tuple[Sequence[ApiKey], int]:
    """Keys not revoked; of one project when ``project_id`` is given."""
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if project_id is not None:
        query = query.where(ApiKey.project_id == project_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ApiKey.id).limit(limit).offset(offset)).all()
    return rows, total


def space_ids_in_project(session: Session, project_id: int, space_ids: Sequence[int]) -> set[int]:
    rows = session.scalars(
        select(Space.id).where(Space.project_id == project_id, Space.id.in_(list(space_ids)))
    )
    return set(rows)
