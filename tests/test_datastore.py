"""The data store API: attribute catalogue, user lookup, events, and who may use them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from touchgate.crypto import hash_api_key
from touchgate.datastore import repository as repo
from touchgate.models import ApiKey
from touchgate.runtime import Runtime

MAX_GID = 2**63 - 1


def add_attribute(client: httpx.Client, pid: int, key: str, type_: str, **extra: Any) -> Any:
    r = client.post(f"/projects/{pid}/attributes", json={"key": key, "type": type_, **extra})
    assert r.status_code == 201, r.text
    return r.json()


# -- attribute catalogue ---------------------------------------------------------------


def test_create_and_list_attributes(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    r = client.post(
        f"/projects/{pid}/attributes",
        json={
            "key": "memberId",
            "name": "Member id",
            "type": "string",
            "kind": "identity",
            "sensitive": False,
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key"] == "memberId"
    assert body["name"] == "Member id"
    assert body["type"] == "string"
    assert body["kind"] == "identity"
    assert body["sensitive"] is False
    assert isinstance(body["id"], int)

    # name, kind and sensitive have defaults
    idcard = add_attribute(client, pid, "_id_card2", "string", sensitive=True)
    assert idcard["name"] == "_id_card2"
    assert idcard["kind"] == "attribute"
    assert idcard["sensitive"] is True
    for key, type_ in [("level", "number"), ("birthday", "date"), ("vip", "boolean")]:
        add_attribute(client, pid, key, type_)

    r = client.get(f"/projects/{pid}/attributes")
    assert r.status_code == 200
    listed = r.json()
    assert listed["total"] == 5
    assert [a["key"] for a in listed["items"]] == [
        "memberId",
        "_id_card2",
        "level",
        "birthday",
        "vip",
    ]
    assert {a["type"] for a in listed["items"]} == {"string", "number", "date", "boolean"}
    paged = client.get(f"/projects/{pid}/attributes", params={"limit": 2, "offset": 1}).json()
    assert paged["total"] == 5
    assert [a["key"] for a in paged["items"]] == ["_id_card2", "level"]


def test_attribute_key_is_unique_per_project(client: httpx.Client) -> None:
    p1 = client.post("/projects", json={"name": "one"}).json()["id"]
    p2 = client.post("/projects", json={"name": "two"}).json()["id"]
    add_attribute(client, p1, "city", "string")
    r = client.post(f"/projects/{p1}/attributes", json={"key": "city", "type": "number"})
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "attribute_exists"
    assert error["details"][0]["field"] == "key"
    # the same key in another project is fine, and keys are case-sensitive
    add_attribute(client, p2, "city", "number")
    add_attribute(client, p1, "City", "string")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"key": "1city", "type": "string"}, {"key"}),
        ({"key": "ci-ty", "type": "string"}, {"key"}),
        ({"key": "", "type": "string"}, {"key"}),
        ({"key": "a" * 65, "type": "string"}, {"key"}),
        ({"key": "gid", "type": "number"}, {"key"}),
        ({"key": "城市", "type": "string"}, {"key"}),
        ({"key": "city", "type": "text"}, {"type"}),
        ({"key": "city"}, {"type"}),
        ({"key": "city", "type": "string", "kind": "trait"}, {"kind"}),
        ({"key": "city", "type": "string", "sensitive": "maybe"}, {"sensitive"}),
        ({"key": "city", "type": "string", "name": "   "}, {"name"}),
        ({"key": "city", "type": "string", "name": "a\x00b"}, {"name"}),
        ({"key": "city", "type": "string", "colour": "red"}, {"colour"}),
        ({"key": 5, "type": 7, "kind": None}, {"key", "type", "kind"}),
    ],
)
def test_bad_attribute_input_names_fields(
    client: httpx.Client, project: dict[str, Any], body: dict[str, Any], fields: set[str]
) -> None:
    r = client.post(f"/projects/{project['id']}/attributes", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert {d["field"] for d in error["details"]} == fields


def test_longest_key_is_accepted(client: httpx.Client, project: dict[str, Any]) -> None:
    add_attribute(client, project["id"], "_" + "a" * 63, "string")


def test_attributes_of_unknown_project(client: httpx.Client) -> None:
    r = client.post("/projects/999999/attributes", json={"key": "city", "type": "string"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/projects/999999/attributes").status_code == 404


@pytest.mark.parametrize("pid", [2**40, 0, -5])
def test_out_of_range_project_ids_are_404(client: httpx.Client, pid: int) -> None:
    ndjson = {"Content-Type": "application/x-ndjson"}
    assert client.get(f"/projects/{pid}/attributes").status_code == 404
    r = client.post(f"/projects/{pid}/attributes", json={"key": "city", "type": "string"})
    assert r.status_code == 404
    r = client.post(f"/projects/{pid}/users/import", content=b'{"gid": 1}\n', headers=ndjson)
    assert r.status_code == 404
    assert client.get(f"/projects/{pid}/users/1").status_code == 404
    assert client.post(f"/projects/{pid}/events", json={"name": "x", "gid": 1}).status_code == 404
    assert client.get(f"/projects/{pid}/events").status_code == 404


def test_repository_catalogue_helpers(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    pid = project["id"]
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    add_attribute(client, pid, "memberId", "string", kind="identity")
    add_attribute(client, pid, "idCard", "string", sensitive=True)
    add_attribute(client, other, "phone", "string")
    with runtime.tx() as session:
        found = repo.attributes_by_key(session, pid, ["memberId", "idCard", "phone", "nope"])
        assert set(found) == {"memberId", "idCard"}
        assert found["idCard"].sensitive is True
        assert found["memberId"].kind == "identity"
        assert repo.attributes_by_key(session, pid, []) == {}
        assert [a.key for a in repo.list_attributes(session, pid)] == ["memberId", "idCard"]
        assert [a.key for a in repo.list_attributes(session, other)] == ["phone"]


# -- users -------------------------------------------------------------------------------


def test_get_user(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    add_attribute(client, pid, "city", "string")
    r = client.post(
        f"/projects/{pid}/users/import",
        content=b'{"gid": 9007199254740993, "attributes": {"city": "Shanghai"}}\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.json()["imported"] == 1
    r = client.get(f"/projects/{pid}/users/9007199254740993")
    assert r.status_code == 200
    assert r.json() == {"gid": 9007199254740993, "attributes": {"city": "Shanghai"}}

    r = client.get(f"/projects/{pid}/users/42")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/projects/999999/users/9007199254740993").status_code == 404


@pytest.mark.parametrize("gid", ["0", "-1", str(MAX_GID + 1), "abc"])
def test_get_user_with_bad_gid_is_422(
    client: httpx.Client, project: dict[str, Any], gid: str
) -> None:
    r = client.get(f"/projects/{project['id']}/users/{gid}")
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "gid"


# -- events ------------------------------------------------------------------------------


def test_post_one_event_and_a_batch(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    before = datetime.now(UTC)
    r = client.post(
        f"/projects/{pid}/events",
        json={"name": "purchase", "gid": 7, "properties": {"amount": 12.5, "sku": "A1"}},
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1}
    r = client.post(
        f"/projects/{pid}/events",
        json={
            "events": [
                {"name": "add_to_cart", "gid": 7, "time": "2026-01-01T10:00:00+08:00"},
                {"name": "purchase", "gid": 8, "time": "2026-01-02T00:00:00Z"},
                {"name": "purchase", "gid": MAX_GID, "time": "2026-01-03T00:00:00.250Z"},
            ]
        },
    )
    assert r.status_code == 202
    assert r.json() == {"accepted": 3}

    r = client.get(f"/projects/{pid}/events")
    assert r.status_code == 200
    listed = r.json()
    assert listed["total"] == 4
    items = listed["items"]
    # newest first; the event without a time was stamped "now"
    assert [(e["name"], e["gid"]) for e in items] == [
        ("purchase", 7),
        ("purchase", MAX_GID),
        ("purchase", 8),
        ("add_to_cart", 7),
    ]
    assert set(items[0]) == {"name", "gid", "time", "properties"}
    stamped = datetime.fromisoformat(items[0]["time"])
    assert before - timedelta(seconds=1) <= stamped <= datetime.now(UTC) + timedelta(seconds=1)
    assert items[0]["properties"] == {"amount": 12.5, "sku": "A1"}
    assert datetime.fromisoformat(items[3]["time"]) == datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert items[3]["properties"] == {}
    assert datetime.fromisoformat(items[1]["time"]) == datetime(
        2026, 1, 3, 0, 0, 0, 250000, tzinfo=UTC
    )


def test_event_filters_and_paging(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    base = datetime(2026, 3, 1, tzinfo=UTC)
    events = [
        {
            "name": "purchase" if i % 2 else "view",
            "gid": 100 + i % 3,
            "time": (base + timedelta(hours=i)).isoformat(),
            "properties": {"i": i},
        }
        for i in range(12)
    ]
    assert client.post(f"/projects/{pid}/events", json={"events": events}).json() == {
        "accepted": 12
    }
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    client.post(f"/projects/{other}/events", json={"name": "purchase", "gid": 100})

    def get(**params: Any) -> dict[str, Any]:
        r = client.get(f"/projects/{pid}/events", params=params)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def indexes(data: dict[str, Any]) -> list[int]:
        return [e["properties"]["i"] for e in data["items"]]

    assert indexes(get()) == list(range(11, -1, -1))
    purchases = get(name="purchase")
    assert purchases["total"] == 6
    assert indexes(purchases) == [11, 9, 7, 5, 3, 1]
    assert indexes(get(gid=101)) == [10, 7, 4, 1]
    assert indexes(get(name="purchase", gid=101)) == [7, 1]
    # since is inclusive, until exclusive; any zone is accepted
    assert indexes(get(since=(base + timedelta(hours=9)).isoformat())) == [11, 10, 9]
    assert indexes(get(until="2026-03-01T10:00:00+08:00")) == [1, 0]
    window = get(since="2026-03-01T03:00:00Z", until="2026-03-01T06:00:00Z")
    assert indexes(window) == [5, 4, 3]
    paged = get(limit=4, offset=2)
    assert paged["total"] == 12
    assert indexes(paged) == [9, 8, 7, 6]
    assert get(name="nothing") == {"items": [], "total": 0}


def test_event_names_and_their_properties(client: httpx.Client, project: dict[str, Any]) -> None:
    """What a campaign trigger can wait for: the names seen, and what their events carry."""
    pid = project["id"]
    base = datetime(2026, 3, 1, tzinfo=UTC)
    events = [
        {"name": "purchase", "gid": 1, "time": base.isoformat(), "properties": {"amount": "9"}},
        {
            "name": "purchase",
            "gid": 2,
            "time": (base + timedelta(hours=2)).isoformat(),
            "properties": {"amount": 120, "vip": True, "sku": "A-1", "tags": ["x"]},
        },
        {"name": "add_to_cart", "gid": 1, "time": (base + timedelta(hours=1)).isoformat()},
        {"name": "$ma_channel_touch", "gid": 3, "time": base.isoformat()},
        {"name": "浏览商品", "gid": 3, "time": base.isoformat(), "properties": {"城市": "上海"}},
    ]
    assert client.post(f"/projects/{pid}/events", json={"events": events}).status_code == 202
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    client.post(f"/projects/{other}/events", json={"name": "elsewhere", "gid": 1})

    r = client.get(f"/projects/{pid}/event-names")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    # In the database's collation order (which may ignore the "$").
    names = [i["name"] for i in items]
    assert sorted(names) == ["$ma_channel_touch", "add_to_cart", "purchase", "浏览商品"]
    seen = {i["name"]: datetime.fromisoformat(i["last_seen_at"]) for i in items}
    assert seen["purchase"] == base + timedelta(hours=2)
    assert r.json()["total"] == 4
    limited = client.get(f"/projects/{pid}/event-names", params={"limit": 2}).json()
    assert [i["name"] for i in limited["items"]] == names[:2]
    assert client.get(f"/projects/{other}/event-names").json()["items"][0]["name"] == "elsewhere"
    fresh = client.post("/projects", json={"name": "fresh"}).json()["id"]
    assert client.get(f"/projects/{fresh}/event-names").json() == {"items": [], "total": 0}

    # Each property with the type of its latest value; lists and objects cannot be compared.
    r = client.get(f"/projects/{pid}/event-properties", params={"event": "purchase"})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [
        {"key": "amount", "type": "number"},
        {"key": "sku", "type": "string"},
        {"key": "vip", "type": "boolean"},
    ]
    r = client.get(f"/projects/{pid}/event-properties", params={"event": "浏览商品"})
    assert r.json()["items"] == [{"key": "城市", "type": "string"}]
    r = client.get(f"/projects/{pid}/event-properties", params={"event": "never"})
    assert r.json() == {"items": [], "total": 0}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("event-names", {"limit": "0"}, "limit"),
        ("event-names", {"limit": "1001"}, "limit"),
        ("event-properties", {}, "event"),
        ("event-properties", {"event": ""}, "event"),
        ("event-properties", {"event": "x" * 101}, "event"),
    ],
)
def test_event_names_bad_input(
    client: httpx.Client, project: dict[str, Any], path: str, params: dict[str, str], field: str
) -> None:
    r = client.get(f"/projects/{project['id']}/{path}", params=params)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]
    assert client.get(f"/projects/999999/{path}", params={"event": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-03-01T00:00:00"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"gid": "0"}, "gid"),
        ({"gid": str(MAX_GID + 1)}, "gid"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_event_list_bad_filters(
    client: httpx.Client, project: dict[str, Any], params: dict[str, str], field: str
) -> None:
    r = client.get(f"/projects/{project['id']}/events", params=params)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


def test_invalid_events_name_each_field(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    good = {"name": "purchase", "gid": 1}
    r = client.post(
        f"/projects/{pid}/events",
        json={
            "events": [
                good,
                {"name": "purchase", "gid": 0},
                {"name": "", "gid": 2},
                {"name": "x", "gid": "3"},
                {"name": "x", "gid": 4, "time": "2026-01-01T00:00:00"},
                {"name": "x", "gid": 5, "properties": [1, 2]},
                {"name": "x", "gid": 6, "colour": "red"},
                "not an event",
                {"gid": MAX_GID + 1},
                {"name": "x", "gid": True},
            ]
        },
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert [d["field"] for d in error["details"]] == [
        "events[1].gid",
        "events[2].name",
        "events[3].gid",
        "events[4].time",
        "events[5].properties",
        "events[6].colour",
        "events[7]",
        "events[8].name",
        "events[8].gid",
        "events[9].gid",
    ]
    # nothing was stored: one bad event refuses the whole request
    assert client.get(f"/projects/{pid}/events").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "x"}, ["gid"]),
        ({"gid": 1}, ["name"]),
        ({"name": "x", "gid": 1, "time": "not a time"}, ["time"]),
        ({"name": "x" * 101, "gid": 1}, ["name"]),
        ({"name": "a\x00b", "gid": 1}, ["name"]),
        ({"name": "x", "gid": 1, "properties": {"a": [1, {"b": "nul\x00"}]}}, ["properties"]),
        ({"name": "x", "gid": 1, "properties": {"big": 2**64}}, ["properties"]),
        ({"name": "x", "gid": 1, "properties": {"k\x00": 1}}, ["properties"]),
        ({"events": "nope"}, ["events"]),
        ({"events": [], "name": "x"}, ["name"]),
        ([1, 2], ["body"]),
    ],
)
def test_invalid_single_event(
    client: httpx.Client, project: dict[str, Any], body: Any, fields: list[str]
) -> None:
    r = client.post(f"/projects/{project['id']}/events", json=body)
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == fields


def test_event_properties_that_json_cannot_carry(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    pid = project["id"]
    for value in (b"NaN", b"Infinity", b"-Infinity"):
        r = client.post(
            f"/projects/{pid}/events",
            content=b'{"name": "x", "gid": 1, "properties": {"v": %s}}' % value,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "properties"
    for body in (
        b'{"name": "x", "gid": 1, "properties": {"v": "\\ud800"}}',
        b'{"name": "x", "gid": 1, "properties": {"\\udfff": 1}}',
    ):
        r = client.post(
            f"/projects/{pid}/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "properties"
    r = client.post(
        f"/projects/{pid}/events",
        content=b'{"name": "\\ud800", "gid": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    r = client.post(
        f"/projects/{pid}/attributes",
        content=b'{"key": "k", "type": "string", "name": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "name"
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    r = client.post(
        f"/projects/{pid}/events", json={"name": "x", "gid": 1, "properties": {"d": deep}}
    )
    assert r.status_code == 422
    nested = {"a": [1, 2.5, None, True, {"b": "上海", "c": -(2**63)}], "n": 2**64 - 1}
    r = client.post(f"/projects/{pid}/events", json={"name": "x", "gid": 1, "properties": nested})
    assert r.status_code == 202, r.text
    assert client.get(f"/projects/{pid}/events").json()["items"][0]["properties"] == nested
    r = client.post(
        f"/projects/{pid}/events", content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 422
    assert client.get(f"/projects/{pid}/events").json()["total"] == 1


def test_event_batch_limits(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    assert client.post(f"/projects/{pid}/events", json={"events": []}).json() == {"accepted": 0}
    too_many = {"events": [{"name": "x", "gid": 1}] * 10_001}
    r = client.post(f"/projects/{pid}/events", json=too_many)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "events"
    r = client.post(
        f"/projects/{pid}/events", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422


def test_events_of_unknown_project(client: httpx.Client) -> None:
    r = client.post("/projects/999999/events", json={"name": "x", "gid": 1})
    assert r.status_code == 404
    assert client.get("/projects/999999/events").status_code == 404


# -- access ------------------------------------------------------------------------------


def test_data_store_needs_a_key(
    anon_client: httpx.Client, client: httpx.Client, project: dict[str, Any]
) -> None:
    pid = project["id"]
    calls = [
        ("POST", f"/projects/{pid}/attributes", {"json": {"key": "a", "type": "string"}}),
        ("GET", f"/projects/{pid}/attributes", {}),
        (
            "POST",
            f"/projects/{pid}/users/import",
            {"content": b"", "headers": {"Content-Type": "text/csv"}},
        ),
        ("GET", f"/projects/{pid}/users/1", {}),
        ("POST", f"/projects/{pid}/events", {"json": {"name": "x", "gid": 1}}),
        ("GET", f"/projects/{pid}/events", {}),
        ("GET", f"/projects/{pid}/event-names", {}),
        ("GET", f"/projects/{pid}/event-properties?event=x", {}),
    ]
    for method, url, kwargs in calls:
        r = anon_client.request(method, url, **kwargs)
        assert r.status_code == 401, (method, url)
        assert r.json()["error"]["code"] == "unauthorized"
        headers = {**kwargs.get("headers", {}), "Authorization": "Bearer wrong"}
        rest = {k: v for k, v in kwargs.items() if k != "headers"}
        r = anon_client.request(method, url, headers=headers, **rest)
        assert r.status_code == 401, (method, url)


def test_roles(
    anon_client: httpx.Client, client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    pid = project["id"]
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    add_attribute(client, pid, "city", "string")
    with runtime.tx() as session:
        session.add(ApiKey(name="v", key_hash=hash_api_key("viewer-key"), role="viewer"))
        session.add(
            ApiKey(
                name="o",
                key_hash=hash_api_key("operator-key"),
                role="operator",
                project_id=pid,
            )
        )
    viewer = {"Authorization": "Bearer viewer-key"}
    operator = {"Authorization": "Bearer operator-key"}
    ndjson = {"Content-Type": "application/x-ndjson"}
    line = b'{"gid": 1, "attributes": {"city": "Hangzhou"}}\n'

    # a viewer reads but does not write
    assert anon_client.get(f"/projects/{pid}/attributes", headers=viewer).status_code == 200
    assert anon_client.get(f"/projects/{pid}/events", headers=viewer).status_code == 200
    r = anon_client.post(
        f"/projects/{pid}/users/import", content=line, headers={**viewer, **ndjson}
    )
    assert r.status_code == 403
    r = anon_client.post(f"/projects/{pid}/events", json={"name": "x", "gid": 1}, headers=viewer)
    assert r.status_code == 403
    # an operator of the project imports and records events, but does not edit the catalogue
    r = anon_client.post(
        f"/projects/{pid}/users/import", content=line, headers={**operator, **ndjson}
    )
    assert r.status_code == 200
    assert r.json()["imported"] == 1
    r = anon_client.post(f"/projects/{pid}/events", json={"name": "x", "gid": 1}, headers=operator)
    assert r.status_code == 202
    r = anon_client.post(
        f"/projects/{pid}/attributes", json={"key": "k", "type": "string"}, headers=operator
    )
    assert r.status_code == 403
    # ... and has no access to another project
    r = anon_client.post(
        f"/projects/{other}/users/import", content=line, headers={**operator, **ndjson}
    )
    assert r.status_code == 403
    assert anon_client.get(f"/projects/{other}/users/1", headers=operator).status_code == 403
    assert anon_client.get(f"/projects/{pid}/event-names", headers=operator).status_code == 200
    r = anon_client.get(f"/projects/{other}/event-names", headers=operator)
    assert r.status_code == 403
