"""The web console: a single-page app served at ``/`` that calls the REST API.

Everything it shows comes from ``/api/v1`` with the caller's own key (kept in
the browser's session or local storage), so the console has no privileges the
API does not give the key. The files under ``static/`` are plain HTML, CSS and
ES modules: no build step and no third-party code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PREFIX = "/console"

# The console only talks to its own origin; no inline scripts, no frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate every time (ETag makes it cheap) so an upgrade never mixes old and new modules.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """Static files with the console's security and caching headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console at ``/`` and its files under ``/console/``."""
    app.mount(ASSETS_PREFIX, ConsoleFiles(directory=STATIC_DIR), name="console")

    @app.get("/", include_in_schema=False)
    def console_index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS
        )
