"""The work behind ``receiver_fastapi.py`` and ``receiver_flask.py`` — the part to
replace with yours. The framework files only pass requests to this endpoint.

Configured from the environment: ``RECEIVER_TOKEN`` (the touchpoint's auth
token), ``RECEIVER_SECRET`` (its signing secret ``whsec_…``; both, space-separated,
during a rotation) and ``RECEIVER_MODE`` (``sync`` or ``async``).
"""

from __future__ import annotations

import os

from touchgate.receiver import Delivery, Endpoint, Option, OptionsQuery, Status, reached


def deliver(delivery: Delivery) -> list[Status]:
    """Send the SMS / issue the coupon for each user; one status per user
    (``not_reached(gid, reason)`` for a user it could not reach). ``user.synthetic``
    marks touchgate doctor's made-up users: answer them, skip the real work."""
    return [reached(user.gid) for user in delivery.users]


def offer_options(query: OptionsQuery) -> list[Option]:
    """The options of the enum parameter ``query.param_name`` (two levels at most)."""
    return [Option("JUMP_H5", "Open an H5 page")]


def make_endpoint() -> Endpoint:
    return Endpoint.from_environment(os.environ, deliver, options=offer_options)
