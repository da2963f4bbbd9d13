"""A touchpoint endpoint in FastAPI, built on ``touchgate.receiver``.

    pip install touchgate fastapi uvicorn
    RECEIVER_TOKEN=... RECEIVER_SECRET=whsec_... uvicorn receiver_fastapi:app --port 8001

Register the touchpoint with the request URL ``http://<host>:8001/touch`` (async
receipt mode: receipt URL ``/receipt``; an enum parameter from an API: options URL
``/options``). The library verifies both signatures (with the 5-minute window),
answers a repeated ``orderNo`` with its first answer, and logs every gid.
Replace ``deliver`` with the real work.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from touchgate.receiver import (
    Delivery,
    Endpoint,
    Option,
    OptionsQuery,
    Reply,
    Status,
    reached,
)


def deliver(delivery: Delivery) -> list[Status]:
    """Send the SMS / issue the coupon for each user; one status per user.
    ``user.synthetic`` marks touchgate doctor's made-up users: answer them, skip the work."""
    return [reached(user.gid) for user in delivery.users]


def offer_options(query: OptionsQuery) -> list[Option]:
    return [Option("JUMP_H5", "Open an H5 page")]


# RECEIVER_TOKEN, RECEIVER_SECRET (space-separated during a rotation), RECEIVER_MODE.
endpoint = Endpoint.from_environment(os.environ, deliver, options=offer_options)
app = FastAPI(title="Touchpoint endpoint")


def _answer(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


# The raw body is read as bytes: the signature covers exactly those bytes. The
# endpoint's work runs in the thread pool, so a slow ``deliver`` does not block
# the server's loop.
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
