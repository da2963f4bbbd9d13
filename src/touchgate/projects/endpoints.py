from __future__ import annotations

from fastapi import APIRouter

from ..api.deps import CtxDep, ListOf, PageDep
from . import repository as repo
from . import service
from .schemas import ProjectCreate, ProjectOut, ProjectUpdate, SpaceCreate, SpaceOut

router = APIRouter(tags=["projects"])


@router.post("/projects", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectCreate, ctx: CtxDep) -> ProjectOut:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        return ProjectOut.model_validate(service.create_project(session, body))


@router.get("/projects", response_model=ListOf[ProjectOut])
def list_projects(ctx: CtxDep, page: PageDep) -> ListOf[ProjectOut]:
    with ctx.runtime.tx() as session:
        rows, total = repo.list_projects(
            session, page.limit, page.offset, only_id=ctx.principal.project_id
        )
        return ListOf[ProjectOut](items=[ProjectOut.model_validate(r) for r in rows], total=total)


@router.get("/projects/{pid}", response_model=ProjectOut)
def get_project(pid: int, ctx: CtxDep) -> ProjectOut:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        return ProjectOut.model_validate(service.get_project(session, pid))


@router.patch("/projects/{pid}", response_model=ProjectOut)
def update_project(pid: int, body: ProjectUpdate, ctx: CtxDep) -> ProjectOut:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        return ProjectOut.model_validate(service.update_project(session, pid, body))


@router.post("/projects/{pid}/spaces", status_code=201, response_model=SpaceOut)
def create_space(pid: int, body: SpaceCreate, ctx: CtxDep) -> SpaceOut:
    ctx.principal.require_admin()
    with ctx.runtime.tx() as session:
        return SpaceOut.model_validate(service.create_space(session, pid, body))


@router.get("/projects/{pid}/spaces", response_model=ListOf[SpaceOut])
def list_spaces(pid: int, ctx: CtxDep, page: PageDep) -> ListOf[SpaceOut]:
    ctx.principal.require_project(pid)
    with ctx.runtime.tx() as session:
        service.get_project(session, pid)
        rows, total = repo.list_spaces(session, pid, page.limit, page.offset)
        return ListOf[SpaceOut](items=[SpaceOut.model_validate(r) for r in rows], total=total)
