from __future__ import annotations

from typing import Any

import httpx


def test_create_and_list_projects(client: httpx.Client) -> None:
    r = client.post("/projects", json={"name": "Retail", "timezone": "Asia/Shanghai"})
    assert r.status_code == 201
    body = r.json()
    assert body["name"] == "Retail"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["approval_required"] is True
    r = client.get("/projects")
    assert r.json()["total"] == 1
    assert r.json()["items"][0]["id"] == body["id"]


def test_duplicate_project_name_conflicts(client: httpx.Client) -> None:
    assert client.post("/projects", json={"name": "A"}).status_code == 201
    r = client.post("/projects", json={"name": "A"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "name_taken"


def test_bad_project_input_names_fields(client: httpx.Client) -> None:
    r = client.post("/projects", json={"name": "", "timezone": "Mars/Base"})
    assert r.status_code == 422
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert fields == {"name", "timezone"}


def test_not_json_is_422(client: httpx.Client) -> None:
    r = client.post("/projects", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"


def test_spaces(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    r = client.post(f"/projects/{pid}/spaces", json={"name": "Growth"})
    assert r.status_code == 201
    assert set(r.json()) >= {"id", "name"}
    assert client.post(f"/projects/{pid}/spaces", json={"name": "Growth"}).status_code == 409
    assert client.get(f"/projects/{pid}/spaces").json()["total"] == 1
    assert client.get("/projects/999999/spaces").status_code == 404
    assert client.post("/projects/999999/spaces", json={"name": "x"}).status_code == 404


def test_auth_required(anon_client: httpx.Client) -> None:
    r = anon_client.get("/projects")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = anon_client.get("/projects", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_health(live_server: Any, runtime: Any) -> None:
    assert httpx.get(live_server.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(live_server.url + "/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["database"] == "ok"
    assert httpx.get(live_server.url + "/openapi.json").json()["info"]["title"] == "Touchgate"


def test_ids_beyond_range_are_404(client: httpx.Client, project: dict[str, Any]) -> None:
    huge = 2**40
    assert client.get(f"/projects/{huge}").status_code == 404
    assert client.get(f"/projects/{huge}/spaces").status_code == 404
    assert client.post(f"/projects/{huge}/spaces", json={"name": "x"}).status_code == 404
