"""A campaign closed by the system keeps why as a code and its params besides the
English ``last_error``, so the console can say it in the reader's language.

Revision ID: 0008_campaign_error_code
Revises: 0006_campaign_protection
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_campaign_error_code"
down_revision = "0006_campaign_protection"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("last_error_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_error_params", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("last_error_params")
        batch.drop_column("last_error_code")
