"""The database's absence, told apart from bugs: the API answers 503 with
``Retry-After`` and a code instead of a 500, and background jobs log one line per
outage instead of a traceback per attempt.

- :func:`database_error` says whether an exception means the database is
  unreachable (:class:`~touchgate.errors.DatabaseUnavailable`) or a statement ran
  past its limit (:class:`~touchgate.errors.DatabaseTimeout`); anything else is a
  bug and stays a 500.
- :class:`OutageLog` logs the first failure of an outage, counts the repeats (a
  reminder at most every ``REMIND_SECONDS``), and one line when the engine opens a
  connection again, with the outage's duration (the API's log);
- :func:`describe` gives the one-line cause of a database error, without the SQL.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc

from .errors import DatabaseTimeout, DatabaseUnavailable

log = logging.getLogger("touchgate.database")

REMIND_SECONDS = 60.0
# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (or a cancel).
QUERY_CANCELED = "57014"


def database_error(exc: BaseException) -> DatabaseUnavailable | None:
    """The 503 this exception stands for, or None when it is not the database's state."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return DatabaseUnavailable(
            "The database is not answering: no connection came free in time. Try again "
            "in a few seconds."
        )
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED:
        return DatabaseTimeout(
            "The database took too long to answer and the query was cancelled. Try again "
            "in a moment; if it keeps happening, the server log says which request."
        )
    if exc.connection_invalidated or isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError
    ):
        return DatabaseUnavailable("The database is unreachable. Try again in a few seconds.")
    return None


class OutageLog:
    """Rate-limited lines about the database's reachability, for one engine."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._reminded_at = 0.0
        self._failures = 0

    def failed(self, error: DatabaseUnavailable, cause: BaseException, where: str) -> None:
        """A request failed with ``error``; log it if it starts an outage."""
        if isinstance(error, DatabaseTimeout):
            # Not an outage: one line per cancelled statement, which names the request.
            log.warning("statement timeout: %s was cancelled (%s)", where, describe(cause))
            return
        with self._lock:
            now = self._clock()
            self._failures += 1
            if self.down_since is None:
                self.down_since = self._reminded_at = now
                self._failures = 1
                log.error(
                    "database unreachable (%s); the API answers 503 database_unavailable "
                    "until it is back",
                    describe(cause),
                )
            elif now - self._reminded_at >= REMIND_SECONDS:
                self._reminded_at = now
                log.error(
                    "database still unreachable after %.0f s (%d requests answered 503)",
                    now - self.down_since,
                    self._failures,
                )

    def connected(self) -> None:
        """The engine opened a connection: if an outage was going on, it is over."""
        with self._lock:
            if self.down_since is None:
                return
            lasted = self._clock() - self.down_since
            failures = self._failures
            self.down_since = None
            self._failures = 0
        log.warning(
            "database reachable again after %.1f s (%d requests answered 503 meanwhile)",
            lasted,
            failures,
        )

    def watch(self, engine: Engine) -> None:
        """Call :meth:`connected` whenever ``engine`` opens a new connection."""
        event.listen(engine, "connect", lambda _conn, _record: self.connected())


def describe(exc: BaseException) -> str:
    """A one-line cause, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {first[0]}" if first else type(orig).__name__
