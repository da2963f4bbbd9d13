"""A campaign's results through the real API: stats from counters (fallback figures,
success rates, step names, deleted touchpoints by name, the time series), the
deliveries list and its CSV export, copies that keep a deleted touchpoint's name,
event splits in a run, and option lookups made outside any transaction."""

from __future__ import annotations

import codecs
import csv
import io
import sqlite3
import threading
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from sqlalchemy import event, func, select

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
from touchgate.campaigns import scheduler, stats
from touchgate.models.base import utcnow
from touchgate.models.campaigns import Campaign, CampaignCount
from touchgate.runtime import Runtime

N = 40


@pytest.fixture(autouse=True)
def fresh_touchpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_touchpoint_config(monkeypatch)


@pytest.fixture
def world(client: httpx.Client) -> dict[str, Any]:
    pid, sid = make_project(client, approval=False)
    assert client.patch(f"/projects/{pid}", json={"timezone": "Asia/Shanghai"}).status_code == 200
    import_users(
        client,
        pid,
        (
            {"gid": g, "attributes": {"city": "Shanghai", "memberId": f"M{g}"}}
            for g in range(1, N + 1)
        ),
    )
    return {"pid": pid, "sid": sid, "base": f"/projects/{pid}/spaces/{sid}/campaigns"}


def publish(client: httpx.Client, base: str, cid: int) -> None:
    for action in ("submit", "publish"):
        r = client.post(f"{base}/{cid}/{action}")
        assert r.status_code == 200, (action, r.text)


def finished(client: httpx.Client, base: str, cid: int) -> bool:
    return bool(client.get(f"{base}/{cid}").json()["status"] == "finished")


def test_results_names_fallbacks_series_csv_and_copies(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    fours = [g for g in range(1, N + 1) if g % 4 == 0]
    with (
        running_receiver(Receiver(fail=lambda g: g % 4 == 0)) as rx1,
        running_receiver(Receiver(fail=lambda g: g == 8)) as rx2,
    ):
        sms = make_touchpoint(client, pid, rx1.url, [sid], name="短信通知")
        push = make_touchpoint(client, pid, rx2.url, [sid], name="Push")
        strategy = send_step(sms, push, name="生日短信")
        body = campaign_body(sms, name="生日", audience={"match": "all"}, strategy=strategy)
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["timezone"] == "Asia/Shanghai"
        assert created["strategy"]["name"] == "生日短信"
        assert [t["name"] for t in created["touchpoints"]] == ["短信通知", "Push"]
        assert created["warnings"] == []
        cid = created["id"]
        publish(client, base, cid)
        wait_for(lambda: finished(client, base, cid), what="the campaign to finish")
    s = client.get(f"{base}/{cid}/stats").json()
    # Failed on the first touchpoint, reached by the fallback: said, not hidden.
    assert s["sent"] == N
    assert s["succeeded"] == N - 1
    assert s["failed"] == 1
    assert s["failed_by_reason"] == {"blocked": 1}
    assert s["recovered_by_fallback"] == len(fours) - 1
    assert s["success_rate"] == round((N - 1) / N, 4)
    assert s["timezone"] == "Asia/Shanghai"
    step = s["by_step"]["s1"]
    assert (step["name"], step["type"], step["recovered_by_fallback"]) == (
        "生日短信",
        "send",
        len(fours) - 1,
    )
    first = s["by_touchpoint"][str(sms)]
    assert (first["name"], first["deleted"]) == ("短信通知", False)
    assert (first["failed"], first["fell_back"]) == (len(fours), len(fours))
    assert first["success_rate"] == round((N - len(fours)) / N, 4)
    second = s["by_touchpoint"][str(push)]
    assert (second["sent"], second["succeeded"], second["failed"]) == (
        len(fours),
        len(fours) - 1,
        1,
    )
    # The series agrees with the totals.
    assert s["series"]["interval"] == "minute"
    points = s["series"]["points"]
    assert sum(p["succeeded"] for p in points) == s["succeeded"]
    assert sum(p["failed"] for p in points) == s["failed"]
    assert sum(p["suppressed"] for p in points) == s["suppressed"]

    # Deliveries: names, and the filters.
    page = client.get(f"{base}/{cid}/deliveries", params={"gid": 8}).json()
    assert [(d["touchpoint_name"], d["status"], d["step_name"]) for d in page["items"]] == [
        ("短信通知", "TOU_FAIL", "生日短信"),
        ("Push", "TOU_FAIL", "生日短信"),
    ]
    assert page["items"][0]["updated_at"] is not None
    assert client.get(f"{base}/{cid}/deliveries", params={"touchpoint_id": push}).json()[
        "total"
    ] == len(fours)
    assert client.get(f"{base}/{cid}/deliveries", params={"step_id": "nope"}).json()["total"] == 0

    # The touchpoint is retired: history keeps its name, and says it was deleted.
    assert client.post(f"/projects/{pid}/touchpoints/{sms}/disable").status_code == 200
    assert client.delete(f"/projects/{pid}/touchpoints/{sms}").status_code == 204
    s = client.get(f"{base}/{cid}/stats").json()
    assert (s["by_touchpoint"][str(sms)]["name"], s["by_touchpoint"][str(sms)]["deleted"]) == (
        "短信通知",
        True,
    )
    item = client.get(f"{base}/{cid}/deliveries", params={"gid": 1}).json()["items"][0]
    assert (item["touchpoint_name"], item["touchpoint_deleted"]) == ("短信通知", True)

    # The CSV export: BOM, the header, every row, names included.
    r = client.get(f"{base}/{cid}/deliveries.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(codecs.BOM_UTF8)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "gid",
        "step_id",
        "touchpoint_id",
        "touchpoint_name",
        "status",
        "reason",
        "error_msg",
        "order_no",
        "attempts",
        "updated_at",
    ]
    assert len(rows) - 1 == N + len(fours)
    assert {row[3] for row in rows[1:]} == {"短信通知", "Push"}
    failed = client.get(f"{base}/{cid}/deliveries.csv", params={"status": "TOU_FAIL"}).text
    assert len(failed.strip().splitlines()) - 1 == len(fours) + 1
    only_push = client.get(f"{base}/{cid}/deliveries.csv", params={"touchpoint_id": push}).text
    assert len(only_push.strip().splitlines()) - 1 == len(fours)
    assert client.get(f"{base}/{cid}/deliveries.csv", params={"status": "x"}).status_code == 422

    # A copy keeps the values and names the touchpoint to replace.
    r = client.post(f"{base}/{cid}/copy", json={"name": "生日（副本）"})
    assert r.status_code == 200, r.text
    copy = r.json()
    assert copy["name"] == "生日（副本）"
    assert copy["strategy"]["channels"][0] == {
        "touchpoint_id": sms,
        "params": {"title": "Hi {{memberId}}", "amount": 100},
    }
    assert copy["warnings"] == [
        {
            "code": "touchpoint_deleted",
            "field": "strategy.channels[0].touchpoint_id",
            "message": copy["warnings"][0]["message"],
            "params": {"touchpoint_id": sms, "name": "短信通知"},
        }
    ]
    assert {t["id"]: (t["name"], t["deleted"]) for t in copy["touchpoints"]} == {
        sms: ("短信通知", True),
        push: ("Push", False),
    }
    r = client.post(f"{base}/{copy['id']}/submit")
    assert r.status_code == 422
    assert [(d["field"], d["code"], d["params"]) for d in r.json()["error"]["details"]] == [
        (
            "strategy.channels[0].touchpoint_id",
            "touchpoint_deleted",
            {"touchpoint_id": sms, "name": "短信通知"},
        ),
    ]
    assert client.post(f"{base}/{cid}/copy").json()["name"] == "生日 copy"
    r = client.post(f"{base}/{cid}/copy", json={"name": "生日（副本）"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "name_taken"
    r = client.post(f"{base}/{cid}/copy", json={"name": "x" * 21, "other": 1})
    assert {d["field"]: d["code"] for d in r.json()["error"]["details"]} == {
        "name": "text_too_long",
        "other": "unknown_field",
    }


def test_stats_read_only_the_counters(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime
) -> None:
    """Stats never scan per-user rows: a fixed handful of statements, none of them on
    a per-user table, whatever the planner would make of those."""
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver(fail=lambda g: g % 3 == 0)) as rx:
        # Small batches: many settlements, many counter rows to fold later.
        tid = make_touchpoint(client, pid, rx.url, [sid], batch_size=4)
        body = campaign_body(tid, audience={"match": "all"})
        cid = client.post(base, json=body).json()["id"]
        publish(client, base, cid)
        wait_for(lambda: finished(client, base, cid), what="finished")
    me = threading.get_ident()
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() == me:
            statements.append(statement.lower())

    event.listen(runtime.engine, "before_cursor_execute", capture)
    try:
        with runtime.tx() as session:
            campaign = session.get(Campaign, cid)
            assert campaign is not None
            result = stats.campaign_stats(session, campaign)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", capture)
    assert result.succeeded == N - N // 3
    assert result.failed == N // 3
    per_user = ("order_results", "campaign_entries", "campaign_step_users", "campaign_suppressions",
                "events", "sent_messages", " orders")  # fmt: skip
    assert not [s for s in statements if any(t in s for t in per_user)], statements
    assert len(statements) <= 8, statements
    # Folding the counter rows changes nothing in the answer.
    with runtime.tx() as session:
        rows_before = session.scalar(select(func.count()).select_from(CampaignCount)) or 0
        assert repo.compact_counts(session, cid, utcnow() + timedelta(minutes=1)) > 0
        assert (session.scalar(select(func.count()).select_from(CampaignCount)) or 0) < rows_before
    folded = client.get(f"{base}/{cid}/stats").json()
    assert folded == client.get(f"{base}/{cid}/stats").json()
    assert folded["succeeded"] == result.succeeded
    assert folded["by_touchpoint"][str(tid)]["failed"] == N // 3
    assert sum(p["succeeded"] for p in folded["series"]["points"]) == result.succeeded


def test_event_split_routes_users_by_an_event_property(
    client: httpx.Client, world: dict[str, Any]
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    with running_receiver(Receiver()) as big, running_receiver(Receiver()) as small:
        tp_big = make_touchpoint(client, pid, big.url, [sid], name="Coupon")
        tp_small = make_touchpoint(client, pid, small.url, [sid], name="SMS")
        strategy = {
            "type": "split",
            "id": "amount",
            "name": "By amount",
            "by": "event",
            "branches": [
                {
                    "filter": {
                        "op": "and",
                        "conditions": [
                            {"property": "amount", "operator": "gte", "value": 100},
                            {"property": "channel", "operator": "ne", "value": "offline"},
                        ],
                    },
                    "next": send_step(tp_big, step_id="big"),
                }
            ],
            "otherwise": send_step(tp_small, step_id="small"),
        }
        trigger = {"type": "event", "event": "purchase"}
        body = campaign_body(tp_big, trigger=trigger, audience={"match": "all"}, strategy=strategy)
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        publish(client, base, cid)
        events = [
            ("purchase", 3, {"amount": 150, "channel": "app"}),
            ("purchase", 4, {"amount": 50, "channel": "app"}),
            ("purchase", 5, {"amount": 100}),
            ("purchase", 6, {"amount": 500, "channel": "offline"}),
            ("purchase", 7, {"amount": 20}),
            ("purchase", 7, {"amount": 200}),  # twice in one poll: the latest event counts
        ]
        r = client.post(
            f"/projects/{pid}/events",
            json={"events": [{"name": n, "gid": g, "properties": p} for n, g, p in events]},
        )
        assert r.status_code == 202, r.text
        wait_for(lambda: sorted(big.gids()) == [3, 5, 7], what="big spenders")
        wait_for(lambda: sorted(small.gids()) == [4, 6], what="the others")
        s = client.get(f"{base}/{cid}/stats").json()
        assert s["by_step"]["amount"]["entered"] == 5
        assert s["by_step"]["amount"]["name"] == "By amount"
        assert s["by_step"]["big"]["entered"] == 3
        # The preview routes the sample by each user's latest purchase.
        preview = client.post(f"{base}/{cid}/preview", json={"sample": 8}).json()
        routed = {(r["step_id"], g) for r in preview["requests"] for g in r["gids"]}
        assert {g for step, g in routed if step == "big"} == {3, 5, 7}
        assert {g for step, g in routed if step == "small"} == {1, 2, 4, 6, 8}


class LockProbe(Receiver):
    """An options API that, while answering, checks that the service holds no
    database lock: SQLite's write lock, or any campaign row of the space."""

    def __init__(self, database: Any, space_id: int) -> None:
        super().__init__()
        self.database = database
        self.space_id = space_id
        self.probes: list[str] = []

    def probe(self) -> str:
        if self.database.backend == "sqlite":
            lite = sqlite3.connect(self.database.url.removeprefix("sqlite:///"), timeout=0)
            try:
                lite.execute("BEGIN IMMEDIATE")
                lite.rollback()
                return "free"
            except sqlite3.OperationalError as exc:
                return f"locked: {exc}"
            finally:
                lite.close()
        with psycopg.connect(self.database.url, autocommit=False) as conn:
            try:
                conn.execute(
                    "SELECT id FROM campaigns WHERE space_id = %s FOR UPDATE NOWAIT",
                    (self.space_id,),
                )
                return "free"
            except psycopg.errors.LockNotAvailable as exc:
                return f"locked: {exc}"

    async def options(self, request: web.Request) -> web.Response:
        self.probes.append(self.probe())
        return await super().options(request)


def test_options_apis_are_asked_outside_any_transaction(
    client: httpx.Client, world: dict[str, Any], runtime: Runtime, database: Any
) -> None:
    pid, sid, base = world["pid"], world["sid"], world["base"]
    probe = LockProbe(database, sid)
    with running_receiver(probe) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], params=api_enum_params(rx.url))
        step = {
            "type": "send",
            "id": "s1",
            "channels": [{"touchpoint_id": tid, "params": {"tpl": "T1"}}],
        }
        at = (utcnow() + timedelta(days=1)).isoformat()
        body = campaign_body(tid, strategy=step, trigger={"type": "once", "at": at})
        cache = runtime.options_cache
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        for action in ("submit", "publish"):
            cache.clear()  # make each action ask the options API again
            r = client.post(f"{base}/{cid}/{action}")
            assert r.status_code == 200, (action, r.text)
        cache.clear()
        r = client.patch(f"{base}/{cid}", json={"name": "x"})
        assert r.status_code == 409  # not editable any more, and nothing was asked
        assert probe.probes == ["free", "free", "free"], probe.probes
        # A value the options API does not offer is named, as before.
        cache.clear()
        step["channels"][0]["params"] = {"tpl": "T9"}
        r = client.post(base, json=campaign_body(tid, name="other", strategy=step))
        assert r.status_code == 422
        assert [d["field"] for d in r.json()["error"]["details"]] == [
            "strategy.channels[0].params.tpl"
        ]
        assert probe.probes[-1] == "free"
    assert scheduler is not None
