"""Logging of the long-running processes (``serve``, ``worker``, imports).

:func:`configure` is called once at process start: one handler on standard error
for every logger (uvicorn's included), at ``TOUCHGATE_LOG_LEVEL``, in
``TOUCHGATE_LOG_FORMAT``:

- ``text``: ``2026-11-29T23:05:01.123Z WARNING touchgate.database: message``;
- ``json``: one object per line, ``{"time", "level", "logger", "message"}``
  plus ``exception`` (the traceback) when there is one and any ``extra=`` fields,
  for a log collector.

The process's own secrets (the admin token, the secret key) are replaced by
``[redacted]`` wherever a message would contain them, whoever logged it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from .config import Settings

REDACTED = "[redacted]"
# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# uvicorn configures these itself unless told not to; they must reach ours.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def _time(record: logging.LogRecord) -> str:
    at = datetime.fromtimestamp(record.created, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class TextFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return self.redact(line)


class JsonFormatter(_Redacting):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        if record.exc_info:
            doc["exception"] = self.redact(self.formatException(record.exc_info))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        return self.redact(orjson.dumps(doc, default=str).decode())


def configure(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (standard error) in the configured format."""
    secrets = [settings.admin_token or "", settings.secret_key or ""]
    formatter: logging.Formatter = (
        JsonFormatter(secrets) if settings.log_format == "json" else TextFormatter(secrets)
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # Alembic says what it sets up and each migration's whole docstring at INFO:
    # noise at every start. Its warnings and errors still come through (and all
    # of it at DEBUG).
    quiet = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    logging.getLogger("alembic").setLevel(quiet)
    logging.captureWarnings(True)
    return handler
