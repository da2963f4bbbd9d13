"""The delivery engine end to end: enqueue → worker → real endpoint → settlement,
events and listeners, on both databases."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
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
    payloads,
    results,
    runtime_fixture,
    touch_events,
    wait_for,
    worker_fixture,
)
from touchgate.delivery import hooks
from touchgate.delivery.enqueue import enqueue_delivery
from touchgate.models import Order, OrderResult, User
from touchgate.runtime import Runtime


def test_enqueue_groups_freezes_and_renders(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=2)
    add_users(runtime, tp.project_id, range(1, 4))
    nos = enqueue(runtime, tp, [1, 2, 3, 99], campaign_id=7, step_id="s1", run_id=5)
    assert len(nos) == 2
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in nos)
    with runtime.tx() as s:
        orders = s.scalars(select(Order).order_by(Order.id)).all()
        entries = [orjson.loads(p) for p in payloads(s)]
        assert [o.user_count for o in orders] == [2, 2]
        assert {(o.campaign_id, o.step_id, o.run_id, o.state) for o in orders} == {
            (7, "s1", 5, "sending")
        }
        # No row per user until it settles: the payload names the users.
        assert s.scalars(select(OrderResult.gid)).all() == []
    assert results(runtime, nos) == {g: ("pending", None, 0) for g in (1, 2, 3, 99)}
    assert entries[0][0] == {
        "gid": 1,
        "temData": {"title": "Hi U1", "amount": 100},
        "dynamicData": {"phone": "13000000001"},
    }
    # A gid that is not in the store is sent with null attributes.
    assert entries[1][1] == {
        "gid": 99,
        "temData": {"title": "Hi ", "amount": 100},
        "dynamicData": {"phone": None},
    }


def test_enqueue_drops_a_repeated_gid_within_a_batch(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=3)
    add_users(runtime, tp.project_id, range(1, 3))
    [no] = enqueue(runtime, tp, [1, 2, 1])
    assert results(runtime, [no]) == {1: ("pending", None, 0), 2: ("pending", None, 0)}
    with runtime.tx() as s:
        [payload] = payloads(s)
    assert payload is not None
    assert [e["gid"] for e in orjson.loads(payload)] == [1, 2]


def test_enqueue_users_directly_and_static_template(runtime: Runtime) -> None:
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=500)
    with runtime.tx() as s:
        res = enqueue_delivery(
            s,
            touchpoint=tp,
            users=((g, {"phone": str(g), "x": 1}) for g in range(1200)),
            tem_data={"title": "Same for all", "amount": 1.5},
        )
    assert res.user_count == 1200
    assert len(res.order_nos) == 3
    with runtime.tx() as s:
        sent_payloads = payloads(s)
    first = orjson.loads(sent_payloads[0])
    assert len(first) == 500
    assert first[3] == {
        "gid": 3,
        "temData": {"title": "Same for all", "amount": 1.5},
        "dynamicData": {"phone": "3"},
    }
    assert len(orjson.loads(sent_payloads[2])) == 200


ODD_VALUES: list[Any] = [
    '130 ü "quoted" 100%',
    1.5,
    -7,
    True,
    None,
    {"nested": [1, {"a": "b"}]},
    ["x", 2],
    "2026-12-01",
]


@pytest.mark.parametrize(
    "gids",
    [
        [*range(10, 30), 45],  # a range read, the users in 30–44 left out
        [12, 10, 11, 14, 13, 10, 15],  # dense, unordered, with a repeat
        [*range(40, 60)],  # a range, 50–59 not in the store (sent with nulls)
        [3, 40, 900, 7000, 99_999],  # sparse: looked up by gid
    ],
)
def test_enqueue_without_placeholders_renders_the_same_entries(
    runtime: Runtime, gids: list[int]
) -> None:
    """The entries the database helps render (values taken out as JSON text) equal
    the ones ``data_entry`` makes from the attributes, whatever the values are."""
    keys = ["phone", "odd", "missing", 'we"ird', "n.ested"]
    tp = make_touchpoint(runtime, "http://127.0.0.1:9/touch", batch_size=4, user_attributes=keys)
    stored = {
        g: {"phone": f"p{g}", "odd": ODD_VALUES[g % len(ODD_VALUES)], "n.ested": g}
        for g in [*range(1, 50), 900, 5000, 7000]
    }
    with runtime.tx() as s:
        s.execute(
            User.__table__.insert(),
            [{"project_id": tp.project_id, "gid": g, "attributes": a} for g, a in stored.items()],
        )
    tem = {"title": "Same for all 100%", "amount": 1.5, "list": [1, "ü"]}
    for plain_keys in (keys[:2], keys):  # the second has a key the fast path cannot name
        tp.user_attributes = plain_keys
        with runtime.tx() as s:
            s.execute(Order.__table__.delete())
            res = enqueue_delivery(s, touchpoint=tp, gids=iter(gids), tem_data=tem)
        with runtime.tx() as s:
            sent_payloads = payloads(s)
        sent = [e for p in sent_payloads for e in orjson.loads(p)]
        unique = list(dict.fromkeys(gids[:4])) + list(dict.fromkeys(gids[4:]))
        assert res.user_count == len(unique) == len(sent)
        assert sent == [
            {
                "gid": g,
                "temData": tem,
                "dynamicData": {k: stored.get(g, {}).get(k) for k in plain_keys},
            }
            for g in unique
        ]


def test_delivers_settles_reports_and_notifies(runtime: Runtime, endpoint: Endpoint) -> None:
    tp = make_touchpoint(runtime, endpoint.url, batch_size=3)
    add_users(runtime, tp.project_id, range(1, 8))
    calls: list[tuple[Any, list[Any], bool]] = []

    def listener(session: Session, info: hooks.OrderInfo, res: list[Any]) -> None:
        # Inside the settlement transaction: the results are visible to it.
        written = session.scalars(
            select(OrderResult.gid).where(OrderResult.order_id == info.order_id)
        ).all()
        calls.append((info, res, sorted(written) == sorted(g for g, *_ in res)))

    w = WorkerThread(runtime, followups=[listener])
    try:
        nos = enqueue(runtime, tp, list(range(1, 8)), campaign_id=4, step_id="s1")
        wait_for(lambda: all_done(runtime, nos), what="orders settled")
    finally:
        w.close()
    res = results(runtime, nos)
    assert res == {g: ("TOU_SUCC", "", 1) for g in range(1, 8)}
    events = touch_events(runtime, tp.project_id)
    assert [e.gid for e in events] == list(range(1, 8))
    assert events[0].properties == {
        "campaign_id": 4,
        "step_id": "s1",
        "touchpoint_id": tp.id,
        "order_no": events[0].properties["order_no"],
        "status": "TOU_SUCC",
        "error_msg": "",
        "attempts": 1,
    }
    assert events[0].properties["order_no"] in nos
    assert sorted(g for _, r, _ in calls for g, *_ in r) == list(range(1, 8))
    assert all(seen for _, _, seen in calls)
    assert {c[0].campaign_id for c in calls} == {4}
    # The request: orderNo, signatures (MD5 and Standard Webhooks), the frozen dataList.
    req = endpoint.of("touch")[0]
    doc = req.doc
    assert doc["orderNo"] in nos
    raw = f"tok&{doc['timeStamp']}&{doc['orderNo']}".encode()
    assert doc["sign"] == hashlib.md5(raw).hexdigest().upper()
    body = orjson.dumps(doc)
    Webhook(SECRET).verify(body, req.headers)
    assert req.headers["webhook-id"] == doc["orderNo"]
    log = attempts_of(runtime, nos[0])
    assert len(log) == 1
    assert log[0]["http_status"] == 200 and log[0]["kind"] == "delivery"
    assert log[0]["response_excerpt"].startswith('{"code":0')


def test_listener_failure_rolls_back_the_settlement(runtime: Runtime, endpoint: Endpoint) -> None:
    tp = make_touchpoint(runtime, endpoint.url, batch_size=5)
    add_users(runtime, tp.project_id, range(1, 4))
    nos = enqueue(runtime, tp, [1, 2, 3])
    broken = True

    def listener(session: Session, info: hooks.OrderInfo, res: list[Any]) -> None:
        if broken:
            raise RuntimeError("campaign bookkeeping failed")

    w = WorkerThread(runtime, lease_seconds=1, followups=[listener])
    try:
        wait_for(lambda: len(endpoint.of("touch")) >= 1, what="a delivery")
        # Nothing settled: results, events and the order stay as they were.
        with runtime.tx() as s:
            assert s.scalar(select(Order.state)) == "sending"
        assert results(runtime, nos) == {g: ("pending", None, 0) for g in (1, 2, 3)}
        assert touch_events(runtime, tp.project_id) == []
        broken = False
        # The lease expires, the same order (same orderNo) is sent again and settles.
        wait_for(lambda: all_done(runtime, nos), what="settled after the retry")
    finally:
        w.close()
    assert {s.doc["orderNo"] for s in endpoint.of("touch")} == set(nos)
    assert len(touch_events(runtime, tp.project_id)) == 3


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=404, body=b"not here"), "HTTP 404"),
        (Reply(status=302, body=b"", headers={"Location": "http://127.0.0.1:1/"}), "HTTP 302"),
        (Reply(body=b"<html>ok</html>"), "response is not JSON"),
        (Reply(body=[1, 2]), "response is not a JSON object"),
        (Reply(body={"code": 500, "message": "service error"}), "service error"),
        (Reply(body={"code": 3}), "code 3"),
    ],
    ids=["404", "302-not-followed", "not-json", "not-object", "code-nonzero", "code-no-msg"],
)
def test_batch_failures(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread, reply: Reply, reason: str
) -> None:
    endpoint.handler = lambda kind, doc, n: reply
    tp = make_touchpoint(runtime, endpoint.url)
    add_users(runtime, tp.project_id, range(1, 3))
    nos = enqueue(runtime, tp, [1, 2])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    res = results(runtime, nos)
    assert {st for st, _, _ in res.values()} == {"TOU_FAIL"}
    assert all(reason in (msg or "") for _, msg, _ in res.values()), res
    assert len(endpoint.of("touch")) == 1  # failed, not retried
    events = touch_events(runtime, tp.project_id)
    assert [e.properties["status"] for e in events] == ["TOU_FAIL", "TOU_FAIL"]


# Backslashes, tabs, quotes, newlines and non-ASCII survive into results and events.
ODD = 'bad \\ "user"\tdata\n数据'


def test_per_user_statuses_missing_and_unexpected_gids(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    def handler(kind: str, doc: dict[str, Any], n: int) -> Reply:
        return Reply(
            body={
                "code": 0,
                "orderNo": doc["orderNo"],
                "sendStatusList": [
                    {"gid": 1, "status": "TOU_SUCC", "errorMsg": ""},
                    {"gid": 2, "status": "TOU_FAIL", "errorMsg": ODD},
                    {"gid": 777, "status": "TOU_SUCC"},
                ],
            }
        )

    endpoint.handler = handler
    tp = make_touchpoint(runtime, endpoint.url)
    add_users(runtime, tp.project_id, range(1, 4))
    nos = enqueue(runtime, tp, [1, 2, 3])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    assert results(runtime, nos) == {
        1: ("TOU_SUCC", "", 1),
        2: ("TOU_FAIL", ODD, 1),
        3: ("TOU_FAIL", "no status returned", 1),
    }
    events = {e.gid: e.properties for e in touch_events(runtime, tp.project_id)}
    assert set(events) == {1, 2, 3}  # 777 is not ours
    assert events[2]["error_msg"] == ODD
    log = attempts_of(runtime, nos[0])
    assert "not in the batch" in log[0]["error"]


def test_retry_then_success_same_order_no(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(status=503, body=b"busy") if n < 2 else Reply()
    tp = make_touchpoint(runtime, endpoint.url, retry_schedule=[1, 1, 1])
    add_users(runtime, tp.project_id, range(1, 3))
    nos = enqueue(runtime, tp, [1, 2])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    assert results(runtime, nos) == {1: ("TOU_SUCC", "", 3), 2: ("TOU_SUCC", "", 3)}
    sent = endpoint.of("touch")
    assert len(sent) == 3
    assert {s.doc["orderNo"] for s in sent} == set(nos)
    assert len({s.doc["timeStamp"] for s in sent}) == 3  # fresh timeStamp and sign each time
    assert sent[0].doc["dataList"] == sent[2].doc["dataList"]  # the frozen batch
    gaps = [b.at - a.at for a, b in itertools.pairwise(sent)]
    assert all(g >= 0.75 for g in gaps), gaps  # 1 s ± 20 %
    log = attempts_of(runtime, nos[0])
    assert [a["http_status"] for a in log] == [503, 503, 200]
    assert log[0]["response_excerpt"] == "busy"


def test_retries_exhausted(runtime: Runtime, endpoint: Endpoint, worker: WorkerThread) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(status=500, body=b"boom")
    tp = make_touchpoint(runtime, endpoint.url, retry_schedule=[1])
    add_users(runtime, tp.project_id, range(1, 3))
    nos = enqueue(runtime, tp, [1, 2])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    assert results(runtime, nos) == {
        1: ("TOU_FAIL", "retries exhausted: HTTP 500", 2),
        2: ("TOU_FAIL", "retries exhausted: HTTP 500", 2),
    }
    assert len(endpoint.of("touch")) == 2


def test_transport_failures_are_retried(runtime: Runtime, worker: WorkerThread) -> None:
    from conftest import free_port

    tp = make_touchpoint(runtime, f"http://127.0.0.1:{free_port()}/touch", retry_schedule=[1])
    add_users(runtime, tp.project_id, range(1, 2))
    nos = enqueue(runtime, tp, [1])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    [(status, msg, attempts)] = results(runtime, nos).values()
    assert status == "TOU_FAIL" and attempts == 2
    assert msg is not None and msg.startswith("retries exhausted: ") and "refused" in msg
    log = attempts_of(runtime, nos[0])
    assert [a["http_status"] for a in log] == [None, None]
    assert all("refused" in a["error"] for a in log)


def test_timeout_is_retried(runtime: Runtime, endpoint: Endpoint, worker: WorkerThread) -> None:
    endpoint.handler = lambda kind, doc, n: Reply(delay=3) if n == 0 else Reply()
    tp = make_touchpoint(runtime, endpoint.url, retry_schedule=[1], timeout_seconds=1)
    add_users(runtime, tp.project_id, range(1, 2))
    nos = enqueue(runtime, tp, [1])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    assert results(runtime, nos) == {1: ("TOU_SUCC", "", 2)}
    log = attempts_of(runtime, nos[0])
    assert "within 1 s" in log[0]["error"]


def test_retry_after_is_honoured_when_longer(
    runtime: Runtime, endpoint: Endpoint, worker: WorkerThread
) -> None:
    endpoint.handler = lambda kind, doc, n: (
        Reply(status=429, headers={"Retry-After": "3"}) if n == 0 else Reply()
    )
    tp = make_touchpoint(runtime, endpoint.url, retry_schedule=[1])
    add_users(runtime, tp.project_id, range(1, 2))
    nos = enqueue(runtime, tp, [1])
    wait_for(lambda: all_done(runtime, nos), what="orders settled")
    sent = endpoint.of("touch")
    assert len(sent) == 2
    assert sent[1].at - sent[0].at >= 2.9
    assert results(runtime, nos) == {1: ("TOU_SUCC", "", 2)}
