"""A fast local touchpoint endpoint for the benchmark and the kill test.

    python bench/receiver.py --port 0 [--delay-ms 5] [--record FILE]

Answers every delivery with ``code 0`` and ``TOU_SUCC`` for each gid, treating
``orderNo`` as the idempotency key (a resent order gets the same answer and is
counted once in ``/stats``). With ``--record`` it appends one line per user it
answered, ``<orderNo> <gid> <status>``, flushed before the answer is sent, so
the file holds everything a killed worker may have been told. Prints
``PORT <n>`` on stdout once listening. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import IO

import orjson
from aiohttp import web


class Receiver:
    def __init__(self, delay_ms: float, record: IO[str] | None) -> None:
        self.delay = delay_ms / 1000.0
        self.record = record
        self.orders: set[str] = set()
        self.requests = 0
        self.users = 0

    async def deliver(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        order_no = doc["orderNo"]
        gids = [e["gid"] for e in doc["dataList"]]
        self.requests += 1
        if order_no not in self.orders:
            self.orders.add(order_no)
            self.users += len(gids)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.record is not None:
            self.record.write("".join(f"{order_no} {g} TOU_SUCC\n" for g in gids))
            self.record.flush()
        body = orjson.dumps(
            {
                "code": 0,
                "message": "",
                "orderNo": order_no,
                "sendStatusList": [{"gid": g, "status": "TOU_SUCC", "errorMsg": ""} for g in gids],
            }
        )
        return web.Response(body=body, content_type="application/json")

    async def stats(self, _: web.Request) -> web.Response:
        body = {"requests": self.requests, "orders": len(self.orders), "users": self.users}
        return web.Response(body=orjson.dumps(body), content_type="application/json")


async def serve(port: int, delay_ms: float, record_path: str | None) -> None:
    record = open(record_path, "a", encoding="utf-8") if record_path else None  # noqa: SIM115
    receiver = Receiver(delay_ms, record)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/touch", receiver.deliver)
    app.router.add_get("/stats", receiver.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if record is not None:
            record.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--record", default=None)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.delay_ms, args.record))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
