"""Log lines: text and JSON formats, levels from the settings, secrets redacted,
uvicorn's loggers routed through ours, and a clear message for a bad setting."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from touchgate.config import Settings
from touchgate.logs import REDACTED, configure

TOUCHGATE = Path(sys.executable).with_name("touchgate")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn = logging.getLogger("uvicorn.access")
    uvicorn_state = (list(uvicorn.handlers), uvicorn.propagate, uvicorn.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    uvicorn.handlers[:], uvicorn.propagate, uvicorn.level = uvicorn_state


def _settings(**values: str) -> Settings:
    return Settings(
        database_url="sqlite://",
        admin_token="tg_admin-token-for-logs",
        secret_key="secret-key-for-logs",
        **values,  # type: ignore[arg-type]
    )


def test_text_lines_have_time_level_and_logger(restore_logging: None) -> None:
    out = io.StringIO()
    configure(_settings(log_level="warning"), out)
    logging.getLogger("touchgate.test").info("not at this level")
    logging.getLogger("touchgate.test").warning("token %s here", "tg_admin-token-for-logs")
    logging.getLogger("uvicorn.access").warning("GET / 200")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    stamp, level, logger, *words = lines[0].split(" ")
    assert stamp.endswith("Z") and stamp[10] == "T" and len(stamp) == 24
    assert (level, logger) == ("WARNING", "touchgate.test:")
    assert " ".join(words) == f"token {REDACTED} here"
    assert lines[1].endswith("WARNING uvicorn.access: GET / 200")


def test_migrations_say_only_what_matters(restore_logging: None) -> None:
    alembic = logging.getLogger("alembic.runtime.migration")
    level = logging.getLogger("alembic").level
    try:
        out = io.StringIO()
        configure(_settings(), out)
        alembic.info("Running upgrade 0001 -> 0002, a docstring of many lines")
        alembic.warning("something to look at")
        assert out.getvalue().splitlines()[-1].endswith("something to look at")
        assert "Running upgrade" not in out.getvalue()
        configure(_settings(log_level="DEBUG"), out)
        alembic.info("Running upgrade 0002 -> 0003")
        assert "Running upgrade 0002 -> 0003" in out.getvalue()
    finally:
        logging.getLogger("alembic").setLevel(level)


def test_json_lines_are_objects_with_extras_and_tracebacks(restore_logging: None) -> None:
    out = io.StringIO()
    configure(_settings(log_format="JSON", log_level="debug"), out)
    log = logging.getLogger("touchgate.test")
    log.debug("outage over", extra={"seconds": 10.5, "order_no": "o-1"})
    try:
        raise ValueError("secret-key-for-logs leaked?")
    except ValueError:
        log.exception("failed")
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "DEBUG" and first["logger"] == "touchgate.test"
    assert first["message"] == "outage over"
    assert (first["seconds"], first["order_no"]) == (10.5, "o-1")
    assert second["message"] == "failed"
    assert "ValueError" in second["exception"]
    assert "secret-key-for-logs" not in out.getvalue()


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "TOUCHGATE_LOG_FORMAT": "xml", "TOUCHGATE_LOG_LEVEL": "loud"}
    run = subprocess.run(
        [str(TOUCHGATE), "worker"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "TOUCHGATE_LOG_FORMAT" in run.stderr and "TOUCHGATE_LOG_LEVEL" in run.stderr
    assert "Traceback" not in run.stderr
