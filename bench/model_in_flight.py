"""What the storefront's limit on orders in flight costs the model (issue 18).

    .venv/bin/python bench/model_in_flight.py [--seconds 10] [--limits 256,32,24] [--reps 3]

singles-day-peak's first S seconds, 64 shards, 0.1 ms service (bench_model.py's setup), with
no limit and with ``max_in_flight`` L: the model's CPU time (median of the repetitions, the
schedule built once) and its ratio to no limit, with the orders each limit throttled. Where
the limit does not bind the rows go through in growing blocks; where it binds the kernel
(:func:`simulator.model.kernels.global_limit`) decides one stretch of about a service time per
round, so the cost grows with the throttled share.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from simulator.model import Model, config_for
from simulator.outcomes import THROTTLED
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def cpu_s(seconds: float, limit: int, reps: int) -> tuple[float, int, int]:
    """(median CPU seconds of a model run, orders, orders throttled)."""
    sc = load_scenario(ROOT / "scenarios" / "singles-day-peak.toml")
    model = Model(
        sc, config_for(sc, shards=64, service_median_ms=0.1, max_in_flight=limit), seconds
    )
    chunks = [c.copy() for c in model.schedule.chunks(1 << 20)]
    model.schedule.chunks = lambda _n: iter(chunks)  # type: ignore[method-assign]
    times, throttled = [], 0
    for _ in range(reps):
        c0 = time.process_time()
        result = model.run()
        times.append(time.process_time() - c0)
        throttled = int(result.stats.outcomes[THROTTLED])
    return statistics.median(times), sum(len(c) for c in chunks), throttled


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--limits", default="256,32,24", help="max_in_flight values, comma-separated")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    base, n, _ = cpu_s(args.seconds, 0, args.reps)
    print(f"singles-day-peak first {args.seconds:g} s: {n:,} orders, 64 shards, 0.1 ms service")
    print(f"no limit          {base:7.3f} s CPU")
    for limit in limits:
        t, _, thr = cpu_s(args.seconds, limit, args.reps)
        print(f"max_in_flight {limit:<4}{t:7.3f} s CPU  {t / base:5.2f}×  throttled {thr:,}")


if __name__ == "__main__":
    main()
