"""Benchmark: the storefront's memory backend vs a bare aiohttp handler, same run, same method.

Servers run pinned to core 0, wrk (one thread, keep-alive, a unique order id per request) to
core 1; cells run round-robin (rep 1 of every server, then rep 2, …) so drift hits all alike.
Prints requests/s per cell, the median ratio memory/bare (goal ≥ 0.9), the servers' CPU per
request, and the Redis and PostgreSQL backends' orders/s. 127.0.0.1 only; every process it
starts it stops, by PID.

    .venv/bin/python bench/storefront_vs_bare.py [--seconds 5] [--reps 3] [--connections 64]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import harness

STOCK = 10**9  # never sells out during a run

BARE_SERVER = """
import sys
import orjson
import uvloop
from aiohttp import web

stock = {"bench": STOCK}


async def order(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    sku, qty = body["sku"], body["qty"]
    left = stock[sku] - qty
    if left < 0:
        return web.Response(body=b'{"error":"sold out"}', status=409)
    stock[sku] = left
    reply = {"order_id": body["order_id"], "sku": sku, "qty": qty, "remaining": left}
    return web.Response(body=orjson.dumps(reply), status=201, content_type="application/json")


async def main() -> None:
    import asyncio
    app = web.Application()
    app.router.add_post("/orders", order)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    host, port = runner.addresses[0][:2]
    print(f"bare: listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


uvloop.run(main())
""".replace("STOCK", str(STOCK))


def measure(
    proc: subprocess.Popen[str], url: str, workdir: Path, seconds: float, connections: int
) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) for one wrk run (unique order ids, all 201)."""
    cpu0 = harness.cpu_seconds(proc.pid)
    t0 = time.monotonic()
    wrk = harness.run_wrk(url, seconds, connections, workdir)
    cpu = harness.cpu_seconds(proc.pid) - cpu0
    elapsed = time.monotonic() - t0
    if wrk.errors:
        raise SystemExit(f"{wrk.errors} errors or non-2xx answers from {url}")
    return wrk.rps, cpu / (wrk.rps * elapsed) * 1e6


def serve_argv(backend: str, namespace: str) -> list[str]:
    return [
        sys.executable, "-m", "simulator", "serve", "--stock", f"{harness.SKU}={STOCK}",
        "--backend", backend, "--port", "0", "--namespace", namespace,
        "--postgres-dsn", "postgresql://postgres@127.0.0.1:5432/test",
    ]  # fmt: skip


def drop_namespace(namespace: str) -> None:
    """Remove what the Redis and PostgreSQL cells left behind."""
    import asyncio

    async def drop() -> None:
        import asyncpg
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await conn.close()

    asyncio.run(drop())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell (≤ 10)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-stores", action="store_true", help="no Redis/PostgreSQL cells")
    args = parser.parse_args()
    seconds = min(args.seconds, 10.0)
    namespace = f"fs_bench_{uuid.uuid4().hex[:8]}"
    if harness.missing("wrk"):
        print(f"skipped: {harness.missing('wrk')}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bare_py = workdir / "bare.py"
        bare_py.write_text(BARE_SERVER)
        servers = {
            "bare": harness.start_server([sys.executable, str(bare_py)]),
            "memory": harness.start_server(serve_argv("memory", namespace)),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        try:
            for _, url in servers.values():
                harness.run_wrk(url, 1.0, args.connections, workdir)  # warm-up
            for rep in range(args.reps):
                for name, (proc, url) in servers.items():
                    rate, cpu_us = measure(proc, url, workdir, seconds, args.connections)
                    results[name].append((rate, cpu_us))
                    print(f"rep {rep + 1} {name:<8} {rate:>10,.0f} req/s  {cpu_us:6.1f} µs CPU/req")
        finally:
            for proc, _ in servers.values():
                harness.stop(proc)
        bare = [r for r, _ in results["bare"]]
        memory = [r for r, _ in results["memory"]]
        ratios = [m / b for m, b in zip(memory, bare, strict=True)]
        print(
            f"\nbare   median {statistics.median(bare):>10,.0f} req/s "
            f"({min(bare):,.0f}–{max(bare):,.0f})"
        )
        print(
            f"memory median {statistics.median(memory):>10,.0f} req/s "
            f"({min(memory):,.0f}–{max(memory):,.0f})"
        )
        print(
            f"ratio memory/bare: median {statistics.median(ratios):.3f} "
            f"(per rep: {', '.join(f'{r:.3f}' for r in ratios)}); goal ≥ 0.9"
        )
        if args.skip_stores:
            return 0
        print()
        try:
            for backend in ("redis", "postgres"):
                proc, url = harness.start_server(serve_argv(backend, namespace))
                try:
                    harness.run_wrk(url, 1.0, args.connections, workdir)
                    rate, cpu_us = measure(proc, url, workdir, seconds, args.connections)
                finally:
                    harness.stop(proc)
                print(f"{backend:<8} {rate:>10,.0f} orders/s  {cpu_us:6.1f} µs server CPU/order")
        finally:
            drop_namespace(namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
