"""The floor of this stack: the least CPU a request costs on uvloop + httptools, beside wrk.

A closed-loop client with nothing of the engine's (no schedule, no recording, one prebuilt
request; each answer parsed by httptools sends the next request on its connection) against the
same nginx as wrk, same connections, generator pinned to its core: user and kernel CPU per
request of each, repeated. It bounds what any Python engine on this stack can reach at
saturation, and it separates where the engine's own CPU per order goes beyond it — Python work
(user) and an open loop's kernel work (kernel; an open loop below the target's capacity wakes
an idle target with every write, which a closed loop at saturation never does).

    .venv/bin/python bench/closed_loop_floor.py [--seconds 4] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import harness


def client(url: str, seconds: float, connections: int) -> None:
    """Child: the closed-loop client; prints requests, user s and kernel s."""
    import httptools
    import uvloop

    host, port = url.split("//")[1].rsplit(":", 1)
    body = b'{"order_id":"floor-1","sku":"SKU","qty":1,"user_id":"u1"}'.replace(
        b"SKU", harness.SKU.encode()
    )
    request = (
        f"POST /orders HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    done = [0]
    stop = [False]

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpResponseParser(self)
            self.transport.write(request)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            done[0] += 1
            if not stop[0]:
                self.transport.write(request)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            await loop.create_connection(Conn, host, int(port))
        t0, n0 = os.times(), done[0]
        await asyncio.sleep(seconds)
        stop[0] = True
        t1, n = os.times(), done[0] - n0
        print(n, t1.user - t0.user, t1.system - t0.system)

    uvloop.run(main())


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "client":
        client(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    args = p.parse_args()
    if (why := harness.missing("nginx", "wrk")) is not None:
        print(f"skipped: {why}")
        return 0
    rows: dict[str, list[tuple[float, float, float]]] = {"wrk": [], "uvloop + httptools": []}
    with tempfile.TemporaryDirectory() as d, harness.nginx(Path(d)) as (_, url):
        for _ in range(args.reps):
            fig = harness.run_wrk(url, args.seconds, args.connections, Path(d))
            kernel = fig.sys_us_per_request
            rows["wrk"].append((fig.rps, fig.cpu_us_per_request - kernel, kernel))
            out = subprocess.run(
                harness.pinned(harness.GENERATOR_CORE, [sys.executable, __file__, "client", url,
                                                        str(args.seconds), str(args.connections)]),
                capture_output=True, text=True, check=True, timeout=args.seconds + 60,
            ).stdout.split()  # fmt: skip
            n, user_s, sys_s = int(out[0]), float(out[1]), float(out[2])
            rows["uvloop + httptools"].append((n / args.seconds, user_s / n * 1e6, sys_s / n * 1e6))
            for name, r in rows.items():
                rps, user, kernel = r[-1]
                print(f"{name:<20} {rps:>10,.0f} req/s  user {user:5.2f} µs  "
                      f"kernel {kernel:5.2f} µs per request")  # fmt: skip
    print(f"medians of {args.reps}:")
    for name, r in rows.items():
        rps, user, kernel = (statistics.median(x[i] for x in r) for i in range(3))
        print(f"  {name:<20} {rps:>10,.0f} req/s  user {user:5.2f} + kernel {kernel:5.2f} = "
              f"{user + kernel:5.2f} µs CPU per request")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
