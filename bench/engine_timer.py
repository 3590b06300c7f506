"""Benchmark: the engine's CPU per order by how it waits: sleeping on a timerfd, spinning,
coalescing on answers or in windows.

Five cells: ``adaptive`` (the default: a timerfd sleep only when the wait is long enough for it
to pay on this host, measured at start; a shorter wait with requests in flight is coalesced:
the next answer sends the order, a backstop timerfd 100 µs after its time at the latest),
``window`` (the same, but an answer never sends: the orders due within 100 µs leave together on
the backstop, ``answers_send=False``), ``no-coalesce`` (shorter waits are spun through the loop
whatever is in flight: the default before coalescing), ``timerfd`` (a sleep before every order
however close), ``spin`` (the loop's own timers, spinning the last millisecond).

Between orders the engine sleeps until ``spin_s`` before the next one is due, then yields to
the loop until it is. uvloop's own timers have 1 ms resolution, so with them it must spin the
last millisecond (``fine_timer=False``, the engine before simulator/load/finetimer.py): below ~1,000
orders/s that is the whole core. With a timerfd (the default) it wakes ~20 µs late and spins
50 µs. Same run, same target (nginx on core 0, the engine on core 1), rates round-robin; prints
CPU µs per order (its kernel part), the interprocessor interrupts per order that each core took
(/proc/interrupts' RES and CAL: a wake-up of a halted CPU, a VM exit on a KVM guest), dispatch
lag and latency per cell, and the medians per rate.

With ``--search START`` it finds each cell's max sustained rate instead, by bench/peers.py's
rule (:data:`harness.SEARCH_RULE` from START, ×1.15 a step, ``--reps`` runs a step, passing on
their median: dispatch-lag p99 ≤ 1 ms, every order confirmed, ≥ 99 % answered in time), the
cells' searches taking turns ``--rounds`` times: whether a way of waiting moves the top rate,
and its CPU per order there.

    .venv/bin/python bench/engine_timer.py [--rates 1000,3000,10000,15000,24000] [--seconds 3]
        [--reps 2] [--cells adaptive,window,no-coalesce,timerfd,spin]
    .venv/bin/python bench/engine_timer.py --search 60000 --cells adaptive,window --seconds 5
        --reps 3 [--rounds 2]
"""

from __future__ import annotations

import argparse
import math
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
    "window": {"answers_send": False},
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
    parser.add_argument("--cells", default=",".join(CELLS), help="which cells, commas")
    parser.add_argument("--search", type=float, help="find each cell's max rate from this one")
    parser.add_argument("--rounds", type=int, default=2, help="searches per cell (--search)")
    parser.add_argument("--max-rate", type=float, default=400_000, help="--search stops here")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    names = [name for name in args.cells.split(",") if name]
    unknown = [name for name in names if name not in CELLS]
    if unknown or not names:
        parser.error(f"--cells: unknown {unknown}; choose from {', '.join(CELLS)}")
    cells = {name: CELLS[name] for name in names}
    seconds = min(args.seconds, 10.0)
    if harness.missing("nginx"):
        print(f"skipped: {harness.missing('nginx')}")
        return 0
    if args.search is not None:
        return search(
            args.search, args.max_rate, cells, seconds, args.connections, args.reps, args.rounds
        )
    rows: dict[tuple[float, str], list[tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp, harness.nginx(Path(tmp)) as (_, url):
        for rep in range(args.reps):
            for rate in rates:
                for name, config in cells.items():
                    before, host = harness.interrupts(), harness.host_sample()
                    f = harness.engine_step(url, rate, seconds, args.connections, config=config)
                    after = harness.interrupts()
                    ipi = [(b - a) / f["orders"] for a, b in zip(before, after, strict=True)]
                    ipi = ipi if len(ipi) > 1 else [math.nan, math.nan]  # no such counts here
                    load = harness.host_since(host)
                    kernel = f["sys_s"] / f["orders"] * 1e6
                    rows.setdefault((rate, name), []).append(
                        (f["cpu_us_per_order"], kernel, ipi[harness.TARGET_CORE],
                         ipi[harness.GENERATOR_CORE], f["lag_p99_ms"] * 1e3,
                         f["answered_in_time"] / f["orders"])
                    )  # fmt: skip
                    print(
                        f"rep {rep + 1} {rate:>8,.0f}/s {name:<11} "
                        f"min sleep {f['min_sleep_us']:5.1f} µs  "
                        f"CPU {f['cpu_us_per_order']:7.2f} µs/order ({kernel:5.2f} kernel)  "
                        f"IPIs/order target {ipi[harness.TARGET_CORE]:.3f} "
                        f"engine {ipi[harness.GENERATOR_CORE]:.3f}  "
                        f"lag p50/p99 {f['lag_p50_ms'] * 1e3:5.1f}/"
                        f"{f['lag_p99_ms'] * 1e3:6.1f} µs  "
                        f"latency p50/p99 {f['latency_p50_ms'] * 1e3:6.1f}/"
                        f"{f['latency_p99_ms'] * 1e3:7.1f} µs  "
                        f"answered in time {f['answered_in_time'] / f['orders']:.1%}  "
                        f"load {load['load1']:.2f} steal {load['steal_share']:.1%}",
                        flush=True,
                    )
    medians = {
        key: [statistics.median(c) for c in zip(*got, strict=True)] for key, got in rows.items()
    }
    print("\nmedians:")
    for (rate, name), m in medians.items():
        print(f"{rate:>8,.0f}/s {name:<11} CPU {m[0]:7.2f} µs/order ({m[1]:5.2f} kernel)  "
              f"IPIs/order target {m[2]:.3f} engine {m[3]:.3f}  lag p99 {m[4]:6.1f} µs  "
              f"answered in time {m[5]:.1%}")  # fmt: skip
    if not all(name in cells for name in ("adaptive", "no-coalesce", "timerfd", "spin")):
        return 0
    print()
    for rate in rates:
        adaptive = medians[rate, "adaptive"][0]
        plain = medians[rate, "no-coalesce"][0]
        fine = medians[rate, "timerfd"][0]
        spin = medians[rate, "spin"][0]
        print(
            f"{rate:>8,.0f}/s  CPU per order: adaptive {adaptive:7.1f} µs, no coalescing "
            f"{plain:7.1f} µs, timerfd always {fine:7.1f} µs, spin {spin:7.1f} µs → "
            f"{spin / adaptive:.1f}× less than spinning, coalescing {plain / adaptive:.2f}× less"
        )
    return 0


def search(
    start: float, top: float, cells: dict[str, dict[str, object]], seconds: float,
    connections: int, reps: int, rounds: int,
) -> int:  # fmt: skip
    """Each cell's max sustained rate against nginx, the cells taking turns; the medians."""
    print(harness.SEARCH_RULE.format(factor=1.15, reps=reps))
    found: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cells}
    with tempfile.TemporaryDirectory() as tmp, harness.nginx(Path(tmp)) as (_, url):
        for turn in range(rounds):
            for name, config in cells.items():
                print(f"round {turn + 1}, {name}:", flush=True)
                best = harness.engine_max_rate(
                    url, start, seconds, connections, factor=1.15, max_rate_per_s=top,
                    reps=reps, config=config, report=lambda line: print(line, flush=True),
                )  # fmt: skip
                if best is None:
                    print(f"  {name}: no step passed", flush=True)
                    continue
                kernel = best["sys_s"] / best["orders"] * 1e6
                found[name].append((best["rate"], best["cpu_us_per_order"], kernel))
    print("\nmax sustained rate per cell (each search's best step), medians:")
    for name, got in found.items():
        if not got:
            print(f"{name:<11} no search passed a step")
            continue
        rates = ", ".join(f"{r:,.0f}" for r, _, _ in got)
        m = [statistics.median(c) for c in zip(*got, strict=True)]
        print(f"{name:<11} {m[0]:>9,.0f}/s (searches: {rates})  CPU {m[1]:.2f} µs/order "
              f"({m[2]:.2f} kernel) at it")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
