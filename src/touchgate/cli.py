"""The one entry point: ``touchgate serve | worker | db | import | plugin | doctor``."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .config import Settings, get_settings
from .doctor.cli import doctor
from .keys.cli import keys_app
from .plugins.cli import plugin_app

app = typer.Typer(no_args_is_help=True, help="Touchgate: custom touchpoints for campaigns.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
import_app = typer.Typer(no_args_is_help=True, help="Bulk imports into the data store.")
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(plugin_app, name="plugin")
app.command()(doctor)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True, soft_wrap=True)

ADMIN_TOKEN_FILE = "touchgate.admin-token"


def _settings() -> Settings:
    """The settings, or one line per invalid ``TOUCHGATE_*`` variable and exit 2."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "TOUCHGATE_" + "_".join(str(p) for p in error["loc"]).upper()
            console.print(f"[red]{name}: {escape(error['msg'])}")
        raise typer.Exit(2) from None


def _log_to_stderr(settings: Settings) -> None:
    """Configure logging for a command that runs long (see ``logs``)."""
    from .logs import configure

    configure(settings)


def _runtime(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    from .runtime import Runtime
    from .startup import StartupError, check_writable

    settings = settings or _settings()
    try:
        check_writable(settings)
        return Runtime.from_settings(settings)
    except StartupError as exc:
        console.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(2) from None
    except PermissionError as exc:  # the secret key file beside the data
        console.print(f"[red]Cannot write {escape(str(exc.filename))}: permission denied.")
        raise typer.Exit(2) from None


def _upgrade(runtime: Any) -> None:
    """Apply the migrations, or say in one line why the database cannot be written."""
    from sqlalchemy.exc import OperationalError

    from .migrate import upgrade
    from .startup import explain_database_error

    try:
        upgrade(runtime.engine)
    except OperationalError as exc:
        console.print(f"[red]{escape(str(explain_database_error(runtime.settings, exc)))}")
        raise typer.Exit(2) from None


def _ensure_admin_token(settings: Settings) -> tuple[Settings, str, str | None]:
    """Use TOUCHGATE_ADMIN_TOKEN, or a token generated once and kept beside the data.

    Returns the settings, the token and where it came from (``None`` when it was
    generated just now: only then is it printed, so service logs never hold it)."""
    if settings.admin_token:
        return settings, settings.admin_token, "the TOUCHGATE_ADMIN_TOKEN variable"
    path = settings.data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        source: str | None = str(path)
    else:
        token = "tg_" + secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        source = None
    return settings.model_copy(update={"admin_token": token}), token, source


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@db_app.command("upgrade")
def db_upgrade(revision: str = "heads") -> None:
    """Apply the migrations to TOUCHGATE_DATABASE_URL."""
    from .migrate import upgrade

    runtime = _runtime()
    if revision == "heads":
        _upgrade(runtime)
    else:
        upgrade(runtime.engine, revision)
    console.print(f"[green]Database at {runtime.engine.url.render_as_string()} is up to date.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Load the demo project and its receiver.")] = False,
    worker: Annotated[bool, typer.Option(help="Run a delivery worker in this process.")] = True,
) -> None:
    """Apply migrations, then serve the API and console (and a delivery worker)."""
    import uvicorn

    from .app import create_app

    settings = _settings().model_copy(update={"run_worker": worker})
    if demo:
        from .demo import demo_settings

        settings = demo_settings(settings)
    runtime = _runtime(settings)
    settings, token, token_source = _ensure_admin_token(settings)
    runtime.settings = settings
    _log_to_stderr(settings)  # after the token is known: it is redacted from every line
    _upgrade(runtime)
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    receiver = None
    if demo:
        from .demo import load_demo

        summary = load_demo(runtime, base_url)
        console.print(summary)
        from .demo import demo_test_send_hint, start_demo_receiver

        receiver = start_demo_receiver(runtime, port + 1, console.print)
    console.print(f"[bold green]Touchgate is listening on {base_url}")
    console.print(f"  console:     {base_url}/")
    console.print(f"  API docs:    {base_url}/docs")
    if token_source is None:
        console.print(
            f"  admin token: [bold]{token}[/bold] (generated now, kept owner-only in "
            f"{escape(str(settings.data_dir / ADMIN_TOKEN_FILE))})"
        )
        shown = token
    else:
        console.print(f"  admin token: from {escape(token_source)} (not printed)")
        shown = "$TOKEN"
    console.print(f'  try:  curl -H "Authorization: Bearer {shown}" {base_url}/api/v1/projects')
    if receiver is not None:
        console.print("  test-send to the demo receiver:")
        hint = demo_test_send_hint(receiver, base_url, shown)
        console.print("    " + hint, soft_wrap=True, markup=False)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the
    # handler that was there before it: without one of ours that kills the process on
    # the spot, and the receiver below would outlive it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # uvicorn logs through ours (log_config=None); on SIGTERM it waits at most
        # shutdown_seconds for open requests, then the lifespan drains the worker.
        uvicorn.run(
            create_app(runtime),
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=max(1, int(settings.shutdown_seconds)),
        )
    finally:
        if receiver is not None:
            receiver.stop()


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Orders in flight at once (default TOUCHGATE_WORKER_CONCURRENCY)."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Name of this worker (default host-pid-random).")
    ] = None,
    lease_seconds: Annotated[
        float,
        typer.Option(
            help="Lease of a claimed order; the worker renews it every third of this while alive."
        ),
    ] = 15.0,
    scheduler: Annotated[
        bool, typer.Option(help="Also run the campaign scheduler in this process.")
    ] = True,
) -> None:
    """Run a delivery worker until SIGTERM/SIGINT (run any number against PostgreSQL)."""
    from .campaigns.scheduler import run_forever
    from .delivery.worker import run_process

    extra = [run_forever] if scheduler else []
    runtime = _runtime()
    _log_to_stderr(runtime.settings)
    console.print(f"[green]Delivery worker on {runtime.engine.url.render_as_string()}")
    try:
        run_process(
            runtime,
            worker_id=id,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            extra=extra,
        )
    finally:
        runtime.close()


@import_app.command("users")
def import_users(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    project: Annotated[int, typer.Option("--project", "-p", help="Project id.")],
    format: Annotated[
        str | None, typer.Option(help="ndjson or csv (default: from the file name).")
    ] = None,
) -> None:
    """Import users from a JSON Lines or CSV file, streaming, with a progress bar."""
    from .datastore.cli import import_users_file

    runtime = _runtime()
    _log_to_stderr(runtime.settings)
    raise typer.Exit(import_users_file(runtime, file, project, format, console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
