"""Campaign protection and results: project cap, blocklist, what caps count, per-user
locks, suppressions with their reason, appended result counters; the triggering
event of an entry (event splits), quiet-hours holds, per-user state of ``all`` steps.

Existing campaigns keep their figures: suppressed entries move to
``campaign_suppressions`` and the counters are filled from the per-user rows once.

Revision ID: 0006_campaign_protection
Revises: 0004_touchpoint_protection
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_campaign_protection"
down_revision = "0004_touchpoint_protection"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOT_NULL_TOUCHPOINT = sa.text("touchpoint_id IS NOT NULL")
NULL_TOUCHPOINT = sa.text("touchpoint_id IS NULL")


def upgrade() -> None:
    op.create_table(
        "project_protection",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("frequency_cap", JSON, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_project_protection_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name="pk_project_protection"),
    )
    op.create_table(
        "blocklist",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("gid", sa.BigInteger(), nullable=False),
        sa.Column("touchpoint_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_blocklist_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["touchpoint_id"],
            ["touchpoints.id"],
            name="fk_blocklist_touchpoint_id_touchpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist"),
    )
    op.create_index(
        "uq_blocklist_touchpoint",
        "blocklist",
        ["project_id", "gid", "touchpoint_id"],
        unique=True,
        sqlite_where=NOT_NULL_TOUCHPOINT,
        postgresql_where=NOT_NULL_TOUCHPOINT,
    )
    op.create_index(
        "uq_blocklist_every_touchpoint",
        "blocklist",
        ["project_id", "gid"],
        unique=True,
        sqlite_where=NULL_TOUCHPOINT,
        postgresql_where=NULL_TOUCHPOINT,
    )
    op.create_table(
        "sent_messages",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", BIGID, autoincrement=False, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("touchpoint_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "gid", "at", "run_id", "step_id", "touchpoint_id", name="pk_sent_messages"
        ),
    )
    op.create_table(
        "protection_locks",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "gid", name="pk_protection_locks"),
    )
    op.create_table(
        "campaign_suppressions",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", BIGID, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("touchpoint_id", sa.Integer(), nullable=True),
        sa.Column("gid", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_suppressions"),
    )
    op.create_index(
        "ix_campaign_suppressions_campaign", "campaign_suppressions", ["campaign_id", "id"]
    )
    op.create_table(
        "campaign_counts",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("touchpoint_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_counts"),
    )
    op.create_index("ix_campaign_counts_campaign", "campaign_counts", ["campaign_id", "bucket"])
    op.add_column("campaign_entries", sa.Column("event_id", sa.BigInteger(), nullable=True))
    op.add_column("campaign_waits", sa.Column("event_id", sa.BigInteger(), nullable=True))
    op.add_column("campaign_due", sa.Column("channel", sa.Integer(), nullable=True))
    op.add_column(
        "campaign_due",
        sa.Column("fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("campaign_step_users", sa.Column("open", sa.Integer(), nullable=True))
    op.add_column("campaign_step_users", sa.Column("ok", sa.Boolean(), nullable=True))
    _move_suppressed_entries()
    _fill_counters()


def _move_suppressed_entries() -> None:
    op.execute(
        "INSERT INTO campaign_suppressions (campaign_id, run_id, step_id, touchpoint_id, gid, "
        "reason, at) SELECT campaign_id, run_id, NULL, NULL, gid, COALESCE(reason, "
        "'participation'), at FROM campaign_entries WHERE status = 'suppressed'"
    )
    op.execute("DELETE FROM campaign_entries WHERE status = 'suppressed'")


# Every figure of an existing campaign, counted once from its per-user rows and
# filed at the campaign's last update (its time series starts from this upgrade).
# Each: (step_id, touchpoint_id, metric, reason, FROM … [WHERE …]) grouped by the
# campaign and the first four.
_ORDER_USERS = (
    "FROM order_users ou JOIN orders o ON o.id = ou.order_id "
    "WHERE o.campaign_id IS NOT NULL AND o.step_id IS NOT NULL"
)
_PER_USER = (
    "FROM (SELECT o.campaign_id, o.step_id, o.run_id, ou.gid, "
    "MAX(CASE WHEN ou.status = 'TOU_SUCC' THEN 1 ELSE 0 END) AS succ, "
    "MAX(CASE WHEN ou.status = 'pending' THEN 1 ELSE 0 END) AS pend, "
    "MAX(ou.order_id) AS last_order "
    f"{_ORDER_USERS} GROUP BY o.campaign_id, o.step_id, o.run_id, ou.gid) p"
)
_FILL = [
    ("e.campaign_id", "''", "0", "'entered'", "''", "FROM campaign_entries e"),
    ("s.campaign_id", "''", "0", "'suppressed'", "s.reason", "FROM campaign_suppressions s"),
    (
        "e.campaign_id",
        "''",
        "0",
        "'targeted'",
        "''",
        "FROM (SELECT campaign_id FROM campaign_entries UNION ALL "
        "SELECT campaign_id FROM campaign_suppressions) e",
    ),
    ("u.campaign_id", "u.step_id", "0", "'entered'", "''", "FROM campaign_step_users u"),
    (
        "u.campaign_id",
        "u.step_id",
        "0",
        "'control'",
        "''",
        "FROM campaign_step_users u WHERE u.outcome = 'control'",
    ),
    ("o.campaign_id", "o.step_id", "o.touchpoint_id", "'sent'", "''", _ORDER_USERS),
    (
        "o.campaign_id",
        "o.step_id",
        "o.touchpoint_id",
        "CASE WHEN ou.status = 'TOU_SUCC' THEN 'succeeded' ELSE 'failed' END",
        "CASE WHEN ou.status = 'TOU_SUCC' THEN '' "
        "ELSE SUBSTR(COALESCE(ou.error_msg, ''), 1, 200) END",
        _ORDER_USERS + " AND ou.status <> 'pending'",
    ),
    ("p.campaign_id", "p.step_id", "0", "'sent'", "''", _PER_USER),
    ("p.campaign_id", "p.step_id", "0", "'succeeded'", "''", _PER_USER + " WHERE p.succ = 1"),
    (
        "p.campaign_id",
        "p.step_id",
        "0",
        "'failed'",
        "SUBSTR(COALESCE(last.error_msg, ''), 1, 200)",
        _PER_USER + " JOIN order_users last ON last.order_id = p.last_order "
        "AND last.gid = p.gid WHERE p.succ = 0 AND p.pend = 0",
    ),
]


def _fill_counters() -> None:
    for campaign, step, touchpoint, metric, reason, source in _FILL:
        op.execute(
            "INSERT INTO campaign_counts (campaign_id, step_id, touchpoint_id, metric, reason, "
            "bucket, n) SELECT f.c, f.s, f.t, f.m, f.r, c.updated_at, f.n FROM ("
            f"SELECT {campaign} AS c, {step} AS s, {touchpoint} AS t, {metric} AS m, "
            f"{reason} AS r, COUNT(*) AS n {source} GROUP BY 1, 2, 3, 4, 5"
            ") f JOIN campaigns c ON c.id = f.c"
        )


def downgrade() -> None:
    op.execute(
        "INSERT INTO campaign_entries (campaign_id, run_id, gid, status, reason, at) "
        "SELECT campaign_id, run_id, gid, 'suppressed', reason, at FROM campaign_suppressions "
        "WHERE step_id IS NULL"
    )
    with op.batch_alter_table("campaign_step_users") as batch:
        batch.drop_column("ok")
        batch.drop_column("open")
    with op.batch_alter_table("campaign_due") as batch:
        batch.drop_column("fallback")
        batch.drop_column("channel")
    with op.batch_alter_table("campaign_waits") as batch:
        batch.drop_column("event_id")
    with op.batch_alter_table("campaign_entries") as batch:
        batch.drop_column("event_id")
    op.drop_table("campaign_counts")
    op.drop_table("campaign_suppressions")
    op.drop_table("protection_locks")
    op.drop_table("sent_messages")
    op.drop_table("blocklist")
    op.drop_table("project_protection")
