"""Campaign CRUD, content validation and the state machine, through the real API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from test_campaign_support import campaign_body, make_project, make_touchpoint, send_step
from touchgate.crypto import hash_api_key
from touchgate.models import ApiKey
from touchgate.runtime import Runtime

URL = "http://127.0.0.1:9/touch"  # never called: nothing here is published to run


@pytest.fixture
def world(client: httpx.Client) -> dict[str, Any]:
    pid, sid = make_project(client)
    tid = make_touchpoint(client, pid, URL, [sid])
    base = f"/projects/{pid}/spaces/{sid}/campaigns"
    return {"pid": pid, "sid": sid, "tid": tid, "base": base}


def fields_of(r: httpx.Response) -> set[str]:
    return {d["field"] for d in r.json()["error"]["details"]}


def test_create_get_list_and_names(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    r = client.post(base, json=campaign_body(tid))
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["status"] == "draft"
    assert c["name"] == "Birthday coupon"
    assert c["allowed_actions"] == ["edit", "delete", "submit"]
    assert c["strategy"]["channels"][0]["touchpoint_id"] == tid
    assert client.get(f"{base}/{c['id']}").json()["id"] == c["id"]
    listed = client.get(base).json()
    assert listed["total"] == 1
    assert client.get(base, params={"status": "running"}).json()["total"] == 0
    assert client.get(base, params={"status": "bogus"}).status_code == 422

    r = client.post(base, json=campaign_body(tid))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "name_taken"
    assert client.post(base, json=campaign_body(tid, name="生日优惠券" * 4)).status_code == 201
    r = client.post(base, json=campaign_body(tid, name="x" * 21))
    assert r.status_code == 422
    assert fields_of(r) == {"name"}
    r = client.post(base, json=campaign_body(tid, name="   "))
    assert r.status_code == 422
    assert client.get(f"{base}/999999").status_code == 404
    assert client.get(f"/projects/{world['pid']}/spaces/999999/campaigns").status_code == 404


def test_every_invalid_field_is_named(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    body = campaign_body(
        tid,
        trigger={"type": "recurring", "cron": "61 * * *", "start": "not a time"},
        audience={
            "match": "filter",
            "filter": {
                "op": "or",
                "conditions": [
                    {"attribute": "nope", "operator": "eq", "value": "x"},
                    {"attribute": "age", "operator": "gt", "value": "old"},
                    {"attribute": "city", "operator": "near", "value": "x"},
                    {"op": "and", "conditions": [{"attribute": "vip", "operator": "in"}]},
                    {"attribute": "age", "operator": "contains", "value": "3"},
                    {"attribute": "birthday", "operator": "lt", "value": "2020-13-01"},
                ],
            },
        },
        participation={"mode": "every", "days": 0},
        strategy={
            "type": "send",
            "id": "s1",
            "mode": "sometimes",
            "timing": {"type": "delay", "minutes": -5},
            "channels": [
                {"touchpoint_id": 999999, "params": {}},
                {"touchpoint_id": tid, "params": {"amount": "lots", "jump": "JUMP_TV", "x": 1}},
            ],
        },
    )
    r = client.post(base, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    assert fields_of(r) == {
        "trigger.cron",
        "trigger.start",
        "audience.filter.conditions[0].attribute",
        "audience.filter.conditions[1].value",
        "audience.filter.conditions[2].operator",
        "audience.filter.conditions[3].conditions[0].value",
        "audience.filter.conditions[4].operator",
        "audience.filter.conditions[5].value",
        "participation.days",
        "strategy.mode",
        "strategy.timing.minutes",
        "strategy.channels[0].touchpoint_id",
        "strategy.channels[1].params.title",
        "strategy.channels[1].params.amount",
        "strategy.channels[1].params.jump",
        "strategy.channels[1].params.x",
    }
    # Wrong JSON types at the top level are named too, never a 500.
    r = client.post(base, json={"name": 5, "trigger": [], "audience": "all", "strategy": None})
    assert r.status_code == 422
    assert {"name", "trigger", "audience", "strategy"} <= fields_of(r)
    r = client.post(base, content=b"[1,2", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_event_splits_need_an_event_trigger(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    split = {
        "type": "split",
        "id": "sp",
        "by": "event",
        "branches": [{"filter": {"property": "amount", "operator": "gte", "value": 100}}],
        "otherwise": send_step(tid),
    }
    r = client.post(base, json=campaign_body(tid, strategy=split))
    assert r.status_code == 422, r.text
    [detail] = r.json()["error"]["details"]
    assert detail["field"] == "strategy.by"
    assert detail["code"] == "event_split_needs_event_trigger"
    trigger = {"type": "event", "event": "purchase"}
    r = client.post(base, json=campaign_body(tid, trigger=trigger, strategy=split))
    assert r.status_code == 201, r.text
    assert r.json()["strategy"]["by"] == "event"
    # An event split's branches filter event properties, not user attributes.
    split["branches"] = [{"filter": {"attribute": "city", "operator": "exists"}}]
    r = client.post(base, json=campaign_body(tid, name="x", trigger=trigger, strategy=split))
    assert fields_of(r) == {
        "strategy.branches[0].filter.property",
        "strategy.branches[0].filter.attribute",
    }


def test_touchpoint_must_be_enabled_and_authorised(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    pid, base, tid = world["pid"], world["base"], world["tid"]
    other = make_touchpoint(client, pid, URL, [], name="Push")
    r = client.post(base, json=campaign_body(tid, strategy=send_step(tid, other)))
    assert r.status_code == 422
    assert fields_of(r) == {"strategy.channels[1].touchpoint_id"}
    assert "not authorised" in r.json()["error"]["details"][0]["message"]
    assert client.post(f"/projects/{pid}/touchpoints/{other}/disable").status_code == 200
    r = client.post(base, json=campaign_body(tid, strategy=send_step(other)))
    assert "disabled" in r.json()["error"]["details"][0]["message"]


def test_split_and_ab_steps_are_validated(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    strategy = {
        "type": "split",
        "id": "split",
        "by": "audience",
        "branches": [
            {
                "filter": {"attribute": "vip", "operator": "eq", "value": True},
                "next": send_step(tid, step_id="vip"),
            },
        ],
        "otherwise": {
            "type": "ab",
            "id": "ab",
            "branches": [
                {"percent": 50, "next": send_step(tid, step_id="a")},
                {"percent": 50, "next": {"type": "send", "id": "b", "timing": {"type": "none"}}},
            ],
        },
    }
    r = client.post(base, json=campaign_body(tid, strategy=strategy))
    assert r.status_code == 201, r.text
    strategy["otherwise"]["branches"][0]["percent"] = 60
    strategy["otherwise"]["branches"][1]["next"]["id"] = "a"
    r = client.post(base, json=campaign_body(tid, name="other", strategy=strategy))
    assert r.status_code == 422
    assert fields_of(r) == {"strategy.otherwise.branches", "strategy.otherwise.branches[1].next.id"}


def _act(client: httpx.Client, base: str, cid: int, action: str, **kw: Any) -> httpx.Response:
    return client.post(f"{base}/{cid}/{action}", **kw)


def test_state_machine_walk(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid, pid = world["base"], world["tid"], world["pid"]
    cid = client.post(base, json=campaign_body(tid)).json()["id"]

    def status() -> str:
        s: str = client.get(f"{base}/{cid}").json()["status"]
        return s

    for action in ("approve", "publish", "pause", "resume", "close", "copy", "withdraw"):
        r = _act(client, base, cid, action)
        assert r.status_code == 409, (action, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_state"
        assert "'draft'" in err["message"]
        assert "edit, delete, submit" in err["message"]
        assert err["details"]["allowed_actions"] == ["edit", "delete", "submit"]
    assert _act(client, base, cid, "explode").status_code == 404

    assert _act(client, base, cid, "submit").json()["status"] == "in_approval"
    assert client.patch(f"{base}/{cid}", json={"name": "x"}).status_code == 409
    assert client.delete(f"{base}/{cid}").status_code == 409
    # The touchpoint is in use by a campaign in approval: it cannot be disabled.
    r = client.post(f"/projects/{pid}/touchpoints/{tid}/disable")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "touchpoint_in_use"
    assert r.json()["error"]["details"]["campaigns"] == [
        {"id": cid, "name": "Birthday coupon", "status": "in_approval"}
    ]
    r = _act(client, base, cid, "reject", json={"reason": "wrong city"})
    assert r.json()["status"] == "rejected"
    assert r.json()["rejection_reason"] == "wrong city"
    r = client.patch(f"{base}/{cid}", json={"name": "Birthday v2"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "draft"
    assert r.json()["name"] == "Birthday v2"
    assert _act(client, base, cid, "submit").json()["status"] == "in_approval"
    assert _act(client, base, cid, "withdraw").json()["status"] == "draft"
    assert _act(client, base, cid, "submit").json()["status"] == "in_approval"
    assert _act(client, base, cid, "approve").json()["status"] == "awaiting_publish"
    # Editing an approved campaign sends it back to draft (and through approval again).
    r = client.patch(f"{base}/{cid}", json={"participation": {"mode": "every", "days": 7}})
    assert r.json()["status"] == "draft"
    assert r.json()["participation"] == {"mode": "every", "days": 7}
    _act(client, base, cid, "submit")
    _act(client, base, cid, "approve")
    # Scheduled for tomorrow: published into not_started.
    r = _act(client, base, cid, "publish")
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("running", "not_started", "finished")
    cid2 = client.post(
        base,
        json=campaign_body(
            tid, name="Later", trigger={"type": "once", "at": "2999-01-01T10:00:00+08:00"}
        ),
    ).json()["id"]
    _act(client, base, cid2, "submit")
    _act(client, base, cid2, "approve")
    r = _act(client, base, cid2, "publish")
    assert r.json()["status"] == "not_started"
    assert r.json()["next_run_at"].startswith("2999-01-01T02:00:00")
    assert r.json()["allowed_actions"] == ["pause", "copy"]
    assert client.delete(f"{base}/{cid2}").status_code == 409
    assert _act(client, base, cid2, "pause").json()["status"] == "paused"
    assert _act(client, base, cid2, "resume").json()["status"] == "not_started"
    _act(client, base, cid2, "pause")
    assert _act(client, base, cid2, "close").json()["status"] == "closed"
    r = _act(client, base, cid2, "copy")
    assert r.json()["status"] == "draft"
    assert r.json()["name"] == "Later copy"
    assert r.json()["id"] != cid2
    assert _act(client, base, cid2, "copy").json()["name"] == "Later copy 2"
    assert client.delete(f"{base}/{cid2}").status_code == 204
    assert client.get(f"{base}/{cid2}").status_code == 404
    # Now nothing blocks the touchpoint once every user of it is done or closed.
    _act(client, base, cid, "pause")
    _act(client, base, cid, "close")
    assert client.post(f"/projects/{pid}/touchpoints/{tid}/disable").status_code == 200


def test_copy_name_fits_twenty_characters(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    name = "A" * 20
    cid = client.post(
        base,
        json=campaign_body(tid, name=name, trigger={"type": "once", "at": "2999-01-01T00:00:00Z"}),
    ).json()["id"]
    for action in ("submit", "approve", "publish"):
        assert _act(client, base, cid, action).status_code == 200
    first = _act(client, base, cid, "copy").json()["name"]
    second = _act(client, base, cid, "copy").json()["name"]
    assert first == "A" * 15 + " copy"
    assert second == "A" * 13 + " copy 2"
    assert len(second) <= 20


def test_approval_off_goes_straight_to_awaiting_publish(client: httpx.Client) -> None:
    pid, sid = make_project(client, "NoApproval", approval=False)
    tid = make_touchpoint(client, pid, URL, [sid])
    base = f"/projects/{pid}/spaces/{sid}/campaigns"
    cid = client.post(base, json=campaign_body(tid)).json()["id"]
    assert _act(client, base, cid, "submit").json()["status"] == "awaiting_publish"
    # Switching approval back on applies to the next submission.
    assert client.patch(f"/projects/{pid}", json={"approval_required": True}).status_code == 200
    client.patch(f"{base}/{cid}", json={"anti_disturb": False})
    assert _act(client, base, cid, "submit").json()["status"] == "in_approval"


def test_publish_checks_again(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid, pid = world["base"], world["tid"], world["pid"]
    cid = client.post(base, json=campaign_body(tid)).json()["id"]
    _act(client, base, cid, "submit")
    _act(client, base, cid, "approve")
    # Authorisation withdrawn between approval and publishing.
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": []})
    r = _act(client, base, cid, "publish")
    assert r.status_code == 422
    assert fields_of(r) == {"strategy.channels[0].touchpoint_id"}
    assert client.get(f"{base}/{cid}").json()["status"] == "awaiting_publish"
    # A one-off time already past is refused at publish.
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [world["sid"]]})
    r = client.patch(
        f"{base}/{cid}", json={"trigger": {"type": "once", "at": "2001-01-01T00:00:00Z"}}
    )
    assert r.status_code == 200
    _act(client, base, cid, "submit")
    _act(client, base, cid, "approve")
    r = _act(client, base, cid, "publish")
    assert r.status_code == 422
    assert fields_of(r) == {"trigger.at"}
    # So is a recurring schedule whose end has passed.
    client.patch(
        f"{base}/{cid}",
        json={
            "trigger": {
                "type": "recurring",
                "every": "daily",
                "time": "10:00",
                "end": "2001-01-01T00:00:00Z",
            }
        },
    )
    _act(client, base, cid, "submit")
    _act(client, base, cid, "approve")
    assert fields_of(_act(client, base, cid, "publish")) == {"trigger.end"}


def test_list_audience_and_upload(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    r = client.post(base, json=campaign_body(tid, audience={"match": "list"}))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = _act(client, base, cid, "submit")
    assert r.status_code == 422
    assert fields_of(r) == {"audience.gids"}
    r = client.post(f"{base}/{cid}/audience/gids", json={"gids": [3, 1, 2, 2]})
    assert r.status_code == 200, r.text
    assert r.json()["audience"] == {"match": "list", "gid_count": 3}
    r = client.post(f"{base}/{cid}/audience/gids", json={"gids": [4], "replace": False})
    assert r.json()["audience"]["gid_count"] == 4
    r = client.post(f"{base}/{cid}/audience/gids", json={"gids": [0, -1]})
    assert r.status_code == 422
    assert fields_of(r) == {"gids[0]", "gids[1]"}
    r = client.post(
        base, json=campaign_body(tid, name="inline", audience={"match": "list", "gids": [5, "x"]})
    )
    assert fields_of(r) == {"audience.gids[1]"}
    assert _act(client, base, cid, "submit").json()["status"] == "in_approval"
    copy = _act(client, base, cid, "approve")
    assert copy.status_code == 200


def test_triggers(client: httpx.Client, world: dict[str, Any]) -> None:
    base, tid = world["base"], world["tid"]
    good = [
        {"type": "once"},
        {"type": "once", "at": "2999-05-01T10:00:00+08:00"},
        {"type": "recurring", "cron": "0 10 * * *"},
        {"type": "recurring", "every": "weekly", "time": "09:30", "weekday": "fri"},
        {
            "type": "recurring",
            "every": "monthly",
            "time": "23:59",
            "day": 31,
            "start": "2999-01-01T00:00:00Z",
            "end": "2999-12-31T00:00:00Z",
        },
    ]
    for i, trig in enumerate(good):
        r = client.post(base, json=campaign_body(tid, name=f"t{i}", trigger=trig))
        assert r.status_code == 201, (trig, r.text)
    bad = {
        "trigger.every": {"type": "recurring", "every": "hourly"},
        "trigger.time": {"type": "recurring", "every": "daily", "time": "25:00"},
        "trigger": {"type": "recurring"},
        "trigger.end": {
            "type": "recurring",
            "cron": "0 10 * * *",
            "start": "2999-01-02T00:00:00Z",
            "end": "2999-01-01T00:00:00Z",
        },
        "trigger.weekday": {"type": "recurring", "every": "weekly", "weekday": "someday"},
        "trigger.at": {"type": "once", "at": 12},
        "trigger.type": {"type": "sometimes"},
    }
    for i, (field, trig) in enumerate(bad.items()):
        r = client.post(base, json=campaign_body(tid, name=f"b{i}", trigger=trig))
        assert r.status_code == 422, (trig, r.text)
        assert fields_of(r) == {field}, (trig, r.text)


def test_auth(client: httpx.Client, anon_client: httpx.Client, world: dict[str, Any]) -> None:
    assert anon_client.get(world["base"]).status_code == 401
    r = anon_client.post(world["base"], json=campaign_body(world["tid"]))
    assert r.status_code == 401


def _key(runtime: Runtime, role: str, project_id: int, space_ids: list[int] | None) -> str:
    token = f"key-{role}-{space_ids}"
    with runtime.tx() as session:
        session.add(
            ApiKey(
                name=token,
                key_hash=hash_api_key(token),
                role=role,
                project_id=project_id,
                space_ids=space_ids,
            )
        )
    return token


def test_roles_and_spaces(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime, live_server: Any
) -> None:
    pid, sid, base, tid = world["pid"], world["sid"], world["base"], world["tid"]
    other = client.post(f"/projects/{pid}/spaces", json={"name": "Other"}).json()["id"]

    def as_key(token: str) -> httpx.Client:
        return httpx.Client(
            base_url=live_server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}
        )

    with as_key(_key(runtime, "operator", pid, [sid])) as operator:
        r = operator.post(base, json=campaign_body(tid))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert operator.post(f"{base}/{cid}/submit").json()["status"] == "in_approval"
        # Approving is for admins.
        r = operator.post(f"{base}/{cid}/approve")
        assert r.status_code == 403
        assert client.get(f"{base}/{cid}").json()["status"] == "in_approval"
        assert operator.post(f"{base}/{cid}/withdraw").status_code == 200
        # Another space is out of reach.
        r = operator.get(f"/projects/{pid}/spaces/{other}/campaigns")
        assert r.status_code == 403
    with as_key(_key(runtime, "viewer", pid, None)) as viewer:
        assert viewer.get(f"{base}/{cid}").status_code == 200
        assert viewer.get(f"{base}/{cid}/stats").status_code == 200
        assert viewer.post(base, json=campaign_body(tid, name="v")).status_code == 403
        assert viewer.post(f"{base}/{cid}/submit").status_code == 403
        assert viewer.delete(f"{base}/{cid}").status_code == 403
