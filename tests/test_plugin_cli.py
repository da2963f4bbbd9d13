"""``touchgate plugin upload|list|check|try`` as a user runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from test_plugins import make_zip, sample_zip
from touchgate.runtime import Runtime

TOUCHGATE = str(Path(sys.executable).with_name("touchgate"))


def run(args: list[str], runtime: Runtime | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHGATE_")}
    if runtime is not None:
        settings = runtime.settings
        env["TOUCHGATE_DATABASE_URL"] = settings.database_url
        env["TOUCHGATE_SECRET_KEY"] = settings.secret_key or ""
        env["TOUCHGATE_PLUGIN_DIR"] = str(settings.plugin_path)
    return subprocess.run(
        [TOUCHGATE, "plugin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upload_and_list(
    client: httpx.Client, project: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    package = tmp_path / "sms.zip"
    package.write_bytes(sample_zip(tmp_path))
    pid = str(project["id"])
    done = run(["upload", str(package), "--project", pid], runtime)
    assert done.returncode == 0, done.stderr
    plugin_id = int(done.stdout.strip())
    listed = client.get(f"/projects/{pid}/plugins").json()["items"]
    assert [p["id"] for p in listed] == [plugin_id]
    again = run(["upload", str(package), "--project", pid], runtime)
    assert again.returncode == 1 and "already uploaded" in again.stderr
    shown = run(["list", "--project", pid], runtime)
    assert shown.returncode == 0 and "sms-gateway" in shown.stdout
    missing = run(["upload", str(package), "--project", "999999"], runtime)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_check_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"touchgate-plugin.toml": 'name = "x y"\n', "../up.py": "x = 1"}))
    done = run(["check", str(bad)])
    assert done.returncode == 1
    for text in ("'..' is not allowed", "manifest.name", "manifest.version", "manifest.entry"):
        assert text in done.stderr
    good = tmp_path / "good.zip"
    good.write_bytes(sample_zip(tmp_path))
    done = run(["check", str(good)])
    assert done.returncode == 0, done.stderr
    assert "passes every upload check" in done.stderr


def test_try_runs_the_plugin_in_the_sandbox(tmp_path: Path) -> None:
    package = tmp_path / "sms.zip"
    package.write_bytes(sample_zip(tmp_path))
    users = [
        {"gid": 1, "dynamicData": {"phone": "13012345678"}, "temData": {"title": "Hi"}},
        {"gid": 2, "dynamicData": {}, "temData": {}},
    ]
    done = run(
        ["try", str(package), "--config", '{"api_key": "sk-1"}', "--users", json.dumps(users)]
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"gid": 1, "status": "TOU_SUCC", "error_msg": ""},
        {"gid": 2, "status": "TOU_FAIL", "error_msg": "no valid phone"},
    ]
    busy = run(["try", str(package), "--config", '{"api_key": "sk-busy"}'])
    assert busy.returncode == 3 and "the gateway is busy" in busy.stderr
    wrong = run(["try", str(package), "--config", '{"api_key": "nope"}'])
    assert wrong.returncode == 1 and "must start with 'sk-'" in wrong.stderr
