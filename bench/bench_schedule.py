"""Schedule generation speed (orders generated per second, one core) and bounded memory.

Goal (issue 2): ≥ 20 million orders/s per core; a 100-million-order stream in chunks with peak
memory under 256 MB. Run: ``make bench`` or
``.venv/bin/python -m pytest bench/bench_schedule.py --benchmark-only``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator.scenario import load_scenario
from simulator.schedule import build_schedule

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _count(sched) -> int:
    return sum(len(c) for c in sched.chunks(1 << 20))


@pytest.mark.benchmark(group="frequent")
def test_sample_the_peak_second(benchmark):
    """Arrival times and products of one block: the second of the 583,000 orders/s peak."""
    sched = build_schedule(load_scenario(SCENARIOS / "singles-day-peak.toml"))

    def peak_block() -> int:
        t_ns, _products, _ = sched._immigrants(sched._rng(60), 60)
        return len(t_ns)

    n = benchmark.pedantic(peak_block, rounds=5, iterations=1, warmup_rounds=1)
    assert 560_000 < n < 600_000  # ∫ over [60 s, 61 s) of the curve ≈ 579,000
    benchmark.extra_info["orders_per_s"] = round(n / benchmark.stats.stats.median)


@pytest.mark.benchmark(group="targeted")
@pytest.mark.parametrize(
    ("scenario", "duration_s"),
    [("singles-day-peak.toml", 60.0), ("manggis-launch.toml", 600.0), ("durian-1111.toml", None)],
)
def test_schedule_throughput(benchmark, scenario, duration_s):
    sched = build_schedule(load_scenario(SCENARIOS / scenario), duration_s)
    expected = sched.expected_orders()
    n = benchmark.pedantic(_count, args=(sched,), rounds=3, iterations=1, warmup_rounds=1)
    assert abs(n - expected) < 6 * np.sqrt(expected) + 0.01 * expected
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info["orders"] = n
    benchmark.extra_info["orders_per_s"] = round(rate)
    print(f"\n{scenario}: {n:,} orders, {rate / 1e6:.1f} M orders/s (median of 3)")


MEMORY_PROBE = """
import resource, sys
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
sched = build_schedule(load_scenario(sys.argv[1]))
n = 0
for chunk in sched.chunks(1 << 20):
    n += len(chunk)
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.benchmark(group="targeted")
def test_hundred_million_orders_in_bounded_memory(benchmark):
    """singles-day-peak at scale 1.0 (≈108 M orders) streamed; peak RSS of the process."""

    def run() -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(SCENARIOS / "singles-day-peak.toml")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])

    n, peak_rss = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["orders"] = n
    benchmark.extra_info["peak_rss_mb"] = round(peak_rss / 2**20, 1)
    print(f"\n{n:,} orders, peak RSS {peak_rss / 2**20:.0f} MB")
    assert n > 100_000_000
    assert peak_rss < 256 * 2**20
