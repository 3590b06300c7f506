"""Max sustained open-loop rate of the load engine vs wrk (and Locust FastHttpUser) on nginx.

    .venv/bin/python bench/engine_vs_peers.py [--seconds 4] [--connections 64]

nginx (one process, config under /tmp, ``return 201``) is pinned to core 0, every generator to
core 1, all on 127.0.0.1. The engine runs the lean transport with full recording at a constant
open-loop rate, stepping the rate up until a step fails; a step passes when every order was
answered 201, the dispatch-lag p99 is ≤ 1 ms and the answers kept up (≥ 99 % of the orders
answered within the step plus 0.5 s); each step runs three times and passes on the median
(harness.SEARCH_RULE).
wrk (closed loop, 1 thread, the same POST) and Locust FastHttpUser (if installed) run in the
same session. Prints figures and ratios; kills only the processes it started. Installs nothing:
without nginx or wrk it says so and exits 0. nginx, wrk, Locust and the engine child are the
shared ones of ``bench/harness.py``; ``bench/peers.py`` runs the fuller head-to-head.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--start-rate", type=float, default=20000)
    p.add_argument("--max-rate", type=float, default=400_000, help="stop the search here")
    p.add_argument("--no-locust", action="store_true", help="skip the Locust cell")
    args = p.parse_args()
    reason = harness.missing("nginx", "wrk", "taskset")
    if reason:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-nginx-") as tmp:
        workdir = Path(tmp)
        with harness.nginx(workdir) as (_proc, url):
            wrk = harness.run_wrk(url, args.seconds, args.connections, workdir)
            print(f"wrk 1 thread, {args.connections} conns, closed loop: {wrk.rps:,.0f} req/s")
            best = harness.engine_max_rate(
                url, args.start_rate, args.seconds, args.connections, max_rate_per_s=args.max_rate
            )
            locust = None
            if not args.no_locust and harness.locust_missing() is None:
                locust = harness.run_locust(url, args.seconds, args.connections, workdir)
                print(
                    f"Locust FastHttpUser, {args.connections} users, constant(0): "
                    f"{locust.rps:,.0f} req/s"
                )
    sustained = best["rate"] if best else 0.0
    print(f"\nengine max sustained open-loop rate: {sustained:,.0f} orders/s")
    print(f"ratio engine / wrk: {sustained / wrk.rps:.2f}  (goal ≥ 0.5)")
    if locust and locust.rps:
        print(f"ratio engine / Locust FastHttpUser: {sustained / locust.rps:.1f}  (goal ≥ 10)")


if __name__ == "__main__":
    main()
