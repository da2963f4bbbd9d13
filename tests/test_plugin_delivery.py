"""End to end through a plugin touchpoint: the sample plugin uploaded through the
API, a plugin touchpoint, users in the data store, ``enqueue_delivery`` and the
server's own delivery worker calling the sandboxed plugin; orders settle and
``$ma_channel_touch`` events are written. Also the test send and retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from test_plugins import sample_zip, upload
from touchgate.delivery.enqueue import enqueue_delivery
from touchgate.models import Touchpoint
from touchgate.runtime import Runtime


@pytest.fixture(autouse=True)
def fresh_touchpoint_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every test truncates the tables, so ids repeat; the server's worker must not
    # answer from its short touchpoint cache of an earlier test.
    from touchgate.delivery import worker

    monkeypatch.setattr(worker, "TOUCHPOINT_CACHE_SECONDS", 0.0)


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def setup_plugin_touchpoint(
    client: httpx.Client,
    pid: int,
    tmp_path: Path,
    api_key: str,
    *,
    receipt: dict[str, Any] | None = None,
    batch_size: int = 3,
) -> dict[str, Any]:
    plugin = upload(client, pid, sample_zip(tmp_path))
    assert plugin.status_code == 201, plugin.text
    for key in ("phone", "name"):
        r = client.post(
            f"/projects/{pid}/attributes",
            json={"key": key, "name": key, "type": "string", "kind": "attribute"},
        )
        assert r.status_code == 201, r.text
    lines = [
        {"gid": gid, "attributes": {"phone": f"130{gid:08d}", "name": f"U{gid}"}}
        for gid in range(1, 8)
    ] + [{"gid": 8, "attributes": {"phone": "not-a-phone", "name": "U8"}}]
    r = client.post(
        f"/projects/{pid}/users/import",
        content=b"\n".join(orjson.dumps(line) for line in lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json={
            "name": "SMS plugin",
            "type": "notification",
            "transport": "plugin",
            "plugin_id": plugin.json()["id"],
            "plugin_config": {
                "api_key": api_key,
                "region": "cn-north",
                "async_receipts": receipt is not None,
            },
            "receipt": receipt or {"mode": "sync"},
            "batch_size": batch_size,
            "timeout_seconds": 10,
            "retry_schedule": [1, 1],
            "user_attributes": ["phone", "name"],
            "template_params": [
                {"key": "title", "name": "Title", "type": "text", "required": True}
            ],
        },
    )
    assert r.status_code == 201, r.text
    tp: dict[str, Any] = r.json()
    return tp


def enqueue(runtime: Runtime, tid: int, gids: list[int]) -> list[str]:
    with runtime.tx() as session:
        touchpoint = session.get(Touchpoint, tid)
        assert touchpoint is not None
        result = enqueue_delivery(
            session, touchpoint=touchpoint, gids=gids, tem_data={"title": "Hi {{name}}"}
        )
        return result.order_nos


def test_delivery_through_a_plugin_touchpoint(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    pid = project["id"]
    tp = setup_plugin_touchpoint(client, pid, tmp_path, "sk-live-key")
    order_nos = enqueue(runtime, tp["id"], list(range(1, 9)))
    assert len(order_nos) == 3  # batch size 3

    def settled() -> bool:
        return all(
            client.get(f"/projects/{pid}/orders/{no}").json()["status"] == "done"
            for no in order_nos
        )

    wait_for(settled, what="the plugin orders to settle")
    statuses: dict[int, tuple[str, str]] = {}
    for no in order_nos:
        order = client.get(f"/projects/{pid}/orders/{no}").json()
        assert order["touchpoint_id"] == tp["id"]
        for user in order["users"]:
            statuses[user["gid"]] = (user["status"], user["error_msg"] or "")
    assert statuses == {
        **{gid: ("TOU_SUCC", "") for gid in range(1, 8)},
        8: ("TOU_FAIL", "no valid phone"),
    }
    events = client.get(
        f"/projects/{pid}/events", params={"name": "$ma_channel_touch", "limit": 100}
    ).json()
    assert events["total"] == 8
    by_gid = {e["gid"]: e["properties"] for e in events["items"]}
    assert by_gid[1]["status"] == "TOU_SUCC" and by_gid[1]["touchpoint_id"] == tp["id"]
    assert by_gid[8]["status"] == "TOU_FAIL" and by_gid[8]["error_msg"] == "no valid phone"


def test_retryable_plugin_error_follows_the_retry_schedule(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    pid = project["id"]
    tp = setup_plugin_touchpoint(client, pid, tmp_path, "sk-busy")
    [order_no] = enqueue(runtime, tp["id"], [1, 2])

    def exhausted() -> bool:
        return bool(client.get(f"/projects/{pid}/orders/{order_no}").json()["status"] == "done")

    wait_for(exhausted, timeout=60, what="the retries to run out")
    order = client.get(f"/projects/{pid}/orders/{order_no}").json()
    assert len(order["attempts"]) == 3, (
        order["attempts"],
        order["users"],
    )  # the first attempt and two retries
    assert all("the gateway is busy" in (a["error"] or "") for a in order["attempts"])
    for user in order["users"]:
        assert user["status"] == "TOU_FAIL"
        assert "retries exhausted" in user["error_msg"]
        assert "the gateway is busy" in user["error_msg"]


def test_failing_open_fails_the_batch(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    pid = project["id"]
    tp = setup_plugin_touchpoint(client, pid, tmp_path, "wrong-key")
    [order_no] = enqueue(runtime, tp["id"], [1])

    def done() -> bool:
        return bool(client.get(f"/projects/{pid}/orders/{order_no}").json()["status"] == "done")

    wait_for(done, what="the order to fail")
    [user] = client.get(f"/projects/{pid}/orders/{order_no}").json()["users"]
    assert user["status"] == "TOU_FAIL"
    assert "the API key must start with 'sk-'" in user["error_msg"]


def test_test_send_through_the_plugin(
    client: httpx.Client, project: dict[str, Any], tmp_path: Path
) -> None:
    pid = project["id"]
    tp = setup_plugin_touchpoint(client, pid, tmp_path, "sk-test-send-key")
    r = client.post(
        f"/projects/{pid}/touchpoints/{tp['id']}/test",
        json={
            "users": [
                {"gid": 42, "attributes": {"phone": "13000000042", "name": "Tester"}},
                {"gid": 43, "attributes": {"phone": "", "name": "Nobody"}},
            ],
            "params": {"title": "Hello"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "sk-test-send-key" not in r.text
    statuses = {s["gid"]: s["status"] for s in body["statuses"]}
    assert statuses == {42: "TOU_SUCC", 43: "TOU_FAIL"}


def test_async_receipts_through_query_receipts(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from touchgate.models import Order
    from touchgate.models.base import utcnow

    pid = project["id"]
    tp = setup_plugin_touchpoint(
        client,
        pid,
        tmp_path,
        "sk-async-key",
        receipt={"mode": "async", "poll_seconds": 30, "timeout_minutes": 60},
        batch_size=100,
    )
    [order_no] = enqueue(runtime, tp["id"], list(range(1, 9)))

    def order() -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"/projects/{pid}/orders/{order_no}").json()
        return body

    def sent() -> bool:
        return {u["gid"]: u["status"] for u in order()["users"]}.get(8) == "TOU_FAIL"

    wait_for(sent, what="the send (gid 8 fails at once, the others wait for receipts)")
    assert {u["status"] for u in order()["users"] if u["gid"] != 8} == {"pending"}
    # Fast-forward to the receipt poll instead of waiting poll_seconds.
    with runtime.tx() as session:
        session.execute(
            update(Order).where(Order.order_no == order_no).values(next_attempt_at=utcnow())
        )
    wait_for(lambda: order()["status"] == "done", what="query_receipts to settle the order")
    statuses = {u["gid"]: u["status"] for u in order()["users"]}
    assert statuses == {**{gid: "TOU_SUCC" for gid in range(1, 8)}, 8: "TOU_FAIL"}
    kinds = [a["kind"] for a in order()["attempts"]]
    assert kinds[0] == "delivery" and "receipt" in kinds
    events = client.get(
        f"/projects/{pid}/events", params={"name": "$ma_channel_touch", "limit": 100}
    ).json()
    assert events["total"] == 8
