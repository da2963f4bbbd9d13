"""Who still needs a touchpoint: the one place that decides whether it may be disabled.

Other domains (campaigns) know who uses a touchpoint; the touchpoints domain does
not import them. The composition root (``app.create_app``) hands their checks to
the runtime (``Runtime.touchpoint_usage_checks``), and disabling passes them here
explicitly::

    def campaigns_using(session: Session, touchpoint_id: int) -> list[dict[str, Any]]:
        return [{"id": 7, "name": "Birthday coupon", "status": "running"}]

A check returns the campaigns in a blocking state (running, paused, not
started, awaiting publish, in approval) that use the touchpoint, each as
``{id, name, status}``. Disabling asks every check and is refused when any
of them returns something; the refusal lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

UsageCheck = Callable[[Session, int], list[dict[str, Any]]]


def blocking_campaigns(
    session: Session, touchpoint_id: int, checks: Iterable[UsageCheck]
) -> list[dict[str, Any]]:
    """Every blocking campaign any of ``checks`` reports, each once, in report order."""
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
