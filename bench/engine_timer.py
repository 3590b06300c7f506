"""Benchmark: the engine's CPU per order below saturation, sleeping on a timerfd vs spinning.

Four cells: ``adaptive`` (the default: a timerfd sleep only when the wait is long enough for it
to pay on this host, measured at start; a shorter wait with requests in flight is coalesced:
the next answer sends the order, a backstop timerfd 100 µs after its time at the latest),
``no-coalesce`` (the same, but shorter waits are spun through the loop whatever is in flight:
the default before coalescing), ``timerfd`` (a sleep before every order however close),
``spin`` (the loop's own timers, spinning the last millisecond).

Between orders the engine sleeps until ``spin_s`` before the next one is due, then yields to
the loop until it is. uvloop's own timers have 1 ms resolution, so with them it must spin the
last millisecond (``fine_timer=False``, the engine before simulator/load/finetimer.py): below ~1,000
orders/s that is the whole core. With a timerfd (the default) it wakes ~20 µs late and spins
50 µs. Same run, same target (nginx on core 0, the engine on core 1), rates round-robin; prints
CPU µs per order, dispatch lag and latency per cell and the CPU ratio spin/timerfd per rate.

    .venv/bin/python bench/engine_timer.py [--rates 1000,3000,10000,15000,24000] [--seconds 3]
        [--reps 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import harness

#: the default (a timerfd sleep only where it pays, per the host's measured wake-up cost), a
#: timerfd sleep before every order however close (the engine before the adaptive rule), and
#: spinning the last millisecond on the loop's own timers
CELLS = {
    "adaptive": {},
    "no-coalesce": {"coalesce_s": None},
    "timerfd": {"min_sleep_s": 0.0, "coalesce_s": None},
    "spin": {"fine_timer": False},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="1000,3000,10000,15000,24000", help="orders/s, commas")
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell (≤ 10)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    seconds = min(args.seconds, 10.0)
    if harness.missing("nginx"):
        print(f"skipped: {harness.missing('nginx')}")
        return 0
    cpu: dict[tuple[float, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, harness.nginx(Path(tmp)) as (_, url):
        for rep in range(args.reps):
            for rate in rates:
                for name, config in CELLS.items():
                    f = harness.engine_step(url, rate, seconds, args.connections, config=config)
                    cpu.setdefault((rate, name), []).append(f["cpu_us_per_order"])
                    print(
                        f"rep {rep + 1} {rate:>8,.0f}/s {name:<11} "
                        f"min sleep {f['min_sleep_us']:5.1f} µs  "
                        f"CPU {f['cpu_us_per_order']:7.1f} µs/order  "
                        f"lag p50/p99 {f['lag_p50_ms'] * 1e3:5.1f}/"
                        f"{f['lag_p99_ms'] * 1e3:6.1f} µs  "
                        f"latency p50/p99 {f['latency_p50_ms'] * 1e3:6.1f}/"
                        f"{f['latency_p99_ms'] * 1e3:7.1f} µs",
                        flush=True,
                    )
    print()
    for rate in rates:
        adaptive = statistics.median(cpu[rate, "adaptive"])
        plain = statistics.median(cpu[rate, "no-coalesce"])
        fine = statistics.median(cpu[rate, "timerfd"])
        spin = statistics.median(cpu[rate, "spin"])
        print(
            f"{rate:>8,.0f}/s  CPU per order: adaptive {adaptive:7.1f} µs, no coalescing "
            f"{plain:7.1f} µs, timerfd always {fine:7.1f} µs, spin {spin:7.1f} µs → "
            f"{spin / adaptive:.1f}× less than spinning, coalescing {plain / adaptive:.2f}× less"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
