"""A touchpoint endpoint in Flask, built on ``touchgate.receiver``.

    pip install touchgate flask
    RECEIVER_TOKEN=... RECEIVER_SECRET=whsec_... flask --app receiver_flask run --port 8001

Register the touchpoint with the request URL ``http://<host>:8001/touch`` (async
receipt mode: receipt URL ``/receipt``; an enum parameter from an API: options URL
``/options``). The library verifies both signatures (with the 5-minute window),
answers a repeated ``orderNo`` with its first answer, and logs every gid.
Replace ``deliver`` with the real work.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request

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
app = Flask(__name__)


def _answer(reply: Reply) -> Response:
    return Response(reply.body, status=reply.status, content_type=reply.content_type)


# ``request.get_data()`` is the raw body: the signature covers exactly those bytes.
@app.post("/touch")
def touch() -> Response:
    return _answer(endpoint.handle_delivery(request.headers, request.get_data()))


@app.post("/receipt")
def receipt() -> Response:
    return _answer(endpoint.handle_receipt(request.headers, request.get_data()))


@app.post("/options")
def options() -> Response:
    return _answer(endpoint.handle_options(request.headers, request.get_data()))
