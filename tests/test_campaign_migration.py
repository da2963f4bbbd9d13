"""Migration 0006 on a database with campaigns already run: suppressed entries move
to their own table and every figure of the old campaigns survives as counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from conftest import BACKENDS, Database, make_settings
from touchgate.campaigns import stats
from touchgate.db import make_engine
from touchgate.migrate import upgrade
from touchgate.models.campaigns import Campaign
from touchgate.runtime import Runtime


@pytest.fixture(params=BACKENDS)
def old_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Database, Engine]]:
    db = Database(request.param, tmp_path)
    engine = make_engine(db.url)
    upgrade(engine, "0004_touchpoint_protection")
    yield db, engine
    engine.dispose()
    db.drop()


def _at(engine: Engine) -> str:
    # Written as the application writes times on each database.
    if engine.dialect.name == "sqlite":
        return "2026-01-01 10:00:00.000000"
    return "2026-01-01T10:00:00+00:00"


def _insert(conn: Connection, table: str, **row: object) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def _fill(engine: Engine) -> None:
    at = _at(engine)
    strategy = (
        '{"type": "send", "id": "s1", "mode": "first_success", "timing": {"type": "now"}, '
        '"channels": [{"touchpoint_id": 1, "params": {}}, {"touchpoint_id": 2, "params": {}}]}'
    )
    with engine.begin() as conn:
        _insert(conn, "projects", id=1, name="p", timezone="UTC", approval_required=False,
                created_at=at)  # fmt: skip
        _insert(conn, "spaces", id=1, project_id=1, name="s", created_at=at)
        for tid, name in ((1, "SMS"), (2, "Push")):
            _insert(conn, "touchpoints", id=tid, project_id=1, name=name, type="notification",
                    transport="http", status="enabled", url="http://x",
                    signing_secret_encrypted="s", batch_size=100, timeout_seconds=15,
                    retry_schedule="[]", receipt='{"mode": "sync"}', user_attributes="[]",
                    template_params="[]", created_at=at, updated_at=at)  # fmt: skip
        _insert(conn, "campaigns", id=1, project_id=1, space_id=1, name="old", status="finished",
                trigger='{"type": "once"}', audience='{"match": "all"}',
                participation='{"mode": "once"}', anti_disturb=True, strategy=strategy,
                created_at=at, updated_at=at)  # fmt: skip
        _insert(conn, "campaign_runs", id=1, campaign_id=1, scheduled_for=at, targeted=6,
                entered=4, suppressed=2, started_at=at)  # fmt: skip
        for gid in range(1, 7):
            status, reason = ("entered", None) if gid <= 4 else ("suppressed", "participation")
            _insert(conn, "campaign_entries", campaign_id=1, run_id=1, gid=gid, status=status,
                    reason=reason, at=at)  # fmt: skip
        for gid in range(1, 5):
            _insert(conn, "campaign_step_users", run_id=1, step_id="s1", gid=gid, campaign_id=1,
                    outcome="entered", at=at)  # fmt: skip
        # Users 1, 2 succeed on SMS; 3 fails on SMS and succeeds on Push; 4 fails on both.
        orders = (
            (1, 1, {1: "TOU_SUCC", 2: "TOU_SUCC", 3: "TOU_FAIL", 4: "TOU_FAIL"}),
            (2, 2, {3: "TOU_SUCC", 4: "TOU_FAIL"}),
        )
        for oid, tid, users in orders:
            _insert(conn, "orders", id=oid, order_no=f"order{oid}", project_id=1,
                    touchpoint_id=tid, campaign_id=1, run_id=1, step_id="s1", state="done",
                    payload=b"[]", user_count=len(users), attempt_count=1, next_attempt_at=at,
                    created_at=at, updated_at=at)  # fmt: skip
            for gid, status in users.items():
                error = "" if status == "TOU_SUCC" else "blocked"
                _insert(conn, "order_users", order_id=oid, gid=gid, status=status,
                        error_msg=error, attempts=1, settled_at=at)  # fmt: skip


def test_old_campaigns_keep_their_figures(
    old_database: tuple[Database, Engine], tmp_path: Path
) -> None:
    db, engine = old_database
    _fill(engine)
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT COUNT(*) FROM campaign_entries")) == 4
        # 0011: the final per-user results moved to order_results.
        assert conn.execute(
            text("SELECT order_id, gid, status FROM order_results ORDER BY order_id, gid")
        ).all() == [
            (1, 1, "TOU_SUCC"), (1, 2, "TOU_SUCC"), (1, 3, "TOU_FAIL"), (1, 4, "TOU_FAIL"),
            (2, 3, "TOU_SUCC"), (2, 4, "TOU_FAIL"),
        ]  # fmt: skip
        assert conn.execute(
            text("SELECT gid, reason FROM campaign_suppressions ORDER BY gid")
        ).all() == [(5, "participation"), (6, "participation")]
    runtime = Runtime.from_settings(make_settings(db.url, tmp_path))
    try:
        with runtime.tx() as session:
            campaign = session.get(Campaign, 1)
            assert campaign is not None
            s = stats.campaign_stats(session, campaign)
    finally:
        runtime.close()
    assert (s.targeted, s.entered, s.suppressed) == (6, 4, 2)
    assert s.suppressed_by_reason == {"participation": 2}
    assert (s.sent, s.succeeded, s.failed, s.pending) == (4, 3, 1, 0)
    assert s.failed_by_reason == {"blocked": 1}
    sms, push = s.by_touchpoint["1"], s.by_touchpoint["2"]
    assert (sms.name, sms.sent, sms.succeeded, sms.failed) == ("SMS", 4, 2, 2)
    assert (push.name, push.sent, push.succeeded, push.failed) == ("Push", 2, 1, 1)
    assert s.by_step["s1"].entered == 4
    assert sum(p.succeeded for p in s.series.points) == 3


def test_the_migrations_form_one_line() -> None:
    """Two heads would make ``upgrade`` order them arbitrarily: every branch is merged."""
    from alembic.script import ScriptDirectory

    from touchgate.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
