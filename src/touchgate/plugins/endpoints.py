"""REST routes for plugin packages, and the lifespan hooks that start the plugin host."""

from __future__ import annotations

import shutil
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..api.deps import CtxDep, ListOf, PageDep, audit_created
from ..api.guard import api_router
from ..audit.service import state
from ..auth import PROJECT_ADMIN, PROJECT_READ, requires
from ..errors import InvalidInput, field_detail
from ..projects import service as projects
from . import repository as repo
from . import service
from .package import MAX_PACKAGE_BYTES, InvalidPlugin, stage_package, too_large_problem
from .schemas import PluginOut

router = api_router(tags=["plugins"])

# Bodies far beyond the package limit are refused before they are read at all.
MAX_BODY_BYTES = 4 * MAX_PACKAGE_BYTES

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The plugin package (.zip, at most 10 MiB).",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/projects/{pid}/plugins",
    status_code=201,
    response_model=PluginOut,
    openapi_extra=UPLOAD_BODY,
    responses={400: {"description": "invalid_plugin: every problem in details"}},
)
@requires(PROJECT_ADMIN)
async def upload_plugin(pid: int, request: Request, ctx: CtxDep) -> PluginOut:
    runtime = ctx.runtime
    from starlette.concurrency import run_in_threadpool

    def _check_project() -> None:
        with runtime.tx() as session:
            projects.get_project(session, pid)

    await run_in_threadpool(_check_project)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise InvalidPlugin(
            "The plugin package is larger than 10 MiB.", details=[too_large_problem(length)]
        )
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidInput(
            "Upload the package as multipart/form-data with a field named 'file'.",
            field="file",
            field_code="multipart_required",
        )
    form = await _read_form(request)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "The form needs a file field named 'file'.", field="file", field_code="file_missing"
            )
        fileobj = upload.file

        def _store() -> PluginOut:
            staged = stage_package(fileobj, runtime.settings.plugin_path)
            try:
                with runtime.tx() as session:
                    plugin = service.create_plugin(session, runtime.settings, pid, staged)
                    out = PluginOut.model_validate(plugin)
                    summary = f"Uploaded plugin {out.name} {out.version}"
                    audit_created(ctx, session, pid, ("plugin", out.id), summary, out)
                    return out
            finally:
                staged.discard()

        return await run_in_threadpool(_store)
    finally:
        await form.close()


@router.get("/projects/{pid}/plugins", response_model=ListOf[PluginOut])
@requires(PROJECT_READ)
def list_plugins(pid: int, ctx: CtxDep, page: PageDep) -> ListOf[PluginOut]:
    with ctx.runtime.tx() as session:
        projects.get_project(session, pid)
        rows, total = repo.list_plugins(session, pid, page.limit, page.offset)
        return ListOf[PluginOut](items=[PluginOut.model_validate(r) for r in rows], total=total)


@router.get("/projects/{pid}/plugins/{plugin_id}", response_model=PluginOut)
@requires(PROJECT_READ)
def get_plugin(pid: int, plugin_id: int, ctx: CtxDep) -> PluginOut:
    with ctx.runtime.tx() as session:
        return PluginOut.model_validate(service.get_plugin(session, pid, plugin_id))


@router.delete("/projects/{pid}/plugins/{plugin_id}", status_code=204)
@requires(PROJECT_ADMIN)
def delete_plugin(pid: int, plugin_id: int, ctx: CtxDep) -> Response:
    with ctx.runtime.tx() as session:
        before = PluginOut.model_validate(service.get_plugin(session, pid, plugin_id))
        directory = service.delete_plugin(session, ctx.runtime.settings, pid, plugin_id)
        ctx.audit(
            session,
            project_id=pid,
            action="delete",
            resource_type="plugin",
            resource_id=plugin_id,
            summary=f"Deleted plugin {before.name} {before.version}",
            before=state(before),
        )
    if ctx.runtime.plugin_host is not None:
        ctx.runtime.plugin_host.forget_plugin(plugin_id)
    shutil.rmtree(directory, ignore_errors=True)
    return Response(status_code=204)


class _BodyTooLarge(Exception):
    pass


async def _read_form(request: Request) -> FormData:
    """Parse the multipart body, refusing it as soon as it grows past
    MAX_BODY_BYTES (a chunked upload has no Content-Length to check first)."""

    async def limited() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_BODY_BYTES:
                raise _BodyTooLarge
            yield chunk

    try:
        parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=10)
        return await parser.parse()
    except _BodyTooLarge:
        raise InvalidPlugin(
            "The plugin package is larger than 10 MiB.",
            details=[
                field_detail(
                    "file",
                    f"the upload exceeds {MAX_BODY_BYTES} bytes; a package may "
                    f"have at most {MAX_PACKAGE_BYTES} (10 MiB)",
                    "upload_too_large",
                    {"max": MAX_PACKAGE_BYTES},
                )
            ],
        ) from None
    except MultiPartException as exc:
        raise InvalidInput(
            f"The multipart body cannot be read: {exc.message}",
            field="file",
            field_code="multipart_unreadable",
            params={"error": exc.message},
        ) from None
