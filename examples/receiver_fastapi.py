"""The sample touchpoint endpoint in FastAPI: ``channel.py`` does the work,
``touchgate.receiver`` verifies, parses, answers and keeps repeats idempotent.

    pip install touchgate fastapi uvicorn
    RECEIVER_TOKEN=... RECEIVER_SECRET=whsec_... uvicorn receiver_fastapi:app --port 8001

Request URL ``http://<host>:8001/touch``; receipt URL ``/receipt`` (async mode);
options URL ``/options``.
"""

from __future__ import annotations

from channel import make_endpoint
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from touchgate.receiver import Reply

endpoint = make_endpoint()
app = FastAPI(title="Touchpoint endpoint")


def _answer(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


# The raw body as bytes: the signature covers exactly those bytes. The work runs
# in the thread pool, so a slow ``deliver`` does not block the server's loop.
@app.post("/touch")
async def touch(request: Request) -> Response:
    body = await request.body()
    return _answer(await run_in_threadpool(endpoint.handle_delivery, request.headers, body))


@app.post("/receipt")
async def receipt(request: Request) -> Response:
    return _answer(endpoint.handle_receipt(request.headers, await request.body()))


@app.post("/options")
async def options(request: Request) -> Response:
    return _answer(endpoint.handle_options(request.headers, await request.body()))
