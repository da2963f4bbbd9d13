"""The sample touchpoint endpoint in Flask: ``channel.py`` does the work,
``touchgate.receiver`` verifies, parses, answers and keeps repeats idempotent.

    pip install touchgate flask
    RECEIVER_TOKEN=... RECEIVER_SECRET=whsec_... flask --app receiver_flask run --port 8001

Request URL ``http://<host>:8001/touch``; receipt URL ``/receipt`` (async mode);
options URL ``/options``.
"""

from __future__ import annotations

from channel import make_endpoint
from flask import Flask, Response, request

from touchgate.receiver import Reply

endpoint = make_endpoint()
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
