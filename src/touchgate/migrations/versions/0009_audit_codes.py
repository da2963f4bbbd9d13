"""Audit entries keep the values their sentence names (``params``: the resource's
name, counts, the changed fields) besides the English ``summary``, so the console
can say them in the reader's language. Older entries keep ``params`` empty (NULL).

Revision ID: 0009_audit_codes
Revises: 0008_campaign_error_code, 0007_access (it merges the two branches; 0007
made the table)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_audit_codes"
# The audit log was created on the other branch (0007_access): this merges them.
down_revision = ("0008_campaign_error_code", "0007_access")
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("params", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("params")
