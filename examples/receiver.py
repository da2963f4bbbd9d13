#!/usr/bin/env python3
"""A sample Touchgate touchpoint endpoint — one file to copy and adapt.

It speaks the touchpoint wire protocol (Touchgate's ``docs/wire-protocol.md``):

    POST /touch     deliveries: {timeStamp, orderNo, sign?, dataList: [...]}
    POST /receipt   receipt polls (async mode): {timeStamp, orderNo, sign?}
    POST /options   enum options API: {projectId, paramDescription, paramName}
    GET  /stats     what it has received (orders, users, repeats)
    GET  /healthz   liveness

and shows what a production endpoint must do:

* verify the request — the MD5 ``sign`` with the touchpoint's auth token (when
  ``--token`` is given) and the Standard Webhooks signature with the signing
  secret (when ``--secret`` is given; several may be given during a rotation,
  and any one of the space-separated signatures in ``webhook-signature`` may
  match); requests older or newer than 5 minutes are rejected (replays);
* treat ``orderNo`` as the idempotency key — Touchgate resends the same order
  with the same ``orderNo`` when it did not get an answer, so a repeat gets the
  first answer again and is counted once;
* answer ``{"code": 0, "orderNo", "sendStatusList": [{gid, status, errorMsg}]}``
  with ``TOU_SUCC`` or ``TOU_FAIL`` per user (sync mode), or only ``code: 0``
  and report the users later through ``/receipt`` (``--mode async``).

It is built on ``touchgate.receiver`` (verification, parsing, answers,
idempotency — no web framework inside) and serves it with aiohttp; install both
with ``pip install touchgate`` (or copy ``touchgate/receiver.py`` beside it).

    python receiver.py --port 8001 --token T --secret whsec_...
    RECEIVER_TOKEN=T RECEIVER_SECRET=whsec_... python receiver.py
    python receiver.py --config touchgate.demo-receiver.json   # {"token", "secret", "port"}

``--fail-rate 0.2`` reports about a fifth of the users as TOU_FAIL (decided per
order and gid, so a repeat gets the same answer) to see failures in reports.
Each delivery is printed on one line, followed by one line per gid it carried
(so an integrator can count), and each rejected request on one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from touchgate.receiver import (
    Delivery,
    Endpoint,
    Option,
    OptionsQuery,
    Reply,
    Status,
    Verifier,
    not_reached,
    reached,
)

# What /options offers, per parameter key (paramName); "*" for any other key.
# A category (an option with children) is not selectable; its children are.
OPTIONS: dict[str, list[Option]] = {
    "*": [
        Option("JUMP_H5", "Open an H5 page"),
        Option(
            "JUMP_APP",
            "Open the app",
            (Option("JUMP_APP_HOME", "App home"), Option("JUMP_APP_COUPONS", "My coupons")),
        ),
    ],
}


def user_fails(order_no: str, gid: int, rate: float) -> bool:
    """Deterministic per (order, user): a repeat of an order fails the same users."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{order_no}:{gid}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def make_deliver(fail_rate: float) -> Callable[[Delivery], list[Status]]:
    def deliver(delivery: Delivery) -> list[Status]:
        """Do the work for each user — here: decide a status. Replace this with the
        real thing (send the SMS, issue the coupon…); skip users whose
        ``synthetic`` is true (touchgate doctor's), answering them all the same."""
        statuses = []
        for user in delivery.users:
            if user_fails(delivery.order_no, user.gid, fail_rate):
                statuses.append(not_reached(user.gid, "simulated failure"))
            else:
                statuses.append(reached(user.gid))
        return statuses

    return deliver


def offer_options(query: OptionsQuery) -> list[Option]:
    return OPTIONS.get(query.param_name, OPTIONS["*"])


# ---------------------------------------------------------------- routes


def _answer(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, content_type="application/json")


async def touch(request: web.Request) -> web.Response:
    endpoint: Endpoint = request.app["endpoint"]
    return _answer(endpoint.handle_delivery(request.headers, await request.read()))


async def receipt(request: web.Request) -> web.Response:
    endpoint: Endpoint = request.app["endpoint"]
    return _answer(endpoint.handle_receipt(request.headers, await request.read()))


async def options(request: web.Request) -> web.Response:
    endpoint: Endpoint = request.app["endpoint"]
    return _answer(endpoint.handle_options(request.headers, await request.read()))


async def stats(request: web.Request) -> web.Response:
    counts = request.app["endpoint"].counts
    return web.json_response(
        {
            "orders": counts.orders,
            "users": counts.users,
            "failed_users": counts.failed_users,
            "repeats": counts.repeats,
            "rejected": counts.rejected,
            "synthetic_users": counts.synthetic_users,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(endpoint: Endpoint) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app["endpoint"] = endpoint
    app.router.add_post("/touch", touch)
    app.router.add_post("/receipt", receipt)
    app.router.add_post("/options", options)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    return app


# ---------------------------------------------------------------- command line


@dataclass
class Setup:
    endpoint: Endpoint
    host: str
    port: int
    fail_rate: float
    quiet: bool


def parse_args(argv: list[str] | None = None) -> Setup:
    env = os.environ
    parser = argparse.ArgumentParser(description="A sample Touchgate touchpoint endpoint.")
    parser.add_argument("--host", default=env.get("RECEIVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=None, help="default 8001 (RECEIVER_PORT)")
    parser.add_argument(
        "--token", default=None, help="the touchpoint's auth token (RECEIVER_TOKEN)"
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=None,
        help="the touchpoint's signing secret whsec_...; repeat during a rotation "
        "(RECEIVER_SECRET, space-separated)",
    )
    parser.add_argument(
        "--config",
        default=env.get("RECEIVER_CONFIG"),
        help='a JSON file {"token", "secret", "port"} (kept out of the process list)',
    )
    parser.add_argument("--fail-rate", type=float, default=float(env.get("RECEIVER_FAIL_RATE", 0)))
    parser.add_argument(
        "--mode", choices=["sync", "async"], default=env.get("RECEIVER_MODE", "sync")
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    file: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            file = json.load(fh)
    token = args.token or env.get("RECEIVER_TOKEN") or file.get("token") or None
    secrets = args.secret or (env.get("RECEIVER_SECRET") or "").split() or []
    if not secrets and file.get("secret"):
        secrets = [file["secret"]]
    try:
        verifier = Verifier(token=token, secrets=tuple(secrets))
    except ValueError:
        parser.error("--secret must be whsec_ followed by base64")
    if not 0 <= args.fail_rate <= 1:
        parser.error("--fail-rate must be between 0 and 1")
    port = (
        args.port
        if args.port is not None
        else int(env.get("RECEIVER_PORT") or file.get("port") or 8001)
    )
    endpoint = Endpoint(
        verifier, make_deliver(args.fail_rate), mode=args.mode, options=offer_options
    )
    return Setup(endpoint, args.host, port, args.fail_rate, args.quiet)


def main(argv: list[str] | None = None) -> None:
    setup = parse_args(argv)
    endpoint = setup.endpoint
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger("touchgate.receiver")
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if setup.quiet else logging.INFO)
    logger.propagate = False
    verifier = endpoint.verifier
    checks = [
        "MD5 sign" if verifier.token else "no MD5 sign check (no --token)",
        "Standard Webhooks signature" if verifier.secrets else "no signature check (no --secret)",
    ]
    print(
        f"receiver listening on http://{setup.host}:{setup.port} (mode {endpoint.mode}; "
        f"{', '.join(checks)}; fail rate {setup.fail_rate:g})",
        flush=True,
    )
    web.run_app(make_app(endpoint), host=setup.host, port=setup.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
