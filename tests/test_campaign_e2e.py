"""The acceptance test of campaigns: 10,000 users, a filtered ``first_success`` campaign
through submit → approve → publish against two real receivers, and a recurring
campaign fired by two ``touchgate worker`` processes on PostgreSQL without a
double send."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from test_campaign_support import (
    ATTRIBUTES,
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
from touchgate.models.base import utcnow
from touchgate.models.campaigns import CampaignEntry, CampaignRun
from touchgate.runtime import Nudge, Runtime

N_USERS = 10_000


@pytest.fixture(autouse=True)
def fresh_touchpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_touchpoint_config(monkeypatch)


def attrs(gid: int) -> dict[str, Any]:
    return {
        "city": ["Shanghai", "Beijing", "Shenzhen"][gid % 3],
        "age": 18 + gid % 60,
        "memberId": f"M{gid}",
        "phone": f"139{gid:08d}",
    }


def _publish(client: httpx.Client, base: str, cid: int) -> dict[str, Any]:
    assert client.post(f"{base}/{cid}/submit").json()["status"] == "in_approval"
    assert client.post(f"{base}/{cid}/approve").json()["status"] == "awaiting_publish"
    r = client.post(f"{base}/{cid}/publish")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_first_success_campaign_end_to_end(client: httpx.Client) -> None:
    pid, sid = make_project(client, "E2E")
    assert (
        import_users(
            client, pid, ({"gid": g, "attributes": attrs(g)} for g in range(1, N_USERS + 1))
        )
        == N_USERS
    )
    targeted = {
        g for g in range(1, N_USERS + 1) if attrs(g)["age"] >= 30 and attrs(g)["city"] != "Shenzhen"
    }
    fallback = {g for g in targeted if g % 7 == 0}
    with (
        running_receiver(Receiver(fail=lambda gid: gid % 7 == 0)) as rx1,
        running_receiver(Receiver()) as rx2,
    ):
        tp1 = make_touchpoint(client, pid, rx1.url, [sid], name="Coupons", batch_size=500)
        tp2 = make_touchpoint(client, pid, rx2.url, [sid], name="SMS", batch_size=200)
        base = f"/projects/{pid}/spaces/{sid}/campaigns"
        body = campaign_body(
            tp1,
            audience={
                "match": "filter",
                "filter": {
                    "op": "and",
                    "conditions": [
                        {"attribute": "age", "operator": "gte", "value": 30},
                        {"attribute": "city", "operator": "in", "value": ["Shanghai", "Beijing"]},
                    ],
                },
            },
            strategy=send_step(tp1, tp2),
        )
        r = client.post(base, json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert _publish(client, base, cid)["status"] in ("running", "finished")
        wait_for(
            lambda: client.get(f"{base}/{cid}").json()["status"] == "finished",
            timeout=240,
            what="the campaign to finish",
        )

        # Receivers: every targeted user reached exactly once; fallback users on the second.
        first = Counter(rx1.gids())
        second = Counter(rx2.gids())
        assert set(first) == targeted
        assert max(first.values()) == 1
        assert set(second) == fallback
        assert max(second.values()) == 1
        successes = Counter(rx1.gids("TOU_SUCC")) + Counter(rx2.gids("TOU_SUCC"))
        assert set(successes) == targeted
        assert set(successes.values()) == {1}
        # Batches respected each touchpoint's batch size.
        assert max(len(b["dataList"]) for b in rx1.bodies) <= 500
        assert max(len(b["dataList"]) for b in rx2.bodies) <= 200
        sample = next(b for b in rx1.bodies if b["dataList"])["dataList"][0]
        assert sample["temData"] == {"title": f"Hi M{sample['gid']}", "amount": 100}

    stats = client.get(f"{base}/{cid}/stats").json()
    n, k = len(targeted), len(fallback)
    assert stats["targeted"] == n
    assert stats["entered"] == n
    assert stats["sent"] == n
    assert stats["succeeded"] == n
    assert stats["failed"] == 0
    assert stats["pending"] == 0
    assert stats["suppressed"] == 0
    assert stats["runs"] == 1
    assert stats["by_step"]["s1"]["succeeded"] == n
    coupons = stats["by_touchpoint"][str(tp1)]
    assert {key: coupons[key] for key in ("name", "sent", "succeeded", "failed", "pending")} == {
        "name": "Coupons",
        "sent": n,
        "succeeded": n - k,
        "failed": k,
        "pending": 0,
    }
    assert coupons["failed_by_reason"] == {"blocked": k}
    # The failures were not lost: every one of them was reached by the fallback.
    assert coupons["fell_back"] == k
    assert stats["recovered_by_fallback"] == k
    assert stats["success_rate"] == 1.0
    assert stats["by_touchpoint"][str(tp2)]["sent"] == k
    assert stats["by_touchpoint"][str(tp2)]["succeeded"] == k

    deliveries = client.get(f"{base}/{cid}/deliveries", params={"limit": 1000})
    assert deliveries.json()["total"] == n + k
    failed = client.get(f"{base}/{cid}/deliveries", params={"status": "TOU_FAIL"}).json()
    assert failed["total"] == k
    assert {d["touchpoint_id"] for d in failed["items"]} == {tp1}
    one = client.get(f"{base}/{cid}/deliveries", params={"gid": min(fallback)}).json()
    assert [(d["touchpoint_id"], d["status"]) for d in one["items"]] == [
        (tp1, "TOU_FAIL"),
        (tp2, "TOU_SUCC"),
    ]

    # Every final result is a $ma_channel_touch event.
    events = client.get(
        f"/projects/{pid}/events", params={"name": "$ma_channel_touch", "limit": 5}
    ).json()
    assert events["total"] == n + k
    props = events["items"][0]["properties"]
    assert props["campaign_id"] == cid
    assert props["step_id"] == "s1"
    # A second publish of the same campaign is not possible: it is finished.
    assert client.post(f"{base}/{cid}/publish").status_code == 409

    # The audit log holds every write of this test, in order (the refused publish
    # above wrote nothing, so it left no entry); the token never appears.
    audit = client.get(f"/projects/{pid}/audit", params={"limit": 1000}).json()
    entries = list(reversed(audit["items"]))
    assert [(e["resource_type"], e["action"]) for e in entries] == [
        ("project", "create"),
        ("space", "create"),
        *[("attribute", "create")] * len(ATTRIBUTES),
        ("users", "import"),
        ("touchpoint", "create"),
        ("touchpoint", "set_spaces"),
        ("touchpoint", "create"),
        ("touchpoint", "set_spaces"),
        ("campaign", "create"),
        ("campaign", "submit"),
        ("campaign", "approve"),
        ("campaign", "publish"),
    ]
    assert {e["key_name"] for e in entries} == {"bootstrap-admin"}
    created = entries[len(ATTRIBUTES) + 3]["changes"]
    assert created["token_set"] == {"old": None, "new": True}
    assert created["token"] == {"old": None, "new": "***"}
    assert "s3cret" not in str(audit)
    publish = entries[-1]["changes"]["status"]
    assert publish["old"] == "awaiting_publish"
    assert publish["new"] in ("running", "finished")


def _worker(database_url: str, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": database_url,
        "TOUCHGATE_SECRET_KEY": "test-secret-key",
        "TOUCHGATE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }
    exe = Path(sys.executable).parent / "touchgate"
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(exe), "worker", "--id", name], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def test_recurring_campaign_with_two_worker_processes(
    client: httpx.Client, runtime: Runtime, database: Any, tmp_path: Path
) -> None:
    if database.backend != "postgresql":
        pytest.skip("several worker processes are the PostgreSQL setup")
    pid, sid = make_project(client, "Workers")
    import_users(client, pid, ({"gid": g, "attributes": attrs(g)} for g in range(1, 301)))
    workers = [_worker(database.url, tmp_path, f"w{i}") for i in range(2)]
    # Leave the scheduling to the two worker processes: the test's own server (same
    # database) stops ticking for the duration of the test, and is not woken by the
    # publish either (its scheduler listens to the runtime's own nudge).
    runtime.campaign_tick_seconds = 3600.0
    own_nudge, runtime.campaigns_changed = runtime.campaigns_changed, Nudge()
    time.sleep(1.5)
    try:
        with running_receiver(Receiver()) as rx:
            tid = make_touchpoint(client, pid, rx.url, [sid])
            base = f"/projects/{pid}/spaces/{sid}/campaigns"
            end = utcnow() + timedelta(seconds=40)
            body = campaign_body(
                tid,
                name="Every 5 s",
                trigger={"type": "recurring", "cron": "* * * * * */5", "end": end.isoformat()},
                audience={"match": "all"},
            )
            cid = client.post(base, json=body).json()["id"]
            _publish(client, base, cid)
            wait_for(lambda: len(rx.gids()) >= 300, timeout=60, what="the first run")
            # New users arrive between runs: a later run picks them up, once.
            import_users(client, pid, ({"gid": g, "attributes": attrs(g)} for g in range(301, 601)))
            wait_for(lambda: len(rx.gids()) >= 600, timeout=60, what="the new users")
            wait_for(
                lambda: client.get(f"{base}/{cid}").json()["status"] == "finished",
                timeout=120,
                what="the campaign to reach its end",
            )
            counts = Counter(rx.gids())
            assert set(counts) == set(range(1, 601))
            assert set(counts.values()) == {1}, "a user was sent twice"
        with runtime.tx() as session:
            runs = session.execute(
                select(CampaignRun.scheduled_for, CampaignRun.owner, CampaignRun.entered)
            ).all()
            per_gid = session.execute(
                select(CampaignEntry.gid, func.count())
                .where(CampaignEntry.status == "entered")
                .group_by(CampaignEntry.gid)
            ).all()
        assert len(runs) >= 3
        worker_owners = {f"{socket.gethostname()}-{p.pid}" for p in workers}
        assert {r.owner for r in runs} <= worker_owners
        assert len({r.scheduled_for for r in runs}) == len(runs)
        assert all(r.scheduled_for.second % 5 == 0 for r in runs)
        assert sum(r.entered for r in runs) == 600
        assert len(per_gid) == 600
        assert {n for _, n in per_gid} == {1}
        stats = client.get(f"{base}/{cid}/stats").json()
        assert stats["succeeded"] == 600
        assert stats["entered"] == 600
        assert stats["targeted"] == stats["entered"] + stats["suppressed"]
        assert stats["suppressed_by_reason"] == {"participation": stats["suppressed"]}
    finally:
        runtime.campaign_tick_seconds = None
        runtime.campaigns_changed = own_nudge
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("w*.log")}
        assert all("Traceback" not in text for text in logs.values()), logs


def test_a_published_campaign_starts_at_once(client: httpx.Client, runtime: Runtime) -> None:
    """Publishing wakes this process's scheduler: a "send now" campaign does not wait
    for the next tick (here an hour away)."""
    pid, sid = make_project(client, "At once")
    import_users(client, pid, ({"gid": g, "attributes": attrs(g)} for g in range(1, 51)))
    runtime.campaign_tick_seconds = 3600.0
    time.sleep(1.5)  # the tick under way (if any) ends; the next is an hour away
    try:
        with running_receiver(Receiver()) as rx:
            tid = make_touchpoint(client, pid, rx.url, [sid])
            base = f"/projects/{pid}/spaces/{sid}/campaigns"
            body = campaign_body(tid, audience={"match": "all"})
            cid = client.post(base, json=body).json()["id"]
            _publish(client, base, cid)
            wait_for(lambda: len(rx.gids()) >= 50, timeout=20, what="the campaign's sends")
            assert sorted(rx.gids()) == list(range(1, 51))
    finally:
        runtime.campaign_tick_seconds = None
