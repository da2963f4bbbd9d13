"""``touchgate import users FILE``: the streaming importer driven from a file, with progress."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ..audit import service as audit
from ..auth import COMMAND_LINE
from ..errors import TouchgateError
from ..models.base import utcnow
from ..runtime import Runtime
from .importer import ImportFormat, ImportReport, UserImport, format_from_name

BLOCK_BYTES = 1 << 20
SHOWN_ERRORS = 20

EXIT_OK = 0
EXIT_REJECTED = 1  # the import ran, but some lines were rejected
EXIT_FAILED = 2  # nothing was imported: bad format, unknown project, bad CSV header


def _blocks(raw: BinaryIO, path: Path, progress: Progress, task: TaskID) -> Iterator[bytes]:
    """Read the file in blocks, advancing the bar by bytes of the file on disk."""
    read = gzip.GzipFile(fileobj=raw).read if path.name.endswith(".gz") else raw.read
    while block := read(BLOCK_BYTES):
        progress.update(task, completed=raw.tell())
        yield block


def _summary(report: ImportReport, seconds: float) -> Table:
    table = Table(title="User import", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("imported (new users)", f"{report.imported:,}")
    table.add_row("updated (existing users)", f"{report.updated:,}")
    style = "red" if report.rejected else "green"
    table.add_row(f"[{style}]rejected lines", f"[{style}]{report.rejected:,}")
    table.add_row("time", f"{seconds:.1f} s")
    rate = report.lines / seconds if seconds > 0 else 0.0
    table.add_row("speed", f"{rate:,.0f} lines/s")
    return table


def import_users_file(
    runtime: Runtime, path: Path, project_id: int, format: str | None, console: Console
) -> int:
    """Import a JSON Lines or CSV file (optionally .gz) into a project; returns the exit code."""
    if format is not None:
        try:
            fmt = ImportFormat(format.lower())
        except ValueError:
            console.print(f"[red]Unknown format {escape(format)!r}; use ndjson or csv.")
            return EXIT_FAILED
    else:
        guessed = format_from_name(path.name)
        if guessed is None:
            console.print(
                f"[red]Cannot tell the format of {escape(path.name)} from its name; "
                "pass --format ndjson or --format csv."
            )
            return EXIT_FAILED
        fmt = guessed
    try:
        job = UserImport.open(runtime, project_id, fmt)
    except TouchgateError as exc:
        console.print(f"[red]{escape(exc.message)}")
        return EXIT_FAILED

    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]importing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    try:
        with progress, path.open("rb") as raw:
            task = progress.add_task(escape(path.name), total=path.stat().st_size)
            report = job.run(_blocks(raw, path, progress, task))
    except TouchgateError as exc:
        console.print(f"[red]{escape(exc.message)}")
        console.print(f"Lines written before the error were kept ({job.report.written:,}).")
        return EXIT_FAILED
    except (OSError, EOFError) as exc:
        console.print(f"[red]Cannot read {escape(str(path))}: {escape(str(exc))}")
        console.print(f"Lines written before the error were kept ({job.report.written:,}).")
        return EXIT_FAILED
    elapsed = time.monotonic() - started
    with runtime.tx() as session:
        audit.record(
            session,
            COMMAND_LINE,
            project_id=project_id,
            action="import",
            resource_type="users",
            resource_id="import",
            summary=f"Imported users from {path.name}: {report.imported} new, "
            f"{report.updated} updated, {report.rejected} lines rejected",
            now=utcnow(),
            params={
                "imported": report.imported,
                "updated": report.updated,
                "rejected": report.rejected,
                "file": path.name,
            },
        )

    console.print(_summary(report, elapsed))
    if report.rejected:
        console.print(f"[red]Rejected lines (first {min(SHOWN_ERRORS, report.rejected)}):")
        for error in report.errors[:SHOWN_ERRORS]:
            console.print(f"  line {error['line']}: {escape(error['message'])}")
        if report.rejected > SHOWN_ERRORS:
            console.print(f"  … and {report.rejected - SHOWN_ERRORS:,} more rejected lines")
        return EXIT_REJECTED
    return EXIT_OK
