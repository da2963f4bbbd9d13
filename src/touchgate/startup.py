"""Checks before a process starts working: a clear one-line error instead of a
traceback when the data directory or the database cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.exc import OperationalError

from .config import Settings


class StartupError(Exception):
    """Why the service cannot start, in one line that says what to do."""


def sqlite_path(settings: Settings) -> Path | None:
    if not settings.is_sqlite:
        return None
    raw = settings.database_url.split("///", 1)[-1]
    return None if not raw or raw == ":memory:" else Path(raw)


def _writable_dir(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"Cannot create the {what} {directory} ({exc.strerror}): create it, writable by "
            f"user {os.getuid()}, or set TOUCHGATE_DATABASE_URL to a writable place."
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(
            f"The {what} {directory} is not writable by user {os.getuid()}: make it writable "
            "(chown/chmod) or set TOUCHGATE_DATABASE_URL to a writable place."
        )


def check_writable(settings: Settings) -> None:
    """The SQLite file, its directory (journal files, the secret key and admin token
    files live beside it) and the plugin directory must be writable."""
    path = sqlite_path(settings)
    if path is not None:
        _writable_dir(path.parent, "data directory")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StartupError(
                f"The database file {path} is not writable by user {os.getuid()}: "
                "fix its owner or mode (chown/chmod), or set TOUCHGATE_DATABASE_URL."
            )
    if settings.plugin_path.exists():
        _writable_dir(settings.plugin_path, "plugin directory")


def explain_database_error(settings: Settings, exc: OperationalError) -> StartupError:
    """A database refusal at start (read-only file or server) as one line."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    where = sqlite_path(settings) or settings.database_url.split("@")[-1]
    return StartupError(
        f"The database {where} cannot be used: {first}. Check that it exists and is "
        "writable by this user, or set TOUCHGATE_DATABASE_URL."
    )
