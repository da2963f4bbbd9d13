"""Campaign runs against a real receiver: audience filters in SQL, the scheduler's
``tick``, participation, splits, A/B, control groups, delays, ``next`` steps,
preview, stats and the deliveries list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from test_campaign_support import (
    Receiver,
    api_enum_params,
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
from touchgate.campaigns.router import ab_bucket
from touchgate.models import Order, Touchpoint
from touchgate.models.base import utcnow
from touchgate.models.campaigns import CampaignDue, CampaignEntry, CampaignRun, CampaignWait
from touchgate.runtime import Runtime

CITIES = ["Shanghai", "Beijing", "Shenzhen", None]


def user(gid: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "city": CITIES[gid % 4],
        "age": None if gid % 5 == 0 else gid,
        "vip": gid % 3 == 0,
        "birthday": f"19{50 + gid}-01-15",
        "memberId": f"M{gid}",
        "phone": f"130{gid:08d}",
    }
    return {"gid": gid, "attributes": {k: v for k, v in attrs.items() if v is not None}}


USERS = {gid: user(gid)["attributes"] for gid in range(1, 41)}


@pytest.fixture(autouse=True)
def fresh_touchpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_touchpoint_config(monkeypatch)


@pytest.fixture
def world(client: httpx.Client) -> dict[str, Any]:
    pid, sid = make_project(client)
    import_users(client, pid, (user(g) for g in USERS))
    return {"pid": pid, "sid": sid, "base": f"/projects/{pid}/spaces/{sid}/campaigns"}


def _expect(pred: Any) -> list[int]:
    return sorted(g for g, a in USERS.items() if pred(a))


FILTERS: list[tuple[dict[str, Any], Any]] = [
    (
        {"attribute": "city", "operator": "eq", "value": "Shanghai"},
        lambda a: a.get("city") == "Shanghai",
    ),
    (
        {"attribute": "city", "operator": "ne", "value": "Shanghai"},
        lambda a: a.get("city") != "Shanghai",
    ),
    ({"attribute": "age", "operator": "gt", "value": 30}, lambda a: a.get("age", 0) > 30),
    ({"attribute": "age", "operator": "gte", "value": 30}, lambda a: a.get("age", 0) >= 30),
    ({"attribute": "age", "operator": "lt", "value": 7.5}, lambda a: 0 < a.get("age", 99) < 7.5),
    ({"attribute": "age", "operator": "lte", "value": 7}, lambda a: a.get("age", 99) <= 7),
    (
        {"attribute": "city", "operator": "in", "value": ["Beijing", "Shenzhen"]},
        lambda a: a.get("city") in ("Beijing", "Shenzhen"),
    ),
    (
        {"attribute": "age", "operator": "not_in", "value": [1, 2, 3]},
        lambda a: a.get("age") not in (1, 2, 3),
    ),
    (
        {"attribute": "city", "operator": "contains", "value": "hen"},
        lambda a: "hen" in (a.get("city") or ""),
    ),
    ({"attribute": "age", "operator": "exists"}, lambda a: "age" in a),
    ({"attribute": "city", "operator": "not_exists"}, lambda a: "city" not in a),
    ({"attribute": "vip", "operator": "eq", "value": True}, lambda a: a["vip"]),
    ({"attribute": "vip", "operator": "eq", "value": False}, lambda a: not a["vip"]),
    (
        {"attribute": "birthday", "operator": "lt", "value": "1960-01-01"},
        lambda a: a["birthday"] < "1960-01-01",
    ),
    (
        {
            "op": "or",
            "conditions": [
                {"attribute": "vip", "operator": "eq", "value": True},
                {
                    "op": "and",
                    "conditions": [
                        {"attribute": "city", "operator": "eq", "value": "Beijing"},
                        {"attribute": "age", "operator": "gte", "value": 20},
                    ],
                },
            ],
        },
        lambda a: a["vip"] or (a.get("city") == "Beijing" and a.get("age", 0) >= 20),
    ),
]


def test_filters_are_evaluated_in_sql(client: httpx.Client, world: dict[str, Any]) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid])
    for i, (flt, pred) in enumerate(FILTERS):
        body = campaign_body(tid, name=f"f{i}", audience={"match": "filter", "filter": flt})
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        r = client.post(f"{base}/{r.json()['id']}/preview", json={"sample": 100})
        assert r.status_code == 200, r.text
        assert r.json()["gids"] == _expect(pred), flt


def test_preview_shows_exact_bodies_and_writes_nothing(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid], batch_size=2)
    cid = client.post(base, json=campaign_body(tid)).json()["id"]
    r = client.post(f"{base}/{cid}/preview", json={"sample": 3})
    assert r.status_code == 200, r.text
    doc = r.json()
    shanghai = _expect(lambda a: a.get("city") == "Shanghai")[:3]
    assert doc["gids"] == shanghai
    assert [req["gids"] for req in doc["requests"]] == [shanghai[:2], shanghai[2:]]
    first = doc["requests"][0]["body"]
    assert len(first["orderNo"]) == 32
    # Never a valid sign: it would let whoever previews brute-force the token offline.
    assert first["sign"] == "<redacted>"
    assert first["dataList"][0] == {
        "gid": shanghai[0],
        "temData": {"title": f"Hi M{shanghai[0]}", "amount": 100},
        "dynamicData": {"memberId": f"M{shanghai[0]}", "phone": f"130{shanghai[0]:08d}"},
    }
    assert doc["requests"][0]["body_text"].startswith('{"timeStamp":')
    assert client.post(f"{base}/{cid}/preview", json={"sample": 0}).status_code == 422
    with runtime.tx() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
        assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0


def _publish(client: httpx.Client, base: str, cid: int) -> dict[str, Any]:
    for action in ("submit", "approve", "publish"):
        r = client.post(f"{base}/{cid}/{action}")
        assert r.status_code == 200, (action, r.text)
    data: dict[str, Any] = r.json()
    return data


def _settled(client: httpx.Client, base: str, cid: int, sent: int) -> dict[str, Any] | None:
    stats: dict[str, Any] = client.get(f"{base}/{cid}/stats").json()
    return stats if stats["sent"] == sent and stats["pending"] == 0 else None


def test_recurring_runs_and_participation_every_n_days(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    client.patch(f"/projects/{pid}", json={"timezone": "Asia/Shanghai"})
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid])
        body = campaign_body(
            tid,
            trigger={"type": "recurring", "every": "daily", "time": "10:00"},
            participation={"mode": "every", "days": 2},
        )
        cid = client.post(base, json=body).json()["id"]
        published = _publish(client, base, cid)
        assert published["status"] == "running"
        first = published["next_run_at"]
        shanghai = _expect(lambda a: a.get("city") == "Shanghai")
        from datetime import datetime

        t0 = datetime.fromisoformat(first)
        assert t0.hour == 2 and t0.minute == 0  # 10:00 in Shanghai
        assert t0 > utcnow()
        # Not yet due: nothing fires.
        assert scheduler.tick(runtime, t0 - timedelta(seconds=1)).runs == 0
        report = scheduler.tick(runtime, t0)
        assert report.runs == 1
        # The same scheduled time never fires twice.
        assert scheduler.tick(runtime, t0).runs == 0
        wait_for(lambda: _settled(client, base, cid, len(shanghai)), what="first run delivered")
        assert sorted(rx.gids()) == shanghai
        c = client.get(f"{base}/{cid}").json()
        assert c["next_run_at"].startswith((t0 + timedelta(days=1)).isoformat()[:19])
        # Day 2: everyone entered one day ago, so all are suppressed.
        assert scheduler.tick(runtime, t0 + timedelta(days=1)).runs == 1
        stats = client.get(f"{base}/{cid}/stats").json()
        assert stats["suppressed"] == len(shanghai)
        assert stats["suppressed_by_reason"] == {"participation": len(shanghai)}
        assert stats["runs"] == 2
        # Day 3: two days later they may enter again.
        assert scheduler.tick(runtime, t0 + timedelta(days=2)).runs == 1
        wait_for(lambda: _settled(client, base, cid, 2 * len(shanghai)), what="third run delivered")
        assert sorted(rx.gids()) == sorted(shanghai * 2)
        stats = client.get(f"{base}/{cid}/stats").json()
        assert stats["targeted"] == 3 * len(shanghai)
        assert stats["entered"] == 2 * len(shanghai)
        assert stats["succeeded"] == 2 * len(shanghai)
        r = client.get(f"{base}/{cid}/deliveries", params={"status": "suppressed"})
        assert r.json()["total"] == len(shanghai)
        assert {d["gid"] for d in r.json()["items"]} == set(shanghai)
        assert all(d["reason"] == "participation" for d in r.json()["items"])
        assert all(d["step_id"] is None and d["error_msg"] is None for d in r.json()["items"])
        r = client.get(f"{base}/{cid}/deliveries", params={"gid": shanghai[0]})
        assert r.json()["total"] == 3
        assert client.get(f"{base}/{cid}/deliveries", params={"status": "x"}).status_code == 422
        # Pausing stops the runs; resuming skips the ones missed while paused.
        client.post(f"{base}/{cid}/pause")
        assert scheduler.tick(runtime, t0 + timedelta(days=3)).runs == 0
        with runtime.tx() as session:
            assert session.scalar(select(func.count()).select_from(CampaignRun)) == 3
            entries = session.scalar(select(func.count()).select_from(CampaignEntry))
            assert entries == 2 * len(shanghai)  # the suppressed ones are not entries


def test_strategy_tree_split_ab_control_delay_next(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver()) as rx1, running_receiver(Receiver()) as rx2:
        tp1 = make_touchpoint(client, pid, rx1.url, [sid], name="SMS")
        tp2 = make_touchpoint(client, pid, rx2.url, [sid], name="Push")
        delayed = send_step(tp2, step_id="later")
        delayed["timing"] = {"type": "delay", "minutes": 30}
        strategy = {
            "type": "split",
            "id": "split",
            "by": "audience",
            "branches": [
                {
                    "filter": {"attribute": "vip", "operator": "eq", "value": True},
                    "next": send_step(tp1, step_id="vip", next=delayed),
                }
            ],
            "otherwise": {
                "type": "ab",
                "id": "ab",
                "branches": [
                    {"percent": 50, "next": send_step(tp1, step_id="a")},
                    {
                        "percent": 50,
                        "next": {"type": "send", "id": "b", "timing": {"type": "none"}},
                    },
                ],
            },
        }
        body = campaign_body(tp1, audience={"match": "all"}, strategy=strategy)
        cid = client.post(base, json=body).json()["id"]
        _publish(client, base, cid)
        everyone = sorted(USERS)
        vip = _expect(lambda a: a["vip"])
        rest = [g for g in everyone if g not in vip]
        group_a = [g for g in rest if ab_bucket(cid, g) < 50]
        group_b = [g for g in rest if ab_bucket(cid, g) >= 50]
        assert group_a and group_b
        wait_for(lambda: _settled(client, base, cid, len(vip) + len(group_a)), what="first sends")
        assert sorted(rx1.gids()) == sorted(vip + group_a)
        assert rx2.gids() == []
        # The vip users move on to the delayed step once their first send settled...
        wait_for(
            lambda: (
                client.get(f"{base}/{cid}/stats").json()["by_step"]["later"]["entered"] == len(vip)
            ),
            what="users queued on the delayed step",
        )
        # ...which sends 30 minutes later.
        assert scheduler.tick(runtime, utcnow() + timedelta(minutes=29)).due == 0
        assert rx2.gids() == []
        assert scheduler.tick(runtime, utcnow() + timedelta(minutes=31)).due == 1
        wait_for(lambda: sorted(rx2.gids()) == vip, what="delayed send delivered")
        stats = wait_for(
            lambda: _settled(client, base, cid, 2 * len(vip) + len(group_a)), what="stats"
        )
        by_step = stats["by_step"]
        assert by_step["split"]["entered"] == len(everyone)
        assert by_step["vip"]["succeeded"] == len(vip)
        assert by_step["later"]["entered"] == len(vip)
        assert by_step["later"]["succeeded"] == len(vip)
        assert by_step["ab"]["entered"] == len(rest)
        assert by_step["a"]["sent"] == len(group_a)
        assert by_step["b"]["control"] == len(group_b)
        assert by_step["b"]["sent"] == 0
        assert stats["control"] == len(group_b)
        assert stats["by_touchpoint"][str(tp2)]["succeeded"] == len(vip)
        # Once every delivery is settled and nothing is due, the one-off campaign finishes.
        wait_for(
            lambda: client.get(f"{base}/{cid}").json()["status"] == "finished",
            what="campaign finished",
        )


def test_fallback_failures_all_mode_and_stats(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with (
        running_receiver(Receiver(fail=lambda g: g % 2 == 0)) as rx1,
        running_receiver(Receiver(fail=lambda g: g % 4 == 0)) as rx2,
        running_receiver(Receiver()) as rx3,
    ):
        tp1 = make_touchpoint(client, pid, rx1.url, [sid], name="A")
        tp2 = make_touchpoint(client, pid, rx2.url, [sid], name="B")
        tp3 = make_touchpoint(client, pid, rx3.url, [sid], name="C")
        # first_success over A then B; then an "all" step on B and C for everyone.
        after = send_step(tp2, tp3, step_id="all")
        after["mode"] = "all"
        body = campaign_body(
            tp1, audience={"match": "all"}, strategy=send_step(tp1, tp2, next=after)
        )
        cid = client.post(base, json=body).json()["id"]
        _publish(client, base, cid)
        everyone = sorted(USERS)
        evens = [g for g in everyone if g % 2 == 0]
        fours = [g for g in everyone if g % 4 == 0]
        stats = wait_for(
            lambda: _settled(client, base, cid, 2 * len(everyone)), what="both steps settled"
        )
        assert sorted(rx1.gids()) == everyone
        # B got the fallback users of the first step, then everyone in the "all" step.
        assert sorted(rx2.gids()) == sorted(evens + everyone)
        assert sorted(rx3.gids()) == everyone
        first = stats["by_step"]["s1"]
        assert first["sent"] == len(everyone)
        assert first["succeeded"] == len(everyone) - len(fours)
        assert first["failed"] == len(fours)
        assert first["failed_by_reason"] == {"blocked": len(fours)}
        second = stats["by_step"]["all"]
        assert second["entered"] == len(everyone)
        assert second["succeeded"] == len(everyone)  # C reached everyone
        assert stats["failed"] == len(fours)
        b = stats["by_touchpoint"][str(tp2)]
        assert {k: b[k] for k in ("name", "sent", "succeeded", "failed", "pending")} == {
            "name": "B",
            "sent": len(evens) + len(everyone),
            "succeeded": len(evens) - len(fours) + len(everyone) - len(fours),
            "failed": 2 * len(fours),
            "pending": 0,
        }
        assert b["failed_by_reason"] == {"blocked": 2 * len(fours)}
        # A failed on the evens; B reached the half of them that are not multiples of 4.
        a = stats["by_touchpoint"][str(tp1)]
        assert a["failed"] == a["fell_back"] == len(evens)
        assert first["recovered_by_fallback"] == len(evens) - len(fours)
        assert stats["recovered_by_fallback"] == len(evens) - len(fours)
        assert first["success_rate"] == round((len(everyone) - len(fours)) / len(everyone), 4)
        r = client.get(f"{base}/{cid}/deliveries", params={"status": "TOU_FAIL", "limit": 1000})
        assert r.json()["total"] == len(evens) + 2 * len(fours)


def test_api_enum_values_are_checked_against_the_options_api(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], params=api_enum_params(rx.url))
        step = {
            "type": "send",
            "id": "s1",
            "channels": [{"touchpoint_id": tid, "params": {"tpl": "T9"}}],
        }
        r = client.post(base, json=campaign_body(tid, strategy=step))
        assert r.status_code == 422, r.text
        assert {d["field"] for d in r.json()["error"]["details"]} == {
            "strategy.channels[0].params.tpl"
        }
        step["channels"][0]["params"] = {"tpl": "T1"}
        r = client.post(base, json=campaign_body(tid, strategy=step))
        assert r.status_code == 201, r.text
        assert rx.option_calls[0]["paramName"] == "tpl"


def test_not_started_becomes_running_and_broken_campaign_is_closed(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid])
    at = utcnow() + timedelta(days=1)
    body = campaign_body(tid, trigger={"type": "once", "at": at.isoformat()})
    cid = client.post(base, json=body).json()["id"]
    assert _publish(client, base, cid)["status"] == "not_started"
    assert scheduler.tick(runtime, at - timedelta(seconds=1)).started == 0
    assert client.get(f"{base}/{cid}").json()["status"] == "not_started"
    # The touchpoint vanishes behind the campaign's back (it cannot be disabled through
    # the API while the campaign uses it): the run fails and the system closes it.
    with runtime.tx() as session:
        session.execute(update(Touchpoint).where(Touchpoint.id == tid).values(status="disabled"))
    report = scheduler.tick(runtime, at)
    assert report.started == 1
    assert report.closed == 1
    c = client.get(f"{base}/{cid}").json()
    assert c["status"] == "closed"
    assert "no longer usable" in c["last_error"]
    assert c["last_error_code"] == "touchpoint_unusable"
    assert c["last_error_params"] == {"touchpoint_id": tid, "name": "SMS"}
    assert c["allowed_actions"] == ["copy", "delete"]
    with runtime.tx() as session:
        assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0


def _events(client: httpx.Client, pid: int, *events: tuple[str, int, dict[str, Any]]) -> None:
    body = {"events": [{"name": n, "gid": g, "properties": p} for n, g, p in events]}
    r = client.post(f"/projects/{pid}/events", json=body)
    assert r.status_code == 202, r.text


def test_event_trigger(client: httpx.Client, world: dict[str, Any]) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid])
        trigger = {
            "type": "event",
            "event": "purchase",
            "filter": {"property": "amount", "operator": "gte", "value": 100},
        }
        body = campaign_body(
            tid,
            trigger=trigger,
            audience={
                "match": "filter",
                "filter": {"attribute": "city", "operator": "ne", "value": "Beijing"},
            },
        )
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        # Before publishing: never triggers.
        _events(client, pid, ("purchase", 2, {"amount": 500}))
        assert _publish(client, base, cid)["status"] == "running"
        beijing = next(g for g, a in USERS.items() if a.get("city") == "Beijing")
        _events(
            client,
            pid,
            ("purchase", 3, {"amount": 150}),
            ("purchase", 4, {"amount": 100}),
            ("purchase", 4, {"amount": 120}),  # twice in one poll: one entry
            ("purchase", 6, {"amount": 50}),  # below the property filter
            ("view", 7, {"amount": 500}),  # another event
            ("purchase", beijing, {"amount": 900}),  # outside the audience
        )
        wait_for(lambda: sorted(rx.gids()) == [3, 4], timeout=60, what="event-triggered sends")
        # Participation "once": doing it again later is suppressed.
        _events(client, pid, ("purchase", 3, {"amount": 150}), ("purchase", 8, {"amount": 100}))
        wait_for(lambda: sorted(rx.gids()) == [3, 4, 8], timeout=60, what="second trigger")
        stats = wait_for(
            lambda: (s := client.get(f"{base}/{cid}/stats").json())["suppressed"] == 1 and s,
            what="the repeat to be suppressed",
        )
        assert stats["entered"] == 3
        assert stats["succeeded"] == 3
        assert client.get(f"{base}/{cid}").json()["status"] == "running"
        # Events while paused are skipped; after resuming, new ones trigger again.
        client.post(f"{base}/{cid}/pause")
        _events(client, pid, ("purchase", 9, {"amount": 100}))
        client.post(f"{base}/{cid}/resume")
        _events(client, pid, ("purchase", 10, {"amount": 100}))
        wait_for(lambda: 10 in rx.gids(), timeout=60, what="trigger after resume")
        assert 9 not in rx.gids()


def test_event_trigger_validation(client: httpx.Client, world: dict[str, Any]) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid])
    bad = {
        "trigger.event": {"type": "event"},
        "trigger.filter.value": {
            "type": "event",
            "event": "buy",
            "filter": {"property": "sku", "operator": "in", "value": [1, "a"]},
        },
        "trigger.filter.conditions[0].property": {
            "type": "event",
            "event": "buy",
            "filter": {"op": "or", "conditions": [{"operator": "exists"}]},
        },
        "trigger.within_minutes": {
            "type": "event_without",
            "event": "cart",
            "without": "buy",
            "within_minutes": 7 * 24 * 60 + 1,
        },
        "trigger.without": {"type": "event_without", "event": "cart", "within_minutes": 5},
    }
    for i, (field, trig) in enumerate(bad.items()):
        r = client.post(base, json=campaign_body(tid, name=f"e{i}", trigger=trig))
        assert r.status_code == 422, (trig, r.text)
        assert {d["field"] for d in r.json()["error"]["details"]} == {field}, r.text


def test_event_without_trigger(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid])
        trigger = {
            "type": "event_without",
            "event": "add_to_cart",
            "without": "purchase",
            "within_minutes": 1,
        }
        body = campaign_body(tid, trigger=trigger, audience={"match": "all"})
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert _publish(client, base, cid)["status"] == "running"
        t0 = utcnow()
        at = lambda delta: (t0 + delta).isoformat()  # noqa: E731
        body = {
            "events": [
                {"name": "add_to_cart", "gid": g, "time": at(timedelta(0))} for g in (1, 2, 3, 4)
            ]
            + [
                # 2 buys within the window; 3 bought before the cart; 4 only after the window.
                {"name": "purchase", "gid": 2, "time": at(timedelta(seconds=30))},
                {"name": "purchase", "gid": 3, "time": at(timedelta(hours=-1))},
                {"name": "purchase", "gid": 4, "time": at(timedelta(minutes=5))},
            ]
        }
        assert client.post(f"/projects/{pid}/events", json=body).status_code == 202

        def waits() -> int:
            with runtime.tx() as session:
                return int(session.scalar(select(func.count()).select_from(CampaignWait)) or 0)

        wait_for(lambda: waits() == 4, timeout=60, what="the waits to start")
        assert rx.gids() == []
        assert scheduler.tick(runtime, t0 + timedelta(seconds=50)).runs == 0
        assert scheduler.tick(runtime, t0 + timedelta(minutes=2)).runs == 1
        wait_for(lambda: sorted(rx.gids()) == [1, 3, 4], timeout=60, what="sends")
        assert waits() == 0
        stats = client.get(f"{base}/{cid}/stats").json()
        assert stats["entered"] == 3


def test_a_big_run_is_routed_page_by_page(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's own transaction routes the first page; the other entered users wait
    as due pages, each routed in its own transaction: a page that fails stays for the
    next tick while the others go out, and every user is sent exactly once."""
    pid, sid, base = world["pid"], world["sid"], world["base"]
    monkeypatch.setattr(runner, "PAGE", 7)
    everyone = sorted(USERS)
    at = (utcnow() + timedelta(days=1)).replace(microsecond=0)
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], batch_size=5)
        body = campaign_body(
            tid, audience={"match": "all"}, trigger={"type": "once", "at": at.isoformat()}
        )
        cid = client.post(base, json=body).json()["id"]
        assert _publish(client, base, cid)["status"] == "not_started"
        with runtime.tx() as session:
            assert repo.start_due_campaigns(session, at) == 1
        with runtime.tx() as session:
            assert runner.fire(session, cid, at) is not None
        with runtime.tx() as session:
            pages = session.execute(
                select(
                    CampaignDue.kind, CampaignDue.step_id, CampaignDue.gid_from, CampaignDue.gid_to
                )
                .where(CampaignDue.campaign_id == cid)
                .order_by(CampaignDue.id)
            ).all()
            queued = session.scalar(
                select(func.sum(Order.user_count)).where(Order.campaign_id == cid)
            )
        assert queued == 7
        # Each page names a range of the run's entries, in gid order, after the first.
        paged = [[g for g in everyone if lo <= g <= hi] for _, _, lo, hi in pages]
        sizes = [(p.kind, p.step_id, len(gids)) for p, gids in zip(pages, paged, strict=True)]
        assert sizes == [
            ("entries", "s1", 7),
            ("entries", "s1", 7),
            ("entries", "s1", 7),
            ("entries", "s1", 7),
            ("entries", "s1", 5),
        ]
        assert [g for gids in paged for g in gids] == everyone[7:]
        assert pages[0].gid_from == everyone[6] + 1

        # A tick that has spent its time leaves the pages for the next one, at once.
        monkeypatch.setattr(scheduler, "DUE_SECONDS", 0.0)
        report = scheduler.tick(runtime, at)
        assert (report.due, report.more) == (0, True)
        monkeypatch.setattr(scheduler, "DUE_SECONDS", 5.0)

        failing = everyone[20]
        real_start_send = runner.start_send

        def start_send(ctx: Any, step: Any, gids: Any) -> None:
            if failing in gids:
                raise RuntimeError("the page fails")
            real_start_send(ctx, step, gids)

        monkeypatch.setattr(runner, "start_send", start_send)
        report = scheduler.tick(runtime, at)
        assert (report.due, report.more) == (4, False)
        monkeypatch.setattr(runner, "start_send", real_start_send)
        assert scheduler.tick(runtime, at).due == 1
        stats = wait_for(lambda: _settled(client, base, cid, len(everyone)), what="all settled")
        assert sorted(rx.gids()) == everyone
        assert stats["entered"] == stats["succeeded"] == len(everyone)
        assert stats["by_step"]["s1"]["entered"] == len(everyone)
