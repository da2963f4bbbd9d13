"""``touchgate keys create|list|revoke``: API keys from the service's own machine.

Like ``touchgate plugin upload``, these work on the database directly (the same
``TOUCHGATE_DATABASE_URL`` as ``serve``), with the reach of a service admin;
each write is in the audit log under "command line".
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..auth import COMMAND_LINE
from ..errors import TouchgateError
from ..models import ApiKey
from ..models.base import utcnow
from .schemas import KeyCreate

keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="minutes") if value is not None else "—"


def _table(rows: list[ApiKey]) -> Table:
    table = Table("id", "name", "role", "project", "spaces", "expires", "last used", "created")
    for row in rows:
        table.add_row(
            str(row.id),
            escape(row.name),
            row.role,
            str(row.project_id) if row.project_id is not None else "all",
            ", ".join(map(str, row.space_ids)) if row.space_ids is not None else "all",
            _when(row.expires_at),
            _when(row.last_used_at),
            _when(row.created_at),
        )
    return table


def _fail(exc: TouchgateError | ValidationError) -> typer.Exit:
    if isinstance(exc, ValidationError):
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "input"
            console.print(f"[red]{escape(field)}: {escape(err['msg'])}")
    else:
        console.print(f"[red]{escape(exc.message)}")
        for detail in exc.details if isinstance(exc.details, list) else []:
            console.print(
                f"  • {escape(str(detail.get('field')))}: {escape(str(detail.get('message')))}"
            )
    return typer.Exit(1)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'campaign team'.")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")],
    project: Annotated[
        int | None, typer.Option("--project", "-p", help="Bind to this project (default: all).")
    ] = None,
    space: Annotated[
        list[int] | None, typer.Option("--space", "-s", help="Limit to this space (repeatable).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry, ISO 8601 with a zone: 2026-12-31T00:00:00+08:00.")
    ] = None,
) -> None:
    """Create a key. The key is printed once, on standard output; keep it now."""
    from ..cli import _runtime
    from . import service

    try:
        data = KeyCreate.model_validate(
            {
                "name": name,
                "role": role,
                "project_id": project,
                "space_ids": space or None,
                "expires_at": expires,
            }
        )
    except ValidationError as exc:
        raise _fail(exc) from None
    runtime = _runtime()
    try:
        with runtime.tx() as session:
            now = utcnow()
            row, key = service.create_key(session, COMMAND_LINE, data, now)
            console.print(_table([row]))
    except TouchgateError as exc:
        raise _fail(exc) from None
    finally:
        runtime.close()
    console.print("[bold]The key (shown this once):")
    out.print(key, markup=False, highlight=False)


@keys_app.command("list")
def list_keys(
    project: Annotated[
        int | None, typer.Option("--project", "-p", help="Only this project's keys.")
    ] = None,
) -> None:
    """List the keys that are not revoked (never the keys themselves)."""
    from ..cli import _runtime
    from . import repository as repo

    runtime = _runtime()
    try:
        with runtime.tx() as session:
            rows, total = repo.list_active(session, project, 100_000, 0)
            out.print(_table(list(rows)))
    finally:
        runtime.close()
    console.print(f"{total} key(s)")


@keys_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")]) -> None:
    """Revoke a key: its next request fails with 401."""
    from ..cli import _runtime
    from . import service

    runtime = _runtime()
    try:
        with runtime.tx() as session:
            row = service.revoke_key(session, COMMAND_LINE, key_id, utcnow())
            name = row.name
    except TouchgateError as exc:
        raise _fail(exc) from None
    finally:
        runtime.close()
    console.print(f"[green]Revoked key {key_id} ({escape(name)}).")
