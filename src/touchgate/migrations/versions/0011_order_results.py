"""Per-user results written once, at settlement: ``order_results`` replaces ``order_users``.

An order's users are named by its frozen payload, so no row is written per user
at enqueue any more (a user without a result is pending) and settlement inserts
one row per user instead of updating a pending one. Existing final results move
over; pending rows simply disappear.

Neither ``order_results`` nor ``events`` has a foreign key: PostgreSQL checks one
with a trigger per inserted row (locking the parent row), and settlement writes a
result and an event per user. Orders and projects are never deleted, and a
result is written only for an order that settlement holds locked.

Revision ID: 0011_order_results
Revises: 0010_users_without_project_fk
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_order_results"
down_revision = "0010_users_without_project_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_results",
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_msg", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "gid", name=op.f("pk_order_results")),
    )
    op.execute(
        "INSERT INTO order_results (order_id, gid, status, error_msg, attempts, settled_at) "
        "SELECT ou.order_id, ou.gid, ou.status, ou.error_msg, ou.attempts, "
        "COALESCE(ou.settled_at, o.updated_at) "
        "FROM order_users ou JOIN orders o ON o.id = ou.order_id WHERE ou.status <> 'pending'"
    )
    op.drop_table("order_users")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_project_id_projects", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_events_project_id_projects", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "order_users",
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("gid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_msg", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_users_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "gid", name=op.f("pk_order_users")),
    )
    with op.batch_alter_table("order_users", schema=None) as batch_op:
        batch_op.create_index("ix_order_users_gid", ["gid"], unique=False)
    # Pending users of unfinished orders are not restored (their payload names them).
    op.execute(
        "INSERT INTO order_users (order_id, gid, status, error_msg, attempts, settled_at) "
        "SELECT order_id, gid, status, error_msg, attempts, settled_at FROM order_results"
    )
    op.drop_table("order_results")
