from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Project, Space


def get_project(session: Session, project_id: int) -> Project | None:
    return session.get(Project, project_id)


def project_by_name(session: Session, name: str) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name)).first()


def list_projects(
    session: Session, limit: int, offset: int, only_id: int | None = None
) -> tuple[Sequence[Project], int]:
    query = select(Project)
    if only_id is not None:
        query = query.where(Project.id == only_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Project.id).limit(limit).offset(offset)).all()
    return rows, total


def get_space(session: Session, project_id: int, space_id: int) -> Space | None:
    space = session.get(Space, space_id)
    return space if space is not None and space.project_id == project_id else None


def space_by_name(session: Session, project_id: int, name: str) -> Space | None:
    return session.scalars(
        select(Space).where(Space.project_id == project_id, Space.name == name)
    ).first()


def list_spaces(
    session: Session,
    project_id: int,
    limit: int,
    offset: int,
    only_ids: frozenset[int] | None = None,
) -> tuple[Sequence[Space], int]:
    query = select(Space).where(Space.project_id == project_id)
    if only_ids is not None:
        query = query.where(Space.id.in_(sorted(only_ids)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Space.id).limit(limit).offset(offset)).all()
    return rows, total


def space_ids_of_project(session: Session, project_id: int) -> set[int]:
    return set(session.scalars(select(Space.id).where(Space.project_id == project_id)))
