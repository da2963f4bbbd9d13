"""Every route × every kind of caller: who gets in, who gets 401/403.

``EXPECTED`` is the access contract, one line per route of the API. A route that
is added without a line here, or whose ``@requires`` declaration differs from
its line, or that has no declaration at all, fails ``test_every_route_is_declared``;
``test_route_role_matrix`` then calls every route as every caller (on both
databases) with a malformed body, so authorization is shown to come before
validation (a viewer posting garbage gets 403, not 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import update

from conftest import ADMIN_TOKEN, LiveServer
from touchgate.api.guard import GuardedRoute, api_router
from touchgate.app import create_app
from touchgate.auth import (
    ANY_KEY,
    KEY_ADMIN,
    PROJECT_ADMIN,
    PROJECT_READ,
    PROJECT_WRITE,
    SERVICE_ADMIN,
    SPACE_READ,
    SPACE_WRITE,
    Access,
    Role,
    Scope,
    declared_access,
)
from touchgate.models import ApiKey
from touchgate.runtime import Runtime

TP = "/projects/{pid}/touchpoints"
CAMPAIGNS = "/projects/{pid}/spaces/{sid}/campaigns"

EXPECTED: dict[tuple[str, str], Access] = {
    # projects and spaces
    ("POST", "/projects"): SERVICE_ADMIN,
    ("GET", "/projects"): ANY_KEY,
    ("GET", "/projects/{pid}"): PROJECT_READ,
    ("PATCH", "/projects/{pid}"): PROJECT_ADMIN,
    ("POST", "/projects/{pid}/spaces"): PROJECT_ADMIN,
    ("GET", "/projects/{pid}/spaces"): PROJECT_READ,
    # team access
    ("POST", "/api-keys"): KEY_ADMIN,
    ("GET", "/api-keys"): KEY_ADMIN,
    ("GET", "/api-keys/current"): ANY_KEY,
    ("DELETE", "/api-keys/{key_id}"): KEY_ADMIN,
    ("GET", "/projects/{pid}/audit"): PROJECT_ADMIN,
    ("GET", "/audit"): SERVICE_ADMIN,
    # data store
    ("POST", "/projects/{pid}/attributes"): PROJECT_ADMIN,
    ("GET", "/projects/{pid}/attributes"): PROJECT_READ,
    ("POST", "/projects/{pid}/users/import"): PROJECT_WRITE,
    ("GET", "/projects/{pid}/users/{gid}"): PROJECT_READ,
    ("POST", "/projects/{pid}/events"): PROJECT_WRITE,
    ("GET", "/projects/{pid}/events"): PROJECT_READ,
    ("GET", "/projects/{pid}/event-names"): PROJECT_READ,
    ("GET", "/projects/{pid}/event-properties"): PROJECT_READ,
    # touchpoints
    ("POST", TP): PROJECT_ADMIN,
    ("GET", TP): PROJECT_READ,
    ("GET", TP + "/{tid}"): PROJECT_READ,
    ("PATCH", TP + "/{tid}"): PROJECT_ADMIN,
    ("DELETE", TP + "/{tid}"): PROJECT_ADMIN,
    ("POST", TP + "/{tid}/enable"): PROJECT_ADMIN,
    ("POST", TP + "/{tid}/disable"): PROJECT_ADMIN,
    ("PUT", TP + "/{tid}/spaces"): PROJECT_ADMIN,
    ("POST", TP + "/{tid}/rotate-secret"): PROJECT_ADMIN,
    ("POST", TP + "/{tid}/health/reset"): PROJECT_ADMIN,
    ("GET", TP + "/{tid}/params/{key}/options"): PROJECT_READ,
    ("POST", TP + "/{tid}/test"): PROJECT_ADMIN,
    ("POST", TP + "/{tid}/doctor"): PROJECT_ADMIN,
    ("POST", TP + "/options-preview"): PROJECT_ADMIN,
    ("GET", "/projects/{pid}/spaces/{sid}/touchpoints"): SPACE_READ,
    # orders
    ("GET", "/projects/{pid}/orders"): PROJECT_ADMIN,
    ("GET", "/projects/{pid}/orders/{order_no}"): PROJECT_ADMIN,
    ("POST", "/projects/{pid}/orders/{order_no}/replay"): PROJECT_ADMIN,
    # plugins
    ("POST", "/projects/{pid}/plugins"): PROJECT_ADMIN,
    ("GET", "/projects/{pid}/plugins"): PROJECT_READ,
    ("GET", "/projects/{pid}/plugins/{plugin_id}"): PROJECT_READ,
    ("DELETE", "/projects/{pid}/plugins/{plugin_id}"): PROJECT_ADMIN,
    # campaigns
    ("POST", CAMPAIGNS): SPACE_WRITE,
    ("GET", CAMPAIGNS): SPACE_READ,
    ("GET", CAMPAIGNS + "/{cid}"): SPACE_READ,
    ("PATCH", CAMPAIGNS + "/{cid}"): SPACE_WRITE,
    ("DELETE", CAMPAIGNS + "/{cid}"): SPACE_WRITE,
    ("POST", CAMPAIGNS + "/{cid}/preview"): SPACE_READ,
    ("GET", CAMPAIGNS + "/{cid}/stats"): SPACE_READ,
    ("GET", CAMPAIGNS + "/{cid}/deliveries"): SPACE_READ,
    ("GET", CAMPAIGNS + "/{cid}/deliveries.csv"): SPACE_READ,
    ("POST", CAMPAIGNS + "/{cid}/audience/gids"): SPACE_WRITE,
    ("POST", CAMPAIGNS + "/{cid}/{action}"): SPACE_WRITE,
    # protection against over-messaging
    ("GET", "/projects/{pid}/protection"): PROJECT_READ,
    ("PUT", "/projects/{pid}/protection"): PROJECT_ADMIN,
    ("GET", TP + "/{tid}/protection"): PROJECT_READ,
    ("PUT", TP + "/{tid}/protection"): PROJECT_ADMIN,
    ("POST", "/projects/{pid}/blocklist"): PROJECT_WRITE,
    ("GET", "/projects/{pid}/blocklist"): PROJECT_READ,
    ("DELETE", "/projects/{pid}/blocklist"): PROJECT_WRITE,
}
# Outside the API: probes, the API document and the console, open to everyone.
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
PREFIX = "/api/v1"


def declaration_problems(app: FastAPI) -> list[str]:
    """Every way the app's routes differ from the contract above."""
    problems = []
    seen = set()
    # Included routers are resolved lazily; this walks them as routing does.
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if not path.startswith(PREFIX):
            if path not in PUBLIC_PATHS and not path.startswith("/console"):
                problems.append(f"{path}: a route outside {PREFIX} that is not a known public one")
            continue
        if not isinstance(context.original_route, GuardedRoute) or context.endpoint is None:
            problems.append(f"{path}: not a GuardedRoute (make its router with api_router)")
            continue
        access = declared_access(context.endpoint)
        keys = [(m, path.removeprefix(PREFIX)) for m in sorted(context.methods or ())]
        for key in keys:
            seen.add(key)
            if access is None:
                problems.append(f"{key}: declares no access (@requires(...) under @router…)")
            elif key not in EXPECTED:
                problems.append(f"{key}: not in EXPECTED of tests/test_access.py")
            elif EXPECTED[key] != access:
                problems.append(
                    f"{key}: declares {access.describe()}, expected {EXPECTED[key].describe()}"
                )
    problems += [f"{key}: in EXPECTED but not served" for key in EXPECTED if key not in seen]
    return problems


def test_every_route_is_declared(runtime: Runtime) -> None:
    assert declaration_problems(create_app(runtime, background=False)) == []


def test_a_route_without_declaration_is_caught_and_refused(runtime: Runtime) -> None:
    """The check above fails for a route whose declaration was removed, and such a
    route refuses every call, even the service admin's."""
    app = create_app(runtime, background=False)
    extra = api_router(tags=["test"])

    @extra.get("/projects/{pid}/undeclared")
    def undeclared(pid: int) -> dict[str, int]:
        return {"pid": pid}

    app.include_router(extra, prefix=PREFIX)
    assert (
        "('GET', '/projects/{pid}/undeclared'): declares no access (@requires(...) under @router…)"
        in declaration_problems(app)
    )
    server = LiveServer(runtime, app)
    try:
        r = httpx.get(
            server.url + PREFIX + "/projects/1/undeclared",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    finally:
        server.stop()
    assert r.status_code == 403
    assert r.json()["error"]["params"]["reason"] == "undeclared"


@dataclass(frozen=True)
class Caller:
    name: str
    key: str | None
    role: Role | None  # None: no valid key (missing, revoked, expired)
    project: str | None = None  # "A" or "B"
    spaces: frozenset[str] | None = None  # {"S1"}


@dataclass(frozen=True)
class Target:
    """Where a request goes: a project and a space (names resolved to ids)."""

    project: str
    space: str


def expected(access: Access, caller: Caller, target: Target | None) -> int | None:
    """401/403 when the caller must be refused, None when it must get past access."""
    if caller.role is None:
        return 401
    if caller.role < access.role:
        return 403
    if access.scope is Scope.service and caller.project is not None:
        return 403
    if access.scope in (Scope.project, Scope.space):
        assert target is not None
        if caller.project is not None and caller.project != target.project:
            return 403
        if (
            access.scope is Scope.space
            and caller.role is not Role.admin
            and caller.spaces is not None
            and target.space not in caller.spaces
        ):
            return 403
    return None


def _make_key(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/api-keys", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture
def world(client: httpx.Client, runtime: Runtime) -> dict[str, Any]:
    """Projects A (spaces S1, S2) and B (space SB), and a key of every kind."""
    ids: dict[str, int] = {}
    for project, spaces in (("A", ("S1", "S2")), ("B", ("SB",))):
        r = client.post("/projects", json={"name": f"project {project}"})
        ids[project] = r.json()["id"]
        for space in spaces:
            r = client.post(f"/projects/{ids[project]}/spaces", json={"name": space})
            ids[space] = r.json()["id"]
    a, b, s1 = ids["A"], ids["B"], ids["S1"]
    keys = {
        "project_admin": _make_key(client, name="pa", role="admin", project_id=a),
        "operator": _make_key(client, name="op", role="operator", project_id=a),
        "space_operator": _make_key(
            client, name="sop", role="operator", project_id=a, space_ids=[s1]
        ),
        "viewer": _make_key(client, name="v", role="viewer", project_id=a),
        "space_viewer": _make_key(client, name="sv", role="viewer", project_id=a, space_ids=[s1]),
        "other_project": _make_key(client, name="ob", role="admin", project_id=b),
        "revoked": _make_key(client, name="rv", role="admin", project_id=None),
        "expired": _make_key(
            client,
            name="ex",
            role="admin",
            project_id=None,
            expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        ),
    }
    assert client.delete(f"/api-keys/{keys['revoked']['id']}").status_code == 204
    with runtime.tx() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == keys["expired"]["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    callers = [
        Caller("service_admin", ADMIN_TOKEN, Role.admin),
        Caller("project_admin", keys["project_admin"]["key"], Role.admin, "A"),
        Caller("operator", keys["operator"]["key"], Role.operator, "A"),
        Caller(
            "space_operator", keys["space_operator"]["key"], Role.operator, "A", frozenset({"S1"})
        ),
        Caller("viewer", keys["viewer"]["key"], Role.viewer, "A"),
        Caller("space_viewer", keys["space_viewer"]["key"], Role.viewer, "A", frozenset({"S1"})),
        Caller("other_project", keys["other_project"]["key"], Role.admin, "B"),
        Caller("revoked", keys["revoked"]["key"], None),
        Caller("expired", keys["expired"]["key"], None),
        Caller("no_key", None, None),
    ]
    return {"ids": ids, "callers": callers}


# Ids that exist nowhere: an allowed call reaches the route and gets 404/422,
# so nothing is changed, sent or deleted by the matrix.
FILLERS = {"key_id": "999999", "tid": "999999", "cid": "999999", "plugin_id": "999999"}
FILLERS |= {"gid": "999999", "order_no": "nosuchorder", "key": "k", "action": "submit"}
TARGETS = [Target("A", "S1"), Target("A", "S2"), Target("B", "SB")]


def _url(path: str, ids: dict[str, int], target: Target | None) -> str:
    values = dict(FILLERS)
    if target is not None:
        values |= {"pid": str(ids[target.project]), "sid": str(ids[target.space])}
    return path.format(**values)


def test_route_role_matrix(world: dict[str, Any], live_server: LiveServer) -> None:
    ids: dict[str, int] = world["ids"]
    callers: list[Caller] = world["callers"]
    failures = []
    calls = 0
    with httpx.Client(base_url=live_server.url + PREFIX, timeout=60) as http:
        for (method, path), access in sorted(EXPECTED.items()):
            targets: list[Target | None] = list(TARGETS) if "{pid}" in path else [None]
            for target in targets:
                url = _url(path, ids, target)
                for caller in callers:
                    headers = {"Content-Type": "application/json"}
                    if caller.key is not None:
                        headers["Authorization"] = f"Bearer {caller.key}"
                    body = b"{not json" if method in ("POST", "PUT", "PATCH") else None
                    r = http.request(method, url, content=body, headers=headers)
                    calls += 1
                    want = expected(access, caller, target)
                    got = r.status_code
                    ok = got == want if want is not None else got not in (401, 403)
                    if got >= 500 or not ok:
                        where = f"{target.project}/{target.space}" if target else "-"
                        failures.append(
                            f"{method} {path} [{where}] as {caller.name}: got {got}, "
                            f"want {want or 'past access'}: {r.text[:120]}"
                        )
    assert calls > 1000
    assert failures == []


def test_project_admin_of_b_gets_nothing_of_a(
    world: dict[str, Any], live_server: LiveServer, client: httpx.Client
) -> None:
    """The other project's admin, on real resources of project A (not just fillers):
    403 everywhere, and project A is unchanged."""
    ids = world["ids"]
    other = next(c for c in world["callers"] if c.name == "other_project")
    a = ids["A"]
    r = client.post(
        f"/projects/{a}/attributes",
        json={"key": "city", "name": "City", "type": "string", "kind": "attribute"},
    )
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {other.key}"}
    with httpx.Client(base_url=live_server.url + PREFIX, timeout=30, headers=headers) as http:
        assert http.patch(f"/projects/{a}", json={"name": "mine now"}).status_code == 403
        assert http.post("/projects", json={"name": "new one"}).status_code == 403
        assert http.post(f"/projects/{a}/spaces", json={"name": "x"}).status_code == 403
        assert http.get(f"/projects/{a}/attributes").status_code == 403
        assert http.get(f"/projects/{a}/orders").status_code == 403
        assert http.get("/projects").json()["items"][0]["id"] == ids["B"]
        assert http.get("/api-keys").json()["total"] == 1  # its own key only
    assert client.get(f"/projects/{a}").json()["name"] == "project A"
