"""The doctor's report and the API's request body."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import receiver

Group = Literal["options", "protocol", "idempotency", "security", "timing", "receipts"]
Outcome = Literal["pass", "warn", "fail", "skip"]


class CheckItem(BaseModel):
    """One finding. ``code`` + ``params`` are the contract with the console
    (``doctor.msg.<code>`` / ``doctor.fix.<code>``); ``message`` and ``fix`` are
    the same in English for scripts and the command line."""

    check: str
    group: Group
    required: bool
    outcome: Outcome
    code: str
    params: dict[str, Any]
    message: str
    fix: str | None = None


class TimingRow(BaseModel):
    batch_size: int
    samples: int
    p50_ms: int
    p95_ms: int
    timeouts: int
    timeout_ms: int


class Synthetic(BaseModel):
    """How the doctor's made-up users are marked, so a staging system can skip them."""

    gid_min: int
    gid_max: int
    marker: str = receiver.DOCTOR_MARKER
    reserved_gid_min: int = receiver.DOCTOR_GIDS.start
    reserved_gid_max: int = receiver.DOCTOR_GIDS.stop - 1


class Counts(BaseModel):
    passed: int
    warnings: int
    failed: int
    skipped: int


class Report(BaseModel):
    """``ok`` is true when every required check passed (warnings allowed)."""

    ok: bool
    url: str
    touchpoint_id: int | None
    batch_size: int
    timeout_seconds: float
    receipt_mode: str
    started_at: datetime
    duration_ms: int
    synthetic: Synthetic
    counts: Counts
    timing: list[TimingRow]
    suggested_in_flight: int | None
    items: list[CheckItem]

    @classmethod
    def build(
        cls,
        *,
        gids: tuple[int, int],
        items: list[CheckItem],
        **fields: Any,
    ) -> Report:
        def count(outcome: Outcome) -> int:
            return sum(1 for i in items if i.outcome == outcome)

        return cls(
            ok=not any(i.outcome == "fail" and i.required for i in items),
            synthetic=Synthetic(gid_min=gids[0], gid_max=gids[1]),
            counts=Counts(
                passed=count("pass"),
                warnings=count("warn"),
                failed=count("fail"),
                skipped=count("skip"),
            ),
            items=items,
            **fields,
        )


class DoctorIn(BaseModel):
    """``POST …/touchpoints/{tid}/doctor``: how long the slow checks may take."""

    model_config = ConfigDict(extra="forbid")

    samples: Annotated[int, Field(ge=1, le=20)] = 3
    max_in_flight_probe: Annotated[int, Field(ge=1, le=16)] = 8
    receipt_poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 2.0
    receipt_timeout_seconds: Annotated[float, Field(ge=1, le=300)] = 30.0
