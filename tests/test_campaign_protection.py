"""Protection against over-messaging through the real API, scheduler and worker,
with real receivers on 127.0.0.1: the routes, frequency caps under concurrent
campaigns, quiet hours (drop, hold with a controllable clock), the blocklist, and
``anti_disturb``."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from test_campaign_support import (
    Receiver,
    campaign_body,
    fresh_touchpoint_config,
    import_users,
    make_project,
    make_touchpoint,
    running_receiver,
    send_step,
    wait_for,
)
from touchgate.campaigns import repository as repo
from touchgate.campaigns import runner, scheduler
from touchgate.crypto import hash_api_key
from touchgate.models import ApiKey
from touchgate.models.base import utcnow
from touchgate.models.protection import TouchpointProtection
from touchgate.runtime import Runtime


@pytest.fixture(autouse=True)
def fresh_touchpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_touchpoint_config(monkeypatch)


def users(n: int) -> list[dict[str, Any]]:
    return [
        {
            "gid": g,
            "attributes": {"city": "Shanghai", "vip": g % 5 == 0, "memberId": f"M{g}"},
        }
        for g in range(1, n + 1)
    ]


@pytest.fixture
def world(client: httpx.Client) -> dict[str, Any]:
    pid, sid = make_project(client, approval=False)
    assert client.patch(f"/projects/{pid}", json={"timezone": "Asia/Shanghai"}).status_code == 200
    return {"pid": pid, "sid": sid, "base": f"/projects/{pid}/spaces/{sid}/campaigns"}


def fields_of(r: httpx.Response) -> dict[str, str]:
    return {d["field"]: d["code"] for d in r.json()["error"]["details"]}


def later() -> Any:
    """A time the server's own scheduler (real clock) will not reach during a test."""
    return (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)


def scheduled(client: httpx.Client, base: str, body: dict[str, Any], at: Any) -> int:
    """Create and publish a one-off campaign for ``at`` (not started until then)."""
    body = body | {"trigger": {"type": "once", "at": at.isoformat()}}
    r = client.post(base, json=body)
    assert r.status_code == 201, r.text
    cid: int = r.json()["id"]
    for action in ("submit", "publish"):
        r = client.post(f"{base}/{cid}/{action}")
        assert r.status_code == 200, (action, r.text)
    assert r.json()["status"] == "not_started"
    return cid


def stats_of(client: httpx.Client, base: str, cid: int) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"{base}/{cid}/stats").json()
    return data


def settled(client: httpx.Client, base: str, cid: int) -> dict[str, Any] | None:
    s = stats_of(client, base, cid)
    return s if s["pending"] == 0 and s["held"] == 0 else None


# --- routes -------------------------------------------------------------------------------


def test_project_and_touchpoint_protection_routes(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid = world["pid"], world["sid"]
    url = f"/projects/{pid}/protection"
    assert client.get(url).json() == {"frequency_cap": None}
    cap = {"max_messages": 3, "days": 7}
    r = client.put(url, json={"frequency_cap": cap})
    assert r.status_code == 200, r.text
    assert client.get(url).json() == {"frequency_cap": cap}
    r = client.put(url, json={"frequency_cap": {"max_messages": 0, "days": 400, "x": 1}})
    assert r.status_code == 422
    assert fields_of(r) == {
        "frequency_cap.max_messages": "out_of_range",
        "frequency_cap.days": "out_of_range",
        "frequency_cap.x": "unknown_field",
    }
    assert r.json()["error"]["details"][0]["params"] == {"min": 1, "max": 1000}
    assert client.put(url, json={"frequency_cap": None}).json() == {"frequency_cap": None}
    assert client.get("/projects/999999/protection").status_code == 404

    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid])
    turl = f"/projects/{pid}/touchpoints/{tid}/protection"
    empty = {"frequency_cap": None, "quiet_hours": None, "rate_limit": None}
    assert client.get(turl).json() == empty
    quiet = {"start": "22:00", "end": "08:00", "action": "hold"}
    # Allowed while the touchpoint is enabled; a setting left out keeps its value.
    r = client.put(turl, json={"quiet_hours": quiet})
    assert r.status_code == 200, r.text
    r = client.put(turl, json={"rate_limit": {"requests_per_second": 5}, "frequency_cap": cap})
    assert r.json() == {
        "frequency_cap": cap,
        "quiet_hours": quiet,
        "rate_limit": {"requests_per_second": 5.0},
    }
    with runtime.tx() as session:
        row = session.get(TouchpointProtection, tid)
        assert row is not None
        assert row.rate_limit == {"requests_per_second": 5.0}  # what the worker reads
        assert row.quiet_hours == quiet
    assert client.put(turl, json={"quiet_hours": None}).json()["quiet_hours"] is None
    r = client.put(
        turl,
        json={
            "quiet_hours": {"start": "25:00", "end": "08:00", "action": "later"},
            "rate_limit": {"requests_per_second": 0},
        },
    )
    assert fields_of(r) == {
        "quiet_hours.start": "not_a_time_of_day",
        "quiet_hours.action": "not_one_of",
        "rate_limit.requests_per_second": "out_of_range",
    }
    r = client.put(turl, json={"quiet_hours": {"start": "08:00", "end": "08:00", "action": "drop"}})
    assert fields_of(r) == {"quiet_hours.end": "empty_window"}
    assert client.put(turl, json=[1]).status_code == 422
    assert client.get(f"/projects/{pid}/touchpoints/999999/protection").status_code == 404


def _key(runtime: Runtime, role: str, project_id: int) -> str:
    token = f"protection-{role}-{project_id}"
    with runtime.tx() as session:
        session.add(
            ApiKey(name=token, key_hash=hash_api_key(token), role=role, project_id=project_id)
        )
    return token


def test_blocklist_routes_json_csv_ndjson(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime, live_server: Any
) -> None:
    pid, sid = world["pid"], world["sid"]
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid])
    url = f"/projects/{pid}/blocklist"
    r = client.post(
        url, json={"gids": [1, 2, 3, 3], "touchpoint_ids": [tid], "reason": "complaint"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 3
    assert client.post(url, json={"gids": [1, 2], "touchpoint_ids": [tid]}).json()["added"] == 0
    assert client.post(url, json={"gids": [2], "touchpoint_ids": None}).json()["added"] == 1
    assert client.post(url, json={"gids": [2]}).json()["added"] == 0
    listed = client.get(url).json()
    assert listed["total"] == 4
    assert {(i["gid"], i["touchpoint_id"]) for i in listed["items"]} == {
        (1, tid),
        (2, tid),
        (3, tid),
        (2, None),
    }
    assert listed["items"][0]["reason"] == "complaint"
    assert client.get(url, params={"gid": 2}).json()["total"] == 2
    assert client.get(url, params={"touchpoint_id": "all"}).json()["total"] == 1
    assert client.get(url, params={"touchpoint_id": tid}).json()["total"] == 3
    r = client.post(url, json={"gids": [0, 5], "touchpoint_ids": [999999]})
    assert fields_of(r) == {"gids[0]": "out_of_range"}
    r = client.post(url, json={"gids": [5], "touchpoint_ids": [999999]})
    assert fields_of(r) == {"touchpoint_ids[0]": "touchpoint_not_found"}
    assert fields_of(client.post(url, json={"gids": []})) == {"gids": "too_few_items"}
    assert fields_of(
        client.post(url, content=b"{", headers={"Content-Type": "application/json"})
    ) == {"body": "not_json"}

    csv_body = f"gid,touchpoint_id,reason\n10,,unsubscribed\n11,{tid},\nx,,\n12,999999,\n".encode()
    r = client.post(url, content=csv_body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2
    assert r.json()["rejected"] == 2
    assert [e["line"] for e in r.json()["errors"]] == [4, 0]
    assert r.json()["errors"][0]["code"] == "wrong_type"
    r = client.post(url, content=b"gid;reason\n1;x\n", headers={"Content-Type": "text/csv"})
    assert fields_of(r) == {"body": "csv_needs_gid_column"}
    nd = f'13\n{{"gid": 14, "touchpoint_id": {tid}}}\nnot json\n{{"gid": -1}}\n'.encode()
    r = client.post(url, content=nd, headers={"Content-Type": "application/x-ndjson"})
    assert r.json()["added"] == 2
    assert [e["code"] for e in r.json()["errors"]] == ["not_json", "out_of_range"]
    r = client.post(url, content=b"1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    # A large list in one CSV body.
    big = b"gid\n" + b"\n".join(str(g).encode() for g in range(100_000, 200_000))
    r = client.post(url, content=big, headers={"Content-Type": "text/csv"})
    assert r.json()["added"] == 100_000
    assert client.get(url, params={"touchpoint_id": "all", "limit": 1}).json()["total"] == 100_003

    assert client.delete(url, params={"gid": 2, "touchpoint_id": "all"}).status_code == 204
    assert client.get(url, params={"gid": 2}).json()["total"] == 1
    assert client.delete(url, params={"touchpoint_id": tid}).status_code == 204
    assert client.get(url, params={"touchpoint_id": tid}).json()["total"] == 0
    r = client.delete(url)
    assert r.status_code == 422
    assert fields_of(r) == {"gid": "blocklist_filter_required"}
    assert fields_of(client.get(url, params={"touchpoint_id": "some"})) == {
        "touchpoint_id": "invalid_touchpoint_filter"
    }
    # Viewers read; operators may change it.
    base_url = live_server.url + "/api/v1"
    headers = {"Authorization": f"Bearer {_key(runtime, 'viewer', pid)}"}
    with httpx.Client(base_url=base_url, headers=headers) as viewer:
        assert viewer.get(url).status_code == 200
        assert viewer.post(url, json={"gids": [7]}).status_code == 403
        assert viewer.put(f"/projects/{pid}/protection", json={}).status_code == 403
    headers = {"Authorization": f"Bearer {_key(runtime, 'operator', pid)}"}
    with httpx.Client(base_url=base_url, headers=headers) as operator:
        assert operator.post(url, json={"gids": [7]}).json()["added"] == 1


# --- enforcement ---------------------------------------------------------------------------


@pytest.mark.parametrize("timing", ["now", "delay"])
def test_a_cap_holds_for_two_campaigns_published_at_the_same_moment(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime, timing: str
) -> None:
    """Two threads, each in its own transaction, hand the same 1,000 users to a
    touchpoint at once: when the runs start (``now``), or when both campaigns' delayed
    sends fall due (``delay``: nothing else in the transaction makes them wait for
    each other)."""
    pid, sid, base = world["pid"], world["sid"], world["base"]
    n = 1000
    import_users(client, pid, users(n))
    cap = {"max_messages": 1, "days": 1}
    assert client.put(f"/projects/{pid}/protection", json={"frequency_cap": cap}).status_code == 200
    at = later()
    step = send_step(
        1, timing={"type": "delay", "minutes": 5} if timing == "delay" else {"type": "now"}
    )
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], batch_size=500)
        step["channels"][0]["touchpoint_id"] = tid
        cids = [
            scheduled(
                client,
                base,
                campaign_body(tid, name=name, audience={"match": "all"}, strategy=step),
                at,
            )
            for name in ("Spring sale", "New arrivals")
        ]
        with runtime.tx() as session:
            assert repo.start_due_campaigns(session, at) == 2
        due = at + timedelta(minutes=5)

        def work(cid: int) -> Any:
            if timing == "now":
                return lambda session: runner.fire(session, cid, at)
            with runtime.tx() as session:
                [due_id] = [d for d, c in repo.due_work(session, due, 10) if c == cid]
            return lambda session: runner.run_due(session, due_id, due)

        if timing == "delay":
            assert scheduler.tick(runtime, at).runs == 2
        jobs = {cid: work(cid) for cid in cids}
        barrier = threading.Barrier(2)
        done: dict[int, Any] = {}

        def go(cid: int) -> None:
            barrier.wait()
            with runtime.tx() as session:
                done[cid] = jobs[cid](session)

        threads = [threading.Thread(target=go, args=(cid,)) for cid in cids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(done.get(cid) for cid in cids), done
        results = [wait_for(lambda c=cid: settled(client, base, c), what="settled") for cid in cids]
        wait_for(lambda: len(rx.gids()) >= n, what="every user reached once")
        counts = Counter(rx.gids())
        assert set(counts) == set(range(1, n + 1))
        assert set(counts.values()) == {1}, "a user got two messages"
        results = [stats_of(client, base, cid) for cid in cids]
        assert sum(s["succeeded"] for s in results) == n
        assert sum(s["suppressed_by_reason"].get("frequency_cap", 0) for s in results) == n
        for s in results:
            assert s["succeeded"] + s["suppressed"] == n
            assert s["by_step"]["s1"]["suppressed"] == s["suppressed"]
        capped = max(cids, key=lambda c: stats_of(client, base, c)["suppressed"])
        r = client.get(f"{base}/{capped}/deliveries", params={"status": "suppressed", "limit": 5})
        item = r.json()["items"][0]
        assert item["reason"] == "frequency_cap"
        assert item["touchpoint_id"] == tid
        assert item["touchpoint_name"] == "SMS"
        assert item["step_id"] == "s1"


def test_touchpoint_cap_counts_pending_and_successes_not_failures(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    import_users(client, pid, users(40))
    with running_receiver(Receiver(fail=lambda g: g % 2 == 0)) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid])
        cap = {"frequency_cap": {"max_messages": 1, "days": 2}}
        assert (
            client.put(f"/projects/{pid}/touchpoints/{tid}/protection", json=cap).status_code == 200
        )
        at = later()
        first = scheduled(
            client, base, campaign_body(tid, name="first", audience={"match": "all"}), at
        )
        assert scheduler.tick(runtime, at).runs == 1
        wait_for(lambda: settled(client, base, first), what="first settled")
        # The odd users got a message; the even ones failed, which does not count.
        at2 = at + timedelta(hours=1)
        second = scheduled(
            client, base, campaign_body(tid, name="second", audience={"match": "all"}), at2
        )
        assert scheduler.tick(runtime, at2).runs == 1
        s = wait_for(lambda: settled(client, base, second), what="second settled")
        assert s["sent"] == 20
        assert s["suppressed_by_reason"] == {"frequency_cap": 20}
        evens = [g for g in range(1, 41) if g % 2 == 0]
        assert sorted(g for g in rx.gids() if g % 2 == 0) == sorted(evens * 2)
        assert sorted(g for g in rx.gids() if g % 2) == sorted(g for g in range(1, 41) if g % 2)
        # Outside the window (2 days later) the cap allows a message again.
        at3 = at + timedelta(days=2, minutes=1)
        third = scheduled(
            client, base, campaign_body(tid, name="third", audience={"match": "all"}), at3
        )
        assert scheduler.tick(runtime, at3).runs == 1
        s = wait_for(lambda: settled(client, base, third), what="third settled")
        assert s["sent"] == 40


def _window_around(at: Any) -> dict[str, str]:
    local = at.astimezone(ZoneInfo("Asia/Shanghai"))
    return {
        "start": (local - timedelta(minutes=30)).strftime("%H:%M"),
        "end": (local + timedelta(minutes=30)).strftime("%H:%M"),
    }


def test_quiet_hours_drop_and_hold_then_caps_apply_when_they_end(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    n = 40
    import_users(client, pid, users(n))
    vip = [g for g in range(1, n + 1) if g % 5 == 0]
    cap = {"max_messages": 1, "days": 1}
    assert client.put(f"/projects/{pid}/protection", json={"frequency_cap": cap}).status_code == 200
    at = later()
    window = _window_around(at)
    ends = at + timedelta(minutes=30)
    with running_receiver(Receiver()) as rx_drop, running_receiver(Receiver()) as rx_hold:
        dropping = make_touchpoint(client, pid, rx_drop.url, [sid], name="Drop")
        holding = make_touchpoint(client, pid, rx_hold.url, [sid], name="Hold")
        for tid, action in ((dropping, "drop"), (holding, "hold")):
            body = {"quiet_hours": window | {"action": action}}
            r = client.put(f"/projects/{pid}/touchpoints/{tid}/protection", json=body)
            assert r.status_code == 200, r.text
        audience = {"match": "all"}
        dropped = scheduled(
            client, base, campaign_body(dropping, name="drop", audience=audience), at
        )
        held = scheduled(client, base, campaign_body(holding, name="hold", audience=audience), at)
        assert scheduler.tick(runtime, at).runs == 2
        s = wait_for(lambda: settled(client, base, dropped), what="dropped")
        assert s["suppressed_by_reason"] == {"quiet_hours": n}
        assert s["sent"] == 0
        s = stats_of(client, base, held)
        assert s["held"] == n
        assert s["by_touchpoint"][str(holding)]["held"] == n
        assert s["suppressed"] == 0
        # A campaign that opts out of caps and quiet hours goes out at once, and
        # its messages count toward the caps of the others.
        body = campaign_body(
            holding,
            name="opted out",
            anti_disturb=False,
            audience={
                "match": "filter",
                "filter": {"attribute": "vip", "operator": "eq", "value": True},
            },
        )
        opted_out = scheduled(client, base, body, at + timedelta(minutes=1))
        assert scheduler.tick(runtime, at + timedelta(minutes=1)).runs == 1
        wait_for(lambda: settled(client, base, opted_out), what="opted-out campaign")
        assert sorted(rx_hold.gids()) == vip
        # Still quiet: nothing is released.
        assert scheduler.tick(runtime, ends - timedelta(seconds=1)).due == 0
        assert stats_of(client, base, held)["held"] == n
        # The quiet hours end: the held users go out, under the cap.
        assert scheduler.tick(runtime, ends).due == 1
        s = wait_for(lambda: settled(client, base, held), what="held users released")
        assert s["held"] == 0
        assert s["succeeded"] == n - len(vip)
        assert s["suppressed_by_reason"] == {"frequency_cap": len(vip)}
        counts = Counter(rx_hold.gids())
        assert set(counts) == set(range(1, n + 1))
        assert set(counts.values()) == {1}
        assert rx_drop.gids() == []
        with runtime.tx() as session:
            assert not repo.has_pending_work(session, held)


def test_blocklisted_users_never_reach_the_touchpoint(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    n = 40
    import_users(client, pid, users(n))
    with running_receiver(Receiver()) as rx1, running_receiver(Receiver()) as rx2:
        sms = make_touchpoint(client, pid, rx1.url, [sid], name="SMS")
        push = make_touchpoint(client, pid, rx2.url, [sid], name="Push")
        url = f"/projects/{pid}/blocklist"
        client.post(url, json={"gids": [1, 2], "touchpoint_ids": [sms]})
        client.post(url, json={"gids": [3]})
        client.post(url, json={"gids": [4], "touchpoint_ids": [push]})
        # Opting out of caps and quiet hours does not opt out of the blocklist.
        body = campaign_body(
            sms, audience={"match": "all"}, anti_disturb=False, strategy=send_step(sms, push)
        )
        at = later()
        cid = scheduled(client, base, body, at)
        preview = client.post(f"{base}/{cid}/preview", json={"sample": 5}).json()
        assert {(s["touchpoint_id"], s["gid"], s["reason"]) for s in preview["suppressed"]} == {
            (sms, 1, "blocklist"),
            (sms, 2, "blocklist"),
            (sms, 3, "blocklist"),
            (push, 3, "blocklist"),
            (push, 4, "blocklist"),
        }
        assert [r["gids"] for r in preview["requests"] if r["touchpoint_id"] == sms] == [[4, 5]]
        assert scheduler.tick(runtime, at).runs == 1
        s = wait_for(lambda: settled(client, base, cid), what="settled")
        assert sorted(rx1.gids()) == list(range(4, n + 1))
        assert sorted(rx2.gids()) == [1, 2]  # held back from SMS, so the next touchpoint
        assert s["succeeded"] == n - 1
        assert s["suppressed_by_reason"] == {"blocklist": 1}
        assert s["by_touchpoint"][str(sms)]["suppressed_by_reason"] == {"blocklist": 3}
        assert s["by_touchpoint"][str(push)]["suppressed_by_reason"] == {"blocklist": 1}
        r = client.get(f"{base}/{cid}/deliveries", params={"gid": 3}).json()
        assert [(d["status"], d["reason"], d["touchpoint_name"]) for d in r["items"]] == [
            ("suppressed", "blocklist", "SMS"),
            ("suppressed", "blocklist", "Push"),
        ]
    with runtime.tx() as session:
        rows = session.execute(select(TouchpointProtection)).all()
        assert rows == []
