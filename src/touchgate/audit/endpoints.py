"""Reading the audit log: a project's, and the service-wide one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy.orm import Session

from ..api.deps import CtxDep, ListOf, Page, PageDep
from ..api.guard import api_router
from ..auth import PROJECT_ADMIN, SERVICE_ADMIN, requires
from ..projects import service as projects
from . import repository as repo
from .schemas import AuditEntryOut

router = api_router(tags=["team access"])

ResourceType = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=r"^[a-z_]+$",
        description="touchpoint, space, project, attribute, plugin, campaign, api_key, "
        "order, users, …",
    ),
]
ResourceId = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


@router.get("/projects/{pid}/audit", response_model=ListOf[AuditEntryOut])
@requires(PROJECT_ADMIN)
def project_audit(
    pid: int,
    ctx: CtxDep,
    page: PageDep,
    resource_type: ResourceType = None,
    resource_id: ResourceId = None,
) -> ListOf[AuditEntryOut]:
    """The project's writes, newest first."""
    with ctx.runtime.tx() as session:
        projects.get_project(session, pid)
        return _entries(session, pid, page, resource_type, resource_id)


@router.get("/audit", response_model=ListOf[AuditEntryOut])
@requires(SERVICE_ADMIN)
def service_audit(
    ctx: CtxDep,
    page: PageDep,
    resource_type: ResourceType = None,
    resource_id: ResourceId = None,
) -> ListOf[AuditEntryOut]:
    """Writes that belong to no project (keys of the whole service), newest first."""
    with ctx.runtime.tx() as session:
        return _entries(session, None, page, resource_type, resource_id)


def _entries(
    session: Session,
    project_id: int | None,
    page: Page,
    resource_type: str | None,
    resource_id: str | None,
) -> ListOf[AuditEntryOut]:
    rows, total = repo.list_entries(
        session,
        project_id,
        resource_type=resource_type,
        resource_id=resource_id,
        limit=page.limit,
        offset=page.offset,
    )
    return ListOf[AuditEntryOut](items=[AuditEntryOut.model_validate(r) for r in rows], total=total)
