"""The orders API, served by the real app whose embedded worker delivers."""

from __future__ import annotations

from typing import Any

import httpx

from test_engine_support import (  # noqa: F401  (fixtures)
    Endpoint,
    Reply,
    add_users,
    all_done,
    endpoint_fixture,
    enqueue,
    make_touchpoint,
    wait_for,
)
from touchgate.runtime import Runtime


def _fail_gid_2(kind: str, doc: dict[str, Any], n: int) -> Reply:
    return Reply(
        body={
            "code": 0,
            "sendStatusList": [
                {
                    "gid": e["gid"],
                    "status": "TOU_FAIL" if e["gid"] == 2 else "TOU_SUCC",
                    "errorMsg": "no such member" if e["gid"] == 2 else "",
                }
                for e in doc["dataList"]
            ],
        }
    )


def test_order_detail_list_and_replay(
    client: httpx.Client, runtime: Runtime, project: dict[str, Any], endpoint: Endpoint
) -> None:
    pid = project["id"]
    endpoint.handler = _fail_gid_2
    tp = make_touchpoint(runtime, endpoint.url, project_id=pid, batch_size=3)
    add_users(runtime, pid, range(1, 5))
    nos = enqueue(runtime, tp, [1, 2, 3, 4], campaign_id=11, step_id="s1")
    wait_for(lambda: all_done(runtime, nos), what="delivered by the embedded worker")

    r = client.get(f"/projects/{pid}/orders/{nos[0]}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order_no"] == nos[0]
    assert body["touchpoint_id"] == tp.id and body["campaign_id"] == 11
    assert body["status"] == "done"
    assert body["users"] == [
        {"gid": 1, "status": "TOU_SUCC", "error_msg": "", "attempts": 1},
        {"gid": 2, "status": "TOU_FAIL", "error_msg": "no such member", "attempts": 1},
        {"gid": 3, "status": "TOU_SUCC", "error_msg": "", "attempts": 1},
    ]
    [attempt] = body["attempts"]
    assert set(attempt) >= {"at", "duration_ms", "http_status", "error", "response_excerpt"}
    assert attempt["http_status"] == 200 and attempt["at"].endswith(("Z", "+00:00"))

    r = client.get(f"/projects/{pid}/orders", params={"campaign_id": 11})
    assert r.json()["total"] == 2
    assert {o["order_no"] for o in r.json()["items"]} == set(nos)
    assert client.get(f"/projects/{pid}/orders", params={"state": "sending"}).json()["total"] == 0
    r = client.get(f"/projects/{pid}/orders", params={"touchpoint_id": tp.id, "state": "done"})
    assert r.json()["total"] == 2

    # Replay: only the failed user, as a new order with the same values.
    endpoint.handler = lambda kind, doc, n: Reply()
    r = client.post(f"/projects/{pid}/orders/{nos[0]}/replay")
    assert r.status_code == 201, r.text
    new_no = r.json()["order_no"]
    assert r.json() == {"order_no": new_no, "replay_of": nos[0], "user_count": 1}
    assert new_no not in nos
    wait_for(lambda: all_done(runtime, [new_no]), what="replay delivered")
    replayed = [s for s in endpoint.of("touch") if s.doc["orderNo"] == new_no]
    first = next(s for s in endpoint.of("touch") if s.doc["orderNo"] == nos[0])
    assert replayed[0].doc["dataList"] == [e for e in first.doc["dataList"] if e["gid"] == 2]
    detail = client.get(f"/projects/{pid}/orders/{new_no}").json()
    assert detail["users"] == [{"gid": 2, "status": "TOU_SUCC", "error_msg": "", "attempts": 1}]
    assert detail["replay_of"] == nos[0]

    # Nothing failed → 409.
    r = client.post(f"/projects/{pid}/orders/{nos[1]}/replay")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "nothing_to_replay"


def test_order_errors(
    client: httpx.Client, anon_client: httpx.Client, project: dict[str, Any]
) -> None:
    pid = project["id"]
    r = client.get(f"/projects/{pid}/orders/{'0' * 32}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.post(f"/projects/{pid}/orders/nope/replay").status_code == 404
    assert client.get(f"/projects/999999/orders/{'0' * 32}").status_code == 404
    assert client.get("/projects/999999/orders").status_code == 404
    r = client.get(f"/projects/{pid}/orders", params={"state": "lost"})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == ["state"]
    r = client.get(f"/projects/{pid}/orders", params={"touchpoint_id": "x"})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == ["touchpoint_id"]
    assert anon_client.get(f"/projects/{pid}/orders").status_code == 401
