"""Touchpoint protection: frequency cap, quiet hours and request rate per touchpoint.

Revision ID: 0004_touchpoint_protection
Revises: 0002_plugins, 0003_campaigns
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_touchpoint_protection"
down_revision = ("0002_plugins", "0003_campaigns")
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "touchpoint_protection",
        sa.Column("touchpoint_id", sa.Integer(), nullable=False),
        sa.Column("frequency_cap", JSON, nullable=True),
        sa.Column("quiet_hours", JSON, nullable=True),
        sa.Column("rate_limit", JSON, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["touchpoint_id"],
            ["touchpoints.id"],
            name="fk_touchpoint_protection_touchpoint_id_touchpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("touchpoint_id", name="pk_touchpoint_protection"),
    )


def downgrade() -> None:
    op.drop_table("touchpoint_protection")
