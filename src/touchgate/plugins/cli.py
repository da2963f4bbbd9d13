"""``touchgate plugin …``: upload and list plugin packages, and try one locally.

``upload`` and ``list`` call the service directly (no server needed; the same
database as ``serve``). ``check`` and ``try`` need no database at all: they run
the upload checks and a real call in the same sandbox the service uses, so an
integrator can test a package before uploading it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import TouchgateError

plugin_app = typer.Typer(no_args_is_help=True, help="Plugin packages.")
console = Console(stderr=True)
out = Console()

FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The .zip package.")
]


def _print_problems(exc: TouchgateError) -> None:
    console.print(f"[red]{exc.message}")
    for detail in exc.details or []:
        where = detail.get("field", "")
        if detail.get("path"):
            where += f" ({detail['path']})"
        console.print(f"  • {where}: {detail.get('message')}")


@plugin_app.command("upload")
def upload(
    file: FileArg,
    project: Annotated[int, typer.Option("--project", "-p", help="Project id.")],
) -> None:
    """Check a package (in the sandbox) and store it as a new plugin version."""
    from ..audit import service as audit
    from ..auth import COMMAND_LINE
    from ..cli import _runtime
    from ..models.base import utcnow
    from ..projects import service as projects
    from .package import stage_package
    from .schemas import PluginOut
    from .service import create_plugin

    runtime = _runtime()
    try:
        with runtime.tx() as session:
            projects.get_project(session, project)
        with file.open("rb") as fh:
            staged = stage_package(fh, runtime.settings.plugin_path)
        try:
            with runtime.tx() as session:
                plugin = create_plugin(session, runtime.settings, project, staged)
                summary = (plugin.id, plugin.name, plugin.version)
                audit.record(
                    session,
                    COMMAND_LINE,
                    project_id=project,
                    action="upload",
                    resource_type="plugin",
                    resource_id=plugin.id,
                    summary=f"Uploaded plugin {plugin.name} {plugin.version}",
                    now=utcnow(),
                    after=audit.state(PluginOut.model_validate(plugin)),
                )
        finally:
            staged.discard()
    except TouchgateError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    console.print(f"[green]Uploaded {summary[1]} {summary[2]} as plugin {summary[0]}.")
    out.print(summary[0])


@plugin_app.command("list")
def list_plugins(
    project: Annotated[int, typer.Option("--project", "-p", help="Project id.")],
) -> None:
    """List a project's plugin versions."""
    from ..cli import _runtime
    from ..projects import service as projects
    from .repository import list_plugins as list_rows

    runtime = _runtime()
    try:
        with runtime.tx() as session:
            projects.get_project(session, project)
            rows, total = list_rows(session, project, 10_000, 0)
            table = Table("id", "name", "version", "entry", "config fields", "uploaded")
            for row in rows:
                table.add_row(
                    str(row.id),
                    row.name,
                    row.version,
                    row.entry,
                    ", ".join(
                        f["key"] + ("*" if f.get("secret") else "") for f in row.config_fields
                    ),
                    row.created_at.isoformat(timespec="seconds"),
                )
    except TouchgateError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    out.print(table)
    console.print(f"{total} plugin version(s); * = secret field")


@plugin_app.command("check")
def check(file: FileArg) -> None:
    """Run every upload check on a package, locally, without uploading it."""
    from .package import stage_package
    from .sandbox import detect_sandbox

    with tempfile.TemporaryDirectory(prefix="touchgate-check-") as tmp, file.open("rb") as fh:
        try:
            staged = stage_package(fh, Path(tmp))
        except TouchgateError as exc:
            _print_problems(exc)
            raise typer.Exit(1) from None
        manifest = staged.manifest
    console.print(
        f"[green]{manifest.name} {manifest.version} passes every upload check "
        f"(sandbox: {detect_sandbox().kind})."
    )


@plugin_app.command("try")
def try_plugin(
    file: FileArg,
    config: Annotated[str, typer.Option(help="The touchpoint's plugin_config as JSON.")] = "{}",
    users: Annotated[
        str,
        typer.Option(
            help='dataList entries as JSON: [{"gid": 1, "dynamicData": {}, "temData": {}}]'
        ),
    ] = '[{"gid": 1, "dynamicData": {}, "temData": {}}]',
    method: Annotated[str, typer.Option(help="send or query_receipts")] = "send",
    order_no: Annotated[str, typer.Option(help="The orderNo passed to the plugin.")] = ("0" * 32),
    timeout: Annotated[float, typer.Option(help="Wall-clock limit in seconds.")] = 15.0,
) -> None:
    """Run one call of a package in the sandbox and print what it returned."""
    from .host import PluginFailed, PluginHost, PluginInfo, PluginRetryable
    from .manifest import ConfigField, value_matches
    from .package import stage_package

    try:
        plain_config: Any = json.loads(config)
        data_list: Any = json.loads(users)
    except ValueError as exc:
        console.print(f"[red]--config and --users must be JSON: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(plain_config, dict) or not isinstance(data_list, list):
        console.print("[red]--config must be a JSON object and --users a JSON array.")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="touchgate-try-") as tmp, file.open("rb") as fh:
        try:
            staged = stage_package(fh, Path(tmp))
        except TouchgateError as exc:
            _print_problems(exc)
            raise typer.Exit(1) from None
        fields: list[ConfigField] = list(staged.manifest.config)
        for cfg in fields:
            if cfg.key not in plain_config and cfg.default is not None:
                plain_config[cfg.key] = cfg.default
            elif cfg.key in plain_config and (reason := value_matches(cfg, plain_config[cfg.key])):
                console.print(f"[yellow]config {cfg.key}: {reason.message}")
        directory = Path(tmp) / "plugin"
        shutil.move(str(staged.files_dir), directory)
        info = PluginInfo(0, 0, staged.manifest.entry, directory, staged.sha256)
        host = PluginHost(plugin_lookup=lambda _id: info)
        try:
            result = asyncio.run(
                host.call(
                    project_id=0,
                    plugin_id=0,
                    config=plain_config,
                    method=method,
                    order_no=order_no,
                    users=data_list,
                    timeout=timeout,
                )
            )
        except PluginRetryable as exc:
            console.print(f"[yellow]Retryable (the batch would be retried): {exc.message}")
            raise typer.Exit(3) from None
        except PluginFailed as exc:
            console.print(f"[red]Failed (the batch would fail): {exc.message}")
            raise typer.Exit(1) from None
        finally:
            host.close()
    out.print_json(json.dumps(result, ensure_ascii=False))
