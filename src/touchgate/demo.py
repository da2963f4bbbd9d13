"""The demo project that ``touchgate serve --demo`` loads (idempotent), and the
demo touchpoint "Demo SMS" with the sample receiver (``examples/receiver.py``)
that answers it, so a newcomer sees real, signed deliveries.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .config import Settings
from .models import Attribute, Project, Space, Touchpoint, User
from .runtime import Runtime

DEMO_PROJECT = "Demo"
DEMO_ATTRIBUTES = [
    ("memberId", "Member id", "string", "identity", False),
    ("phone", "Phone", "string", "attribute", False),
    ("name", "Name", "string", "attribute", False),
    ("city", "City", "string", "attribute", False),
    ("level", "Member level", "number", "attribute", False),
    ("birthday", "Birthday", "date", "attribute", False),
    ("idCard", "ID card number", "string", "attribute", True),
]
CITIES = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou"]


def load_demo(runtime: Runtime, base_url: str) -> str:
    with runtime.tx() as session:
        project = session.scalars(select(Project).where(Project.name == DEMO_PROJECT)).first()
        if project is None:
            project = Project(name=DEMO_PROJECT, timezone="Asia/Shanghai")
            session.add(project)
            session.flush()
            for space_name in ("Growth", "Membership"):
                session.add(Space(project_id=project.id, name=space_name))
            for key, name, type_, kind, sensitive in DEMO_ATTRIBUTES:
                session.add(
                    Attribute(
                        project_id=project.id,
                        key=key,
                        name=name,
                        type=type_,
                        kind=kind,
                        sensitive=sensitive,
                    )
                )
            session.add_all(
                User(
                    project_id=project.id,
                    gid=1000 + i,
                    attributes={
                        "memberId": f"M{i:04d}",
                        "phone": f"130{i:08d}",
                        "name": f"Member {i}",
                        "city": CITIES[i % len(CITIES)],
                        "level": i % 5,
                        "birthday": f"199{i % 10}-0{1 + i % 9}-1{i % 10}",
                        "idCard": "310***********1234",
                    },
                )
                for i in range(1, 201)
            )
        project_id = project.id
    return f"Demo project {DEMO_PROJECT!r} is project {project_id} (200 users, 2 spaces)."


# ---------------------------------------------------------------- the demo touchpoint

DEMO_TOUCHPOINT = "Demo SMS"
RECEIVER_CONFIG_FILE = "touchgate.demo-receiver.json"
# Only the receiver's address, and only for the demo: the network guard refuses
# loopback otherwise.
DEMO_NETWORK = "127.0.0.1/32"
DEMO_TEMPLATE_PARAMS: list[dict[str, Any]] = [
    {"key": "title", "name": "Title", "type": "text", "required": True},
    {
        "key": "kind",
        "name": "Message kind",
        "type": "enum",
        "required": False,
        "enum": {
            "source": "manual",
            "options": [
                {"code": "NOTICE", "name": "Notice"},
                {
                    "code": "PROMO",
                    "name": "Promotion",
                    "children": [
                        {"code": "PROMO_COUPON", "name": "Coupon"},
                        {"code": "PROMO_SALE", "name": "Sale"},
                    ],
                },
            ],
        },
    },
]


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with 127.0.0.1 allowed for outgoing requests (demo only)."""
    allowed = settings.allowed_network_list
    if any(ipaddress.ip_address("127.0.0.1") in net for net in allowed):
        return settings
    joined = ",".join([*(str(n) for n in allowed), DEMO_NETWORK])
    return settings.model_copy(update={"allowed_networks": joined})


def receiver_script() -> Path | None:
    """``examples/receiver.py`` of the source checkout, when running from one."""
    path = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"
    return path if path.is_file() else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: list[int]) -> int:
    for port in preferred:
        if 0 < port < 65536 and _port_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port_found: int = s.getsockname()[1]
        return port_found


@dataclass
class DemoReceiver:
    project_id: int
    touchpoint_id: int
    port: int
    config_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _stop_with_parent() -> None:
    """Run in the receiver's process before it starts: have Linux send it SIGTERM when
    the service's process dies, even by SIGKILL, when ``stop()`` never runs."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON readable by the owner only (it holds the secrets)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_demo_touchpoint(
    runtime: Runtime, preferred_port: int, config_dir: Path | None = None
) -> DemoReceiver:
    """Create (or find) "Demo SMS" in the demo project, pointing at a receiver port,
    authorised to the demo spaces, and write what the receiver needs — token,
    signing secret, port — to ``touchgate.demo-receiver.json`` (0600) in the data
    directory. Safe to run at every start."""
    from .touchpoints import service as touchpoints

    config_path = (config_dir or runtime.settings.data_dir) / RECEIVER_CONFIG_FILE
    previous: dict[str, Any] = {}
    if config_path.is_file():
        try:
            previous = json.loads(config_path.read_text())
        except ValueError:
            previous = {}
    port = _pick_port([int(previous.get("port") or 0), preferred_port])
    url = f"http://127.0.0.1:{port}/touch"
    with runtime.tx() as session:
        project = session.scalars(select(Project).where(Project.name == DEMO_PROJECT)).first()
        if project is None:
            raise RuntimeError("load the demo project first (load_demo)")
        tp = session.scalars(
            select(Touchpoint).where(
                Touchpoint.project_id == project.id,
                Touchpoint.name == DEMO_TOUCHPOINT,
                Touchpoint.deleted_at.is_(None),
            )
        ).first()
        if tp is None:
            token = secrets.token_urlsafe(18)
            created = touchpoints.create_touchpoint(
                session,
                runtime.secrets,
                project.id,
                {
                    "name": DEMO_TOUCHPOINT,
                    "type": "notification",
                    "transport": "http",
                    "url": url,
                    "token": token,
                    "batch_size": 100,
                    "timeout_seconds": 10,
                    "description": "The sample receiver (examples/receiver.py) started by "
                    "`touchgate serve --demo`.",
                    "user_attributes": ["memberId", "phone", "name"],
                    "template_params": DEMO_TEMPLATE_PARAMS,
                },
            )
            touchpoint_id = int(created["id"])
            space_ids = list(
                session.scalars(select(Space.id).where(Space.project_id == project.id))
            )
            touchpoints.set_spaces(session, project.id, touchpoint_id, space_ids)
            secret = str(created["signing_secret"])
        else:
            touchpoint_id = tp.id
            token = touchpoints.auth_token(runtime.secrets, tp) or ""
            secret = runtime.secrets.decrypt(tp.signing_secret_encrypted)
            if tp.url != url:
                # The receiver's port changed since the last start; only the demo
                # moves its own touchpoint like this.
                tp.url = url
        project_id = project.id
    _write_private(
        config_path,
        {
            "token": token,
            "secret": secret,
            "port": port,
            "project_id": project_id,
            "touchpoint_id": touchpoint_id,
        },
    )
    return DemoReceiver(project_id, touchpoint_id, port, config_path)


def start_demo_receiver(
    runtime: Runtime,
    preferred_port: int,
    say: Callable[[str], Any] = print,
    config_dir: Path | None = None,
) -> DemoReceiver:
    """``ensure_demo_touchpoint``, then run the sample receiver as a subprocess
    (its one-line-per-delivery log goes to this terminal). Stop it with ``stop()``."""
    demo = ensure_demo_touchpoint(runtime, preferred_port, config_dir)
    script = receiver_script()
    if script is None:
        say(
            f"The sample receiver (examples/receiver.py) is not in this installation; "
            f"run it from a source checkout with --config {demo.config_path} to let "
            f"{DEMO_TOUCHPOINT!r} deliver."
        )
        return demo
    demo.process = subprocess.Popen(
        [sys.executable, str(script), "--config", str(demo.config_path), "--port", str(demo.port)],
        # Its own session: a Ctrl-C in the terminal reaches the service, which stops
        # the receiver itself (no second traceback from the receiver).
        start_new_session=True,
        preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
    )
    say(
        f"Demo touchpoint {DEMO_TOUCHPOINT!r} (id {demo.touchpoint_id}) delivers to the sample "
        f"receiver at {demo.url}/touch; its token and signing secret are in "
        f"{demo.config_path} (owner-only)."
    )
    say(
        f"For the demo only, outgoing requests may reach {DEMO_NETWORK} "
        "(TOUCHGATE_ALLOWED_NETWORKS); the network guard refuses loopback otherwise."
    )
    return demo


def demo_test_send_hint(demo: DemoReceiver, base_url: str, token: str) -> str:
    """A curl command that test-sends to the demo touchpoint."""
    body = json.dumps(
        {
            "users": [
                {
                    "gid": 1001,
                    "attributes": {"memberId": "M0001", "phone": "13000000001", "name": "Member 1"},
                }
            ],
            "params": {"title": "Hello {{name}}", "kind": "PROMO_COUPON"},
        }
    )
    return (
        f'curl -H "Authorization: Bearer {token}" -H "Content-Type: application/json" '
        f"-d '{body}' {base_url}/api/v1/projects/{demo.project_id}/touchpoints/"
        f"{demo.touchpoint_id}/test"
    )
