"""Plugin packages through the REST API: every upload check, versions, listing,
deletion, and a plugin touchpoint's config (validation, secrets write-only)."""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from touchgate.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "plugins" / "sms_gateway"

MANIFEST = """
name = "{name}"
version = "{version}"
api_version = 1
entry = "chan:Channel"
description = "test plugin"

[[config]]
key = "api_key"
label = "API key"
type = "text"
required = true
secret = true

[[config]]
key = "region"
label = "Region"
type = "enum"
options = ["cn-east", "cn-north"]
default = "cn-east"

[[config]]
key = "rate"
type = "number"

[[config]]
key = "verbose"
type = "boolean"
default = false
"""

CHANNEL = """
class Channel:
    def open(self, config):
        self.config = config
    def send(self, order_no, users):
        return [{"gid": u["gid"], "status": "TOU_SUCC", "error_msg": ""} for u in users]
"""


def make_zip(files: dict[str, str | bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def plugin_zip(name: str = "test-plugin", version: str = "1.0.0", code: str = CHANNEL) -> bytes:
    return make_zip(
        {"touchgate-plugin.toml": MANIFEST.format(name=name, version=version), "chan.py": code}
    )


def sample_zip(tmp_path: Path) -> bytes:
    """The sample plugin, zipped by examples/plugins/build.py (loaded by path)."""
    spec = importlib.util.spec_from_file_location(
        "touchgate_example_plugin_build", SAMPLE.parent / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output: Path = module.build(SAMPLE, tmp_path / "sample.zip")
    return output.read_bytes()


def upload(client: httpx.Client, pid: int, data: bytes, filename: str = "p.zip") -> httpx.Response:
    return client.post(
        f"/projects/{pid}/plugins",
        files={"file": (filename, data, "application/zip")},
    )


def problems(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 400, r.text
    body = r.json()["error"]
    assert body["code"] == "invalid_plugin"
    details: list[dict[str, Any]] = body["details"]
    return details


def fields(r: httpx.Response) -> set[str]:
    return {p["field"] for p in problems(r)}


def test_upload_sample_plugin(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    pid = project["id"]
    r = upload(client, pid, sample_zip(tmp_path))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "sms-gateway"
    assert body["version"] == "1.0.0"
    assert body["api_version"] == 1
    assert body["description"].startswith("Sample")
    assert {"id", "config_fields", "created_at"} <= set(body)
    keys = {f["key"]: f for f in body["config_fields"]}
    assert keys["api_key"]["secret"] is True and keys["api_key"]["required"] is True
    assert keys["region"]["options"] == ["cn-east", "cn-north"]
    assert keys["region"]["default"] == "cn-east"
    # Files are kept under plugin_path/<id>.
    stored = runtime.settings.plugin_path / str(body["id"])
    assert (stored / "sms_gateway.py").is_file()
    assert (stored / "touchgate-plugin.toml").is_file()
    listed = client.get(f"/projects/{pid}/plugins").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]


def test_versions_are_separate_rows_and_duplicates_conflict(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    pid = project["id"]
    first = upload(client, pid, plugin_zip(version="1.0.0"))
    assert first.status_code == 201, first.text
    again = upload(client, pid, plugin_zip(version="1.0.0"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "plugin_version_exists"
    second = upload(client, pid, plugin_zip(version="1.1.0"))
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    items = client.get(f"/projects/{pid}/plugins").json()["items"]
    assert [i["version"] for i in items] == ["1.0.0", "1.1.0"]
    # The same name and version in another project is another plugin.
    other = client.post("/projects", json={"name": "other"}).json()
    assert upload(client, other["id"], plugin_zip(version="1.0.0")).status_code == 201


def test_every_path_problem_is_reported_at_once(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    data = make_zip(
        {
            "touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0"),
            "chan.py": CHANNEL,
            "/etc/absolute.py": "x = 1",
            "../escape.py": "x = 1",
            "lib/../../escape2.py": "x = 1",
            "C:/windows.py": "x = 1",
        },
        links={"link.py": "/etc/passwd"},
    )
    found = problems(upload(client, project["id"], data))
    by_path = {p.get("path"): p["message"] for p in found}
    assert "absolute" in by_path["/etc/absolute.py"]
    assert "'..'" in by_path["../escape.py"]
    assert "'..'" in by_path["lib/../../escape2.py"]
    assert "absolute" in by_path["C:/windows.py"]
    assert "link" in by_path["link.py"]
    assert len(found) == 5
    codes = {p["path"]: (p["code"], p["params"]) for p in found}
    assert codes["../escape.py"] == ("member_dotdot", {"path": "../escape.py"})
    assert codes["/etc/absolute.py"][0] == codes["C:/windows.py"][0] == "member_absolute"
    assert codes["link.py"][0] == "member_link"


def test_not_a_zip_and_empty_file(client: httpx.Client, project: dict[str, Any]) -> None:
    r = upload(client, project["id"], b"this is plain text, not a zip archive")
    assert problems(r) == [
        {
            "field": "file",
            "code": "not_zip",
            "message": "the file is not a zip archive",
            "params": {},
        }
    ]
    r = upload(client, project["id"], b"")
    assert [(p["field"], p["code"]) for p in problems(r)] == [("file", "file_empty")]


def test_too_large_and_too_many_files(client: httpx.Client, project: dict[str, Any]) -> None:
    big = make_zip(
        {
            "touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0"),
            "chan.py": CHANNEL,
            "blob.bin": os.urandom(10 * 1024 * 1024 + 1),  # random: does not compress
        }
    )
    assert len(big) > 10 * 1024 * 1024
    found = problems(upload(client, project["id"], big))
    assert any("at most 10485760 (10 MiB)" in p["message"] for p in found)
    [too_large] = [p for p in found if p["code"] == "package_too_large"]
    assert too_large["params"] == {"size": len(big), "max": 10 * 1024 * 1024}

    many = make_zip(
        {
            "touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0"),
            "chan.py": CHANNEL,
            **{f"data/{i}.txt": "x" for i in range(1000)},
        }
    )
    found = problems(upload(client, project["id"], many))
    assert any("1002 entries (files and directories); at most 1000" in p["message"] for p in found)
    assert {"code": "too_many_files", "params": {"count": 1002, "max": 1000}}.items() <= next(
        p for p in found if p["code"] == "too_many_files"
    ).items()


def test_directories_count_and_depth_is_bounded_and_nothing_is_written(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    """Directory entries count toward the limit, a path 2,000 directories deep is
    refused (not a RecursionError), and a refused package leaves nothing on disk."""
    plugin_root = runtime.settings.plugin_path

    def on_disk() -> list[Path]:
        return sorted(plugin_root.rglob("*")) if plugin_root.exists() else []

    before = on_disk()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("touchgate-plugin.toml", MANIFEST.format(name="p", version="1.0.0"))
        zf.writestr("chan.py", CHANNEL)
        for i in range(5000):
            zf.writestr(zipfile.ZipInfo(f"d{i}/"), b"")
    messages = [p["message"] for p in problems(upload(client, project["id"], buf.getvalue()))]
    assert any("5002 entries (files and directories); at most 1000" in m for m in messages)

    deep = "/".join(["d"] * 2000) + "/x.py"
    r = upload(
        client,
        project["id"],
        make_zip(
            {
                "touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0"),
                "chan.py": CHANNEL,
                deep: "x = 1\n",
                "e/" * 40 + "x.py": "x = 1\n",
                "a/" + "n" * 300 + ".py": "x = 1\n",
            }
        ),
    )
    found = {p.get("path", "")[:20]: p["message"] for p in problems(r)}
    assert "longer than 1024 characters" in found["d/d/d/d/d/d/d/d/d/d/"]
    assert "more than 32 directories deep" in found["e/e/e/e/e/e/e/e/e/e/"]
    assert "longer than 255 bytes" in found["a/" + "n" * 18]
    codes = {p.get("path", "")[:20]: (p["code"], p["params"]["max"]) for p in problems(r)}
    assert codes["d/d/d/d/d/d/d/d/d/d/"] == ("member_path_too_long", 1024)
    assert codes["e/e/e/e/e/e/e/e/e/e/"] == ("member_too_deep", 32)
    assert codes["a/" + "n" * 18] == ("member_name_too_long", 255)
    assert on_disk() == before


def test_zip_bomb_is_not_unpacked(client: httpx.Client, project: dict[str, Any]) -> None:
    bomb = make_zip(
        {
            "touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0"),
            "chan.py": CHANNEL,
            "zeros.bin": b"\0" * (65 * 1024 * 1024),
        }
    )
    assert len(bomb) < 1024 * 1024
    found = problems(upload(client, project["id"], bomb))
    assert any("unpacks to" in p["message"] for p in found)
    assert "unpacked_too_large" in {p["code"] for p in found}


def test_missing_manifest(client: httpx.Client, project: dict[str, Any]) -> None:
    r = upload(client, project["id"], make_zip({"chan.py": CHANNEL}))
    assert [(p["field"], p["code"]) for p in problems(r)] == [("manifest", "manifest_missing")]
    nested = make_zip({"plugin/touchgate-plugin.toml": MANIFEST, "plugin/chan.py": CHANNEL})
    [problem] = problems(upload(client, project["id"], nested))
    assert problem["field"] == "manifest"
    assert "found plugin/touchgate-plugin.toml" in problem["message"]
    assert (problem["code"], problem["params"]) == (
        "manifest_nested",
        {"found": "plugin/touchgate-plugin.toml"},
    )


def test_invalid_manifest_names_every_field(client: httpx.Client, project: dict[str, Any]) -> None:
    manifest = """
name = "bad name!"
version = "1.0"
api_version = 2
entry = "not an entry"
color = "blue"

[[config]]
key = "1bad"
type = "text"

[[config]]
key = "mode"
type = "enum"

[[config]]
key = "count"
type = "number"
default = "ten"

[[config]]
key = "flag"
type = "color"

[[config]]
key = "token"
type = "number"
secret = true

[[config]]
key = "pw"
type = "text"
secret = true
default = "hunter2"

[[config]]
key = "dup"
type = "text"

[[config]]
key = "dup"
type = "text"
"""
    r = upload(client, project["id"], make_zip({"touchgate-plugin.toml": manifest}))
    assert {p["field"]: p["code"] for p in problems(r)} == {
        "manifest.name": "plugin_name_invalid",
        "manifest.version": "semver_required",
        "manifest.api_version": "api_version_required",
        "manifest.entry": "entry_invalid",
        "manifest.color": "unknown_key",
        "manifest.config[0].key": "config_key_invalid",
        "manifest.config[1].options": "enum_options_required",
        "manifest.config[2].default": "not_number",
        "manifest.config[3].type": "not_one_of",
        "manifest.config[4].secret": "secret_only_text",
        "manifest.config[5].default": "secret_no_default",
        "manifest.config[7].key": "duplicate_config_key",
    }


def test_manifest_that_is_not_toml(client: httpx.Client, project: dict[str, Any]) -> None:
    r = upload(client, project["id"], make_zip({"touchgate-plugin.toml": "name = [unclosed"}))
    found = problems(r)
    assert found[0]["field"] == "manifest" and "not valid TOML" in found[0]["message"]
    assert found[0]["code"] == "manifest_not_toml" and found[0]["params"]["error"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("class Other:\n    pass\n", "has no attribute 'Channel'"),
        ("class Channel:\n    def open(self, c): pass\n", "has no send() method"),
        ("import requests_that_are_not_vendored\n", "No module named"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('refusing to import')\n", "refusing to import"),
        ("Channel = 42\n", "is not a class"),
    ],
)
def test_entry_class_is_checked_in_the_sandbox(
    client: httpx.Client, project: dict[str, Any], code: str, expected: str
) -> None:
    r = upload(client, project["id"], plugin_zip(code=code))
    found = problems(r)
    assert [(p["field"], p["code"]) for p in found] == [("manifest.entry", "entry_import_failed")]
    assert expected in found[0]["message"] and expected in found[0]["params"]["error"]


def test_entry_module_must_be_in_the_package(client: httpx.Client, project: dict[str, Any]) -> None:
    data = make_zip({"touchgate-plugin.toml": MANIFEST.format(name="p", version="1.0.0")})
    found = problems(upload(client, project["id"], data))
    assert (
        found[0]["field"] == "manifest.entry"
        and "'chan' is not in the package" in found[0]["message"]
    )
    assert (found[0]["code"], found[0]["params"]) == (
        "entry_module_missing",
        {"module": "chan", "expected": "chan.py"},
    )


def test_the_import_check_never_runs_in_the_service(
    client: httpx.Client, project: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "import-marker"
    tmp_path.chmod(0o777)
    code = (
        "import builtins\n"
        "builtins.TOUCHGATE_PLUGIN_WAS_HERE = True\n"
        f"open({str(marker)!r}, 'w').write('x')\n" + CHANNEL
    )
    r = upload(client, project["id"], plugin_zip(code=code))
    assert not hasattr(builtins, "TOUCHGATE_PLUGIN_WAS_HERE")
    from touchgate.plugins.sandbox import detect_sandbox

    if detect_sandbox().kind == "bubblewrap":
        # The module ran where the host's file system is invisible: its write failed.
        assert fields(r) == {"manifest.entry"}
        assert "No such file or directory" in problems(r)[0]["message"]
        assert not marker.exists()
    else:  # rlimits: a separate process, same file system
        assert r.status_code == 201, r.text
        assert marker.exists()


def test_upload_input_mistakes(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    r = client.post(f"/projects/{pid}/plugins", files={"other": ("p.zip", b"x")})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "file"
    r = client.post(f"/projects/{pid}/plugins", json={"file": "x"})
    assert r.status_code == 422
    r = client.post(
        f"/projects/{pid}/plugins",
        content=b"--x\r\nnot really multipart",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (400, 422)
    assert upload(client, 999999, plugin_zip()).status_code == 404


def test_non_admin_cannot_upload(anon_client: httpx.Client, project: dict[str, Any]) -> None:
    r = anon_client.post(
        f"/projects/{project['id']}/plugins", files={"file": ("p.zip", plugin_zip())}
    )
    assert r.status_code == 401


def _plugin_touchpoint(plugin_id: int, config: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "SMS",
        "type": "notification",
        "transport": "plugin",
        "plugin_id": plugin_id,
        "batch_size": 100,
        "user_attributes": [],
        "template_params": [],
    }
    if config is not None:
        body["plugin_config"] = config
    return body


def test_plugin_touchpoint_config_rules(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    pid = project["id"]
    plugin = upload(client, pid, plugin_zip()).json()
    r = client.post(
        f"/projects/{pid}/touchpoints",
        json=_plugin_touchpoint(
            plugin["id"], {"region": "mars", "rate": "fast", "verbose": 1, "colour": "red"}
        ),
    )
    assert r.status_code == 422, r.text
    named = {d["field"] for d in r.json()["error"]["details"]}
    assert {
        "plugin_config.api_key",
        "plugin_config.region",
        "plugin_config.rate",
        "plugin_config.verbose",
        "plugin_config.colour",
    } <= named

    r = client.post(
        f"/projects/{pid}/touchpoints", json=_plugin_touchpoint(999999, {"api_key": "k"})
    )
    assert r.status_code == 422
    assert "plugin_id" in {d["field"] for d in r.json()["error"]["details"]}

    r = client.post(
        f"/projects/{pid}/touchpoints",
        json=_plugin_touchpoint(plugin["id"], {"api_key": "sk-secret-value", "rate": 2.5}),
    )
    assert r.status_code == 201, r.text
    tp = r.json()
    assert "sk-secret-value" not in r.text
    assert tp["plugin_config"] == {
        "api_key_set": True,
        "region": "cn-east",
        "rate": 2.5,
        "verbose": False,
    }
    got = client.get(f"/projects/{pid}/touchpoints/{tp['id']}")
    assert "sk-secret-value" not in got.text
    assert got.json()["plugin_config"]["api_key_set"] is True

    # Stored encrypted; the sandbox gets the plain value.
    from touchgate.models import Touchpoint
    from touchgate.plugins.service import runtime_config

    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None and row.plugin_config is not None
        assert row.plugin_config["api_key"] != "sk-secret-value"
        assert runtime_config(session, runtime.secrets, row) == {
            "api_key": "sk-secret-value",
            "region": "cn-east",
            "rate": 2.5,
            "verbose": False,
        }

    # Omitting the secret on update keeps it; the plugin version can be switched.
    newer = upload(client, pid, plugin_zip(version="2.0.0")).json()
    assert client.post(f"/projects/{pid}/touchpoints/{tp['id']}/disable").status_code == 200
    r = client.patch(
        f"/projects/{pid}/touchpoints/{tp['id']}",
        json={"plugin_id": newer["id"], "plugin_config": {"region": "cn-north"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["plugin_id"] == newer["id"]
    assert r.json()["plugin_config"]["api_key_set"] is True
    assert r.json()["plugin_config"]["region"] == "cn-north"
    with runtime.tx() as session:
        row = session.get(Touchpoint, tp["id"])
        assert row is not None
        assert runtime_config(session, runtime.secrets, row)["api_key"] == "sk-secret-value"


def test_delete_plugin(client: httpx.Client, project: dict[str, Any], runtime: Runtime) -> None:
    pid = project["id"]
    plugin = upload(client, pid, plugin_zip()).json()
    tp = client.post(
        f"/projects/{pid}/touchpoints",
        json=_plugin_touchpoint(plugin["id"], {"api_key": "k"}),
    ).json()
    r = client.delete(f"/projects/{pid}/plugins/{plugin['id']}")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "plugin_in_use"
    assert r.json()["error"]["details"]["touchpoints"] == [{"id": tp["id"], "name": "SMS"}]
    # A deleted touchpoint no longer holds the plugin.
    assert client.post(f"/projects/{pid}/touchpoints/{tp['id']}/disable").status_code == 200
    assert client.delete(f"/projects/{pid}/touchpoints/{tp['id']}").status_code == 204
    assert client.delete(f"/projects/{pid}/plugins/{plugin['id']}").status_code == 204
    assert not (runtime.settings.plugin_path / str(plugin["id"])).exists()
    assert client.get(f"/projects/{pid}/plugins").json()["total"] == 0
    assert client.delete(f"/projects/{pid}/plugins/{plugin['id']}").status_code == 404
    # Another project's plugin is not found from here.
    other = client.post("/projects", json={"name": "other"}).json()
    theirs = upload(client, other["id"], plugin_zip()).json()
    assert client.delete(f"/projects/{pid}/plugins/{theirs['id']}").status_code == 404


def test_plugin_of_another_project_cannot_be_used(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    other = client.post("/projects", json={"name": "other"}).json()
    theirs = upload(client, other["id"], plugin_zip()).json()
    r = client.post(
        f"/projects/{project['id']}/touchpoints",
        json=_plugin_touchpoint(theirs["id"], {"api_key": "k"}),
    )
    assert r.status_code == 422
    assert "plugin_id" in {d["field"] for d in r.json()["error"]["details"]}


def test_readyz_reports_the_sandbox(live_server: Any, runtime: Runtime) -> None:
    r = httpx.get(live_server.url + "/readyz")
    assert r.json()["checks"]["plugin_sandbox"] in ("bubblewrap", "rlimits")
    from touchgate.plugins.sandbox import detect_sandbox

    assert r.json()["checks"]["plugin_sandbox"] == detect_sandbox().kind


def test_oversized_bodies_are_refused_without_reading_them_all(
    client: httpx.Client, project: dict[str, Any]
) -> None:
    from touchgate.plugins.endpoints import MAX_BODY_BYTES

    boundary = "tgboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    chunk = b"\0" * (1024 * 1024)

    def body() -> Any:  # chunked: no Content-Length to check up front
        yield head
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    r = client.post(
        f"/projects/{project['id']}/plugins",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert fields(r) == {"file"}
    assert "exceeds" in problems(r)[0]["message"]


def test_prepare_touchpoint_config_directly(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime
) -> None:
    from touchgate.errors import InvalidInput
    from touchgate.plugins.service import prepare_touchpoint_config, public_config

    pid = project["id"]
    plugin_id = upload(client, pid, plugin_zip()).json()["id"]

    def prepare(
        config: Any, previous: dict[str, Any] | None = None, plugin: Any = plugin_id
    ) -> Any:
        with runtime.tx() as session:
            return prepare_touchpoint_config(
                session, runtime.secrets, pid, plugin, config, previous
            )

    def invalid(*args: Any, **kwargs: Any) -> set[str]:
        try:
            prepare(*args, **kwargs)
        except InvalidInput as exc:
            return {d["field"] for d in exc.details}
        raise AssertionError("accepted")

    assert invalid({"api_key": "k"}, plugin=True) == {"plugin_id"}
    assert invalid({"api_key": "k"}, plugin="1") == {"plugin_id"}
    assert invalid({"api_key": "k"}, plugin=None) == {"plugin_id"}
    assert invalid(["api_key"]) == {"plugin_config"}
    assert invalid(None) == {"plugin_config.api_key"}
    assert invalid({"api_key": ""}) == {"plugin_config.api_key"}
    assert invalid({"api_key": 5, "rate": True, "verbose": "yes"}) == {
        "plugin_config.api_key",
        "plugin_config.rate",
        "plugin_config.verbose",
    }
    assert invalid({"api_key": "k", "rate": float("inf")}) == {"plugin_config.rate"}

    stored = prepare({"api_key": "first"})
    assert stored["api_key"] != "first"
    assert runtime.secrets.decrypt(stored["api_key"]) == "first"
    # Omitted: kept; null: cleared (and this one is required).
    assert prepare({"rate": 1}, stored)["api_key"] == stored["api_key"]
    assert invalid({"api_key": None}, stored) == {"plugin_config.api_key"}
    with runtime.tx() as session:
        assert public_config(session, plugin_id, stored) == {
            "api_key_set": True,
            "region": "cn-east",
            "verbose": False,
        }
        assert public_config(session, plugin_id, {})["api_key_set"] is False
        assert public_config(session, 999999, stored) == {}
        assert public_config(session, None, stored) == {}
