"""Touchpoint rate limits: the shared timeline of request slots.

``touchpoint_protection.next_request_at`` is where the slots reserved so far end
(seconds since the epoch on the database's clock); every worker process reserves
its requests' slots from it in one statement (delivery/ratelimit.py).

Revision ID: 0012_rate_limit_slots
Revises: 0011_order_results
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_rate_limit_slots"
down_revision = "0011_order_results"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("touchpoint_protection", sa.Column("next_request_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("touchpoint_protection", schema=None) as batch_op:
        batch_op.drop_column("next_request_at")
