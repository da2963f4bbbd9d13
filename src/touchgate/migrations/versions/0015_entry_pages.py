"""A run's pages of entered users as gid ranges.

The pages of a big run were written as JSON arrays of gids, built by a window
function over every entry of the run inside the run's own transaction (two
seconds per million users on SQLite, before anyone was sent anything). A page
is now a range of the run's entries, ``gid_from`` to ``gid_to`` (``kind =
entries``), found by walking the entries' index.

Revision ID: 0015_entry_pages
Revises: 0014_order_payloads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_entry_pages"
down_revision = "0014_order_payloads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_due", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gid_from", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("gid_to", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Pages still waiting become explicit lists again, as the older code reads them.
    op.execute(
        "UPDATE campaign_due SET kind = 'step', gids = (SELECT "
        + (
            "coalesce(jsonb_agg(e.gid ORDER BY e.gid), '[]'::jsonb)"
            if op.get_context().dialect.name == "postgresql"
            else "coalesce(json_group_array(e.gid), '[]')"
        )
        + " FROM campaign_entries e WHERE e.run_id = campaign_due.run_id"
        " AND e.gid BETWEEN campaign_due.gid_from AND campaign_due.gid_to)"
        " WHERE kind = 'entries'"
    )
    with op.batch_alter_table("campaign_due", schema=None) as batch_op:
        batch_op.drop_column("gid_to")
        batch_op.drop_column("gid_from")
