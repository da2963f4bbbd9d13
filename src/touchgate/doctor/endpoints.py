"""``POST /projects/{pid}/touchpoints/{tid}/doctor``: the conformance suite
against a registered touchpoint's endpoint, answered with the report."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from ..api.deps import CtxDep
from ..api.guard import api_router
from ..auth import PROJECT_ADMIN, requires
from . import service
from .schemas import DoctorIn, Report
from .suite import Target, run_suite

router = api_router(tags=["touchpoints"])


@router.post(
    "/projects/{pid}/touchpoints/{tid}/doctor",
    response_model=Report,
    summary="Check the touchpoint's endpoint with the doctor's conformance suite",
    description="Sends synthetic users (reserved gids, temData marker) to the endpoint: "
    "batches of 1, 100 and the batch size, a repeated order, wrongly signed and stale "
    "requests, a concurrency probe, receipt polls and options API calls. Takes as long "
    "as the endpoint needs (bounded by the touchpoint's timeout and the body's limits).",
)
@requires(PROJECT_ADMIN)
async def doctor_touchpoint(
    pid: int, tid: int, ctx: CtxDep, body: DoctorIn | None = None
) -> Report:
    runtime = ctx.runtime

    # Prepare in a short transaction; the suite runs with none open.
    def prepare() -> Target:
        with runtime.tx() as session:
            return service.prepare(session, runtime, pid, tid)

    target = await run_in_threadpool(prepare)
    return await run_suite(target, service.sender(runtime), service.limits(body or DoctorIn()))
