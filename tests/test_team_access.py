"""API keys, the audit log, sensitive attributes and hostile input (issue 11)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from conftest import LiveServer
from test_access import EXPECTED
from test_campaign_support import (
    Receiver,
    campaign_body,
    import_users,
    make_project,
    make_touchpoint,
    running_receiver,
    send_step,
    wait_for,
)
from touchgate.models import ApiKey, User
from touchgate.runtime import Runtime


def key_client(live_server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=live_server.url + "/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def create_key(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/api-keys", json=body)


# -- API keys -------------------------------------------------------------------------


def test_key_is_shown_once_and_works_until_revoked(
    client: httpx.Client, project: dict[str, Any], live_server: LiveServer, runtime: Runtime
) -> None:
    pid = project["id"]
    r = create_key(client, name="campaign team", role="operator", project_id=pid)
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) >= {"id", "key", "name", "role", "project_id", "space_ids", "created_at"}
    assert created["project_id"] == pid and created["expires_at"] is None
    listed = client.get("/api-keys").json()
    mine = next(k for k in listed["items"] if k["id"] == created["id"])
    assert "key" not in mine and mine["last_used_at"] is None
    assert created["key"] not in str(listed)

    with key_client(live_server, created["key"]) as team:
        assert team.get(f"/projects/{pid}").status_code == 200
        first = client.get("/api-keys").json()
        used = next(k for k in first["items"] if k["id"] == created["id"])["last_used_at"]
        assert used is not None
        # Within the minute, using the key again does not write last_used_at.
        assert team.get(f"/projects/{pid}/spaces").status_code == 200
        again = client.get("/api-keys").json()
        assert next(k for k in again["items"] if k["id"] == created["id"])["last_used_at"] == used
        # ... an older one is refreshed on the next use.
        with runtime.tx() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == created["id"])
                .values(last_used_at=datetime.now(UTC) - timedelta(minutes=5))
            )
        assert team.get(f"/projects/{pid}").status_code == 200
        later = client.get("/api-keys").json()
        refreshed = next(k for k in later["items"] if k["id"] == created["id"])["last_used_at"]
        assert refreshed > used

        assert client.delete(f"/api-keys/{created['id']}").status_code == 204
        r = team.get(f"/projects/{pid}")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.delete(f"/api-keys/{created['id']}").status_code == 404
    assert created["id"] not in [k["id"] for k in client.get("/api-keys").json()["items"]]
    bootstrap = client.get("/api-keys").json()["items"][0]
    r = client.delete(f"/api-keys/{bootstrap['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "bootstrap_key"


def test_expired_key_is_refused(
    client: httpx.Client, project: dict[str, Any], live_server: LiveServer, runtime: Runtime
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = create_key(client, name="temp", role="viewer", project_id=project["id"], expires_at=soon)
    assert r.status_code == 201, r.text
    with key_client(live_server, r.json()["key"]) as temp:
        assert temp.get("/projects").status_code == 200
        with runtime.tx() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == r.json()["id"])
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        refused = temp.get("/projects")
    assert refused.status_code == 401
    assert refused.json()["error"]["params"]["reason"] == "expired"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = create_key(client, name="late", role="viewer", expires_at=past)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["code"] == "in_past"
    r = create_key(client, name="naive", role="viewer", expires_at="2030-01-01T00:00:00")
    assert r.status_code == 422


def test_project_admin_never_mints_more_reach(
    client: httpx.Client, live_server: LiveServer
) -> None:
    pid, sid = make_project(client, "Mine")
    other, other_sid = make_project(client, "Theirs")
    admin = create_key(client, name="mine admin", role="admin", project_id=pid).json()
    theirs = create_key(client, name="their viewer", role="viewer", project_id=other).json()
    with key_client(live_server, admin["key"]) as mine:
        # Omitted project: its own. Another project, or every project: refused.
        r = create_key(mine, name="helper", role="operator", space_ids=[sid])
        assert r.status_code == 201, r.text
        assert r.json()["project_id"] == pid
        assert create_key(mine, name="x", role="viewer", project_id=other).status_code == 403
        assert create_key(mine, name="x", role="admin", project_id=None).status_code == 403
        r = create_key(mine, name="x", role="operator", project_id=pid, space_ids=[other_sid])
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "space_ids[0]"
        r = create_key(mine, name="x", role="admin", project_id=pid, space_ids=[sid])
        assert r.json()["error"]["details"][0]["code"] == "admin_spaces"
        r = create_key(mine, name="bootstrap-admin", role="viewer")
        assert r.json()["error"]["details"][0]["code"] == "reserved"
        # It sees and revokes only its project's keys.
        names = {k["name"] for k in mine.get("/api-keys").json()["items"]}
        assert names == {"mine admin", "helper"}
        assert mine.delete(f"/api-keys/{theirs['id']}").status_code == 404
        assert mine.get("/audit").status_code == 403
    with key_client(live_server, theirs["key"]) as viewer:
        assert create_key(viewer, name="x", role="viewer").status_code == 403
        assert viewer.get("/api-keys").status_code == 403
        assert viewer.get(f"/projects/{other}/audit").status_code == 403
    # The unbound keys' entries are in the service log; project keys in the project's.
    service_log = client.get("/audit").json()["items"]
    assert service_log == []
    project_log = client.get(f"/projects/{pid}/audit", params={"resource_type": "api_key"})
    assert [e["summary"] for e in project_log.json()["items"]] == [
        "Create operator key 'helper'",
        "Create admin key 'mine admin'",
    ]
    assert project_log.json()["items"][0]["key_name"] == "mine admin"


# -- audit log ------------------------------------------------------------------------


def test_audit_log_masks_secrets_and_filters_by_resource(
    client: httpx.Client, live_server: LiveServer
) -> None:
    pid, sid = make_project(client, "Audited")
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid], name="Coupons")
    client.post(f"/projects/{pid}/touchpoints/{tid}/disable")
    r = client.patch(f"/projects/{pid}/touchpoints/{tid}", json={"token": "n3w", "batch_size": 7})
    assert r.status_code == 200, r.text
    client.post(f"/projects/{pid}/touchpoints/{tid}/rotate-secret")
    r = client.get(
        f"/projects/{pid}/audit",
        params={"resource_type": "touchpoint", "resource_id": str(tid)},
    )
    body = r.json()
    assert [e["action"] for e in body["items"]] == [
        "rotate_secret",
        "update",
        "disable",
        "set_spaces",
        "create",
    ]
    update_entry = body["items"][1]
    assert update_entry["changes"]["batch_size"] == {"old": 200, "new": 7}
    assert update_entry["changes"]["token"] == {"old": "***", "new": "***"}
    assert body["items"][0]["changes"] == {"signing_secret": {"old": "***", "new": "***"}}
    assert "n3w" not in r.text and "s3cret" not in r.text and "whsec_" not in r.text
    assert {e["key_id"] for e in body["items"]} == {1} or len(
        {e["key_id"] for e in body["items"]}
    ) == 1
    paged = client.get(f"/projects/{pid}/audit", params={"limit": 2, "offset": 1}).json()
    assert len(paged["items"]) == 2 and paged["total"] > 2
    assert (
        client.get(f"/projects/{pid}/audit", params={"resource_type": "x;drop"}).status_code == 422
    )


# -- sensitive attributes ---------------------------------------------------------------


def test_sensitive_attributes_are_sealed_masked_and_delivered(
    client: httpx.Client, live_server: LiveServer, runtime: Runtime
) -> None:
    pid, sid = make_project(client, "Private")
    r = client.post(
        f"/projects/{pid}/attributes",
        json={"key": "idcard", "name": "ID card", "type": "string", "sensitive": True},
    )
    assert r.status_code == 201, r.text
    users = [
        {"gid": g, "attributes": {"city": "Shanghai", "memberId": f"M{g}", "idcard": f"ID-{g}"}}
        for g in (1, 2)
    ]
    assert import_users(client, pid, users) == 2
    with runtime.tx() as session:
        stored = session.scalars(select(User.attributes).where(User.gid == 1)).one()
    assert stored["city"] == "Shanghai"
    assert set(stored["idcard"]) == {"$enc"} and "ID-1" not in str(stored)

    assert client.get(f"/projects/{pid}/users/1").json()["attributes"]["idcard"] == "ID-1"
    viewer = create_key(client, name="v", role="viewer", project_id=pid, space_ids=[sid]).json()
    with key_client(live_server, viewer["key"]) as v:
        assert v.get(f"/projects/{pid}/users/1").json()["attributes"]["idcard"] == "***"

    with running_receiver(Receiver()) as rx:
        tid = make_touchpoint(client, pid, rx.url, [sid], name="Cards")
        # A touchpoint is never given a sensitive attribute.
        client.post(f"/projects/{pid}/touchpoints/{tid}/disable")
        r = client.patch(
            f"/projects/{pid}/touchpoints/{tid}", json={"user_attributes": ["memberId", "idcard"]}
        )
        assert r.status_code == 422
        client.post(f"/projects/{pid}/touchpoints/{tid}/enable")
        base = f"/projects/{pid}/spaces/{sid}/campaigns"
        # An audience cannot compare sealed values (it would silently match nobody).
        bad = campaign_body(
            tid,
            audience={
                "match": "filter",
                "filter": {
                    "op": "and",
                    "conditions": [{"attribute": "idcard", "operator": "eq", "value": "ID-1"}],
                },
            },
            strategy=send_step(tid),
        )
        r = client.post(base, json=bad)
        assert r.status_code == 422
        assert "attribute_sensitive" in r.text
        r = client.post(base, json=campaign_body(tid, strategy=send_step(tid)))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        # The preview, which viewers may call, never shows a valid sign.
        with key_client(live_server, viewer["key"]) as v:
            preview = v.post(f"{base}/{cid}/preview", json={"sample": 2})
        assert preview.status_code == 200, preview.text
        request = preview.json()["requests"][0]
        assert request["body"]["sign"] == "<redacted>"
        assert '"sign":"<redacted>"' in request["body_text"]
        assert "ID-1" not in preview.text
        for action in ("submit", "approve", "publish"):
            assert client.post(f"{base}/{cid}/{action}").status_code == 200
        wait_for(lambda: len(rx.gids()) == 2, timeout=60, what="both users delivered")
        sent = {e["gid"]: e["dynamicData"] for b in rx.bodies for e in b["dataList"]}
        signs = {b["sign"] for b in rx.bodies}
    assert sent == {1: {"memberId": "M1", "phone": None}, 2: {"memberId": "M2", "phone": None}}
    assert "<redacted>" not in signs and all(len(s) == 32 for s in signs)


def test_options_refresh_is_for_admins(client: httpx.Client, live_server: LiveServer) -> None:
    pid, sid = make_project(client, "Opts")
    tid = make_touchpoint(client, pid, "http://127.0.0.1:9/touch", [sid], name="Coupons")
    viewer = create_key(client, name="v", role="viewer", project_id=pid).json()
    key = client.get(f"/projects/{pid}/touchpoints/{tid}").json()["template_params"][0]["key"]
    with key_client(live_server, viewer["key"]) as v:
        r = v.get(
            f"/projects/{pid}/touchpoints/{tid}/params/{key}/options", params={"refresh": True}
        )
        assert r.status_code == 403
        r = v.get(f"/projects/{pid}/touchpoints/{tid}/params/{key}/options")
        assert r.status_code not in (401, 403)


# -- hostile input ------------------------------------------------------------------------


def test_names_are_nfc_and_refuse_nul_and_bidi(client: httpx.Client) -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    r = client.post("/projects", json={"name": decomposed})
    assert r.status_code == 201 and r.json()["name"] == composed
    r = client.post("/projects", json={"name": composed})
    assert r.status_code == 409
    pid = client.get("/projects").json()["items"][0]["id"]
    for bad in ("a\u0000b", "evil\u202etxt.exe", "x\u2066y"):
        r = client.post("/projects", json={"name": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"][0]["field"] == "name"
        assert client.post(f"/projects/{pid}/spaces", json={"name": bad}).status_code == 422
        assert client.patch(f"/projects/{pid}", json={"name": bad}).status_code == 422
    r = client.get(f"/projects/{pid}/events", params={"name": "a\u0000"})
    assert r.status_code == 422
    r = client.get(f"/projects/{pid}/touchpoints", params={"q": "a\u0000"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["code"] == "nul_character"


def test_json_body_size_limit(client: httpx.Client, project: dict[str, Any]) -> None:
    big = b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    r = client.post("/projects", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"

    def chunks() -> Any:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    r = client.post("/projects", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["params"]["max_bytes"] == 8 * 1024 * 1024


HUGE = [2**31, 2**63, 2**64, -(2**55)]


@pytest.mark.parametrize("huge", HUGE)
def test_out_of_range_integers_never_crash(
    client: httpx.Client, project: dict[str, Any], huge: int
) -> None:
    """Every path parameter of every route, and ``offset`` and the id filters of
    every GET, with 2^31, 2^63 and 2^64: never a 5xx."""
    pid = project["id"]
    sid = client.post(f"/projects/{pid}/spaces", json={"name": "S"}).json()["id"]
    real = {"pid": str(pid), "sid": str(sid), "tid": "1", "cid": "1", "plugin_id": "1"}
    real |= {"key_id": "1", "gid": "1", "order_no": "x", "key": "k", "action": "submit"}
    problems = []
    for method, path in EXPECTED:
        names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        variants = [{**real, name: str(huge)} for name in names] or [real]
        for values in variants:
            url = path.format(**values)
            queries: list[dict[str, Any]] = [{}]
            if method == "GET":
                queries = [{"offset": huge}, {"limit": huge}]
                queries += [{"touchpoint_id": huge, "campaign_id": huge, "gid": huge}]
            for query in queries:
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                r = client.request(
                    method,
                    url,
                    params=query,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if r.status_code >= 500:
                    problems.append(f"{method} {url} {query}: {r.status_code} {r.text[:100]}")
    assert problems == []
