"""Enum options from a touchpoint's options API: the request (signed), the answer's
reading, the 5-minute cache, the last-good fallback and the errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from test_testsend import ThreadedServer, setup_touchpoint
from touchgate.delivery import client as http_client
from touchgate.delivery import options, params
from touchgate.errors import InvalidInput
from touchgate.runtime import Runtime

ANSWER = {
    "code": 0,
    "enumArgs": [
        {"code": "JUMP_H5", "description": "Open an H5 page"},
        {
            "code": "JUMP_APP",
            "description": "Open the app",
            "childEnumArgs": [{"code": "JUMP_APP_HOME", "description": "App home"}],
        },
    ],
}
MAPPED = [
    {"code": "JUMP_H5", "name": "Open an H5 page"},
    {
        "code": "JUMP_APP",
        "name": "Open the app",
        "children": [{"code": "JUMP_APP_HOME", "name": "App home"}],
    },
]


@pytest.fixture
def endpoint(runtime: Runtime) -> Iterator[ThreadedServer]:
    runtime.options_cache.clear()
    server = ThreadedServer()
    yield server
    server.stop()


def api_touchpoint(
    client: httpx.Client, project: dict[str, Any], server: ThreadedServer
) -> dict[str, Any]:
    return setup_touchpoint(
        client,
        project,
        server.url + "/touch",
        template_params=[
            {"key": "title", "name": "Title", "type": "text", "required": True},
            {
                "key": "jump",
                "name": "Jump type",
                "type": "enum",
                "required": True,
                "enum": {"source": "api", "url": server.url + "/options"},
            },
        ],
    )


def answer_with(doc: Any, status: int = 200) -> Any:
    async def handler(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if request.path == "/options":
            if isinstance(doc, bytes):
                return web.Response(body=doc, status=status)
            return web.json_response(doc, status=status)
        return web.json_response(
            {
                "code": 0,
                "orderNo": body.get("orderNo"),
                "sendStatusList": [
                    {"gid": e["gid"], "status": "TOU_SUCC"} for e in body.get("dataList", [])
                ],
            }
        )

    return handler


def test_options_are_fetched_signed_mapped_and_cached(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = answer_with(ANSWER)
    tp = api_touchpoint(client, project, endpoint)
    path = f"/projects/{project['id']}/touchpoints/{tp['id']}/params/jump/options"
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == MAPPED
    assert len(endpoint.seen) == 1
    seen = endpoint.seen[0]
    assert seen.path == "/options"
    assert seen.doc == {
        "projectId": project["id"],
        "paramDescription": "Jump type",
        "paramName": "jump",
    }
    # An independent Standard Webhooks implementation accepts the signature.
    Webhook(tp["signing_secret"]).verify(seen.body, seen.headers)
    # Cached: a second look does not call the API again.
    assert client.get(path).json() == MAPPED
    assert len(endpoint.seen) == 1


def test_last_good_options_are_kept_when_a_refresh_fails(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = answer_with(ANSWER)
    tp = api_touchpoint(client, project, endpoint)
    path = f"/projects/{project['id']}/touchpoints/{tp['id']}/params/jump/options"
    assert client.get(path).json() == MAPPED
    # Five minutes later the API is broken.
    for entry in options._cache(runtime).values():
        entry.fetched_at -= options.CACHE_SECONDS + 1
    endpoint.handler = answer_with({"code": 500, "message": "db down"})
    r = client.get(path)
    assert r.status_code == 200
    assert r.json() == MAPPED
    assert "refused with code 500: db down" in r.headers["x-touchgate-warning"]
    assert len(endpoint.seen) == 2
    # It recovers: fresh options, no warning.
    endpoint.handler = answer_with({"code": 0, "enumArgs": [{"code": "X", "description": "X"}]})
    for entry in options._cache(runtime).values():
        entry.fetched_at -= options.CACHE_SECONDS + 1
    r = client.get(path)
    assert r.json() == [{"code": "X", "name": "X"}]
    assert "x-touchgate-warning" not in r.headers


@pytest.mark.parametrize(
    ("doc", "status", "words"),
    [
        ({"code": 7, "message": "no such param"}, 200, "refused with code 7: no such param"),
        (b"not json", 200, "not JSON"),
        (b"[]", 200, "not a JSON object"),
        ({"code": "0"}, 200, "no integer 'code'"),
        ({"code": 0}, 200, "no 'enumArgs' list"),
        ({"code": 0, "enumArgs": [{"description": "no code"}]}, 200, "enumArgs[0] has no 'code'"),
        ({"code": 0, "enumArgs": ["A"]}, 200, "enumArgs[0] is not an object"),
        ({"code": 0, "enumArgs": [{"code": "A", "description": []}]}, 200, "is not text"),
        ({"code": 0, "enumArgs": [{"code": "A", "childEnumArgs": "B"}]}, 200, "is not a list"),
        (
            {
                "code": 0,
                "enumArgs": [
                    {
                        "code": "A",
                        "childEnumArgs": [
                            {"code": "B", "childEnumArgs": [{"code": "C", "description": "C"}]}
                        ],
                    }
                ],
            },
            200,
            "more than two levels deep",
        ),
        ({"code": 0, "enumArgs": []}, 503, "answered HTTP 503"),
    ],
)
def test_failures_without_cached_options_are_clear_502s(
    client: httpx.Client,
    project: dict[str, Any],
    endpoint: ThreadedServer,
    doc: Any,
    status: int,
    words: str,
) -> None:
    endpoint.handler = answer_with(doc, status)
    tp = api_touchpoint(client, project, endpoint)
    r = client.get(f"/projects/{project['id']}/touchpoints/{tp['id']}/params/jump/options")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "options_api_failed"
    assert words in error["message"]
    # What went wrong, as a code the console renders (problem.<code>), with its values.
    problem = error["params"]["problem"]
    assert problem in PROBLEMS, problem
    assert set(error["params"]) == {"problem", *PROBLEMS[problem]}, error["params"]


# Every problem the options API reader names, with the params it carries.
PROBLEMS = {
    "refused": {"api_code", "said"},
    "not_json": {"error"},
    "not_object": set(),
    "no_code": set(),
    "no_enum_args": set(),
    "option_no_code": {"where"},
    "option_not_object": {"where"},
    "option_name_not_text": {"where"},
    "children_not_list": {"where"},
    "too_deep": {"where"},
    "http_status": {"url", "status"},
}


def test_unreachable_options_api(
    client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    tp = api_touchpoint(client, project, endpoint)
    endpoint.stop()  # nothing listens any more
    r = client.get(f"/projects/{project['id']}/touchpoints/{tp['id']}/params/jump/options")
    assert r.status_code == 502
    assert "could not be used: connection to 127.0.0.1 port" in r.json()["error"]["message"]
    params = r.json()["error"]["params"]
    assert params["problem"] == "unreachable" and params["url"] == endpoint.url + "/options"


def test_parse_options_accepts_numbers_and_missing_descriptions() -> None:
    got = options.parse_options(b'{"code":0,"enumArgs":[{"code":1},{"code":"B","description":""}]}')
    assert got == [{"code": "1", "name": "1"}, {"code": "B", "name": "B"}]
    with pytest.raises(options.OptionsApiFailed):
        options.parse_options(b'{"code":true,"enumArgs":[]}')
    with pytest.raises(options.OptionsApiFailed):
        options.parse_options(b'{"code":0,"enumArgs":[{"code":"A","childEnumArgs":"x"}]}')


def test_validating_values_fetches_api_options(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = answer_with(ANSWER)
    tp = api_touchpoint(client, project, endpoint)
    from touchgate.models import Touchpoint

    # Synchronous callers (a campaign service inside its transaction).
    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None
        tem, keys = params.validate_for_touchpoint_sync(
            runtime, row, {"title": "x", "jump": "JUMP_APP_HOME"}
        )
        assert tem == {"title": "x", "jump": "JUMP_APP_HOME"} and keys == []
        with pytest.raises(InvalidInput) as info:
            params.validate_for_touchpoint_sync(runtime, row, {"title": "x", "jump": "JUMP_APP"})
        assert info.value.details[0]["field"] == "params.jump"

    # Asynchronous callers.
    async def main() -> tuple[dict[str, Any], list[str]]:
        try:
            with runtime.tx() as session:
                row = session.get(Touchpoint, tp["id"])
                assert row is not None
                return await params.validate_for_touchpoint(
                    runtime, row, {"title": "Hi {{name}}", "jump": "JUMP_H5"}
                )
        finally:
            await http_client.get_client(runtime).close()

    tem, keys = asyncio.run(main())
    assert tem == {"title": "Hi {{name}}", "jump": "JUMP_H5"} and keys == ["title"]
    assert len(endpoint.seen) == 1  # fetched once, then cached

    # A test send validates API enum values too, and reports them by field.
    r = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test",
        json={"users": [{"gid": 1}], "params": {"title": "x", "jump": "NOPE"}},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "params.jump"
    r = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test",
        json={"users": [{"gid": 1}], "params": {"title": "x", "jump": "JUMP_APP_HOME"}},
    )
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


def test_options_failure_during_validation_names_the_parameter(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    endpoint.handler = answer_with({"code": 1, "message": "broken"})
    tp = api_touchpoint(client, project, endpoint)
    r = client.post(
        f"/projects/{project['id']}/touchpoints/{tp['id']}/test",
        json={"users": [{"gid": 1}], "params": {"title": "x", "jump": "JUMP_H5"}},
    )
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "options_api_failed"
    assert error["details"][0]["field"] == "params.jump"
    assert "broken" in error["message"]
    assert error["details"][0]["code"] == "options_api_failed"
    assert error["details"][0]["params"] == {"problem": "refused", "api_code": 1, "said": "broken"}


def test_not_an_api_enum(
    runtime: Runtime, client: httpx.Client, project: dict[str, Any], endpoint: ThreadedServer
) -> None:
    tp = api_touchpoint(client, project, endpoint)
    with pytest.raises(InvalidInput):
        options.load_api_options_sync(runtime, tp["id"], "title")
    from touchgate.errors import NotFound

    with pytest.raises(NotFound):
        options.load_api_options_sync(runtime, tp["id"], "nope")
    with pytest.raises(NotFound):
        options.load_api_options_sync(runtime, tp["id"], "jump", project_id=project["id"] + 1)
    endpoint.handler = answer_with(ANSWER)
    assert options.load_api_options_sync(runtime, tp["id"], "jump") == MAPPED
