"""Who still needs a touchpoint: the one place that decides whether it may be disabled.

Other domains (campaigns) register a usage check at import time::

    from touchgate.touchpoints.guard import register_usage_check

    @register_usage_check
    def _campaigns_using(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
        return [{"id": 7, "name": "Birthday coupon", "status": "running"}]

A check returns the campaigns in a blocking state (running, paused, not
started, awaiting publish, in approval) that use the touchpoint, each as
``{id, name, status}``. Disabling asks every check and is refused when any
of them returns something; the refusal lists them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

UsageCheck = Callable[[Session, int], list[dict[str, Any]]]

_lock = threading.Lock()
_checks: list[UsageCheck] = []


def register_usage_check(fn: UsageCheck) -> UsageCheck:
    """Add a check (once, however often a module is imported); usable as a decorator."""
    with _lock:
        if fn not in _checks:
            _checks.append(fn)
    return fn


def unregister_usage_check(fn: UsageCheck) -> None:
    with _lock:
        if fn in _checks:
            _checks.remove(fn)


def blocking_campaigns(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
    """Every blocking campaign any check reports, each once, in report order."""
    with _lock:
        checks = list(_checks)
    found: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for check in checks:
        for campaign in check(session, touchpoint_id):
            ident = campaign.get("id")
            if ident in seen:
                continue
            seen.add(ident)
            found.append(
                {"id": ident, "name": campaign.get("name"), "status": campaign.get("status")}
            )
    return found
