"""The size limit of JSON request bodies.

JSON bodies are parsed whole, so each has a limit (``MAX_JSON_BODY_BYTES``):
a declared ``Content-Length`` over it is refused at once, and a chunked body
is counted as it arrives and refused when it passes the limit, before it is
all in memory. Streamed bodies (user imports in JSON Lines or CSV, multipart
plugin uploads) are not JSON and keep the limits of their own routes.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import JSONResponse

# The largest legitimate JSON body is a campaign's gid list or a batch of
# 10,000 events, well under this.
MAX_JSON_BODY_BYTES = 8 * 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a route reads its body. An HTTPException,
    because FastAPI turns any other error during body reading into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_message(limit))
        self.limit = limit


def _message(limit: int) -> str:
    return f"The JSON body is larger than {limit} bytes; send less at once."


def _error_body(limit: int) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": "body_too_large",
                "message": _message(limit),
                "params": {"max_bytes": limit},
                "details": None,
            }
        }
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class JSONBodyLimit:
    """ASGI middleware enforcing ``limit`` on JSON request bodies."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not _is_json(headers.get("content-type", "")):
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            response = JSONResponse(orjson.loads(_error_body(self.limit)), status_code=413)
            await response(scope, receive, send)
            return
        received = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def install_body_limit(app: FastAPI, limit: int = MAX_JSON_BODY_BYTES) -> None:
    """Add the middleware and the handler that renders its error like every other."""

    async def too_large(_: Request, exc: Exception) -> JSONResponse:
        size = exc.limit if isinstance(exc, BodyTooLarge) else limit
        return JSONResponse(orjson.loads(_error_body(size)), status_code=413)

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(JSONBodyLimit, limit=limit)
