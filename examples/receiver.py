#!/usr/bin/env python3
"""A sample Touchgate touchpoint endpoint — one file to copy and adapt.

It speaks the touchpoint wire protocol (see Touchgate's ``wire-protocol.md``):

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

Only the Python standard library and aiohttp are needed (``pip install aiohttp``).

    python receiver.py --port 8001 --token T --secret whsec_...
    RECEIVER_TOKEN=T RECEIVER_SECRET=whsec_... python receiver.py
    python receiver.py --config touchgate.demo-receiver.json   # {"token", "secret", "port"}

``--fail-rate 0.2`` reports about a fifth of the users as TOU_FAIL (decided per
order and gid, so a repeat gets the same answer) to see failures in reports.
Each delivery is printed on one line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOLERANCE_SECONDS = 5 * 60
REMEMBERED_ORDERS = 100_000  # answers kept for repeats (oldest forgotten first)

# What /options offers, per parameter key (paramName); "*" for any other key.
# A category (an entry with childEnumArgs) is not selectable; its children are.
OPTIONS: dict[str, list[dict[str, Any]]] = {
    "*": [
        {"code": "JUMP_H5", "description": "Open an H5 page"},
        {
            "code": "JUMP_APP",
            "description": "Open the app",
            "childEnumArgs": [
                {"code": "JUMP_APP_HOME", "description": "App home"},
                {"code": "JUMP_APP_COUPONS", "description": "My coupons"},
            ],
        },
    ],
}


class Rejected(Exception):
    """The request is not from Touchgate (or is malformed): answered with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Config:
    token: str | None = None
    secrets: list[str] = field(default_factory=list)
    fail_rate: float = 0.0
    mode: str = "sync"  # or "async": statuses come later through /receipt
    quiet: bool = False


@dataclass
class State:
    config: Config
    # orderNo → (answer to the delivery, statuses for /receipt)
    answers: OrderedDict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = field(
        default_factory=OrderedDict
    )
    orders: int = 0
    users: int = 0
    repeats: int = 0
    rejected: int = 0
    failed_users: int = 0


# ---------------------------------------------------------------- verification


def legacy_sign(token: str, timestamp_ms: int, order_no: str) -> str:
    """``upper(hex(MD5(token + "&" + timeStamp + "&" + orderNo)))``."""
    raw = f"{token}&{timestamp_ms}&{order_no}".encode()
    return hashlib.md5(raw).hexdigest().upper()


def verify_standard_webhooks(secrets: list[str], headers: Any, body: bytes) -> None:
    """Check ``webhook-id``/``webhook-timestamp``/``webhook-signature``.

    The signed content is ``{id}.{timestamp}.{raw body}``; verify against the raw
    bytes received, never a re-serialised body.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise Rejected(401, "missing Standard Webhooks headers")
    try:
        when = int(stamp)
    except ValueError:
        raise Rejected(401, "webhook-timestamp is not a number") from None
    if abs(time.time() - when) > TOLERANCE_SECONDS:
        raise Rejected(401, "webhook-timestamp is more than 5 minutes away from now")
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected.append(base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()))
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        for mac in expected:
            if hmac.compare_digest(mac, value.encode()):
                return
    raise Rejected(401, "no valid webhook-signature")


def verify_legacy(token: str, doc: dict[str, Any]) -> None:
    """Check the MD5 ``sign`` and that ``timeStamp`` is recent."""
    stamp = doc.get("timeStamp")
    order_no = doc.get("orderNo")
    sign = doc.get("sign")
    if not isinstance(stamp, int) or not isinstance(order_no, str) or not isinstance(sign, str):
        raise Rejected(401, "timeStamp, orderNo and sign are required")
    if abs(time.time() * 1000 - stamp) > TOLERANCE_SECONDS * 1000:
        raise Rejected(401, "timeStamp is more than 5 minutes away from now")
    if not hmac.compare_digest(legacy_sign(token, stamp, order_no), sign.upper()):
        raise Rejected(401, "sign does not match")


async def read_verified(request: web.Request, config: Config, *, signed_body: bool) -> Any:
    """The JSON body of a request that passed every configured check."""
    body = await request.read()
    if config.secrets:
        verify_standard_webhooks(config.secrets, request.headers, body)
    try:
        doc = json.loads(body)
    except ValueError:
        raise Rejected(400, "body is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected(400, "body is not a JSON object")
    if signed_body and config.token:
        verify_legacy(config.token, doc)
    return doc


# ---------------------------------------------------------------- the answers


def user_fails(order_no: str, gid: int, rate: float) -> bool:
    """Deterministic per (order, user): a repeat of an order fails the same users."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{order_no}:{gid}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def deliver(state: State, order_no: str, data_list: list[Any]) -> list[dict[str, Any]]:
    """Do the work for each user — here: decide a status. Replace this with the
    real thing (send the SMS, issue the coupon…)."""
    statuses = []
    for entry in data_list:
        gid = entry["gid"]
        if user_fails(order_no, gid, state.config.fail_rate):
            statuses.append({"gid": gid, "status": "TOU_FAIL", "errorMsg": "simulated failure"})
        else:
            statuses.append({"gid": gid, "status": "TOU_SUCC", "errorMsg": ""})
    return statuses


def log_line(state: State, text: str) -> None:
    if not state.config.quiet:
        print(time.strftime("%Y-%m-%dT%H:%M:%S"), text, flush=True)


def error_answer(exc: Rejected) -> web.Response:
    return web.json_response({"code": exc.status, "message": exc.message}, status=exc.status)


# ---------------------------------------------------------------- routes


async def touch(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    try:
        doc = await read_verified(request, state.config, signed_body=True)
        order_no = doc.get("orderNo")
        data_list = doc.get("dataList")
        if not isinstance(order_no, str) or not order_no:
            raise Rejected(400, "orderNo is required")
        if not isinstance(data_list, list) or not all(
            isinstance(e, dict) and isinstance(e.get("gid"), int) for e in data_list
        ):
            raise Rejected(400, "dataList must be a list of objects with an integer gid")
    except Rejected as exc:
        state.rejected += 1
        log_line(state, f"rejected {request.path}: {exc.message}")
        return error_answer(exc)

    known = state.answers.get(order_no)
    if known is not None:  # a retry of an order already handled: same answer, counted once
        state.repeats += 1
        log_line(state, f"order {order_no} repeated ({len(data_list)} users), same answer")
        return web.json_response(known[0])

    statuses = deliver(state, order_no, data_list)
    if state.config.mode == "async":
        answer = {"code": 0, "message": "", "orderNo": order_no, "sendStatusList": []}
    else:
        answer = {"code": 0, "message": "", "orderNo": order_no, "sendStatusList": statuses}
    state.answers[order_no] = (answer, statuses)
    while len(state.answers) > REMEMBERED_ORDERS:
        state.answers.popitem(last=False)
    failed = sum(1 for s in statuses if s["status"] == "TOU_FAIL")
    state.orders += 1
    state.users += len(data_list)
    state.failed_users += failed
    first = data_list[0] if data_list else {}
    log_line(
        state,
        f"order {order_no}: {len(data_list)} users, {len(data_list) - failed} TOU_SUCC, "
        f"{failed} TOU_FAIL; first gid {first.get('gid')} temData "
        f"{json.dumps(first.get('temData'), ensure_ascii=False)} dynamicData "
        f"{json.dumps(first.get('dynamicData'), ensure_ascii=False)}",
    )
    return web.json_response(answer)


async def receipt(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    try:
        doc = await read_verified(request, state.config, signed_body=True)
    except Rejected as exc:
        state.rejected += 1
        return error_answer(exc)
    order_no = doc.get("orderNo")
    known = state.answers.get(order_no) if isinstance(order_no, str) else None
    if known is None:
        return web.json_response({"code": 404, "message": "unknown orderNo"})
    log_line(state, f"receipt for order {order_no}: {len(known[1])} statuses")
    return web.json_response(
        {"code": 0, "message": "", "orderNo": order_no, "sendStatusList": known[1]}
    )


async def options(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    try:
        doc = await read_verified(request, state.config, signed_body=False)
    except Rejected as exc:
        state.rejected += 1
        return error_answer(exc)
    key = doc.get("paramName")
    offered = OPTIONS.get(key if isinstance(key, str) else "*", OPTIONS["*"])
    log_line(state, f"options for {key!r}: {len(offered)} entries")
    return web.json_response({"code": 0, "enumArgs": offered})


async def stats(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    return web.json_response(
        {
            "orders": state.orders,
            "users": state.users,
            "failed_users": state.failed_users,
            "repeats": state.repeats,
            "rejected": state.rejected,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app["state"] = State(config)
    app.router.add_post("/touch", touch)
    app.router.add_post("/receipt", receipt)
    app.router.add_post("/options", options)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    return app


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> tuple[Config, str, int]:
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
    for secret in secrets:
        try:
            base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            parser.error(f"--secret {secret[:10]}… is not whsec_ followed by base64")
    if not 0 <= args.fail_rate <= 1:
        parser.error("--fail-rate must be between 0 and 1")
    port = (
        args.port
        if args.port is not None
        else int(env.get("RECEIVER_PORT") or file.get("port") or 8001)
    )
    config = Config(
        token=token, secrets=secrets, fail_rate=args.fail_rate, mode=args.mode, quiet=args.quiet
    )
    return config, args.host, port


def main(argv: list[str] | None = None) -> None:
    config, host, port = parse_args(argv)
    checks = []
    checks.append("MD5 sign" if config.token else "no MD5 sign check (no --token)")
    checks.append(
        "Standard Webhooks signature" if config.secrets else "no signature check (no --secret)"
    )
    print(
        f"receiver listening on http://{host}:{port} (mode {config.mode}; "
        f"{', '.join(checks)}; fail rate {config.fail_rate:g})",
        flush=True,
    )
    web.run_app(make_app(config), host=host, port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
