"""User import: JSON Lines and CSV over HTTP (streamed) and through the CLI."""

from __future__ import annotations

import gzip
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from touchgate.datastore.importer import (
    CHUNK_LINES,
    INFLATE_STEP,
    MAX_ERRORS,
    MAX_LINE_BYTES,
    TOO_LONG,
    ImportFormat,
    ImportReport,
    UserImport,
    gunzip,
    split_lines,
)
from touchgate.models import User
from touchgate.runtime import Runtime

MAX_GID = 2**63 - 1
NDJSON = "application/x-ndjson"
CSV = "text/csv"
CATALOGUE = [
    ("memberId", "string", "identity"),
    ("city", "string", "attribute"),
    ("level", "number", "attribute"),
    ("vip", "boolean", "attribute"),
    ("birthday", "date", "attribute"),
]


@pytest.fixture
def pid(client: httpx.Client, project: dict[str, Any]) -> int:
    project_id: int = project["id"]
    for key, type_, kind in CATALOGUE:
        r = client.post(
            f"/projects/{project_id}/attributes", json={"key": key, "type": type_, "kind": kind}
        )
        assert r.status_code == 201, r.text
    return project_id


def post_import(
    client: httpx.Client, pid: int, body: Any, content_type: str = NDJSON
) -> dict[str, Any]:
    r = client.post(
        f"/projects/{pid}/users/import", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    assert set(result) == {"imported", "updated", "rejected", "errors", "errors_truncated"}
    return result


def attrs(client: httpx.Client, pid: int, gid: int) -> Any:
    r = client.get(f"/projects/{pid}/users/{gid}")
    assert r.status_code == 200, r.text
    assert r.json()["gid"] == gid
    return r.json()["attributes"]


def user_count(runtime: Runtime, pid: int) -> int:
    with runtime.engine.connect() as conn:
        return conn.scalar(select(func.count()).where(User.project_id == pid)) or 0


def lines(*records: Any) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records
    )


# -- JSON Lines ---------------------------------------------------------------------------


def test_ndjson_import_counts_and_values(client: httpx.Client, pid: int) -> None:
    body = lines(
        {
            "gid": 1,
            "attributes": {
                "memberId": "M1",
                "city": "上海",
                "level": 3,
                "vip": True,
                "birthday": "1990-02-28",
            },
        },
        {"gid": 2, "attributes": {"level": 2.5, "vip": False}},
        {"gid": MAX_GID},
    )
    result = post_import(client, pid, body)
    assert result == {
        "imported": 3,
        "updated": 0,
        "rejected": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert attrs(client, pid, 1) == {
        "memberId": "M1",
        "city": "上海",
        "level": 3,
        "vip": True,
        "birthday": "1990-02-28",
    }
    assert attrs(client, pid, 2) == {"level": 2.5, "vip": False}
    assert attrs(client, pid, MAX_GID) == {}

    # the same file again: every line updates
    again = post_import(client, pid, body, "application/jsonl")
    assert (again["imported"], again["updated"], again["rejected"]) == (0, 3, 0)


def test_upsert_merges_into_existing_attributes(client: httpx.Client, pid: int) -> None:
    post_import(
        client,
        pid,
        lines({"gid": 5, "attributes": {"city": "Beijing", "level": 1, "vip": True}}),
    )
    result = post_import(
        client,
        pid,
        lines(
            {"gid": 5, "attributes": {"level": 4, "birthday": "2000-01-01"}},
            {"gid": 6, "attributes": {"city": "Shenzhen"}},
        ),
        "application/x-ndjson; charset=utf-8",
    )
    assert (result["imported"], result["updated"]) == (1, 1)
    # untouched keys stay, given keys are replaced or added
    assert attrs(client, pid, 5) == {
        "city": "Beijing",
        "level": 4,
        "vip": True,
        "birthday": "2000-01-01",
    }
    # null means "no value": the attribute is removed
    result = post_import(client, pid, lines({"gid": 5, "attributes": {"vip": None}}))
    assert result["updated"] == 1
    assert attrs(client, pid, 5) == {"city": "Beijing", "level": 4, "birthday": "2000-01-01"}
    # a new user given only nulls has no attributes at all
    post_import(client, pid, lines({"gid": 7, "attributes": {"city": None, "level": 2}}))
    assert attrs(client, pid, 7) == {"level": 2}


def test_duplicate_gid_later_line_wins(client: httpx.Client, pid: int) -> None:
    result = post_import(
        client,
        pid,
        lines(
            {"gid": 1, "attributes": {"city": "A", "level": 1}},
            {"gid": 2, "attributes": {"city": "X"}},
            {"gid": 1, "attributes": {"city": "B", "vip": True}},
            {"gid": 1, "attributes": {"level": None}},
        ),
    )
    # the first line of gid 1 creates the user, the two later ones update it
    assert (result["imported"], result["updated"], result["rejected"]) == (2, 2, 0)
    assert attrs(client, pid, 1) == {"city": "B", "vip": True}


def test_duplicate_gid_across_chunks(client: httpx.Client, pid: int) -> None:
    def body() -> Iterator[bytes]:
        yield lines({"gid": 1, "attributes": {"city": "first", "level": 1}})
        for gid in range(2, CHUNK_LINES + 1_002):
            yield lines({"gid": gid})
        yield lines({"gid": 1, "attributes": {"city": "last"}})

    result = post_import(client, pid, body())
    assert (result["imported"], result["updated"], result["rejected"]) == (
        CHUNK_LINES + 1_001,
        1,
        0,
    )
    assert attrs(client, pid, 1) == {"city": "last", "level": 1}


def test_bad_lines_are_reported_and_good_lines_kept(
    client: httpx.Client, pid: int, runtime: Runtime
) -> None:
    body = b"".join(
        [
            lines({"gid": 1, "attributes": {"city": "ok"}}),  # 1
            b"{not json\n",  # 2
            b"[1, 2]\n",  # 3
            lines({"attributes": {"city": "x"}}),  # 4
            lines({"gid": 0}),  # 5
            lines({"gid": -3}),  # 6
            lines({"gid": "12"}),  # 7
            lines({"gid": 1.5}),  # 8
            lines({"gid": MAX_GID + 1}),  # 9
            lines({"gid": True}),  # 10
            lines({"gid": 3, "attributes": ["city"]}),  # 11
            lines({"gid": 4, "attributes": {"colour": "red", "city": "x"}}),  # 12
            lines({"gid": 5, "attributes": {"level": "3"}}),  # 13
            lines({"gid": 6, "attributes": {"vip": "yes"}}),  # 14
            lines({"gid": 7, "attributes": {"birthday": "2023-02-29"}}),  # 15
            lines({"gid": 8, "attributes": {"birthday": "20230101"}}),  # 16
            lines({"gid": 9, "attributes": {"city": 12}}),  # 17
            lines({"gid": 10, "attributes": {"level": True}}),  # 18
            lines({"gid": 11, "extra": 1}),  # 19
            b"\n",  # 20: blank lines are skipped, not rejected
            b"   \r\n",  # 21
            lines({"gid": 12, "attributes": {"level": 1e400}}),  # 22
            b'{"gid": 13, "attributes": {"city": "\xff\xfe"}}\n',  # 23 not UTF-8
            lines({"gid": 14, "attributes": {"city": "kept", "birthday": "2024-02-29"}}),  # 24
            lines({"gid": 16, "attributes": {"city": "nul\x00"}}),  # 25
            b'{"gid": 15, "attributes": {"colour": 1, "level": "x", "size": 2}}',  # 26, no \n
        ]
    )
    result = post_import(client, pid, body)
    assert result["imported"] == 2
    assert result["updated"] == 0
    errors = {e["line"]: e["message"] for e in result["errors"]}
    assert result["rejected"] == len(errors) == 22
    assert sorted(errors) == [*range(2, 20), 22, 23, 25, 26]
    assert "not valid JSON" in errors[2]
    assert "expected an object" in errors[3]
    assert "gid is missing" in errors[4]
    for line in (5, 6, 7, 8, 9, 10):
        assert "gid must be a positive 64-bit integer" in errors[line], errors[line]
    assert "attributes must be an object" in errors[11]
    assert "unknown attribute 'colour'" in errors[12]
    assert "'level'" in errors[13] and "number" in errors[13]
    assert "'vip'" in errors[14] and "true or false" in errors[14]
    assert "'birthday'" in errors[15] and "YYYY-MM-DD" in errors[15]
    assert "'birthday'" in errors[16]
    assert "'city'" in errors[17] and "string" in errors[17]
    assert "'level'" in errors[18]
    assert "unknown field 'extra'" in errors[19]
    assert "not valid JSON" in errors[22]
    assert "UTF-8" in errors[23]
    # every problem of a line is named
    assert "'city'" in errors[25] and "NUL" in errors[25]
    assert "'colour'" in errors[26] and "'size'" in errors[26] and "'level'" in errors[26]
    # ... with a code each, under the field it is about
    codes = {e["line"]: [(d["field"], d["code"]) for d in e["details"]] for e in result["errors"]}
    assert codes[2] == [("line", "invalid_json")]
    assert codes[3] == [("line", "not_object")]
    assert codes[4] == [("gid", "required")]
    assert codes[9] == [("gid", "gid_invalid")]
    assert codes[11] == [("attributes", "not_object")]
    assert codes[12] == [("attributes.colour", "attribute_unknown")]
    assert codes[13] == [("attributes.level", "not_number")]
    assert codes[14] == [("attributes.vip", "not_boolean")]
    assert codes[15] == codes[16] == [("attributes.birthday", "not_date")]
    assert codes[17] == [("attributes.city", "not_text")]
    assert codes[19] == [("extra", "unknown_field")]
    assert codes[25] == [("attributes.city", "nul_characters")]
    assert codes[26] == [
        ("attributes.colour", "attribute_unknown"),
        ("attributes.level", "not_number"),
        ("attributes.size", "attribute_unknown"),
    ]
    assert attrs(client, pid, 1) == {"city": "ok"}
    assert attrs(client, pid, 14) == {"city": "kept", "birthday": "2024-02-29"}
    assert user_count(runtime, pid) == 2


def test_ndjson_crlf_bom_and_no_final_newline(client: httpx.Client, pid: int) -> None:
    body = (
        b"\xef\xbb\xbf"
        + b'{"gid": 1, "attributes": {"city": "A"}}\r\n'
        + b"\r\n"
        + b'{"gid": 2, "attributes": {"city": "B"}}'
    )
    result = post_import(client, pid, body)
    assert (result["imported"], result["rejected"]) == (2, 0), result
    assert attrs(client, pid, 2) == {"city": "B"}


def test_error_list_is_capped(client: httpx.Client, pid: int) -> None:
    bad = MAX_ERRORS + 250

    def body() -> Iterator[bytes]:
        for gid in range(1, bad + 1):
            yield lines({"gid": gid, "attributes": {"nope": 1}})
        yield lines({"gid": 1, "attributes": {"city": "kept"}})

    result = post_import(client, pid, body())
    assert result["rejected"] == bad
    assert len(result["errors"]) == MAX_ERRORS
    assert result["errors_truncated"] is True
    assert result["errors"][0]["line"] == 1
    assert result["errors"][-1]["line"] == MAX_ERRORS
    assert result["imported"] == 1


def test_overlong_line_is_rejected_without_losing_the_rest(client: httpx.Client, pid: int) -> None:
    huge = b'{"gid": 2, "attributes": {"city": "' + b"x" * MAX_LINE_BYTES + b'"}}\n'

    def body() -> Iterator[bytes]:
        yield lines({"gid": 1, "attributes": {"city": "before"}})
        for start in range(0, len(huge), 100_000):
            yield huge[start : start + 100_000]
        yield lines({"gid": 3, "attributes": {"city": "after"}})

    result = post_import(client, pid, body())
    assert (result["imported"], result["rejected"]) == (2, 1)
    assert result["errors"][0]["line"] == 2
    assert "longer than" in result["errors"][0]["message"]
    assert attrs(client, pid, 3) == {"city": "after"}


def test_empty_body(client: httpx.Client, pid: int) -> None:
    empty = {"imported": 0, "updated": 0, "rejected": 0, "errors": [], "errors_truncated": False}
    assert post_import(client, pid, b"") == empty
    assert post_import(client, pid, b"\n\n  \n") == empty
    assert post_import(client, pid, b"", CSV) == empty


def test_unknown_attribute_with_an_empty_catalogue(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    result = post_import(client, project["id"], lines({"gid": 1, "attributes": {"city": "x"}}))
    assert result["rejected"] == 1
    assert "unknown attribute 'city'" in result["errors"][0]["message"]
    # a user without attributes needs no catalogue
    assert post_import(client, project["id"], lines({"gid": 1}))["imported"] == 1


def _apply_one_by_one(
    stored: dict[int, dict[str, Any]], records: list[tuple[int, dict[str, Any]]]
) -> tuple[int, int]:
    """The documented semantics, line by line: merge, null removes, count new and updated."""
    imported = updated = 0
    for gid, patch in records:
        if gid in stored:
            updated += 1
        else:
            imported += 1
            stored[gid] = {}
        stored[gid].update(patch)
        stored[gid] = {k: v for k, v in stored[gid].items() if v is not None}
    return imported, updated


def _random_records(seed: int, count: int, gids: int) -> list[tuple[int, dict[str, Any]]]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        patch: dict[str, Any] = {}
        for key, values in (
            ("city", ["A", "B", "上海", None]),
            ("level", [1, 2.5, -3, None]),
            ("vip", [True, False, None]),
            ("birthday", ["2000-02-29", "1999-12-31", None]),
        ):
            if rng.random() < 0.5:
                patch[key] = rng.choice(values)
        records.append((rng.randint(1, gids), patch))
    return records


@pytest.mark.parametrize("chunk_lines", [1, 2, 3, 7, 10_000])
def test_counts_and_values_match_line_by_line_semantics(
    runtime: Runtime, pid: int, chunk_lines: int
) -> None:
    """Repeated gids within and across chunks, nulls for new and stored users, two imports:
    the counts and the stored attributes are those of importing the lines one by one."""
    expected: dict[int, dict[str, Any]] = {}
    for seed in (1, 2):
        records = _random_records(seed, 300, 60)
        body = lines(*({"gid": gid, "attributes": patch} for gid, patch in records))
        job = UserImport.open(runtime, pid, ImportFormat.NDJSON)
        job.chunk_lines = chunk_lines
        report = job.run(pieces(body, (4096, 17)))
        assert (report.imported, report.updated) == _apply_one_by_one(expected, records)
        assert report.rejected == 0
        with runtime.tx() as session:
            stored = {u.gid: u.attributes for u in session.scalars(select(User))}
        assert stored == expected


def test_careful_and_fast_lines_keep_their_order(client: httpx.Client, pid: int) -> None:
    """Lines the fast check doubts (a form feed before the object, an escaped NUL nearby)
    are taken in their place: the later line still wins."""
    first = lines(*({"gid": gid, "attributes": {"city": "fast"}} for gid in range(1, 400)))
    body = (
        first
        + b'\x0c{"gid": 5, "attributes": {"city": "careful", "level": 1}}\n'
        + lines({"gid": 6, "attributes": {"city": "nul\x00"}})
        + lines({"gid": 7, "attributes": {"city": "after"}})
        + lines({"gid": 5, "attributes": {"vip": True}})
    )
    result = post_import(client, pid, body)
    assert (result["imported"], result["updated"], result["rejected"]) == (399, 3, 1)
    assert result["errors"][0]["line"] == 401
    assert attrs(client, pid, 5) == {"city": "careful", "level": 1, "vip": True}
    assert attrs(client, pid, 6) == {"city": "fast"}
    assert attrs(client, pid, 7) == {"city": "after"}


@pytest.fixture
def refuse_gid_13(runtime: Runtime) -> Iterator[None]:
    """A trigger in the test database that refuses to store user 13."""
    with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'user 13 refused'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_13 BEFORE INSERT ON users FOR EACH ROW "
                "WHEN (NEW.gid = 13) EXECUTE FUNCTION refuse_13()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_13 BEFORE INSERT ON users WHEN NEW.gid = 13 "
                "BEGIN SELECT RAISE(ABORT, 'user 13 refused'); END"
            )
    yield
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER refuse_13 ON users"
            if conn.dialect.name == "postgresql"
            else "DROP TRIGGER refuse_13"
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP FUNCTION refuse_13()")


def test_a_failed_write_stops_the_import(runtime: Runtime, pid: int, refuse_gid_13: None) -> None:
    """A chunk the database refuses ends the import with the database's error (no
    thread is left waiting); the chunks committed before it stay."""
    job = UserImport.open(runtime, pid, ImportFormat.NDJSON)
    job.chunk_lines = 2
    with pytest.raises(DBAPIError, match="user 13 refused"):
        job.run(pieces(lines(*({"gid": gid} for gid in range(1, 50))), (40,)))
    assert (job.report.imported, job.report.written) == (12, 12)
    assert user_count(runtime, pid) == 12


def test_a_user_created_by_a_concurrent_import_is_merged_into(
    runtime: Runtime, client: httpx.Client, pid: int
) -> None:
    """Another import creates user 1 while this chunk is written (committed after this
    chunk looked for existing users): the user is updated, not created twice, and
    nothing of the chunk is lost. On PostgreSQL this is the plain INSERT's unique
    violation, after which the chunk is written again by the upsert."""
    job = UserImport.open(runtime, pid, ImportFormat.NDJSON)
    other = runtime.engine.connect()
    other.begin()
    other.execute(insert(User), [{"project_id": pid, "gid": 1, "attributes": {"city": "A"}}])
    body = lines({"gid": 1, "attributes": {"level": 2}}, {"gid": 2, "attributes": {"city": "B"}})
    done: list[ImportReport] = []
    worker = threading.Thread(target=lambda: done.append(job.run(iter([body]))))
    worker.start()
    if other.dialect.name == "postgresql":
        # This import's INSERT waits for the other one's row of user 1.
        deadline = time.monotonic() + 10
        while not other.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted"
        ).scalar_one():
            assert time.monotonic() < deadline, "the import never waited for the other one"
            time.sleep(0.01)
    other.commit()
    other.close()
    worker.join(30)
    assert done, "the import did not finish"
    assert (done[0].imported, done[0].updated, done[0].rejected) == (1, 1, 0)
    assert attrs(client, pid, 1) == {"city": "A", "level": 2}
    assert attrs(client, pid, 2) == {"city": "B"}


# -- CSV ------------------------------------------------------------------------------------


def test_csv_import_with_quoting_and_types(client: httpx.Client, pid: int) -> None:
    body = (
        "gid,memberId,city,level,vip,birthday\r\n"
        '1,M1,"Shanghai, Pudong",3,true,1990-01-31\r\n'
        '2,M2,"line one\nline two",-2.75,FALSE,\r\n'
        '3,"M""3""",上海,1e3,yes,2000-12-01\r\n'
        "4,M4,,,0,\r\n"
        '5,"M5",  spaced  , 7 ,No, 2020-02-29 \r\n'
    ).encode()
    result = post_import(client, pid, body, CSV)
    assert result == {
        "imported": 5,
        "updated": 0,
        "rejected": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert attrs(client, pid, 1) == {
        "memberId": "M1",
        "city": "Shanghai, Pudong",
        "level": 3,
        "vip": True,
        "birthday": "1990-01-31",
    }
    assert attrs(client, pid, 2) == {
        "memberId": "M2",
        "city": "line one\nline two",
        "level": -2.75,
        "vip": False,
    }
    assert attrs(client, pid, 3) == {
        "memberId": 'M"3"',
        "city": "上海",
        "level": 1000.0,
        "vip": True,
        "birthday": "2000-12-01",
    }
    assert attrs(client, pid, 4) == {"memberId": "M4", "vip": False}
    # strings are kept as written; numbers, booleans and dates are trimmed
    assert attrs(client, pid, 5) == {
        "memberId": "M5",
        "city": "  spaced  ",
        "level": 7,
        "vip": False,
        "birthday": "2020-02-29",
    }


def test_csv_empty_cell_clears_and_columns_merge(client: httpx.Client, pid: int) -> None:
    post_import(client, pid, lines({"gid": 1, "attributes": {"city": "A", "level": 1}}))
    # only the columns in the file are touched; an empty cell means "no value"
    result = post_import(client, pid, b"level,gid,vip\n,1,true\n", CSV)
    assert (result["imported"], result["updated"]) == (0, 1)
    assert attrs(client, pid, 1) == {"city": "A", "vip": True}


def test_csv_bad_records_report_their_first_line(client: httpx.Client, pid: int) -> None:
    body = (
        b"gid,city,level,vip,birthday\n"  # 1
        b"1,ok,1,true,2020-01-01\n"  # 2
        b"x,bad gid,1,true,\n"  # 3
        b'2,"spans\ntwo lines",abc,maybe,2020-13-01\n'  # 4-5: three bad cells
        b"3,too,few\n"  # 6
        b"4,a,1,true,,extra\n"  # 7
        b'5,"bad"quote,1,true,\n'  # 8
        b"\n"  # 9 blank
        b"6,\xff\xfe,1,true,\n"  # 10 not UTF-8
        b"0,zero,1,true,\n"  # 11
        b"99999999999999999999,big,1,true,\n"  # 12
        b"7,num,99999999999999999999,true,\n"  # 13
        b"8,inf,inf,true,\n"  # 14
        b'9,"kept, too",2.5,0,2024-02-29\n'  # 15
        b"10,nul\x00,1,true,\n"  # 16
    )
    result = post_import(client, pid, body, CSV)
    errors = {e["line"]: e["message"] for e in result["errors"]}
    assert sorted(errors) == [3, 4, 6, 7, 8, 10, 11, 12, 13, 14, 16]
    assert result["rejected"] == 11
    assert "NUL" in errors[16]
    assert result["imported"] == 2
    assert "gid must be a positive 64-bit integer" in errors[3]
    assert "'level'" in errors[4] and "'vip'" in errors[4] and "'birthday'" in errors[4]
    assert "expected 5 fields" in errors[6] and "got 3" in errors[6]
    assert "got 6" in errors[7]
    assert "malformed CSV" in errors[8]
    assert "UTF-8" in errors[10]
    assert "gid" in errors[11] and "gid" in errors[12]
    assert "64-bit" in errors[13]
    assert "finite" in errors[14]
    codes = {e["line"]: [(d["field"], d["code"]) for d in e["details"]] for e in result["errors"]}
    assert codes[4] == [
        ("attributes.level", "not_number"),
        ("attributes.vip", "not_boolean"),
        ("attributes.birthday", "not_date"),
    ]
    assert codes[6] == [("line", "csv_width")] and codes[8] == [("line", "csv_malformed")]
    assert codes[10] == [("line", "not_utf8")]
    assert codes[13] == [("attributes.level", "integer_too_large")]
    assert codes[14] == [("attributes.level", "not_finite")]
    assert attrs(client, pid, 9) == {
        "city": "kept, too",
        "level": 2.5,
        "vip": False,
        "birthday": "2024-02-29",
    }


def test_csv_line_numbers_when_chunks_decode_at_once(client: httpx.Client, pid: int) -> None:
    """Chunks of good lines are decoded whole; one with a line that is not UTF-8 or too
    long goes line by line. Numbers stay those of the file either way."""
    good = "".join(f'{gid},"city {gid}\nsecond line",{gid}\n' for gid in range(1, 41)).encode()
    body = (
        b"gid,city,level\n"
        + good  # lines 2-81
        + b"41,\xff,1\n"  # 82
        + b"42,fine,2\n"  # 83
        + b'43,"'
        + b"x" * MAX_LINE_BYTES
        + b'",3\n'  # 84
        + b'44,"after\r\nall",4'  # 85-86, no final newline
    )
    result = post_import(client, pid, pieces(body, (100_000, 333, 7)), CSV)
    errors = {e["line"]: e["message"] for e in result["errors"]}
    assert sorted(errors) == [82, 84], errors
    assert "UTF-8" in errors[82] and "longer than" in errors[84]
    assert (result["imported"], result["rejected"]) == (42, 2)
    assert attrs(client, pid, 40) == {"city": "city 40\nsecond line", "level": 40}
    assert attrs(client, pid, 44) == {"city": "after\r\nall", "level": 4}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"city,level\n", "gid"),
        (b"gid,city,gid\n", "gid"),
        (b"gid,city,colour,size\n", "unknown attribute 'colour'"),
        (b"gid,city,,level\n", "column 3 has no name"),
        (b"gid,city,city\n", "appears twice"),
        (b'gid,"city\n', "cannot be read"),
    ],
)
def test_csv_header_problems_refuse_the_file(
    client: httpx.Client, pid: int, header: bytes, message: str
) -> None:
    r = client.post(
        f"/projects/{pid}/users/import",
        content=header + b"1,Shanghai,3\n",
        headers={"Content-Type": CSV},
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert {d["field"] for d in error["details"]} == {"header"}
    assert any(message in d["message"] for d in error["details"]), error
    assert client.get(f"/projects/{pid}/users/1").status_code == 404


def test_csv_bom_and_header_only(client: httpx.Client, pid: int) -> None:
    body = b"\xef\xbb\xbfgid,city\r\n"
    assert post_import(client, pid, body, CSV)["imported"] == 0
    result = post_import(client, pid, body + b"1,A\r\n", CSV)
    assert result["imported"] == 1
    assert attrs(client, pid, 1) == {"city": "A"}


# -- streaming --------------------------------------------------------------------------------


def pieces(data: bytes, sizes: tuple[int, ...] = (1, 2, 3, 5, 7, 11, 64, 13)) -> Iterator[bytes]:
    """Cut ``data`` into odd-sized pieces, cycling through ``sizes``."""
    at = 0
    i = 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        yield data[at : at + size]
        at += size
        i += 1


def test_chunk_boundaries_anywhere(client: httpx.Client, pid: int) -> None:
    records = [
        {"gid": gid, "attributes": {"city": f"上海🌏{gid}", "memberId": f"M{gid}", "level": gid}}
        for gid in range(1, 60)
    ]
    body = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\r\n" for r in records)
    result = post_import(client, pid, pieces(body))
    assert (result["imported"], result["rejected"]) == (59, 0), result
    for gid in (1, 17, 59):
        assert attrs(client, pid, gid) == records[gid - 1]["attributes"]

    csv_body = "gid,city,memberId\r\n" + "".join(
        f'{gid},"北京, ""{gid}""\r\n第二行",é{gid}\r\n' for gid in range(100, 160)
    )
    result = post_import(client, pid, pieces(csv_body.encode()), CSV)
    assert (result["imported"], result["rejected"]) == (60, 0), result
    assert attrs(client, pid, 131) == {"city": '北京, "131"\r\n第二行', "memberId": "é131"}


def test_split_lines_unit() -> None:
    def collect(chunks: list[bytes], limit: int = MAX_LINE_BYTES) -> list[Any]:
        report = ImportReport()
        out = list(split_lines(chunks, report, limit))
        assert report.bytes_read == sum(len(c) for c in chunks)
        return out

    assert collect([]) == []
    assert collect([b"a\nb"]) == [b"a\n", b"b"]
    assert collect([b"a", b"b\n", b"", b"\nc\n"]) == [b"ab\n", b"\n", b"c\n"]
    # "é" split between its two bytes is joined back before decoding
    assert collect([b"\xc3", b"\xa9\n"]) == ["é\n".encode()]
    assert collect([b"12345\n123456\n", b"1"], limit=5) == [b"12345\n", TOO_LONG, b"1"]
    assert collect([b"123", b"456", b"7\nok\n"], limit=5) == [TOO_LONG, b"ok\n"]
    assert collect([b"123", b"456"], limit=5) == [TOO_LONG]


def test_gunzip_bounds_each_step() -> None:
    bomb = gzip.compress(b"\n" * (40 * INFLATE_STEP))
    assert len(bomb) < INFLATE_STEP
    sizes = [len(out) for out in gunzip(pieces(bomb, (4096,)))]
    assert sum(sizes) == 40 * INFLATE_STEP
    assert max(sizes) <= INFLATE_STEP


def test_streamed_import_of_200k_lines(client: httpx.Client, pid: int, runtime: Runtime) -> None:
    total = 200_000
    pause_after = 40_000

    def body() -> Iterator[bytes]:
        # Generated as sent, never as a whole. Half-way through, wait until the
        # server has committed earlier chunks: it would wait forever if the
        # endpoint read the whole body before writing anything.
        batch: list[bytes] = []
        for gid in range(1, total + 1):
            batch.append(
                b'{"gid": %d, "attributes": {"memberId": "M%d", "level": %d, "vip": %s}}\n'
                % (gid, gid, gid % 7, b"true" if gid % 2 else b"false")
            )
            if len(batch) == 997:
                yield b"".join(batch)
                batch = []
            if gid == pause_after:
                yield b"".join(batch)
                batch = []
                deadline = time.monotonic() + 60
                while user_count(runtime, pid) < 10_000:
                    assert time.monotonic() < deadline, "nothing was stored while streaming"
                    time.sleep(0.05)
        yield b"".join(batch)

    result = post_import(client, pid, body())
    assert result == {
        "imported": total,
        "updated": 0,
        "rejected": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert user_count(runtime, pid) == total
    assert attrs(client, pid, 123_457) == {"memberId": "M123457", "level": 5, "vip": True}


def test_client_disconnect_keeps_committed_chunks(
    client: httpx.Client, pid: int, runtime: Runtime, live_server: Any
) -> None:
    data = lines(*({"gid": gid} for gid in range(1, CHUNK_LINES + 2_001)))
    head = (
        f"POST /api/v1/projects/{pid}/users/import HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: {client.headers['Authorization']}\r\n"
        "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(head.encode() + b"%x\r\n%s\r\n" % (len(data), data))
        deadline = time.monotonic() + 60
        while user_count(runtime, pid) < CHUNK_LINES:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The body never ended: the first full chunk was committed, the rest dropped,
    # and the server goes on serving.
    time.sleep(0.5)
    assert user_count(runtime, pid) == CHUNK_LINES
    assert attrs(client, pid, CHUNK_LINES) == {}
    unsent = CHUNK_LINES + 1_500
    assert client.get(f"/projects/{pid}/users/{unsent}").status_code == 404
    assert post_import(client, pid, lines({"gid": unsent}))["imported"] == 1


def test_gzip_body(client: httpx.Client, pid: int) -> None:
    body = gzip.compress(
        lines(*({"gid": gid, "attributes": {"city": "上海" * 50}} for gid in range(1, 3_001)))
    )
    r = client.post(
        f"/projects/{pid}/users/import",
        content=pieces(body, (3, 1000, 17)),
        headers={"Content-Type": NDJSON, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 3_000
    assert attrs(client, pid, 2_999) == {"city": "上海" * 50}

    r = client.post(
        f"/projects/{pid}/users/import",
        content=body[: len(body) // 2],
        headers={"Content-Type": NDJSON, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "body"
    r = client.post(
        f"/projects/{pid}/users/import",
        content=b"plain text",
        headers={"Content-Type": CSV, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 422
    r = client.post(
        f"/projects/{pid}/users/import",
        content=body,
        headers={"Content-Type": NDJSON, "Content-Encoding": "br"},
    )
    assert r.status_code == 415
    assert "gzip" in r.json()["error"]["message"]


# -- content types, projects ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "application/x-ndjson; charset=latin-1", None],
)
def test_unknown_content_type_is_415(
    client: httpx.Client, pid: int, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(f"/projects/{pid}/users/import", content=lines({"gid": 1}), headers=headers)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_media_type"
    for accepted in ("application/x-ndjson", "application/jsonl", "text/csv"):
        assert accepted in error["message"]
    assert client.get(f"/projects/{pid}/users/1").status_code == 404


def test_import_into_unknown_project_is_404(client: httpx.Client) -> None:
    r = client.post(
        "/projects/999999/users/import",
        content=lines({"gid": 1}),
        headers={"Content-Type": NDJSON},
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


# -- CLI ----------------------------------------------------------------------------------------


def run_cli(database: Any, *args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "touchgate"
    env = {
        **os.environ,
        "TOUCHGATE_DATABASE_URL": database.url,
        "TOUCHGATE_SECRET_KEY": "test-secret-key",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(exe), "import", "users", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_cli_imports_a_generated_file(
    client: httpx.Client, pid: int, database: Any, runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "users.ndjson"
    with path.open("w") as fh:
        for gid in range(1, 30_001):
            fh.write(json.dumps({"gid": gid, "attributes": {"level": gid, "city": "C"}}) + "\n")
    done = run_cli(database, path, "--project", str(pid))
    assert done.returncode == 0, done.stderr
    assert "30,000" in done.stderr
    assert user_count(runtime, pid) == 30_000
    assert attrs(client, pid, 29_999) == {"level": 29_999, "city": "C"}

    # again, with bad lines: updates counted, rejected lines listed (first 20), exit code 1
    with path.open("a") as fh:
        for gid in range(30_001, 30_031):
            fh.write(json.dumps({"gid": gid, "attributes": {"colour": "red"}}) + "\n")
    done = run_cli(database, path, "--project", str(pid), "--format", "ndjson")
    assert done.returncode == 1, done.stderr
    out = done.stderr
    assert "line 30001: unknown attribute 'colour'" in out
    assert "line 30020:" in out
    assert "line 30021:" not in out
    assert "and 10 more rejected lines" in out
    assert "30,000" in out  # updated
    assert user_count(runtime, pid) == 30_000


def test_cli_csv_gzip_and_failures(
    client: httpx.Client, pid: int, database: Any, runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        fh.write('gid,city,vip\r\n1,"A, B",true\r\n2,"multi\nline",no\r\n')
    done = run_cli(database, path, "-p", str(pid))
    assert done.returncode == 0, done.stderr
    assert attrs(client, pid, 2) == {"city": "multi\nline", "vip": False}

    plain = tmp_path / "people.txt"
    plain.write_text("gid,city\n3,C\n")
    done = run_cli(database, plain, "--project", str(pid))
    assert done.returncode == 2
    assert "--format" in done.stderr
    done = run_cli(database, plain, "--project", str(pid), "--format", "xml")
    assert done.returncode == 2
    done = run_cli(database, plain, "--project", "999999", "--format", "csv")
    assert done.returncode == 2
    assert "Project 999999 does not exist" in done.stderr
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("gid,colour\n3,red\n")
    done = run_cli(database, bad_header, "--project", str(pid))
    assert done.returncode == 2
    assert "unknown attribute 'colour'" in done.stderr
    done = run_cli(database, plain, "--project", str(pid), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert attrs(client, pid, 3) == {"city": "C"}
