"""A tiny storefront for the engine tests, run as its own process on loopback.

``python fake_store.py --stock SKU=N ... [--mode M] [--tls CERT KEY]`` prints ``listening on
http://127.0.0.1:PORT`` (``https://`` with ``--tls``)
and serves the storefront contract (POST /orders, GET /inventory, GET /ledger, POST /reset,
GET /healthz). Modes misbehave on purpose:

- ``ok``: atomic stock, idempotent order ids;
- ``oversell``: confirms every order whatever the stock (and counts it sold);
- ``throttle``: answers 429 to the first attempt of every order id, then behaves;
- ``throttle-wait``: as ``throttle``, its 429 saying ``Retry-After: 1``;
- ``chunked``: answers with chunked bodies;
- ``close``: answers with ``Connection: close``;
- ``garbage``: every 10th order gets bytes that are not HTTP; ``reset``: every 10th order's
  connection is reset; ``die``: exits after 50 orders.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import sys

import orjson
from aiohttp import web


def build_app(stock: dict[str, int], mode: str) -> web.Application:
    state = {"orders": 0}
    initial = dict(stock)
    sold = dict.fromkeys(stock, 0)
    ledger: list[list[object]] = []
    decided: dict[str, int] = {}
    seen_throttle: set[str] = set()

    async def orders(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        state["orders"] += 1
        n = state["orders"]
        if mode == "die" and n > 50:
            os._exit(0)
        if mode in ("garbage", "reset") and n % 10 == 0:
            transport = request.transport
            assert transport is not None
            if mode == "garbage":
                transport.write(b"NOT HTTP AT ALL\r\n\r\n")
            else:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                transport.abort()
            await asyncio.sleep(10)
        oid, sku, qty = str(body["order_id"]), body["sku"], int(body["qty"])
        if mode in ("throttle", "throttle-wait") and oid not in seen_throttle:
            seen_throttle.add(oid)
            wait = {"Retry-After": "1"} if mode == "throttle-wait" else None
            return web.json_response({"error": "busy"}, status=429, headers=wait)
        if sku not in stock:
            return web.json_response({"error": "no sku"}, status=422)
        if oid in decided:
            status = decided[oid]
        elif mode == "oversell" or stock[sku] >= qty:
            stock[sku] -= qty
            sold[sku] += qty
            ledger.append([oid, sku, qty, str(body["user_id"])])
            status = decided[oid] = 201
        else:
            status = decided[oid] = 409
        headers = {"Connection": "close"} if mode == "close" else None
        if mode == "chunked":
            resp = web.StreamResponse(status=status)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"status":')
            await resp.write(b'"done"}')
            await resp.write_eof()
            return resp
        return web.json_response({"order_id": oid}, status=status, headers=headers)

    async def inventory(request: web.Request) -> web.Response:
        skus = {}
        for sku in initial:
            units = sum(int(e[2]) for e in ledger if e[1] == sku)  # type: ignore[call-overload]
            count = sum(1 for e in ledger if e[1] == sku)
            skus[sku] = {
                "initial": initial[sku],
                "sold": sold[sku],
                "ledger_units": units,
                "ledger_orders": count,
                "remaining": max(0, initial[sku] - sold[sku]),
            }
        return web.json_response({"backend": f"fake-{mode}", "skus": skus})

    async def get_ledger(request: web.Request) -> web.Response:
        return web.json_response({"orders": ledger})

    async def reset(request: web.Request) -> web.Response:
        stock.update(initial)
        for sku in sold:
            sold[sku] = 0
        ledger.clear()
        decided.clear()
        return web.json_response({"ok": True})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/orders", orders)
    app.router.add_get("/inventory", inventory)
    app.router.add_get("/ledger", get_ledger)
    app.router.add_post("/reset", reset)
    app.router.add_get("/healthz", healthz)
    return app


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stock", nargs="*", default=["a=100"])
    p.add_argument("--mode", default="ok")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve https with these")
    args = p.parse_args()
    stock = {k: int(v) for k, v in (s.split("=") for s in args.stock)}
    runner = web.AppRunner(build_app(stock, args.mode), access_log=None)
    await runner.setup()
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if context else "http"
    print(f"listening on {scheme}://127.0.0.1:{port}", flush=True)
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
