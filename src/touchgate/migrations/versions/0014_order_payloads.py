"""Order payloads in their own table.

The frozen ``dataList`` of an order never changes, while its row in ``orders``
is updated at each claim, heartbeat and settlement; SQLite rewrites a whole row
(payload included, tens of kilobytes for a batch of 500) at every update.

Revision ID: 0014_order_payloads
Revises: 0013_touchpoint_health
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_order_payloads"
down_revision = "0013_touchpoint_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_payloads",
        sa.Column("order_no", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("order_no", name=op.f("pk_order_payloads")),
    )
    op.execute(
        "INSERT INTO order_payloads (order_no, payload) SELECT order_no, payload FROM orders"
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("payload")


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE orders SET payload = (SELECT p.payload FROM order_payloads p "
        "WHERE p.order_no = orders.order_no)"
    )
    op.drop_table("order_payloads")
