"""Async receipt mode (wire-protocol.md §3) against a real local endpoint."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from test_engine_support import (  # noqa: F401  (fixtures)
    SECRET,
    Endpoint,
    Reply,
    WorkerThread,
    add_users,
    all_done,
    attempts_of,
    endpoint_fixture,
    engine_database_fixture,
    enqueue,
    make_touchpoint,
    results,
    runtime_fixture,
    touch_events,
    wait_for,
    worker_fixture,
)
from touchgate.models import Order
from touchgate.models.base import utcnow
from touchgate.runtime import Runtime

ASYNC = {"mode": "async", "poll_seconds": 1, "timeout_minutes": 60}


def _state(runtime: Runtime, order_no: str) -> str:
    with runtime.tx() as s:
        return str(s.scalar(select(Order.state).where(Order.order_no == order_no)))


def test_async_receipts_settle_over_polls(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    def handler(kind: str, doc: dict[str, Any], n: int) -> Reply:
        if kind == "touch":  # accepted; one user known at once, one explicitly pending
            return Reply(
                body={
                    "code": 0,
                    "sendStatusList": [
                        {"gid": 1, "status": "TOU_SUCC", "errorMsg": ""},
                        {"gid": 2, "status": "PENDING"},
                    ],
                }
            )
        if n == 0:
            return Reply(body={"code": 1, "message": "not ready"})  # ask again next poll
        if n == 1:
            return Reply(status=503)  # a transport-level hiccup: ask again too
        if n == 2:
            return Reply(body={"code": 0, "sendStatusList": [{"gid": 2, "status": "TOU_SUCC"}]})
        return Reply(
            body={
                "code": 0,
                "orderNo": doc["orderNo"],
                "sendStatusList": [
                    {"gid": 2, "status": "TOU_FAIL", "errorMsg": "late and ignored"},
                    {"gid": 3, "status": "TOU_FAIL", "errorMsg": "phone off"},
                ],
            }
        )

    endpoint.handler = handler
    tp = make_touchpoint(
        runtime, endpoint.url, receipt={**ASYNC, "url": endpoint.receipt_url}, batch_size=5
    )
    add_users(runtime, tp.project_id, range(1, 4))
    [no] = enqueue(runtime, tp, [1, 2, 3])
    wait_for(lambda: _state(runtime, no) == "polling", what="order waiting for receipts")
    assert results(runtime, [no])[1] == ("TOU_SUCC", "", 1)
    assert results(runtime, [no])[2] == ("pending", None, 0)
    wait_for(lambda: all_done(runtime, [no]), timeout=30, what="receipts settled")
    assert results(runtime, [no]) == {
        1: ("TOU_SUCC", "", 1),
        2: ("TOU_SUCC", "", 1),
        3: ("TOU_FAIL", "phone off", 1),
    }
    polls = endpoint.of("receipt")
    assert len(polls) == 4
    assert [p.at - polls[0].at >= 0.9 * i for i, p in enumerate(polls)] == [True] * 4
    doc = polls[0].doc
    assert set(doc) == {"timeStamp", "orderNo", "sign"}
    assert doc["orderNo"] == no
    raw = f"tok&{doc['timeStamp']}&{no}".encode()
    assert doc["sign"] == hashlib.md5(raw).hexdigest().upper()
    Webhook(SECRET).verify(orjson.dumps(doc), polls[0].headers)
    kinds = [a["kind"] for a in attempts_of(runtime, no)]
    assert kinds == ["delivery", "receipt", "receipt", "receipt", "receipt"]
    events = touch_events(runtime, tp.project_id)
    assert [(e.gid, e.properties["status"]) for e in events] == [
        (1, "TOU_SUCC"),
        (2, "TOU_SUCC"),
        (3, "TOU_FAIL"),
    ]


def test_receipt_timeout_fails_pending_users(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(
        body={"code": 0, "sendStatusList": [{"gid": 1, "status": "TOU_SUCC"}]}
        if kind == "touch"
        else {"code": 0, "sendStatusList": []}
    )
    tp = make_touchpoint(
        runtime, endpoint.url, receipt={**ASYNC, "url": endpoint.receipt_url}, batch_size=5
    )
    add_users(runtime, tp.project_id, range(1, 3))
    [no] = enqueue(runtime, tp, [1, 2])
    # The poll's settlement writes the order's deadline back: wait until it is in.
    wait_for(
        lambda: any(a["kind"] == "receipt" for a in attempts_of(runtime, no)),
        what="a receipt poll settled",
    )
    assert _state(runtime, no) == "polling"
    # Bring the deadline (60 minutes away) to now instead of waiting for it.
    with runtime.tx() as s:
        s.execute(
            update(Order)
            .where(Order.order_no == no)
            .values(receipt_deadline=utcnow() - timedelta(seconds=1))
        )
    wait_for(lambda: all_done(runtime, [no]), what="timed out")
    assert results(runtime, [no]) == {
        1: ("TOU_SUCC", "", 1),
        2: ("TOU_FAIL", "receipt timeout", 1),
    }
    assert [e.properties["error_msg"] for e in touch_events(runtime, tp.project_id)] == [
        "",
        "receipt timeout",
    ]


def test_async_delivery_failure_rules_still_apply(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(body={"code": 7, "message": "quota"})
    tp = make_touchpoint(runtime, endpoint.url, receipt={**ASYNC, "url": endpoint.receipt_url})
    add_users(runtime, tp.project_id, range(1, 3))
    [no] = enqueue(runtime, tp, [1, 2])
    wait_for(lambda: all_done(runtime, [no]), what="failed")
    assert results(runtime, [no]) == {1: ("TOU_FAIL", "quota", 1), 2: ("TOU_FAIL", "quota", 1)}
    assert endpoint.of("receipt") == []


def test_everyone_listed_at_once_needs_no_poll(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    tp = make_touchpoint(runtime, endpoint.url, receipt={**ASYNC, "url": endpoint.receipt_url})
    add_users(runtime, tp.project_id, range(1, 3))
    [no] = enqueue(runtime, tp, [1, 2])
    wait_for(lambda: all_done(runtime, [no]), what="settled")
    assert {st for st, _, _ in results(runtime, [no]).values()} == {"TOU_SUCC"}
    assert endpoint.of("receipt") == []
