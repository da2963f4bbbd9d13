"""The test-send route ``POST /projects/{pid}/touchpoints/{tid}/test``."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from ..api.deps import CtxDep
from ..api.guard import api_router
from ..auth import PROJECT_ADMIN, requires
from . import testsend
from .testsend import Prepared, TestSendIn, TestSendOut

router = api_router(tags=["touchpoints"])


@router.post(
    "/projects/{pid}/touchpoints/{tid}/test",
    response_model=TestSendOut,
    summary="Send one real request to the touchpoint now and diagnose the answer",
)
@requires(PROJECT_ADMIN)
async def test_touchpoint(pid: int, tid: int, body: TestSendIn, ctx: CtxDep) -> TestSendOut:
    runtime = ctx.runtime

    # The database work runs in the thread pool, each part in its own short
    # transaction: nothing holds a transaction while the endpoint is waited on.
    def prepare() -> Prepared:
        with runtime.tx() as session:
            return testsend.prepare(session, runtime, pid, tid, body)

    prepared = await run_in_threadpool(prepare)
    result = await testsend.send(runtime, prepared, body)

    def record() -> None:
        with runtime.tx() as session:
            testsend.record(session, pid, tid, result.ok)
            ctx.audit(
                session,
                project_id=pid,
                action="test",
                resource_type="touchpoint",
                resource_id=tid,
                summary=f"Test send to {len(body.users)} user(s): "
                f"{'ok' if result.ok else 'failed'} (order {result.order_no})",
                params={
                    "count": len(body.users),
                    "outcome": "ok" if result.ok else "failed",
                    "order_no": result.order_no,
                },
            )

    await run_in_threadpool(record)
    return result
