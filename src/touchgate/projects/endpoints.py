"""Projects (independent business units) and their spaces (team areas)."""

from __future__ import annotations

from ..api.deps import CtxDep, ListOf, PageDep, audit_created
from ..api.guard import api_router
from ..audit.service import state
from ..auth import ANY_KEY, PROJECT_ADMIN, PROJECT_READ, SERVICE_ADMIN, requires
from . import repository as repo
from . import service
from .schemas import ProjectCreate, ProjectOut, ProjectUpdate, SpaceCreate, SpaceOut

router = api_router(tags=["projects"])


@router.post("/projects", status_code=201, response_model=ProjectOut)
@requires(SERVICE_ADMIN)
def create_project(body: ProjectCreate, ctx: CtxDep) -> ProjectOut:
    with ctx.runtime.tx() as session:
        out = ProjectOut.model_validate(service.create_project(session, body))
        audit_created(
            ctx, session, out.id, ("project", out.id), f"Created project {out.name!r}", out
        )
        return out


@router.get("/projects", response_model=ListOf[ProjectOut])
@requires(ANY_KEY)
def list_projects(ctx: CtxDep, page: PageDep) -> ListOf[ProjectOut]:
    """Every project, or only its own for a key bound to a project."""
    with ctx.runtime.tx() as session:
        rows, total = repo.list_projects(
            session, page.limit, page.offset, only_id=ctx.principal.project_id
        )
        return ListOf[ProjectOut](items=[ProjectOut.model_validate(r) for r in rows], total=total)


@router.get("/projects/{pid}", response_model=ProjectOut)
@requires(PROJECT_READ)
def get_project(pid: int, ctx: CtxDep) -> ProjectOut:
    with ctx.runtime.tx() as session:
        return ProjectOut.model_validate(service.get_project(session, pid))


@router.patch("/projects/{pid}", response_model=ProjectOut)
@requires(PROJECT_ADMIN)
def update_project(pid: int, body: ProjectUpdate, ctx: CtxDep) -> ProjectOut:
    with ctx.runtime.tx() as session:
        before = state(ProjectOut.model_validate(service.get_project(session, pid)))
        out = ProjectOut.model_validate(service.update_project(session, pid, body))
        ctx.audit(
            session,
            project_id=pid,
            action="update",
            resource_type="project",
            resource_id=pid,
            summary=f"Changed the settings of project {out.name!r}",
            before=before,
            after=state(out),
        )
        return out


@router.post("/projects/{pid}/spaces", status_code=201, response_model=SpaceOut)
@requires(PROJECT_ADMIN)
def create_space(pid: int, body: SpaceCreate, ctx: CtxDep) -> SpaceOut:
    with ctx.runtime.tx() as session:
        out = SpaceOut.model_validate(service.create_space(session, pid, body))
        audit_created(ctx, session, pid, ("space", out.id), f"Created space {out.name!r}", out)
        return out


@router.get("/projects/{pid}/spaces", response_model=ListOf[SpaceOut])
@requires(PROJECT_READ)
def list_spaces(pid: int, ctx: CtxDep, page: PageDep) -> ListOf[SpaceOut]:
    """The project's spaces; a key bound to some spaces sees only those."""
    with ctx.runtime.tx() as session:
        service.get_project(session, pid)
        only = None if ctx.principal.is_admin else ctx.principal.space_ids
        rows, total = repo.list_spaces(session, pid, page.limit, page.offset, only_ids=only)
        return ListOf[SpaceOut](items=[SpaceOut.model_validate(r) for r in rows], total=total)
