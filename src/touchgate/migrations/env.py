"""Alembic environment: the connection is handed in by ``touchgate.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from touchgate.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("touchgate migrations run through `touchgate db upgrade`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
