"""Campaigns: campaigns, runs, entries (participation), step users, due work, list audiences.

Revision ID: 0003_campaigns
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_campaigns"
down_revision = "0001_core"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("participation", JSON, nullable=False),
        sa.Column("anti_disturb", sa.Boolean(), nullable=False),
        sa.Column("strategy", JSON, nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_cursor", sa.BigInteger(), nullable=True),
        sa.Column("event_horizon", sa.BigInteger(), nullable=True),
        sa.Column("event_horizon_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_campaigns_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_campaigns_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("space_id", "name", name=op.f("uq_campaigns_space_id")),
    )
    op.create_index("ix_campaigns_status_next_run", "campaigns", ["status", "next_run_at"])

    op.create_table(
        "campaign_runs",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("targeted", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_runs_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_runs")),
        sa.UniqueConstraint(
            "campaign_id", "scheduled_for", name=op.f("uq_campaign_runs_campaign_id")
        ),
    )

    op.create_table(
        "campaign_entries",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", BIGID, nullable=False),
        sa.Column("gid", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_entries")),
        sa.UniqueConstraint("run_id", "gid", name=op.f("uq_campaign_entries_run_id")),
    )
    op.create_index(
        "ix_campaign_entries_participation", "campaign_entries", ["campaign_id", "gid", "at"]
    )

    op.create_table(
        "campaign_step_users",
        sa.Column("run_id", BIGID, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_id", "gid", name=op.f("pk_campaign_step_users")),
    )
    op.create_index(
        "ix_campaign_step_users_campaign", "campaign_step_users", ["campaign_id", "step_id"]
    )

    op.create_table(
        "campaign_due",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("run_id", BIGID, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gids", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_due_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["campaign_runs.id"],
            name=op.f("fk_campaign_due_run_id_campaign_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_due")),
    )
    op.create_index("ix_campaign_due_due_at", "campaign_due", ["due_at"])

    op.create_table(
        "campaign_list_gids",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_list_gids_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "gid", name=op.f("pk_campaign_list_gids")),
    )

    op.create_table(
        "campaign_waits",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("gid", sa.BigInteger(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_waits")),
    )
    op.create_index(
        "ix_campaign_waits_campaign_time", "campaign_waits", ["campaign_id", "event_time"]
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_waits_campaign_time", table_name="campaign_waits")
    op.drop_table("campaign_waits")
    op.drop_table("campaign_list_gids")
    op.drop_index("ix_campaign_due_due_at", table_name="campaign_due")
    op.drop_table("campaign_due")
    op.drop_index("ix_campaign_step_users_campaign", table_name="campaign_step_users")
    op.drop_table("campaign_step_users")
    op.drop_index("ix_campaign_entries_participation", table_name="campaign_entries")
    op.drop_table("campaign_entries")
    op.drop_table("campaign_runs")
    op.drop_index("ix_campaigns_status_next_run", table_name="campaigns")
    op.drop_table("campaigns")
