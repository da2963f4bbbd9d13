"""Streaming user import: JSON Lines or CSV in, chunked bulk upserts out.

One code path serves the HTTP endpoint (the request body bridged from the event
loop) and the CLI (a file read in blocks): both hand :meth:`UserImport.run` an
iterable of byte chunks. Lines are split on ``b"\\n"`` at the byte level, which is
safe for UTF-8 (a newline byte never occurs inside a multi-byte character), so a
line may straddle any number of chunks. CSV goes through the :mod:`csv` module
fed by that incremental line source, so quoted fields holding commas or newlines
parse correctly.

Every ``chunk_lines`` valid lines are written with one bulk upsert in their own
transaction: good lines are kept whatever happens to the others, and memory is
bounded by a few chunks, never by the file.

Speed (``bench/import.py``): JSON Lines are parsed a few hundred at a time with
one ``orjson`` call and accepted by a fast type check (anything doubtful goes
through the careful line-by-line path, which words the rejections). Lines of a
chunk are merged per gid in a dict, the chunk is encoded as one JSON object and
handed to a writer thread, which upserts it with one statement while the next
chunk is parsed (see :class:`_ChunkWriter` and ``repository.upsert_users``).

Line semantics:

* ``gid`` is a positive 64-bit integer; ``attributes`` an object whose keys are
  all in the project's catalogue and whose values have the catalogue's type
  (``number``, ``boolean``, ``date`` as ``YYYY-MM-DD``, ``string``).
* The given attributes are merged into the user's stored ones. ``null`` (an empty
  CSV cell) means "no value": the attribute is removed from the user.
* A gid seen again later in the file: the later line wins (it is applied after
  the earlier one, exactly as if the lines were imported one by one).
* ``imported`` counts lines that created a user, ``updated`` lines that changed
  an existing one, ``rejected`` lines that were refused (with their line number).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import Enum, StrEnum, auto
from typing import Any, cast

import orjson

from ..errors import FieldErrors, InvalidInput, TouchgateError, field_detail
from ..runtime import Runtime
from . import repository as repo
from . import sensitive, service

MAX_GID = 2**63 - 1
CHUNK_LINES = 25_000
# Lines parsed with one call (see UserImport._run_ndjson).
PARSE_LINES = 200
MAX_ERRORS = 1_000
# A single line longer than this is refused without being held in memory.
MAX_LINE_BYTES = 1 << 20

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
_BOM = codecs.BOM_UTF8


class ImportFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


# Media types the import endpoint accepts, and the format each one means.
CONTENT_TYPES: dict[str, ImportFormat] = {
    "application/x-ndjson": ImportFormat.NDJSON,
    "application/jsonl": ImportFormat.NDJSON,
    "application/ndjson": ImportFormat.NDJSON,
    "text/csv": ImportFormat.CSV,
}
# File name suffixes the CLI recognises when --format is not given.
SUFFIXES: dict[str, ImportFormat] = {
    ".ndjson": ImportFormat.NDJSON,
    ".jsonl": ImportFormat.NDJSON,
    ".json": ImportFormat.NDJSON,
    ".csv": ImportFormat.CSV,
}


class UnsupportedMediaType(TouchgateError):
    status_code = 415
    code = "unsupported_media_type"


def format_from_content_type(content_type: str | None) -> ImportFormat:
    """The import format named by a Content-Type header, or 415 listing the accepted ones."""
    accepted = ", ".join(CONTENT_TYPES)
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    fmt = CONTENT_TYPES.get(media)
    if fmt is None:
        shown = repr(media) if media else "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown} is not accepted for a user import; send one of: {accepted}.",
            details={"accepted": list(CONTENT_TYPES)},
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                raise UnsupportedMediaType(
                    f"charset {charset!r} is not accepted: user imports are UTF-8 "
                    f"({accepted}, with no charset or charset=utf-8).",
                    details={"accepted": list(CONTENT_TYPES)},
                )
    return fmt


def format_from_name(name: str) -> ImportFormat | None:
    lowered = name.lower().removesuffix(".gz")
    for suffix, fmt in SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return None


@dataclass
class ImportReport:
    """What an import did; ``errors`` keeps the first :data:`MAX_ERRORS` rejected lines."""

    imported: int = 0
    updated: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_truncated: bool = False
    bytes_read: int = 0

    def reject(self, line: int, problems: list[dict[str, Any]]) -> None:
        """Count a rejected line; ``problems`` are field details (``attributes.city``,
        ``gid``, ``line``…), one a problem, and the English message joins them."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            message = "; ".join(_said(p) for p in problems)
            self.errors.append({"line": line, "message": message, "details": problems})
        else:
            self.errors_truncated = True

    @property
    def written(self) -> int:
        """Lines committed to the database so far."""
        return self.imported + self.updated

    @property
    def lines(self) -> int:
        return self.imported + self.updated + self.rejected


def _said(problem: dict[str, Any]) -> str:
    """A problem in the words the report has always used (``attribute 'city': …``)."""
    field_name = str(problem["field"])
    if field_name.startswith("attributes.") and problem["code"] != "attribute_unknown":
        return f"attribute {field_name.removeprefix('attributes.')!r}: {problem['message']}"
    return str(problem["message"])


class LineRejected(Exception):
    """A line that cannot be imported; ``problems`` (field details) say why."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(_said(p) for p in problems))
        self.problems = problems


def _line_problem(field_name: str, message: str, code: str, **params: Any) -> LineRejected:
    return LineRejected([field_detail(field_name, message, code, params)])


class BadValue(ValueError):
    """A value the catalogue type refuses, with the code of the reason."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params

    def detail(self, key: str) -> dict[str, Any]:
        return field_detail(f"attributes.{key}", str(self), self.code, self.params)


# ---------------------------------------------------------------------------
# Value conversion by catalogue type


def _describe(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_date(text: str) -> str:
    if _DATE.fullmatch(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return text
    raise BadValue("not_date", f"expected a date YYYY-MM-DD, got {_describe(text)}", got=text)


def _json_string(value: Any) -> Any:
    if isinstance(value, str):
        return _csv_string(value)
    raise BadValue("not_text", f"expected a string, got {_describe(value)}")


def _json_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise BadValue("not_finite", "expected a finite number")
        return value
    raise BadValue("not_number", f"expected a number, got {_describe(value)}")


def _json_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise BadValue("not_boolean", f"expected true or false, got {_describe(value)}")


def _json_date(value: Any) -> Any:
    if isinstance(value, str):
        return _check_date(value)
    raise BadValue("not_date", f"expected a date string YYYY-MM-DD, got {_describe(value)}")


def _csv_string(text: str) -> Any:
    # PostgreSQL cannot store NUL in text (JSONB included); refuse it on both backends.
    if "\x00" in text:
        raise BadValue("nul_characters", "text must not contain NUL characters")
    return text


def _csv_number(text: str) -> Any:
    text = text.strip()
    if _INT.fullmatch(text):
        number = int(text)
        if -MAX_GID - 1 <= number <= MAX_GID:
            return number
        raise BadValue("integer_too_large", f"the number {text} is outside the 64-bit range")
    try:
        parsed = float(text)
    except ValueError:
        raise BadValue("not_number", f"expected a number, got {_describe(text)}") from None
    if not math.isfinite(parsed):
        raise BadValue("not_finite", f"expected a finite number, got {_describe(text)}")
    return parsed


def _csv_boolean(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadValue("not_boolean", f"expected true or false, got {_describe(text)}")


def _csv_date(text: str) -> Any:
    return _check_date(text.strip())


def _is_date(value: Any) -> bool:
    if type(value) is not str or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# Fast checks for JSON values (they are stored as parsed); the converters below
# are only called on failure, for their message.
JSON_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str and "\x00" not in v,
    "number": lambda v: type(v) is int or (type(v) is float and math.isfinite(v)),
    "boolean": lambda v: type(v) is bool,
    "date": _is_date,
}
# The Python types orjson gives the valid values of each catalogue type, for the
# importer's fast check: orjson refuses NaN and infinities, so a float is finite;
# dates are strings looked at further, and a line with an escaped NUL is
# checked on its own.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "boolean": (bool,),
    "date": (str,),
}
JSON_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _json_string,
    "number": _json_number,
    "boolean": _json_boolean,
    "date": _json_date,
}
CSV_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "string": _csv_string,
    "number": _csv_number,
    "boolean": _csv_boolean,
    "date": _csv_date,
}


def _gid_from_json(value: Any) -> int:
    if type(value) is int and 1 <= value <= MAX_GID:
        return value
    raise _gid_rejected(_describe(value))


def _gid_from_text(text: str) -> int:
    text = text.strip()
    if text.isdecimal():  # what r"\d+" matches: Unicode category Nd
        gid = int(text)
        if 1 <= gid <= MAX_GID:
            return gid
    raise _gid_rejected(_describe(text))


def _unknown_attribute(key: str) -> dict[str, Any]:
    return field_detail(
        f"attributes.{key}",
        f"unknown attribute {key!r} (not in the project's catalogue)",
        "attribute_unknown",
        {"value": key},
    )


def _gid_rejected(shown: str) -> LineRejected:
    return _line_problem(
        "gid", f"gid must be a positive 64-bit integer, got {shown}", "gid_invalid", got=shown
    )


# ---------------------------------------------------------------------------
# Compressed bodies

CONTENT_ENCODINGS = ("gzip", "identity")
# Output per decompression step: a small compressed chunk may expand enormously.
INFLATE_STEP = 1 << 20


def check_content_encoding(content_encoding: str | None) -> bool:
    """True for a gzip body, False for a plain one; 415 for any other encoding."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not accepted; send gzip or an uncompressed body.",
            details={"accepted_encodings": list(CONTENT_ENCODINGS)},
        )
    return encoding == "gzip"


def gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Inflate a gzip stream incrementally, never more than INFLATE_STEP bytes at once."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = inflater.decompress(data, INFLATE_STEP)
                if out:
                    yield out
                data = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    raise zlib.error("data after the end of the gzip stream")
        out = inflater.flush()
        if out:
            yield out
        if not inflater.eof:
            raise zlib.error("the gzip stream ends early")
    except zlib.error as exc:
        raise InvalidInput(
            f"The body is not valid gzip ({exc}); lines before the damage were kept.",
            field="body",
            field_code="invalid_gzip",
        ) from None


# ---------------------------------------------------------------------------
# Splitting a byte stream into lines


class _TooLong:
    """Marks a line that exceeded :data:`MAX_LINE_BYTES` (its bytes were dropped)."""


TOO_LONG = _TooLong()
Line = bytes | _TooLong


def line_batches(
    chunks: Iterable[bytes], report: ImportReport, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[list[Line], bool]]:
    """Yield the lines of the stream without their ``b"\\n"``, a list per chunk read.

    Each item is ``(lines, ended)``; ``ended`` is False only for the stream's last
    line when no ``b"\\n"`` follows it. Lists let the caller parse a chunk's lines
    with one C-level call instead of a Python step each. Only the current
    unfinished line is buffered, as a list of parts, so a long line arriving in
    many small chunks costs linear time, and a line longer than ``max_line_bytes``
    is dropped as it arrives and reported as :data:`TOO_LONG`.
    """
    parts: list[bytes] = []
    size = 0
    too_long = False
    for chunk in chunks:
        report.bytes_read += len(chunk)
        pieces = chunk.split(b"\n")
        last = pieces.pop()
        if pieces:
            lines: list[Line] = list(pieces)
            if too_long or size + len(pieces[0]) > max_line_bytes:
                lines[0] = TOO_LONG
            elif parts:
                parts.append(pieces[0])
                lines[0] = b"".join(parts)
            if len(chunk) > max_line_bytes:  # only then can a whole line in it be too long
                for index in range(1, len(pieces)):
                    if len(pieces[index]) > max_line_bytes:
                        lines[index] = TOO_LONG
            parts = []
            size = 0
            too_long = False
            yield lines, True
        if last and not too_long:
            if size + len(last) > max_line_bytes:
                parts = []
                too_long = True
            else:
                parts.append(last)
                size += len(last)
    if too_long:
        yield [TOO_LONG], False
    elif parts:
        yield [b"".join(parts)], False


def split_lines(
    chunks: Iterable[bytes], report: ImportReport, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Line]:
    """Yield every line of the stream with its ``b"\\n"`` (the last one may lack it)."""
    for lines, ended in line_batches(chunks, report, max_line_bytes):
        for line in lines:
            yield line + b"\n" if ended and isinstance(line, bytes) else line


def _too_long(max_line_bytes: int) -> list[dict[str, Any]]:
    return [
        field_detail(
            "line",
            f"the line is longer than {max_line_bytes} bytes",
            "line_too_long",
            {"max": max_line_bytes},
        )
    ]


# ---------------------------------------------------------------------------
# The import


@dataclass
class _Pending:
    """Valid lines waiting for the next bulk upsert, merged per gid (later wins)."""

    patches: dict[int, dict[str, Any]] = field(default_factory=dict)
    cleared: list[int] = field(default_factory=list)  # gids given a null
    lines: int = 0


@dataclass(frozen=True)
class _Chunk:
    """Pending lines encoded for the database, on their way to the writer thread."""

    rows: repo.UserPatches
    lines: int


class _ChunkWriter:
    """Writes chunks in a thread of its own while the caller parses the next one.

    Parsing holds the GIL; the database does not (SQLite runs each chunk as one
    statement, and PostgreSQL works in its own process), so the two overlap. At
    most one chunk waits while another is written: memory stays bounded.
    """

    def __init__(self, write: Callable[[_Chunk], None]) -> None:
        self._write = write
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="touchgate-import", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:  # after a failure, chunks are only drained
                try:
                    self._write(chunk)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def put(self, chunk: _Chunk) -> None:
        self._raise_error()
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait for the chunks handed over so far to be written (or to fail)."""
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


class _Verdict(Enum):
    """What the fast check of a line's attributes found."""

    VALID = auto()
    CLEARS = auto()  # valid, and a null removes a value
    DOUBT = auto()  # to be checked by the careful path


# An escaped NUL in a raw line: only then can a parsed string hold "\x00".
_ESCAPED_NUL = b"\\u0000"
# Valid dates remembered per import: a file repeats few distinct dates, and a
# set lookup is far cheaper than a regex and a calendar check per value.
MAX_REMEMBERED_DATES = 100_000


class UserImport:
    """One import into one project; create it with :meth:`open`, then :meth:`run` it."""

    def __init__(
        self,
        runtime: Runtime,
        project_id: int,
        fmt: ImportFormat,
        catalogue: dict[str, str],
        *,
        sensitive_keys: frozenset[str] = frozenset(),
        chunk_lines: int = CHUNK_LINES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.runtime = runtime
        self.project_id = project_id
        self.format = fmt
        self.catalogue = catalogue
        self.sensitive_keys = sensitive_keys
        self.chunk_lines = chunk_lines
        self.max_line_bytes = max_line_bytes
        self.report = ImportReport()
        self._pending = _Pending()
        self._writer: _ChunkWriter | None = None
        self._json_accepts = {k: JSON_ACCEPTS[t] for k, t in catalogue.items()}
        # The fast check of a parsed line: the Python types each key's values may
        # have, then dates looked at more closely.
        self._json_types = {k: JSON_TYPES[t] for k, t in catalogue.items()}
        self._date_keys = tuple(k for k, t in catalogue.items() if t == "date")
        self._dates: set[str] = set()

    @classmethod
    def open(cls, runtime: Runtime, project_id: int, fmt: ImportFormat) -> UserImport:
        """Check the project exists (404 otherwise) and load its attribute catalogue."""
        with runtime.tx() as session:
            catalogue = service.import_catalogue(session, project_id)
            sensitive_keys = repo.sensitive_keys(session, project_id)
        return cls(runtime, project_id, fmt, catalogue, sensitive_keys=sensitive_keys)

    def run(self, chunks: Iterable[bytes]) -> ImportReport:
        """Read the whole stream, writing a chunk at a time; returns the report.

        When reading fails (a damaged body, a client gone), the chunks already
        complete are still written before the error propagates: good lines are kept.
        """
        self._writer = _ChunkWriter(self._write)
        try:
            if self.format is ImportFormat.CSV:
                self._run_csv(chunks)
            else:
                self._run_ndjson(chunks)
            self._flush()
        finally:
            writer, self._writer = self._writer, None
            writer.close()
        return self.report

    # -- JSON Lines ---------------------------------------------------------
    #
    # Two paths give the same result. The fast one parses a few hundred lines
    # with one C-level call and accepts a record when every value has a type its
    # key allows; anything else (a blank, damaged or doubtful line) goes through
    # :meth:`_take_line`, which checks one line at a time and words the reason
    # for a rejection. The fast check only accepts lines the careful one accepts,
    # so a doubt costs time, never a different outcome.

    def _run_ndjson(self, chunks: Iterable[bytes]) -> None:
        before = 0  # lines before the current batch
        for batch, _ended in line_batches(chunks, self.report, self.max_line_bytes):
            first = batch[0]
            if before == 0 and isinstance(first, bytes) and first.startswith(_BOM):
                batch[0] = first[len(_BOM) :]
            # A few hundred lines at a time: their parsed records die before the
            # garbage collector's next young pass, so they are never promoted to
            # the old generation, whose full passes over the whole heap would
            # otherwise cost as much as the parsing itself.
            for start in range(0, len(batch), PARSE_LINES):
                lines = batch[start : start + PARSE_LINES]
                try:
                    # A TOO_LONG marker in the list fails like a damaged line.
                    records: list[Any] | None = list(map(orjson.loads, cast(list[bytes], lines)))
                except orjson.JSONDecodeError:
                    records = None
                if records is None or _ESCAPED_NUL in b"".join(cast(list[bytes], lines)):
                    for number, raw in enumerate(lines, before + 1):
                        self._take_line(number, raw)
                else:
                    self._take_records(records, lines, before)
                before += len(lines)

    def _take_records(self, records: list[Any], lines: list[Line], before: int) -> None:
        """Merge the records that pass the fast check; the others go line by line."""
        check = self._check_attributes
        for index, record in enumerate(records):
            gid = attributes = None
            if type(record) is dict:
                size = len(record)
                gid = record.get("gid")
                attributes = {} if size == 1 else record.get("attributes") if size == 2 else None
            if (
                type(gid) is int
                and 0 < gid <= MAX_GID
                and type(attributes) is dict
                and (verdict := check(attributes)) is not _Verdict.DOUBT
            ):
                self._add(gid, attributes, verdict is _Verdict.CLEARS)
            else:
                self._take_line(before + index + 1, lines[index])

    def _check_attributes(self, attributes: dict[str, Any]) -> _Verdict:
        """The fast check: every key in the catalogue, every value of an allowed type."""
        json_types = self._json_types
        clears = False
        for key, value in attributes.items():
            if type(value) not in json_types.get(key, ()):
                if value is None and key in json_types:
                    clears = True
                else:
                    return _Verdict.DOUBT
        dates = self._dates
        for key in self._date_keys:
            value = attributes.get(key)
            if value is not None and value not in dates:
                if not _is_date(value):
                    return _Verdict.DOUBT
                if len(dates) < MAX_REMEMBERED_DATES:
                    dates.add(value)
        return _Verdict.CLEARS if clears else _Verdict.VALID

    def _take_line(self, number: int, raw: Line) -> None:
        """Check one line on its own: add it, skip it (blank) or reject it with the reason."""
        report = self.report
        if isinstance(raw, _TooLong):
            report.reject(number, _too_long(self.max_line_bytes))
            return
        line = raw.strip()
        if not line:
            return
        try:
            gid, patch = self._parse_json_line(line)
        except LineRejected as exc:
            report.reject(number, exc.problems)
            return
        self._add(gid, patch)

    def _parse_json_line(self, line: bytes) -> tuple[int, dict[str, Any]]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _line_problem(
                "line", f"not valid JSON: {exc}", "invalid_json", error=str(exc)
            ) from None
        if type(record) is not dict:
            raise _line_problem(
                "line", 'expected an object like {"gid": 1, "attributes": {...}}', "not_object"
            )
        if "gid" not in record:
            raise _line_problem("gid", "gid is missing", "required")
        gid = _gid_from_json(record["gid"])
        attributes = record.get("attributes", {})
        if len(record) > 2 or (len(record) == 2 and "attributes" not in record):
            unknown = next(k for k in record if k not in ("gid", "attributes"))
            raise _line_problem(
                str(unknown),
                f"unknown field {unknown!r}; a line has only gid and attributes",
                "unknown_field",
            )
        if type(attributes) is not dict:
            raise _line_problem(
                "attributes",
                f"attributes must be an object, got {_describe(attributes)}",
                "not_object",
            )
        accepts = self._json_accepts
        problems: list[dict[str, Any]] | None = None
        for key, value in attributes.items():
            accept = accepts.get(key)
            if accept is None:
                problems = problems or []
                problems.append(_unknown_attribute(key))
            elif value is not None and not accept(value):
                problems = problems or []
                expected = self.catalogue[key]
                try:
                    JSON_CONVERTERS[expected](value)
                    problems.append(
                        BadValue("invalid", f"expected a {expected}", expected=expected).detail(key)
                    )
                except BadValue as exc:
                    problems.append(exc.detail(key))
        if problems:
            raise LineRejected(problems)
        # Values are stored as parsed, so the parsed object is the patch.
        return gid, attributes

    # -- CSV ------------------------------------------------------------------

    def _run_csv(self, chunks: Iterable[bytes]) -> None:
        report = self.report
        # Physical lines that could not be read (bad UTF-8, too long): a record
        # touching one is rejected with that reason.
        bad_lines: dict[int, list[dict[str, Any]]] = {}

        def text_lines() -> Iterator[str]:
            # A chunk's lines are decoded at once and split again in C (on "\n"
            # only, like the bytes); a chunk with a line too long or not UTF-8
            # goes line by line, to say which.
            number = 0
            for lines, ended in line_batches(chunks, report, self.max_line_bytes):
                first = lines[0]
                if number == 0 and isinstance(first, bytes) and first.startswith(_BOM):
                    lines[0] = first[len(_BOM) :]
                try:
                    text = b"\n".join(cast(list[bytes], lines)).decode("utf-8")
                except (TypeError, UnicodeDecodeError):  # TypeError: a TOO_LONG marker
                    for raw in lines:
                        number += 1
                        yield self._decode_line(number, raw, ended, bad_lines)
                    continue
                number += len(lines)
                yield from io.StringIO(text + "\n" if ended else text, newline="\n")

        reader = csv.reader(text_lines(), strict=True)
        columns: list[tuple[str, Callable[[str], Any]]] | None = None
        gid_index = 0
        width = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if columns is None:
                    raise InvalidInput(
                        f"The CSV header (line {start}) cannot be read: {exc}.",
                        field="header",
                        field_code="csv_header_unreadable",
                        params={"line": start},
                    ) from None
                report.reject(
                    start,
                    [
                        field_detail(
                            "line", f"malformed CSV: {exc}", "csv_malformed", {"error": str(exc)}
                        )
                    ],
                )
                continue
            end = reader.line_num
            if bad_lines:
                reason = next((bad_lines[n] for n in range(start, end + 1) if n in bad_lines), None)
                for n in [n for n in bad_lines if n <= end]:
                    del bad_lines[n]
                if reason is not None:
                    if columns is None:
                        raise InvalidInput(
                            f"The CSV header (line {start}) cannot be read: "
                            f"{reason[0]['message']}.",
                            field="header",
                            field_code="csv_header_unreadable",
                            params={"line": start},
                        )
                    report.reject(start, reason)
                    continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if columns is None:
                columns, gid_index = self._read_header(row, start)
                width = len(row)
                continue
            if len(row) != width:
                report.reject(
                    start,
                    [
                        field_detail(
                            "line",
                            f"expected {width} fields like the header, got {len(row)}",
                            "csv_width",
                            {"expected": width, "got": len(row)},
                        )
                    ],
                )
                continue
            try:
                gid = _gid_from_text(row[gid_index])
            except LineRejected as exc:
                report.reject(start, exc.problems)
                continue
            patch: dict[str, Any] = {}
            problems: list[dict[str, Any]] = []
            for index, (key, convert) in enumerate(columns):
                if index == gid_index:
                    continue
                cell = row[index]
                if cell == "":
                    patch[key] = None
                    continue
                try:
                    patch[key] = convert(cell)
                except BadValue as exc:
                    problems.append(exc.detail(key))
            if problems:
                report.reject(start, problems)
                continue
            self._add(gid, patch)

    def _csv_date(self, text: str) -> Any:
        """A date cell, remembered once valid (see :data:`MAX_REMEMBERED_DATES`)."""
        if text in self._dates:
            return text
        value = _csv_date(text)
        if len(self._dates) < MAX_REMEMBERED_DATES:
            self._dates.add(value)
        return value

    def _decode_line(
        self, number: int, raw: Line, ended: bool, bad_lines: dict[int, list[dict[str, Any]]]
    ) -> str:
        """One line as text for the CSV reader, noting in ``bad_lines`` why it cannot be read."""
        if isinstance(raw, _TooLong):
            bad_lines[number] = _too_long(self.max_line_bytes)
            return "\n"
        newline = "\n" if ended else ""
        try:
            return raw.decode("utf-8") + newline
        except UnicodeDecodeError as exc:
            bad_lines[number] = [
                field_detail(
                    "line",
                    f"not valid UTF-8: {exc.reason} at byte {exc.start}",
                    "not_utf8",
                    {"byte": exc.start},
                )
            ]
            return raw.decode("utf-8", "replace") + newline

    def _read_header(
        self, row: list[str], line: int
    ) -> tuple[list[tuple[str, Callable[[str], Any]]], int]:
        """Check the header names gid once and only catalogue keys (422 otherwise)."""
        names = [cell.strip() for cell in row]
        problems = FieldErrors()
        if names.count("gid") != 1:
            problems.add(
                "header",
                "the header must name a 'gid' column exactly once, like gid,<key>,...",
                code="csv_gid_column",
            )
        seen: set[str] = set()
        columns: list[tuple[str, Callable[[str], Any]]] = []
        for position, name in enumerate(names, 1):
            if name == "gid":
                columns.append((name, _csv_string))
                continue
            if not name:
                problems.add(
                    "header",
                    f"column {position} has no name",
                    code="csv_column_unnamed",
                    position=position,
                )
            elif name in seen:
                problems.add(
                    "header", f"column {name!r} appears twice", code="csv_column_twice", name=name
                )
            elif name not in self.catalogue:
                problems.add(
                    "header",
                    f"unknown attribute {name!r} (not in the project's catalogue)",
                    code="attribute_unknown",
                    value=name,
                )
            else:
                type_ = self.catalogue[name]
                columns.append((name, self._csv_date if type_ == "date" else CSV_CONVERTERS[type_]))
            seen.add(name)
        problems.raise_if_any(f"The CSV header (line {line}) is invalid:")
        return columns, names.index("gid")

    # -- writing ----------------------------------------------------------------

    def _add(self, gid: int, patch: dict[str, Any], clears: bool | None = None) -> None:
        """Merge a valid line into the pending chunk (``clears``: it gives a null)."""
        pending = self._pending
        existing = pending.patches.get(gid)
        if existing is None:
            pending.patches[gid] = patch
        else:
            existing.update(patch)  # the later line wins, key by key
        if clears or (clears is None and None in patch.values()):
            pending.cleared.append(gid)
        pending.lines += 1
        if pending.lines >= self.chunk_lines:
            self._flush()

    def _flush(self) -> None:
        """Encode the pending lines and hand them to the writer thread."""
        pending = self._pending
        if not pending.lines:
            return
        assert self._writer is not None, "lines are only added while run() runs"
        self._pending = _Pending()
        patches = pending.patches
        if self.sensitive_keys:
            for patch in patches.values():
                sensitive.seal_patch(patch, self.sensitive_keys, self.runtime.secrets)
        # In gid order: the rows reach the primary key's B-tree in its order
        # (SQLite's writer does a third less work than in file order).
        rows = repo.UserPatches.encode(
            {gid: patches[gid] for gid in sorted(patches)}, pending.cleared
        )
        self._writer.put(_Chunk(rows, pending.lines))

    def _write(self, chunk: _Chunk) -> None:
        """Write one chunk in its own transaction (in the writer thread)."""
        with self.runtime.tx() as session:
            created = repo.upsert_users(session, self.project_id, chunk.rows)
        # A gid's first line in the chunk created it or not; every other line updated it.
        self.report.imported += created
        self.report.updated += chunk.lines - created
