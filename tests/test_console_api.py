"""API the console needs beyond the original contract: an options API previewed before
the touchpoint is saved, and the audience size a publish would reach."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from test_campaign_support import campaign_body
from test_options import ANSWER, MAPPED, answer_with
from test_testsend import ThreadedServer, setup_touchpoint


def import_shanghai_users(client: httpx.Client, pid: int) -> None:
    """Users 100-103 (M0-M3), three of them in Shanghai (100, 102, 103)."""
    for key, name in (("memberId", "Member id"), ("city", "City")):
        attribute = {"key": key, "name": name, "type": "string", "kind": "attribute"}
        assert client.post(f"/projects/{pid}/attributes", json=attribute).status_code in (201, 409)
    lines = "\n".join(
        f'{{"gid": {100 + i}, "attributes": {{"memberId": "M{i}", "city": "{city}"}}}}'
        for i, city in enumerate(["Shanghai", "Beijing", "Shanghai", "Shanghai"])
    )
    r = client.post(
        f"/projects/{pid}/users/import",
        content=lines.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.json()["imported"] == 4, r.text


@pytest.fixture
def endpoint() -> Iterator[ThreadedServer]:
    server = ThreadedServer()
    yield server
    server.stop()


def test_options_preview_before_saving(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = answer_with(ANSWER)
    path = f"/projects/{project['id']}/touchpoints/options-preview"
    body = {"url": endpoint.url + "/options", "param": "jump", "name": "Jump type"}
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.json() == MAPPED
    assert endpoint.seen[-1].doc == {
        "projectId": project["id"],
        "paramDescription": "Jump type",
        "paramName": "jump",
    }
    # Never cached: a second look asks the API again.
    assert client.post(path, json=body).json() == MAPPED
    assert len(endpoint.seen) == 2

    # Editing a saved touchpoint: signed with its secret.
    tp = setup_touchpoint(client, project, endpoint.url + "/touch")
    r = client.post(path, json={**body, "touchpoint_id": tp["id"]})
    assert r.status_code == 200, r.text
    Webhook(tp["signing_secret"]).verify(endpoint.seen[-1].body, endpoint.seen[-1].headers)


def test_options_preview_refusals(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    path = f"/projects/{project['id']}/touchpoints/options-preview"
    # Bad input names its field.
    r = client.post(path, json={"url": "ftp://example.com/options", "param": "9x"})
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert fields == {"url", "param"}
    # The network guard applies (no request leaves for an unspecified address).
    r = client.post(path, json={"url": "http://0.0.0.0:9/options", "param": "jump"})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "options_api_failed"
    # A broken answer says what is wrong.
    endpoint.handler = answer_with({"code": 0})
    r = client.post(path, json={"url": endpoint.url + "/options", "param": "jump"})
    assert r.status_code == 502, r.text
    assert "enumArgs" in r.json()["error"]["message"]
    # Another project's touchpoint is not found.
    other = client.post("/projects", json={"name": "Other"}).json()
    tp = setup_touchpoint(client, other, endpoint.url + "/touch")
    r = client.post(
        path, json={"url": endpoint.url + "/options", "param": "jump", "touchpoint_id": tp["id"]}
    )
    assert r.status_code == 404, r.text
    assert (
        client.post(
            "/projects/999999/touchpoints/options-preview",
            json={"url": endpoint.url + "/options", "param": "jump"},
        ).status_code
        == 404
    )


def test_preview_counts_the_audience(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    pid = project["id"]
    tp = setup_touchpoint(client, project, endpoint.url + "/touch")
    space = client.post(f"/projects/{pid}/spaces", json={"name": "Growth"}).json()
    client.put(f"/projects/{pid}/touchpoints/{tp['id']}/spaces", json={"space_ids": [space["id"]]})
    import_shanghai_users(client, pid)
    campaign = campaign_body(tp["id"], "Shanghai")
    base = f"/projects/{pid}/spaces/{space['id']}/campaigns"
    r = client.post(base, json=campaign)
    assert r.status_code == 201, r.text
    out = client.post(f"{base}/{r.json()['id']}/preview", json={"sample": 1}).json()
    assert out["audience_size"] == 3
    assert out["gids"] == [100]
