"""The touchpoint registry through its REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from touchgate.crypto import hash_api_key
from touchgate.models import ApiKey, Attribute, AuditEntry, Order, Touchpoint
from touchgate.models.base import utcnow
from touchgate.models.health import TouchpointHealth
from touchgate.runtime import Runtime
from touchgate.touchpoints import service
from touchgate.touchpoints.schemas import TouchpointCreate

EXAMPLE: dict[str, Any] = {
    "name": "Coupon center",
    "type": "benefit",
    "transport": "http",
    "url": "https://coupons.example.com/touch",
    "token": "s3cret",
    "batch_size": 200,
    "description": "Issues coupons",
    "timeout_seconds": 15,
    "retry_schedule": [5, 30, 120, 600, 1800, 3600],
    "receipt": {
        "mode": "async",
        "url": "https://coupons.example.com/receipt",
        "poll_seconds": 300,
        "timeout_minutes": 1440,
    },
    "user_attributes": ["memberId", "phone"],
    "template_params": [
        {"key": "title", "name": "Title", "type": "text", "required": True},
        {"key": "amount", "name": "Amount", "type": "number", "required": True},
        {"key": "startDate", "name": "Valid from", "type": "date", "required": False},
        {
            "key": "jump",
            "name": "Jump type",
            "type": "enum",
            "required": True,
            "enum": {"source": "manual", "options": [{"code": "JUMP_H5", "name": "H5 page"}]},
        },
        {
            "key": "tpl",
            "name": "Template",
            "type": "enum",
            "required": True,
            "enum": {"source": "api", "url": "https://coupons.example.com/options"},
        },
    ],
}

OUTPUT_FIELDS = {
    "id",
    "project_id",
    "name",
    "type",
    "transport",
    "status",
    "url",
    "token_set",
    "batch_size",
    "description",
    "timeout_seconds",
    "retry_schedule",
    "max_in_flight",
    "receipt",
    "user_attributes",
    "template_params",
    "plugin_id",
    "plugin_config",
    "space_ids",
    "last_test",
    "health",
    "created_at",
    "updated_at",
}


def add_attributes(runtime: Runtime, project_id: int, *specs: tuple[str, bool]) -> None:
    with runtime.tx() as session:
        for key, sensitive in specs:
            session.add(
                Attribute(
                    project_id=project_id,
                    key=key,
                    name=key,
                    type="string",
                    kind="attribute",
                    sensitive=sensitive,
                )
            )


@pytest.fixture
def pid(project: dict[str, Any], runtime: Runtime) -> int:
    """A project whose catalogue has memberId, phone and the sensitive idCard."""
    project_id: int = project["id"]
    add_attributes(runtime, project_id, ("memberId", False), ("phone", False), ("idCard", True))
    return project_id


def minimal(name: str = "SMS", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "notification", "url": "https://sms.example.com/t", **extra}


def create(client: httpx.Client, pid: int, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def disable(client: httpx.Client, pid: int, tid: int) -> None:
    r = client.post(f"/projects/{pid}/touchpoints/{tid}/disable")
    assert r.status_code == 200, r.text


def error_fields(r: httpx.Response) -> set[str]:
    assert r.status_code == 422, r.text
    body = r.json()["error"]
    assert body["code"] == "invalid_input"
    return {d["field"] for d in body["details"]}


def add_space(client: httpx.Client, pid: int, name: str) -> int:
    r = client.post(f"/projects/{pid}/spaces", json={"name": name})
    assert r.status_code == 201, r.text
    space_id: int = r.json()["id"]
    return space_id


# ---------------------------------------------------------------- life


def test_life_of_a_touchpoint(client: httpx.Client, pid: int) -> None:
    created = create(client, pid, EXAMPLE)
    tid = created["id"]
    assert created["status"] == "enabled"
    assert created["space_ids"] == []
    assert created["signing_secret"].startswith("whsec_")
    assert created["token_set"] is True
    assert created["warnings"] == []
    assert "token" not in created
    assert set(created) == OUTPUT_FIELDS | {"signing_secret", "warnings", "warning_details"}
    assert created["receipt"] == EXAMPLE["receipt"]
    assert created["template_params"] == EXAMPLE["template_params"]
    assert created["last_test"] is None
    assert created["health"] == {"state": "closed", "since": None, "reason": None}

    got = client.get(f"/projects/{pid}/touchpoints/{tid}").json()
    assert set(got) == OUTPUT_FIELDS
    assert "s3cret" not in str(got) and created["signing_secret"] not in str(got)
    listed = client.get(f"/projects/{pid}/touchpoints").json()
    assert listed["total"] == 1
    assert "signing_secret" not in listed["items"][0]

    growth, retail = add_space(client, pid, "Growth"), add_space(client, pid, "Retail")
    r = client.put(
        f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [growth, retail]}
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json()["space_ids"]) == sorted([growth, retail])
    usable = client.get(f"/projects/{pid}/spaces/{growth}/touchpoints").json()
    assert [t["id"] for t in usable["items"]] == [tid]
    assert usable["total"] == 1

    r = client.patch(f"/projects/{pid}/touchpoints/{tid}", json={"batch_size": 10})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "touchpoint_enabled"
    assert "disable" in r.json()["error"]["message"].lower()

    disable(client, pid, tid)
    assert client.get(f"/projects/{pid}/spaces/{growth}/touchpoints").json()["items"] == []
    r = client.patch(f"/projects/{pid}/touchpoints/{tid}", json={"batch_size": 10})
    assert r.status_code == 200, r.text
    assert r.json()["batch_size"] == 10
    assert r.json()["token_set"] is True
    assert "signing_secret" not in r.json()

    r = client.post(f"/projects/{pid}/touchpoints/{tid}/enable")
    assert r.status_code == 200 and r.json()["status"] == "enabled"
    assert client.get(f"/projects/{pid}/touchpoints?status=enabled").json()["total"] == 1
    disable(client, pid, tid)
    assert client.delete(f"/projects/{pid}/touchpoints/{tid}").status_code == 204
    assert client.get(f"/projects/{pid}/touchpoints/{tid}").status_code == 404
    assert client.get(f"/projects/{pid}/touchpoints").json() == {"items": [], "total": 0}
    assert client.delete(f"/projects/{pid}/touchpoints/{tid}").status_code == 404
    assert client.patch(f"/projects/{pid}/touchpoints/{tid}", json={}).status_code == 404
    assert client.post(f"/projects/{pid}/touchpoints/{tid}/enable").status_code == 404


def test_secrets_are_encrypted_at_rest(client: httpx.Client, pid: int, runtime: Runtime) -> None:
    created = create(client, pid, EXAMPLE)
    with runtime.tx() as session:
        tp = session.get(Touchpoint, created["id"])
        assert tp is not None
        assert tp.token_encrypted is not None and "s3cret" not in tp.token_encrypted
        assert created["signing_secret"] not in tp.signing_secret_encrypted
        assert service.auth_token(runtime.secrets, tp) == "s3cret"
        assert service.signing_secrets(runtime, tp, utcnow()) == [created["signing_secret"]]
        row = session.execute(text("SELECT * FROM touchpoints WHERE id = :id"), {"id": tp.id}).one()
    assert all("s3cret" not in str(v) for v in row)
    assert all(created["signing_secret"] not in str(v) for v in row)


def test_defaults(client: httpx.Client, pid: int) -> None:
    tp = create(client, pid, minimal())
    assert tp["transport"] == "http"
    assert tp["receipt"] == {"mode": "sync"}
    assert tp["timeout_seconds"] == 15
    assert tp["retry_schedule"] == [5, 30, 120, 600, 1800, 3600]
    assert tp["max_in_flight"] is None
    assert tp["token_set"] is False
    assert tp["user_attributes"] == [] and tp["template_params"] == []
    assert tp["plugin_id"] is None and tp["plugin_config"] is None
    assert 1 <= tp["batch_size"] <= 500
    tp = create(
        client,
        pid,
        minimal("Async", receipt={"mode": "async", "url": "http://r.example.com/x"}),
    )
    assert tp["receipt"] == {
        "mode": "async",
        "url": "http://r.example.com/x",
        "poll_seconds": 300,
        "timeout_minutes": 1440,
    }


# ---------------------------------------------------------------- names


def test_name_counts_unicode_characters(client: httpx.Client, pid: int) -> None:
    fifteen = "优" * 15
    assert create(client, pid, minimal(fifteen))["name"] == fifteen
    r = client.post(f"/projects/{pid}/touchpoints", json=minimal("优" * 16))
    assert error_fields(r) == {"name"}
    assert create(client, pid, minimal("  padded  "))["name"] == "padded"
    assert create(client, pid, minimal(" " + "x" * 15 + " "))["name"] == "x" * 15
    for bad in ["", "   ", "tab\there", "bell\x07", "x" * 16]:
        r = client.post(f"/projects/{pid}/touchpoints", json=minimal(bad))
        assert error_fields(r) == {"name"}, bad


def test_name_unique_among_live_touchpoints(
    client: httpx.Client, pid: int, project: dict[str, Any]
) -> None:
    first = create(client, pid, minimal("SMS"))
    r = client.post(f"/projects/{pid}/touchpoints", json=minimal("SMS"))
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "name_taken"
    assert [d["field"] for d in err["details"]] == ["name"]
    # Another project may use the name.
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    create(client, other, minimal("SMS"))
    # Renaming onto a taken name is refused too.
    second = create(client, pid, minimal("Mail"))
    disable(client, pid, second["id"])
    r = client.patch(f"/projects/{pid}/touchpoints/{second['id']}", json={"name": "SMS"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken"
    # Renaming to its own name is fine.
    r = client.patch(f"/projects/{pid}/touchpoints/{second['id']}", json={"name": "Mail"})
    assert r.status_code == 200
    # Deleting frees the name.
    disable(client, pid, first["id"])
    assert client.delete(f"/projects/{pid}/touchpoints/{first['id']}").status_code == 204
    again = create(client, pid, minimal("SMS"))
    assert again["id"] != first["id"]


# ---------------------------------------------------------------- type and transport


def test_type_never_changes(client: httpx.Client, pid: int) -> None:
    r = client.post(f"/projects/{pid}/touchpoints", json=minimal(type="coupon"))
    assert error_fields(r) == {"type"}
    tp = create(client, pid, minimal())
    disable(client, pid, tp["id"])
    r = client.patch(f"/projects/{pid}/touchpoints/{tp['id']}", json={"type": "benefit"})
    assert error_fields(r) == {"type"}
    assert "cannot change" in r.json()["error"]["details"][0]["message"]
    r = client.patch(f"/projects/{pid}/touchpoints/{tp['id']}", json={"type": "notification"})
    assert r.status_code == 200, r.text
    # Changing the type is wrong input even while the touchpoint is enabled.
    enabled = create(client, pid, minimal("Other"))
    r = client.patch(f"/projects/{pid}/touchpoints/{enabled['id']}", json={"type": "other"})
    assert error_fields(r) == {"type"}


def test_url_rules(client: httpx.Client, pid: int) -> None:
    for bad in [
        "ftp://x.example.com/a",
        "https://",
        "not a url",
        "sms.example.com/t",
        "https://user:pw@x.example.com/",
        "http://x.example.com:99999/",
        "javascript:alert(1)",
        "",
    ]:
        r = client.post(f"/projects/{pid}/touchpoints", json=minimal(url=bad))
        assert error_fields(r) == {"url"}, bad
    body = minimal()
    del body["url"]
    assert error_fields(client.post(f"/projects/{pid}/touchpoints", json=body)) == {"url"}
    r = client.post(f"/projects/{pid}/touchpoints", json=minimal(transport="smtp"))
    assert error_fields(r) == {"transport"}
    ok = create(client, pid, minimal(url="http://127.0.0.1:8080/hook?x=1"))
    assert ok["url"] == "http://127.0.0.1:8080/hook?x=1"


def test_plugin_transport_fields(client: httpx.Client, pid: int) -> None:
    body = {"name": "P", "type": "other", "transport": "plugin", "url": "https://x.example.com"}
    fields = error_fields(client.post(f"/projects/{pid}/touchpoints", json=body))
    assert fields == {"plugin_id", "url"}
    body = minimal(plugin_id=1, plugin_config={"a": 1})
    fields = error_fields(client.post(f"/projects/{pid}/touchpoints", json=body))
    assert fields == {"plugin_id", "plugin_config"}
    body = {"name": "P", "type": "other", "transport": "plugin", "plugin_id": 0}
    assert error_fields(client.post(f"/projects/{pid}/touchpoints", json=body)) == {"plugin_id"}


# ---------------------------------------------------------------- numbers and shapes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 501),
        ("batch_size", "10"),
        ("batch_size", True),
        ("batch_size", 1.5),
        ("batch_size", 10**30),
        ("batch_size", None),
        ("timeout_seconds", 0),
        ("timeout_seconds", 61),
        ("timeout_seconds", "15"),
        ("retry_schedule", [5] * 11),
        ("retry_schedule", [0]),
        ("retry_schedule", [259_200, 1]),
        ("retry_schedule", "5,30"),
        ("retry_schedule", [10**40]),
        ("max_in_flight", 0),
        ("max_in_flight", 257),
        ("description", "d" * 1001),
        ("description", 5),
        ("token", ""),
        ("token", 123),
        ("user_attributes", "memberId"),
        ("template_params", {}),
        ("receipt", "sync"),
        ("name", None),
        ("type", None),
    ],
)
def test_bad_values_are_422_naming_the_field(
    client: httpx.Client, pid: int, field: str, value: Any
) -> None:
    body = minimal(**{field: value})
    fields = error_fields(client.post(f"/projects/{pid}/touchpoints", json=body))
    assert fields == {field} or all(f.startswith(field) for f in fields), fields


def test_limits_accepted(client: httpx.Client, pid: int) -> None:
    tp = create(
        client,
        pid,
        minimal(
            batch_size=500,
            timeout_seconds=60,
            retry_schedule=[25_920] * 10,
            max_in_flight=256,
        ),
    )
    assert tp["batch_size"] == 500 and tp["max_in_flight"] == 256
    assert sum(tp["retry_schedule"]) == 72 * 3600
    tp = create(client, pid, minimal("B", batch_size=1, timeout_seconds=1, retry_schedule=[]))
    assert tp["retry_schedule"] == []


def test_every_invalid_field_is_named_at_once(client: httpx.Client, pid: int) -> None:
    body = {
        "name": "x" * 16,
        "type": "coupon",
        "url": "ftp://x",
        "batch_size": 0,
        "timeout_seconds": 99,
        "retry_schedule": [0],
        "max_in_flight": 0,
        "receipt": {"mode": "async", "poll_seconds": 1, "bogus": 1},
        "user_attributes": [1],
        "template_params": [{"key": "1x", "name": "", "type": "color"}],
        "colour": "red",
    }
    fields = error_fields(client.post(f"/projects/{pid}/touchpoints", json=body))
    assert fields == {
        "name",
        "type",
        "url",
        "batch_size",
        "timeout_seconds",
        "retry_schedule[0]",
        "max_in_flight",
        "receipt.poll_seconds",
        "receipt.bogus",
        "user_attributes[0]",
        "template_params[0].key",
        "template_params[0].name",
        "template_params[0].type",
        "colour",
    }


def test_rules_across_fields_are_named_at_once(client: httpx.Client, pid: int) -> None:
    body = minimal(
        name="n" * 16,
        batch_size=0,
        transport="pigeon",
        plugin_id=5,
        receipt={"mode": "async"},
        user_attributes=["memberId", "nope", "idCard", "memberId"],
        template_params=[
            {
                "key": "a",
                "name": "A",
                "type": "text",
                "enum": {"source": "api", "url": "https://o.example.com"},
            },
            {"key": "a", "name": "A2", "type": "enum"},
        ],
    )
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    details = {d["field"]: d["message"] for d in r.json()["error"]["details"]}
    assert set(details) == {
        "name",
        "batch_size",
        "transport",
        "user_attributes[1]",
        "user_attributes[2]",
        "user_attributes[3]",
        "template_params[0].enum",
        "template_params[1].key",
        "template_params[1].enum",
    }, details
    assert "catalogue" in details["user_attributes[1]"]
    assert "sensitive" in details["user_attributes[2]"]
    assert "twice" in details["user_attributes[3]"]
    assert "duplicate" in details["template_params[1].key"]
    # With a valid transport, the rules that depend on it are checked too.
    body["transport"] = "http"
    r = client.post(f"/projects/{pid}/touchpoints", json=body)
    fields = error_fields(r)
    assert fields == set(details) - {"transport"} | {"receipt.url", "plugin_id"}


def test_unknown_fields_and_malformed_bodies(client: httpx.Client, pid: int) -> None:
    url = f"/projects/{pid}/touchpoints"
    r = client.post(url, json=minimal(colour="red", receipt={"mode": "sync", "extra": 1}))
    assert error_fields(r) == {"colour", "receipt.extra"}
    assert all(d["message"] == "unknown field" for d in r.json()["error"]["details"])
    r = client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert error_fields(r) == {"body"}
    r = client.post(url, json=[minimal()])
    assert error_fields(r) == {"body"}
    r = client.post(url, json={})
    assert error_fields(r) == {"name", "type", "url"}
    r = client.post(url, content=b"", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_receipt_rules(client: httpx.Client, pid: int) -> None:
    url = f"/projects/{pid}/touchpoints"
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"mode": "async"}, {"receipt.url"}),
        ({"mode": "async", "url": "ftp://r"}, {"receipt.url"}),
        (
            {"mode": "async", "url": "https://r.example.com", "poll_seconds": 29},
            {"receipt.poll_seconds"},
        ),
        (
            {"mode": "async", "url": "https://r.example.com", "timeout_minutes": 0},
            {"receipt.timeout_minutes"},
        ),
        (
            {"mode": "async", "url": "https://r.example.com", "timeout_minutes": 10081},
            {"receipt.timeout_minutes"},
        ),
        ({"mode": "sync", "url": "https://r.example.com"}, {"receipt.url"}),
        ({"mode": "sync", "poll_seconds": 60}, {"receipt.poll_seconds"}),
        ({"mode": "later"}, {"receipt.mode"}),
    ]
    for receipt, expected in cases:
        assert error_fields(client.post(url, json=minimal(receipt=receipt))) == expected, receipt
    tp = create(
        client,
        pid,
        minimal(
            receipt={
                "mode": "async",
                "url": "https://r.example.com",
                "poll_seconds": 30,
                "timeout_minutes": 10080,
            }
        ),
    )
    assert tp["receipt"]["poll_seconds"] == 30 and tp["receipt"]["timeout_minutes"] == 10080


# ---------------------------------------------------------------- template parameters


def enum_param(enum: Any, key: str = "jump") -> dict[str, Any]:
    return {"key": key, "name": "Jump", "type": "enum", "required": True, "enum": enum}


def test_template_param_rules(client: httpx.Client, pid: int) -> None:
    url = f"/projects/{pid}/touchpoints"

    def fields(*params: Any) -> set[str]:
        return error_fields(client.post(url, json=minimal(template_params=list(params))))

    assert fields({"key": "has space", "name": "N", "type": "text"}) == {"template_params[0].key"}
    assert fields({"key": "9lives", "name": "N", "type": "text"}) == {"template_params[0].key"}
    assert fields({"key": "ok", "name": "n" * 51, "type": "text"}) == {"template_params[0].name"}
    assert fields({"key": "ok", "name": "N", "type": "color"}) == {"template_params[0].type"}
    assert fields({"key": "ok", "name": "N", "type": "text", "required": "yes"}) == {
        "template_params[0].required"
    }
    assert fields({"key": "ok", "name": "N", "type": "text", "default": 1}) == {
        "template_params[0].default"
    }
    assert fields(
        {"key": "a", "name": "A", "type": "text"}, {"key": "a", "name": "B", "type": "date"}
    ) == {"template_params[1].key"}
    assert fields({"key": "e", "name": "E", "type": "enum"}) == {"template_params[0].enum"}
    assert fields(
        {
            "key": "n",
            "name": "N",
            "type": "number",
            "enum": {"source": "manual", "options": [{"code": "A", "name": "A"}]},
        }
    ) == {"template_params[0].enum"}
    assert fields(enum_param({"source": "manual", "options": []})) == {
        "template_params[0].enum.options"
    }
    assert fields(enum_param({"source": "manual"})) == {"template_params[0].enum.options"}
    assert fields(enum_param({"source": "api"})) == {"template_params[0].enum.url"}
    assert fields(enum_param({"source": "api", "url": "ftp://o"})) == {
        "template_params[0].enum.url"
    }
    assert fields(enum_param({"source": "feed", "url": "https://o.example.com"})) == {
        "template_params[0].enum.source"
    }
    assert fields(
        enum_param(
            {
                "source": "api",
                "url": "https://o.example.com",
                "options": [{"code": "A", "name": "A"}],
            }
        )
    ) == {"template_params[0].enum.options"}
    assert fields(enum_param({"source": "manual", "options": [{"code": "", "name": "A"}]})) == {
        "template_params[0].enum.options[0].code"
    }
    # Codes are unique across both levels.
    two_levels = [
        {"code": "A", "name": "A"},
        {
            "code": "CAT",
            "name": "Category",
            "children": [{"code": "B", "name": "B"}, {"code": "A", "name": "again"}],
        },
        {"code": "B", "name": "B again"},
    ]
    assert fields(enum_param({"source": "manual", "options": two_levels})) == {
        "template_params[0].enum.options[1].children[1].code",
        "template_params[0].enum.options[2].code",
    }
    # Two levels at most.
    deep = [
        {
            "code": "CAT",
            "name": "C",
            "children": [{"code": "X", "name": "X", "children": [{"code": "Y", "name": "Y"}]}],
        }
    ]
    r = client.post(
        url, json=minimal(template_params=[enum_param({"source": "manual", "options": deep})])
    )
    assert error_fields(r) == {"template_params[0].enum.options[0].children[0].children"}
    assert "two levels" in r.json()["error"]["details"][0]["message"]


def test_template_params_are_stored_normalised(client: httpx.Client, pid: int) -> None:
    options = [
        {"code": "JUMP_H5", "name": " H5 page "},
        {
            "code": "JUMP_APP",
            "name": "App",
            "children": [{"code": "JUMP_APP_HOME", "name": "Home"}],
        },
        {"code": "LEAF", "name": "Leaf", "children": []},
    ]
    tp = create(
        client, pid, minimal(template_params=[enum_param({"source": "manual", "options": options})])
    )
    assert tp["template_params"] == [
        {
            "key": "jump",
            "name": "Jump",
            "type": "enum",
            "required": True,
            "enum": {
                "source": "manual",
                "options": [
                    {"code": "JUMP_H5", "name": "H5 page"},
                    {
                        "code": "JUMP_APP",
                        "name": "App",
                        "children": [{"code": "JUMP_APP_HOME", "name": "Home"}],
                    },
                    {"code": "LEAF", "name": "Leaf"},
                ],
            },
        }
    ]
    tp = create(
        client, pid, minimal("Plain", template_params=[{"key": "t", "name": "T", "type": "text"}])
    )
    assert tp["template_params"] == [{"key": "t", "name": "T", "type": "text", "required": False}]


def test_many_options_are_accepted_with_a_warning(client: httpx.Client, pid: int) -> None:
    hundred = [{"code": f"C{i}", "name": f"Option {i}"} for i in range(100)]
    tp = create(
        client, pid, minimal(template_params=[enum_param({"source": "manual", "options": hundred})])
    )
    assert tp["warnings"] == []
    # 101 leaves counted over both levels: 99 plain options and a category of two.
    options: list[dict[str, Any]] = [{"code": f"C{i}", "name": f"Option {i}"} for i in range(99)]
    options.append(
        {
            "code": "CAT",
            "name": "Cat",
            "children": [{"code": "K1", "name": "1"}, {"code": "K2", "name": "2"}],
        }
    )
    tp = create(
        client,
        pid,
        minimal("Many", template_params=[enum_param({"source": "manual", "options": options})]),
    )
    assert len(tp["warnings"]) == 1
    assert "101 options" in tp["warnings"][0] and "template_params[0]" in tp["warnings"][0]
    [warning] = tp["warning_details"]
    assert (warning["field"], warning["code"]) == (
        "template_params[0].enum.options",
        "many_options",
    )
    assert warning["params"] == {"count": 101, "max": 100}
    disable(client, pid, tp["id"])
    r = client.patch(
        f"/projects/{pid}/touchpoints/{tp['id']}",
        json={"template_params": [enum_param({"source": "manual", "options": options})]},
    )
    assert r.status_code == 200 and len(r.json()["warnings"]) == 1


def test_param_options(client: httpx.Client, pid: int) -> None:
    options = [
        {"code": "JUMP_H5", "name": "H5 page"},
        {
            "code": "JUMP_APP",
            "name": "App",
            "children": [{"code": "JUMP_APP_HOME", "name": "Home"}],
        },
    ]
    tp = create(
        client,
        pid,
        minimal(
            template_params=[
                enum_param({"source": "manual", "options": options}),
                {"key": "title", "name": "Title", "type": "text"},
            ]
        ),
    )
    base = f"/projects/{pid}/touchpoints/{tp['id']}/params"
    r = client.get(f"{base}/jump/options")
    assert r.status_code == 200
    assert r.json() == options
    r = client.get(f"{base}/nope/options")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get(f"{base}/title/options")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "key"
    assert client.get(f"/projects/{pid}/touchpoints/999999/params/jump/options").status_code == 404


# ---------------------------------------------------------------- user attributes and token


def test_user_attributes(client: httpx.Client, pid: int, runtime: Runtime) -> None:
    url = f"/projects/{pid}/touchpoints"
    r = client.post(url, json=minimal(user_attributes=["memberId", "idCard"]))
    assert error_fields(r) == {"user_attributes[1]"}
    r = client.post(url, json=minimal(user_attributes=["Phone"]))
    assert error_fields(r) == {"user_attributes[0]"}
    # Another project's catalogue does not count.
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    add_attributes(runtime, other, ("loyaltyId", False))
    r = client.post(url, json=minimal(user_attributes=["loyaltyId"]))
    assert error_fields(r) == {"user_attributes[0]"}
    tp = create(client, pid, minimal(user_attributes=["phone", "memberId"]))
    assert tp["user_attributes"] == ["phone", "memberId"]
    disable(client, pid, tp["id"])
    r = client.patch(f"{url}/{tp['id']}", json={"user_attributes": ["idCard"]})
    assert error_fields(r) == {"user_attributes[0]"}
    r = client.patch(f"{url}/{tp['id']}", json={"user_attributes": []})
    assert r.status_code == 200 and r.json()["user_attributes"] == []


def test_token_is_write_only(client: httpx.Client, pid: int, runtime: Runtime) -> None:
    tp = create(client, pid, minimal(token="first-token"))
    tid = tp["id"]
    assert tp["token_set"] is True
    disable(client, pid, tid)
    url = f"/projects/{pid}/touchpoints/{tid}"

    def stored_token() -> str | None:
        with runtime.tx() as session:
            row = session.get(Touchpoint, tid)
            assert row is not None
            return service.auth_token(runtime.secrets, row)

    r = client.patch(url, json={"description": "kept"})
    assert r.json()["token_set"] is True and stored_token() == "first-token"
    r = client.patch(url, json={"token": "second-token"})
    assert r.json()["token_set"] is True and stored_token() == "second-token"
    assert "second-token" not in r.text
    r = client.patch(url, json={"token": None})
    assert r.json()["token_set"] is False and stored_token() is None
    r = client.patch(url, json={"token": ""})
    assert error_fields(r) == {"token"}


def test_patch_rules(client: httpx.Client, pid: int) -> None:
    tp = create(client, pid, minimal(description="first", max_in_flight=4))
    url = f"/projects/{pid}/touchpoints/{tp['id']}"
    disable(client, pid, tp["id"])
    r = client.patch(url, json={"name": None, "batch_size": None, "colour": 1})
    assert error_fields(r) == {"name", "batch_size", "colour"}
    r = client.patch(url, json={"name": "n" * 16, "user_attributes": ["nope"], "type": "benefit"})
    assert error_fields(r) == {"name", "user_attributes[0]", "type"}
    # An unknown transport: nothing is said about the fields that depend on it.
    r = client.patch(url, json={"transport": "pigeon", "plugin_id": 3})
    assert error_fields(r) == {"transport"}
    r = client.patch(url, json={"description": None, "max_in_flight": None})
    assert r.status_code == 200, r.text
    assert r.json()["description"] is None and r.json()["max_in_flight"] is None
    r = client.patch(url, json={"receipt": {"mode": "async", "url": "https://r.example.com"}})
    assert r.json()["receipt"]["mode"] == "async"
    r = client.patch(url, json={"receipt": {"mode": "sync"}})
    assert r.json()["receipt"] == {"mode": "sync"}
    r = client.patch(url, json={"url": "gopher://x"})
    assert error_fields(r) == {"url"}
    r = client.patch(url, json={"url": "https://new.example.com/t", "batch_size": 1})
    assert r.status_code == 200
    assert r.json()["url"] == "https://new.example.com/t" and r.json()["batch_size"] == 1
    before = r.json()["updated_at"]
    r = client.patch(url, json={"timeout_seconds": 30})
    assert r.json()["updated_at"] >= before
    # Switching to plugin transport needs a plugin.
    r = client.patch(url, json={"transport": "plugin"})
    assert error_fields(r) == {"plugin_id"}
    got = client.get(url).json()
    assert got["transport"] == "http" and got["timeout_seconds"] == 30


# ---------------------------------------------------------------- states


def test_patch_and_delete_need_disabled(client: httpx.Client, pid: int) -> None:
    tp = create(client, pid, minimal())
    url = f"/projects/{pid}/touchpoints/{tp['id']}"
    for r in (client.patch(url, json={"description": "x"}), client.delete(url)):
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "touchpoint_enabled"
        assert "disable it first" in r.json()["error"]["message"]
    # Enabling or disabling twice is harmless.
    assert client.post(url + "/enable").json()["status"] == "enabled"
    disable(client, pid, tp["id"])
    disable(client, pid, tp["id"])
    assert client.get(url).json()["status"] == "disabled"


@pytest.fixture
def usage(runtime: Runtime) -> Iterator[dict[int, list[dict[str, Any]]]]:
    """Adds checks beside the campaigns' (given by the composition root) to the
    server's runtime: blocking campaigns by touchpoint id."""
    blocking: dict[int, list[dict[str, Any]]] = {}

    def check(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
        assert isinstance(session, Session)
        return blocking.get(touchpoint_id, [])

    def second_check(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
        # Another source reporting one campaign again and one more.
        return [c for c in blocking.get(touchpoint_id, []) if c["id"] == 1] + [
            c for c in blocking.get(-touchpoint_id, [])
        ]

    wired = runtime.touchpoint_usage_checks
    assert wired, "the composition root gives the campaigns' check"
    runtime.touchpoint_usage_checks = (*wired, check, second_check)
    try:
        yield blocking
    finally:
        runtime.touchpoint_usage_checks = wired


def test_disable_refused_while_campaigns_use_it(
    client: httpx.Client, pid: int, usage: dict[int, list[dict[str, Any]]]
) -> None:
    tp = create(client, pid, minimal())
    tid = tp["id"]
    usage[tid] = [
        {"id": 1, "name": "Birthday coupon", "status": "running"},
        {"id": 2, "name": "Spring sale", "status": "in_approval"},
    ]
    usage[-tid] = [{"id": 3, "name": "Welcome", "status": "paused"}]
    r = client.post(f"/projects/{pid}/touchpoints/{tid}/disable")
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "touchpoint_in_use"
    assert err["details"] == {
        "campaigns": [
            {"id": 1, "name": "Birthday coupon", "status": "running"},
            {"id": 2, "name": "Spring sale", "status": "in_approval"},
            {"id": 3, "name": "Welcome", "status": "paused"},
        ]
    }
    assert "Birthday coupon" in err["message"] and "Welcome" in err["message"]
    assert client.get(f"/projects/{pid}/touchpoints/{tid}").json()["status"] == "enabled"
    usage.clear()
    disable(client, pid, tid)


def test_delete_refused_with_unsettled_orders(
    client: httpx.Client, pid: int, runtime: Runtime
) -> None:
    tp = create(client, pid, minimal())
    tid = tp["id"]
    disable(client, pid, tid)
    with runtime.tx() as session:
        for no, state in (("a" * 32, "sending"), ("b" * 32, "polling"), ("c" * 32, "done")):
            session.add(
                Order(
                    order_no=no,
                    project_id=pid,
                    touchpoint_id=tid,
                    state=state,
                    user_count=0,
                )
            )
    r = client.delete(f"/projects/{pid}/touchpoints/{tid}")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "touchpoint_has_pending_orders"
    assert r.json()["error"]["details"] == {"pending_orders": 2}
    with runtime.tx() as session:
        for order in session.scalars(select(Order).where(Order.touchpoint_id == tid)):
            order.state = "done"
    assert client.delete(f"/projects/{pid}/touchpoints/{tid}").status_code == 204
    # The orders and the row stay for history and statistics.
    with runtime.tx() as session:
        assert len(session.scalars(select(Order).where(Order.touchpoint_id == tid)).all()) == 3
        row = session.get(Touchpoint, tid)
        assert row is not None and row.deleted_at is not None


# ---------------------------------------------------------------- spaces


def test_space_authorisation(client: httpx.Client, pid: int) -> None:
    a, b, c = (add_space(client, pid, n) for n in ("A", "B", "C"))
    other_project = client.post("/projects", json={"name": "other"}).json()["id"]
    foreign = add_space(client, other_project, "Foreign")
    tp = create(client, pid, minimal())
    other = create(client, pid, minimal("Other"))
    url = f"/projects/{pid}/touchpoints/{tp['id']}/spaces"

    r = client.put(url, json={"space_ids": [a, foreign, 999_999]})
    assert error_fields(r) == {"space_ids[1]", "space_ids[2]"}
    assert client.get(f"/projects/{pid}/touchpoints/{tp['id']}").json()["space_ids"] == []
    for bad in (
        {"space_ids": ["1"]},
        {"space_ids": None},
        {},
        {"space_ids": [0]},
        {"space_ids": [a], "x": 1},
    ):
        assert client.put(url, json=bad).status_code == 422, bad
    r = client.put(url, json={"space_ids": [b, a, a]})
    assert r.status_code == 200 and r.json()["space_ids"] == sorted([a, b])
    r = client.put(url, json={"space_ids": [b, c]})
    assert r.json()["space_ids"] == sorted([b, c])
    assert (
        client.put(
            f"/projects/{pid}/touchpoints/{other['id']}/spaces", json={"space_ids": [c]}
        ).status_code
        == 200
    )

    def usable(space: int) -> list[int]:
        r = client.get(f"/projects/{pid}/spaces/{space}/touchpoints")
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["items"]]

    assert usable(a) == []
    assert usable(b) == [tp["id"]]
    assert usable(c) == [tp["id"], other["id"]]
    page = client.get(f"/projects/{pid}/spaces/{c}/touchpoints?limit=1&offset=1").json()
    assert page["total"] == 2 and [t["id"] for t in page["items"]] == [other["id"]]
    # Authorising works in any status; a disabled touchpoint is not usable.
    disable(client, pid, tp["id"])
    assert client.put(url, json={"space_ids": [a, b, c]}).status_code == 200
    assert usable(a) == [] and usable(c) == [other["id"]]
    client.post(f"/projects/{pid}/touchpoints/{tp['id']}/enable")
    assert usable(a) == [tp["id"]]
    assert client.put(url, json={"space_ids": []}).json()["space_ids"] == []
    assert usable(a) == []
    # A deleted touchpoint is not usable anywhere.
    disable(client, pid, other["id"])
    client.delete(f"/projects/{pid}/touchpoints/{other['id']}")
    assert usable(c) == []
    assert client.get(f"/projects/{pid}/spaces/{foreign}/touchpoints").status_code == 404
    assert (
        client.get(f"/projects/{other_project}/spaces/{foreign}/touchpoints").json()["total"] == 0
    )


# ---------------------------------------------------------------- list


def test_list_filters_and_paging(client: httpx.Client, pid: int) -> None:
    sms = create(client, pid, minimal("SMS gateway", description="Text messages"))
    coupons = create(client, pid, minimal("Coupons", type="benefit", description="100% off"))
    wechat = create(client, pid, minimal("微信模板消息", description="Official account"))
    disable(client, pid, coupons["id"])
    url = f"/projects/{pid}/touchpoints"

    def ids(query: str) -> list[int]:
        r = client.get(url + query)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["items"]]

    assert ids("") == [sms["id"], coupons["id"], wechat["id"]]
    assert ids("?status=enabled") == [sms["id"], wechat["id"]]
    assert ids("?status=disabled") == [coupons["id"]]
    assert ids("?type=benefit") == [coupons["id"]]
    assert ids("?type=notification&status=disabled") == []
    assert ids("?q=sms") == [sms["id"]]
    assert ids("?q=MESSAGES") == [sms["id"]]
    assert ids("?q=模板") == [wechat["id"]]
    assert ids("?q=100%25") == [coupons["id"]]
    assert ids("?q=%25") == [coupons["id"]]
    assert ids("?q=_") == []
    assert ids("?q=nothing") == []
    assert error_fields(client.get(url + "?q=%00")) == {"q"}
    r = client.get(url + "?limit=2&offset=1").json()
    assert r["total"] == 3 and [t["id"] for t in r["items"]] == [coupons["id"], wechat["id"]]
    assert client.get(url + "?status=enabled&limit=1").json()["total"] == 2
    for bad, field in (
        ("?status=on", "status"),
        ("?type=sms", "type"),
        ("?limit=0", "limit"),
        ("?offset=-1", "offset"),
    ):
        assert error_fields(client.get(url + bad)) == {field}
    assert client.get("/projects/999999/touchpoints").status_code == 404
    assert client.post("/projects/999999/touchpoints", json=minimal()).status_code == 404


def test_last_test_is_shown(client: httpx.Client, pid: int, runtime: Runtime) -> None:
    tp = create(client, pid, minimal())
    at = utcnow().replace(microsecond=0)
    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None
        row.last_test_at, row.last_test_ok = at, False
    got = client.get(f"/projects/{pid}/touchpoints/{tp['id']}").json()
    assert got["last_test"]["ok"] is False
    assert got["last_test"]["at"].startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))


# ---------------------------------------------------------------- signing secret


def test_rotate_secret_keeps_the_old_one_for_a_grace_period(
    client: httpx.Client, pid: int, runtime: Runtime
) -> None:
    tp = create(client, pid, minimal())
    first = tp["signing_secret"]
    r = client.post(f"/projects/{pid}/touchpoints/{tp['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    second = r.json()["signing_secret"]
    assert second.startswith("whsec_") and second != first
    assert "previous_secret_expires_at" in r.json()
    assert second not in client.get(f"/projects/{pid}/touchpoints/{tp['id']}").text
    now = utcnow()
    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None
        assert service.signing_secrets(runtime, row, now) == [second, first]
        assert service.signing_secrets(runtime.secrets, row, now + timedelta(hours=23)) == [
            second,
            first,
        ]
        assert service.signing_secrets(runtime, row, now + timedelta(hours=25)) == [second]
    # Allowed in any status.
    disable(client, pid, tp["id"])
    r = client.post(f"/projects/{pid}/touchpoints/{tp['id']}/rotate-secret")
    third = r.json()["signing_secret"]
    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None
        assert service.signing_secrets(runtime, row, utcnow()) == [third, second]
    assert client.post(f"/projects/{pid}/touchpoints/999999/rotate-secret").status_code == 404


# ---------------------------------------------------------------- access


def make_key(
    runtime: Runtime, key: str, role: str, project_id: int | None, space_ids: list[int] | None
) -> None:
    with runtime.tx() as session:
        session.add(
            ApiKey(
                name=key,
                key_hash=hash_api_key(key),
                role=role,
                project_id=project_id,
                space_ids=space_ids,
            )
        )


def test_access_rules(
    client: httpx.Client, anon_client: httpx.Client, pid: int, runtime: Runtime
) -> None:
    space = add_space(client, pid, "Growth")
    closed = add_space(client, pid, "Closed")
    tp = create(client, pid, minimal())
    tid = tp["id"]
    client.put(f"/projects/{pid}/touchpoints/{tid}/spaces", json={"space_ids": [space]})
    make_key(runtime, "operator-key", "operator", pid, [space])
    other_project = client.post("/projects", json={"name": "other"}).json()["id"]
    make_key(runtime, "stranger-key", "admin", other_project, None)
    base = f"/projects/{pid}/touchpoints"

    assert anon_client.get(base).status_code == 401
    assert anon_client.post(base, json=minimal("X")).status_code == 401
    op = {"Authorization": "Bearer operator-key"}
    assert client.get(base, headers=op).status_code == 200
    assert client.get(f"{base}/{tid}", headers=op).status_code == 200
    assert (
        client.get(f"/projects/{pid}/spaces/{space}/touchpoints", headers=op).json()["total"] == 1
    )
    assert client.get(f"/projects/{pid}/spaces/{closed}/touchpoints", headers=op).status_code == 403
    writes = [
        client.post(base, json=minimal("X"), headers=op),
        client.patch(f"{base}/{tid}", json={}, headers=op),
        client.delete(f"{base}/{tid}", headers=op),
        client.post(f"{base}/{tid}/disable", headers=op),
        client.post(f"{base}/{tid}/enable", headers=op),
        client.put(f"{base}/{tid}/spaces", json={"space_ids": []}, headers=op),
        client.post(f"{base}/{tid}/rotate-secret", headers=op),
    ]
    assert [r.status_code for r in writes] == [403] * len(writes)
    assert all(r.json()["error"]["code"] == "forbidden" for r in writes)
    stranger = {"Authorization": "Bearer stranger-key"}
    assert client.get(base, headers=stranger).status_code == 403
    assert client.post(base, json=minimal("X"), headers=stranger).status_code == 403
    assert client.get(f"{base}/{tid}/params/x/options", headers=stranger).status_code == 403
    # Nothing changed.
    assert client.get(f"{base}/{tid}").json()["status"] == "enabled"
    assert client.get(base).json()["total"] == 1


def test_touchpoint_of_another_project_is_not_found(client: httpx.Client, pid: int) -> None:
    tp = create(client, pid, minimal())
    other = client.post("/projects", json={"name": "other"}).json()["id"]
    base = f"/projects/{other}/touchpoints/{tp['id']}"
    assert client.get(base).status_code == 404
    assert client.post(base + "/disable").status_code == 404
    assert client.put(base + "/spaces", json={"space_ids": []}).status_code == 404
    # Ids beyond what a column holds, or negative, name nothing: 404, not a crash.
    for huge in (2**40, -1, 0):
        assert client.get(f"/projects/{pid}/touchpoints/{huge}").status_code == 404
        assert client.get(f"/projects/{huge}/touchpoints").status_code == 404
        assert client.post(f"/projects/{huge}/touchpoints", json=minimal()).status_code == 404
        assert client.get(f"/projects/{pid}/spaces/{huge}/touchpoints").status_code == 404
        assert client.get(f"/projects/{huge}/spaces/1/touchpoints").status_code == 404
    assert error_fields(client.get(f"/projects/{pid}/touchpoints/abc")) == {"tid"}


def test_concurrent_creates_with_one_name(client: httpx.Client, pid: int, live_server: Any) -> None:
    """The unique index settles a race the service's own check cannot see."""
    url = f"{live_server.url}/api/v1/projects/{pid}/touchpoints"
    headers = dict(client.headers)
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def post() -> None:
        start.wait()
        r = httpx.post(url, json=minimal("Racy"), headers=headers, timeout=60)
        with lock:
            statuses.append(r.status_code)
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "name_taken"

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409, 409]
    assert client.get(f"/projects/{pid}/touchpoints").json()["total"] == 1


def test_openapi_documents_the_routes(client: httpx.Client, live_server: Any) -> None:
    doc = client.get(f"{live_server.url}/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/api/v1/projects/{pid}/touchpoints",
        "/api/v1/projects/{pid}/touchpoints/{tid}",
        "/api/v1/projects/{pid}/touchpoints/{tid}/spaces",
        "/api/v1/projects/{pid}/touchpoints/{tid}/rotate-secret",
        "/api/v1/projects/{pid}/touchpoints/{tid}/params/{key}/options",
        "/api/v1/projects/{pid}/spaces/{sid}/touchpoints",
    ):
        assert path in paths, path
    create = paths["/api/v1/projects/{pid}/touchpoints"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert {"name", "type", "url", "receipt", "template_params"} <= set(schema["properties"])
    assert "$defs" not in str(schema)


WEIRD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**64,
    1e308,
    "x",
    "",
    "\x00",
    ["\x00"],
    {"\x00": 1},
    {"a": ["\x00"]},
    [],
    {},
    [None],
    [{}],
    [[1]],
    {"a": None},
    {"mode": "async", "url": None},
    [{"key": None, "name": 1, "type": "enum", "enum": {"source": "manual", "options": [None]}}],
    [
        {
            "key": "k",
            "name": "n",
            "type": "enum",
            "enum": {
                "source": "manual",
                "options": [{"code": "c", "name": "n", "children": [None]}],
            },
        }
    ],
]


def test_no_value_crashes_the_service(client: httpx.Client, pid: int) -> None:
    """Whatever a field holds, the answer is a verdict, never a 500."""
    tp = create(client, pid, minimal("Target"))
    disable(client, pid, tp["id"])
    url = f"/projects/{pid}/touchpoints"
    for field in TouchpointCreate.model_fields:
        for n, value in enumerate(WEIRD_VALUES):
            body = {**minimal(f"W{n}-{field[:8]}"), field: value}
            r = client.post(url, json=body)
            assert r.status_code in (201, 409, 422), (field, value, r.text)
            r = client.patch(f"{url}/{tp['id']}", json={field: value})
            assert r.status_code in (200, 409, 422), (field, value, r.text)
            if r.status_code == 422:
                assert r.json()["error"]["details"], (field, value)
    r = client.put(f"{url}/{tp['id']}/spaces", json={"space_ids": [2**64]})
    assert r.status_code == 422


# ---------------------------------------------------------------- health


def test_health_reset_by_hand(client: httpx.Client, runtime: Runtime) -> None:
    r = client.post("/projects", json={"name": f"health-{time.monotonic_ns()}"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json={"name": "SMS", "type": "notification", "url": "https://sms.example.com/t"},
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    # A disabled touchpoint gets no orders, so the live server's worker leaves it be.
    assert client.post(f"/projects/{pid}/touchpoints/{tid}/disable").status_code == 200
    since = utcnow().replace(microsecond=0)
    with runtime.tx() as s:
        s.add(
            TouchpointHealth(
                touchpoint_id=tid, state="open", since=since, reason="5 failed", failures=5
            )
        )
    shown = client.get(f"/projects/{pid}/touchpoints/{tid}").json()["health"]
    assert shown["state"] == "open" and shown["reason"] == "5 failed"
    listed = client.get(f"/projects/{pid}/touchpoints").json()["items"]
    assert [t["health"]["state"] for t in listed] == ["open"]

    r = client.post(f"/projects/{pid}/touchpoints/{tid}/health/reset")
    assert r.status_code == 200, r.text
    assert r.json()["health"]["state"] == "closed" and r.json()["health"]["reason"] is None
    assert client.get(f"/projects/{pid}/touchpoints/{tid}").json()["health"]["state"] == "closed"
    with runtime.tx() as s:
        actions = s.scalars(
            select(AuditEntry.action).where(
                AuditEntry.project_id == pid, AuditEntry.resource_id == str(tid)
            )
        ).all()
    assert "reset_health" in actions
    assert client.post(f"/projects/{pid}/touchpoints/999999/health/reset").status_code == 404
