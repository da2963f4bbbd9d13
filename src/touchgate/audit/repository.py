from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import AuditEntry


def add(session: Session, entry: AuditEntry) -> None:
    session.add(entry)
    session.flush()


def list_entries(
    session: Session,
    project_id: int | None,
    *,
    resource_type: str | None,
    resource_id: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[AuditEntry], int]:
    query = select(AuditEntry).where(
        AuditEntry.project_id.is_(None)
        if project_id is None
        else AuditEntry.project_id == project_id
    )
    if resource_type is not None:
        query = query.where(AuditEntry.resource_type == resource_type)
    if resource_id is not None:
        query = query.where(AuditEntry.resource_id == resource_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
    return rows, total
