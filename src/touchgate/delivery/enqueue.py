"""Enqueueing: users grouped into orders whose request bodies are frozen once.

``enqueue_delivery`` joins the caller's transaction (a campaign run, the API);
``replay`` re-sends an order's failed users as a new order. An order row is the
only write: its frozen ``payload`` names its users, who stay pending until
settlement writes their results (``settlement.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.orm import Session

from ..datastore.repository import can_read_values, user_attributes, user_values
from ..errors import Conflict, NotFound
from ..models import Touchpoint
from ..models.base import utcnow
from . import protocol
from . import repository as repo
from .orders import get_order

# Users read from the store per query while enqueueing: bounded memory, few round trips.
ENQUEUE_CHUNK = 5000


@dataclass(frozen=True)
class EnqueueResult:
    order_nos: list[str]
    user_count: int


def _chunks(it: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(it)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def enqueue_delivery(
    session: Session,
    *,
    touchpoint: Touchpoint,
    gids: Iterable[int] | None = None,
    users: Iterable[tuple[int, dict[str, Any]]] | None = None,
    tem_data: dict[str, Any],
    campaign_id: int | None = None,
    run_id: int | None = None,
    step_id: str | None = None,
    context: dict[str, Any] | None = None,
    replay_of: str | None = None,
) -> EnqueueResult:
    """Group users into orders of at most the touchpoint's batch size and queue them.

    Give either ``gids`` (attributes are read from the store in chunks; a gid
    that is not in the store is still sent, with ``null`` attributes) or
    ``users`` as ``(gid, attributes)`` pairs. Both are consumed as streams and
    should hold distinct gids (a repeat within one batch is dropped; across
    batches the caller must not repeat a user).
    Each order's ``dataList`` is rendered and encoded once, here: every retry
    resends exactly these bytes under the same ``orderNo``.
    """
    if (gids is None) == (users is None):
        raise ValueError("give exactly one of gids or users")
    batch = protocol.batch_size_of(touchpoint.batch_size)
    chunk_size = batch * max(1, ENQUEUE_CHUNK // batch)
    dynamic_keys = list(touchpoint.user_attributes or [])
    text_keys = protocol.placeholder_keys(touchpoint.template_params or [], tem_data)
    tem = dict(tem_data)
    project_id = touchpoint.project_id
    now = utcnow()
    order_nos: list[str] = []
    total = 0

    def order_row(payload: bytes, users: int) -> dict[str, Any]:
        order_no = protocol.new_order_no()
        order_nos.append(order_no)
        return {
            "order_no": order_no,
            "project_id": project_id,
            "touchpoint_id": touchpoint.id,
            "campaign_id": campaign_id,
            "run_id": run_id,
            "step_id": step_id,
            "state": "sending",
            "payload": payload,
            "user_count": users,
            "attempt_count": 0,
            "next_attempt_at": now,
            "replay_of": replay_of,
            "context": context,
            "created_at": now,
            "updated_at": now,
        }

    if gids is not None and not text_keys and can_read_values(dynamic_keys):
        # The common case (no placeholders): the database takes each user's values
        # out of the stored attributes as JSON text, and each entry is one ``%``.
        template = protocol.entry_template(tem, dynamic_keys)
        nobody = ("null",) * len(dynamic_keys)
        for chunk in _chunks(gids, chunk_size):
            values = user_values(session, project_id, chunk, dynamic_keys) if dynamic_keys else {}
            order_rows: list[dict[str, Any]] = []
            for start in range(0, len(chunk), batch):
                part = list(dict.fromkeys(int(g) for g in chunk[start : start + batch]))
                payload = protocol.render_entries(
                    template, [values.get(g) or (g, *nobody) for g in part]
                )
                order_rows.append(order_row(payload, len(part)))
                total += len(part)
            repo.insert_orders(session, order_rows)
        return EnqueueResult(order_nos=order_nos, user_count=total)

    def pairs() -> Iterator[list[tuple[int, Mapping[str, Any]]]]:
        if users is not None:
            yield from _chunks(users, chunk_size)
            return
        assert gids is not None
        empty: dict[str, Any] = {}
        for chunk in _chunks(gids, chunk_size):
            attrs = user_attributes(session, project_id, chunk)
            yield [(int(g), attrs.get(g, empty)) for g in chunk]

    dumps = orjson.dumps
    for chunk in pairs():
        order_rows = []
        for start in range(0, len(chunk), batch):
            pairs_part = chunk[start : start + batch]
            if len({g for g, _ in pairs_part}) != len(pairs_part):
                # A gid twice in one batch would be one user sent twice under one
                # orderNo (and collide on the per-user result): keep the first.
                unique: dict[int, Mapping[str, Any]] = {}
                for g, a in pairs_part:
                    unique.setdefault(g, a)
                pairs_part = list(unique.items())
            if text_keys:
                entries = [
                    protocol.data_entry(g, a, dynamic_keys, tem, text_keys) for g, a in pairs_part
                ]
            else:
                # temData is the same object for everyone; orjson encodes the
                # whole batch in one C call.
                entries = [
                    {"gid": g, "temData": tem, "dynamicData": {k: a.get(k) for k in dynamic_keys}}
                    for g, a in pairs_part
                ]
            order_rows.append(order_row(dumps(entries), len(pairs_part)))
            total += len(pairs_part)
        # The payload names the order's users: no row per user until it settles.
        repo.insert_orders(session, order_rows)
    return EnqueueResult(order_nos=order_nos, user_count=total)


def replay(session: Session, order_no: str, *, project_id: int | None = None) -> str:
    """Re-send the failed users of an order as a new order; returns its order_no.

    The new order carries exactly the failed users' frozen ``dataList`` entries
    (same values as the first time) under a fresh ``orderNo``.
    """
    order = (
        get_order(session, project_id, order_no)
        if project_id is not None
        else repo.get_order_any(session, order_no)
    )
    if order is None:
        raise NotFound(f"Order {order_no!r} does not exist.")
    failed = set(repo.failed_gids(session, order.id))
    if not failed:
        raise Conflict(
            f"Order {order_no} has no failed users to replay.",
            code="nothing_to_replay",
        )
    entries = [
        e for e in orjson.loads(repo.payload_of(session, order.order_no)) if e.get("gid") in failed
    ]
    new_no = protocol.new_order_no()
    now = utcnow()
    repo.insert_orders(
        session,
        [
            {
                "order_no": new_no,
                "project_id": order.project_id,
                "touchpoint_id": order.touchpoint_id,
                "campaign_id": order.campaign_id,
                "run_id": order.run_id,
                "step_id": order.step_id,
                "state": "sending",
                "payload": protocol.encode_data_list(entries),
                "user_count": len(entries),
                "attempt_count": 0,
                "next_attempt_at": now,
                "replay_of": order.order_no,
                "context": order.context,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    return new_no
