"""Touchgate's sample plugin: an SMS channel without a network.

A real plugin would call its provider's SDK in ``send``; this one appends each
message to ``outbox.jsonl`` in its private work directory and decides by a
simple rule: a user needs a ``phone`` attribute (11 digits) to be reached.

Contract (docs/plugins.md): ``open(config)`` once per worker process,
``send(order_no, users)`` per batch, ``query_receipts(order_no)`` for touchpoints
in async receipt mode, ``close()`` at shutdown. Raise an exception named
``RetryableError`` to have the batch retried later; any other exception fails
the batch with its message.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

OUTBOX = "outbox.jsonl"
PHONE = re.compile(r"1\d{10}")


class RetryableError(Exception):
    """The gateway is busy: Touchgate retries the batch on the touchpoint's schedule."""


class Channel:
    def open(self, config: dict[str, Any]) -> None:
        self.api_key = config["api_key"]
        self.region = config.get("region", "cn-east")
        self.sender = config.get("sender", "Touchgate")
        self.max_length = int(config.get("max_length", 70))
        # In async receipt mode a message is PENDING until query_receipts reports it.
        self.async_receipts = bool(config.get("async_receipts", False))
        if not self.api_key.startswith("sk-"):
            raise ValueError("the API key must start with 'sk-'")

    def send(self, order_no: str, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.api_key == "sk-busy":
            raise RetryableError("the gateway is busy")
        results = []
        with open(OUTBOX, "a", encoding="utf-8") as outbox:
            for user in users:
                phone = str((user.get("dynamicData") or {}).get("phone") or "")
                text = self._text(user.get("temData") or {})
                if not PHONE.fullmatch(phone):
                    results.append(
                        {"gid": user["gid"], "status": "TOU_FAIL", "error_msg": "no valid phone"}
                    )
                    continue
                record = {
                    "order_no": order_no,
                    "gid": user["gid"],
                    "to": phone,
                    "region": self.region,
                    "text": text,
                    "at": time.time(),
                }
                outbox.write(json.dumps(record, ensure_ascii=False) + "\n")
                status = "PENDING" if self.async_receipts else "TOU_SUCC"
                results.append({"gid": user["gid"], "status": status, "error_msg": ""})
        return results

    def query_receipts(self, order_no: str) -> list[dict[str, Any]]:
        """Everything written to the outbox for this order counts as delivered.

        (The outbox lives in this worker's private directory; a real plugin asks
        its provider, since a later call may run in a fresh worker.)"""
        if not os.path.exists(OUTBOX):
            return []
        with open(OUTBOX, encoding="utf-8") as outbox:
            records = [json.loads(line) for line in outbox]
        return [
            {"gid": r["gid"], "status": "TOU_SUCC", "error_msg": ""}
            for r in records
            if r["order_no"] == order_no
        ]

    def close(self) -> None:
        pass

    def _text(self, tem_data: dict[str, Any]) -> str:
        title = str(tem_data.get("title", ""))
        content = str(tem_data.get("content", ""))
        text = f"【{self.sender}】{title} {content}".strip()
        return text[: self.max_length]
