"""Campaign stats answer fast whatever PostgreSQL's planner statistics say.

In the field a stats query once hung for 64 s: the planner read 0 rows for the
per-user tables and chose nested loops over full scans. Stats now read only the
counters; this test wipes the planner statistics of every table the stats touch,
fills the counter table with other campaigns' rows, and checks each statement's
plan (an index on the campaign, no sequential scan of the counters, no per-user
table) and that the API answers within a statement timeout of half a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from test_campaign_support import (
    Receiver,
    campaign_body,
    fresh_touchpoint_config,
    import_users,
    make_project,
    make_touchpoint,
    running_receiver,
    wait_for,
)
from touchgate.campaigns import stats
from touchgate.models.campaigns import Campaign
from touchgate.runtime import Runtime

N = 30
OTHER_ROWS = 200_000
PER_USER = ("order_results", "campaign_entries", "campaign_step_users", "campaign_suppressions",
            "events", "sent_messages", "attempts", " users")  # fmt: skip
STATS_TABLES = ("campaign_counts", "campaign_runs", "campaigns", "projects", "touchpoints")


@pytest.fixture(autouse=True)
def fresh_touchpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_touchpoint_config(monkeypatch)


@pytest.fixture
def no_planner_statistics(runtime: Runtime) -> Iterator[None]:
    """PostgreSQL only; afterwards autovacuum is back on and the statistics fresh."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner")
    yield
    with runtime.engine.begin() as conn:
        for table in STATS_TABLES:
            conn.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
        conn.execute(text(f"ANALYZE {', '.join(STATS_TABLES)}"))


def _wipe_statistics(runtime: Runtime) -> None:
    """What the planner knew of the tables: nothing, as after a restore or a bulk load
    into tables analysed while empty."""
    with runtime.engine.begin() as conn:
        for table in STATS_TABLES:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        names = ", ".join(f"'{t}'" for t in STATS_TABLES)
        conn.execute(
            text(
                "DELETE FROM pg_statistic WHERE starelid IN "
                f"(SELECT oid FROM pg_class WHERE relname IN ({names}))"
            )
        )
        conn.execute(
            text(f"UPDATE pg_class SET reltuples = 0, relpages = 0 WHERE relname IN ({names})")
        )


def test_stats_plans_ignore_planner_statistics(
    client: httpx.Client, runtime: Runtime, no_planner_statistics: None
) -> None:
    pid, sid = make_project(client, approval=False)
    import_users(client, pid, ({"gid": g, "attributes": {}} for g in range(1, N + 1)))
    base = f"/projects/{pid}/spaces/{sid}/campaigns"
    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], batch_size=5)
        cid = client.post(base, json=campaign_body(tid, audience={"match": "all"})).json()["id"]
        for action in ("submit", "publish"):
            assert client.post(f"{base}/{cid}/{action}").status_code == 200
        wait_for(
            lambda: client.get(f"{base}/{cid}").json()["status"] == "finished", what="finished"
        )
    with runtime.engine.begin() as conn:  # other campaigns' counters, many of them
        conn.execute(
            text(
                "INSERT INTO campaign_counts (campaign_id, step_id, touchpoint_id, metric, "
                "reason, bucket, n) SELECT :cid + 1 + i % 500, 's1', 0, 'sent', '', "
                "now() - make_interval(mins => i % 10000), 1 FROM generate_series(1, :rows) i"
            ),
            {"cid": cid, "rows": OTHER_ROWS},
        )
    _wipe_statistics(runtime)

    me = threading.get_ident()
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if threading.get_ident() == me:
            statements.append((statement, parameters))

    event.listen(runtime.engine, "before_cursor_execute", capture)
    try:
        with runtime.tx() as session:
            campaign = session.get(Campaign, cid)
            assert campaign is not None
            result = stats.campaign_stats(session, campaign)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", capture)
    assert result.succeeded == N
    plans = []
    with runtime.engine.connect() as conn:
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith("SELECT"):
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
                plans.append("\n".join(r[0] for r in rows))
    counters = [p for p in plans if "campaign_counts" in p]
    assert len(counters) == 2, plans  # the totals and the series
    for plan in counters:
        assert "ix_campaign_counts_campaign" in plan, plan
        assert "Seq Scan on campaign_counts" not in plan, plan
    for plan in plans:
        assert not any(t in plan for t in PER_USER), plan

    # Through the API, under a statement timeout of half a second.
    settings = runtime.settings
    runtime.settings = settings.model_copy(update={"api_statement_timeout": 0.5})
    try:
        started = time.monotonic()
        r = client.get(f"{base}/{cid}/stats")
        took = time.monotonic() - started
    finally:
        runtime.settings = settings
    assert r.status_code == 200, r.text
    assert r.json()["succeeded"] == N
    assert took < 1.0
