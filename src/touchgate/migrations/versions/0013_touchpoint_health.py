"""Touchpoint health: the circuit breaker's state per touchpoint.

Revision ID: 0013_touchpoint_health
Revises: 0012_rate_limit_slots
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_touchpoint_health"
down_revision = "0012_rate_limit_slots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "touchpoint_health",
        sa.Column("touchpoint_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("probe_owner", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["touchpoint_id"],
            ["touchpoints.id"],
            name="fk_touchpoint_health_touchpoint_id_touchpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("touchpoint_id", name="pk_touchpoint_health"),
    )


def downgrade() -> None:
    op.drop_table("touchpoint_health")
