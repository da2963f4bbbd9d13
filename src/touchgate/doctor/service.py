"""The doctor against a registered touchpoint: read what the suite needs in a
short transaction (``prepare``), then run it with no transaction open."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..delivery.client import HttpResult, get_client
from ..delivery.protocol import batch_size_of
from ..errors import InvalidInput
from ..models.base import utcnow
from ..runtime import Runtime
from ..touchpoints import service as touchpoints
from .schemas import DoctorIn
from .suite import Limits, OptionsApi, Send, Target


def prepare(session: Session, runtime: Runtime, project_id: int, touchpoint_id: int) -> Target:
    """The touchpoint's endpoint, secrets and shape; a plugin touchpoint has no
    endpoint to check (``doctor_http_only``)."""
    tp = touchpoints.get_touchpoint(session, project_id, touchpoint_id)
    if tp.transport != "http" or not tp.url:
        raise InvalidInput(
            "The doctor checks HTTP endpoints; this touchpoint delivers through a plugin "
            "(try the plugin with `touchgate plugin try`).",
            field="transport",
            field_code="doctor_http_only",
        )
    receipt = tp.receipt or {}
    apis = tuple(
        OptionsApi(key=str(p["key"]), name=str(p.get("name") or p["key"]), url=str(enum["url"]))
        for p in tp.template_params or []
        if p.get("type") == "enum"
        and (enum := p.get("enum") or {}).get("source") == "api"
        and enum.get("url")
    )
    return Target(
        url=tp.url,
        token=touchpoints.auth_token(runtime.secrets, tp),
        secrets=tuple(touchpoints.signing_secrets(runtime.secrets, tp, utcnow())),
        batch_size=batch_size_of(tp.batch_size),
        timeout=float(tp.timeout_seconds or 15),
        receipt_mode="async" if receipt.get("mode") == "async" else "sync",
        receipt_url=receipt.get("url") or None,
        options_apis=apis,
        project_id=tp.project_id,
        touchpoint_id=tp.id,
        user_attributes=tuple(tp.user_attributes or []),
        template_params=tuple(dict(p) for p in tp.template_params or []),
    )


def sender(runtime: Runtime) -> Send:
    """Requests go through the process's guarded client (the network guard applies).
    No touchpoint id: the doctor's probe neither waits for nor takes the worker's
    in-flight slots of the touchpoint."""
    client = get_client(runtime)

    async def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpResult:
        return await client.post(url, body, headers, timeout=timeout)

    return send


def limits(body: DoctorIn) -> Limits:
    return Limits(
        samples=body.samples,
        max_probe=body.max_in_flight_probe,
        receipt_poll_seconds=body.receipt_poll_seconds,
        receipt_timeout_seconds=body.receipt_timeout_seconds,
    )
