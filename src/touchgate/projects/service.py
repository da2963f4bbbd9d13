"""Project and space rules. Services take a session and never commit."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound, field_detail
from ..models import Project, Space
from . import repository as repo
from .schemas import ProjectCreate, ProjectUpdate, SpaceCreate

# Ids are 32-bit integers in both databases; a larger one can only be unknown
# (and PostgreSQL would refuse to compare it with the column).
MAX_ID = 2**31 - 1


def valid_id(value: int) -> bool:
    return 0 < value <= MAX_ID


def get_project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id) if valid_id(project_id) else None
    if project is None:
        raise NotFound(f"Project {project_id} does not exist.")
    return project


def create_project(session: Session, data: ProjectCreate) -> Project:
    if repo.project_by_name(session, data.name) is not None:
        raise Conflict(
            f"A project named {data.name!r} already exists.",
            code="name_taken",
            params={"name": data.name},
            details=[field_detail("name", "already used by another project", "name_taken")],
        )
    project = Project(
        name=data.name, timezone=data.timezone, approval_required=data.approval_required
    )
    session.add(project)
    session.flush()
    return project


def update_project(session: Session, project_id: int, data: ProjectUpdate) -> Project:
    project = get_project(session, project_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes and changes["name"] != project.name:
        other = repo.project_by_name(session, changes["name"])
        if other is not None:
            raise Conflict(
                f"A project named {changes['name']!r} already exists.",
                code="name_taken",
                params={"name": changes["name"]},
                details=[field_detail("name", "already used by another project", "name_taken")],
            )
    for key, value in changes.items():
        setattr(project, key, value)
    session.flush()
    return project


def get_space(session: Session, project_id: int, space_id: int) -> Space:
    get_project(session, project_id)
    space = repo.get_space(session, project_id, space_id) if valid_id(space_id) else None
    if space is None:
        raise NotFound(f"Space {space_id} does not exist in project {project_id}.")
    return space


def create_space(session: Session, project_id: int, data: SpaceCreate) -> Space:
    get_project(session, project_id)
    if repo.space_by_name(session, project_id, data.name) is not None:
        raise Conflict(
            f"A space named {data.name!r} already exists in this project.",
            code="name_taken",
            params={"name": data.name},
            details=[field_detail("name", "already used by another space", "name_taken")],
        )
    space = Space(project_id=project_id, name=data.name)
    session.add(space)
    session.flush()
    return space
