"""SQL for plugin packages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Plugin, Touchpoint


def get_plugin(session: Session, plugin_id: int) -> Plugin | None:
    return session.get(Plugin, plugin_id)


def plugin_by_version(session: Session, project_id: int, name: str, version: str) -> Plugin | None:
    return session.scalars(
        select(Plugin).where(
            Plugin.project_id == project_id, Plugin.name == name, Plugin.version == version
        )
    ).first()


def list_plugins(
    session: Session, project_id: int, limit: int, offset: int
) -> tuple[Sequence[Plugin], int]:
    query = select(Plugin).where(Plugin.project_id == project_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Plugin.name, Plugin.id).limit(limit).offset(offset)).all()
    return rows, total


def touchpoints_using(session: Session, plugin_id: int) -> list[tuple[int, str]]:
    """Live (not deleted) touchpoints whose transport points at this plugin version."""
    query = select(Touchpoint.id, Touchpoint.name).where(
        Touchpoint.plugin_id == plugin_id, Touchpoint.deleted_at.is_(None)
    )
    return [(row[0], row[1]) for row in session.execute(query.order_by(Touchpoint.id))]
