"""Schedule generation speed (orders generated per second, one core) and bounded memory.

Goal (issue 2): ≥ 20 million orders/s per core; a 100-million-order stream in chunks with peak
memory under 256 MB. Run: ``make bench`` or
``.venv/bin/python -m pytest bench/bench_schedule.py --benchmark-only``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import harness
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

    n = benchmark.pedantic(peak_block, rounds=harness.sized(5, 1), warmup_rounds=1)
    assert 560_000 < n < 600_000  # ∫ over [60 s, 61 s) of the curve ≈ 579,000
    harness.record_rate(benchmark, n, "orders_per_s")


@pytest.mark.benchmark(group="targeted")
@pytest.mark.parametrize(
    ("scenario", "duration_s"),
    [("singles-day-peak.toml", 60.0), ("manggis-launch.toml", 600.0), ("durian-1111.toml", None)],
)
def test_schedule_throughput(benchmark, scenario, duration_s):
    if harness.QUICK:
        duration_s = 2.0 if scenario == "singles-day-peak.toml" else 20.0
    sched = build_schedule(load_scenario(SCENARIOS / scenario), duration_s)
    expected = sched.expected_orders()
    n = benchmark.pedantic(_count, args=(sched,), rounds=harness.sized(5, 1), warmup_rounds=1)
    assert abs(n - expected) < 6 * np.sqrt(expected) + 0.01 * expected
    benchmark.extra_info["orders"] = n
    rate = harness.record_rate(benchmark, n, "orders_per_s")
    if rate:
        print(f"\n{scenario}: {n:,} orders, {rate / 1e6:.1f} M orders/s (median of 5)")


MEMORY_PROBE = """
import sys
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
duration_s = float(sys.argv[2]) if len(sys.argv) > 2 else None
sched = build_schedule(load_scenario(sys.argv[1]), duration_s)
n = 0
for chunk in sched.chunks(1 << 20):
    n += len(chunk)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the peak of
# the pytest process this probe was started from
hwm_kb = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(n, int(hwm_kb) * 1024)
"""


@pytest.mark.benchmark(group="targeted")
def test_hundred_million_orders_in_bounded_memory(benchmark):
    """singles-day-peak at scale 1.0 (≈108 M orders) streamed; peak RSS of the process.

    Quick mode streams its first 2 s only (the same code, a smaller count).
    """
    argv = [sys.executable, "-c", MEMORY_PROBE, str(SCENARIOS / "singles-day-peak.toml")]
    argv += ["2"] if harness.QUICK else []

    def run() -> tuple[int, int]:
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])

    n, peak_rss = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["orders"] = n
    benchmark.extra_info["peak_rss_mb"] = round(peak_rss / 2**20, 1)
    print(f"\n{n:,} orders, peak RSS {peak_rss / 2**20:.0f} MB")
    assert n > harness.sized(100_000_000, 1000)
    assert peak_rss < 256 * 2**20
