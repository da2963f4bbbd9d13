"""Request and response shapes of the orders API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class OrderUserOut(BaseModel):
    gid: int
    status: str  # pending | TOU_SUCC | TOU_FAIL
    error_msg: str | None
    attempts: int


class AttemptOut(BaseModel):
    kind: str  # delivery | receipt
    at: datetime
    duration_ms: int
    http_status: int | None
    error: str | None
    response_excerpt: str | None


class OrderSummary(BaseModel):
    order_no: str
    touchpoint_id: int
    campaign_id: int | None
    step_id: str | None
    status: str  # sending | polling | done
    user_count: int
    attempt_count: int
    succeeded: int
    failed: int
    pending: int
    last_error: str | None
    replay_of: str | None
    created_at: datetime


class OrderOut(BaseModel):
    order_no: str
    touchpoint_id: int
    campaign_id: int | None
    step_id: str | None
    run_id: int | None
    status: str
    user_count: int
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    replay_of: str | None
    created_at: datetime
    updated_at: datetime
    succeeded: int
    failed: int
    pending: int
    users: list[OrderUserOut]
    attempts: list[AttemptOut]


class ReplayOut(BaseModel):
    order_no: str
    replay_of: str
    user_count: int
