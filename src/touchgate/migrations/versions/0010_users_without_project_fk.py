"""Users: no foreign key to projects.

PostgreSQL checks a foreign key row by row: a trigger per inserted user runs a
query that locks the project row (FOR KEY SHARE). A bulk user import spent about
a third of the database's time there (bench/import.py). Projects are never
deleted, and an import checks that its project exists before it writes.

Revision ID: 0010_users_without_project_fk
Revises: 0009_audit_codes
"""

from __future__ import annotations

from alembic import op

revision = "0010_users_without_project_fk"
down_revision = "0009_audit_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_users_project_id_projects", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_users_project_id_projects", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
