"""Numbers of a run from the recorder's arrays (group ``targeted``): percentiles of 10 M samples.

The latency distribution every report shows (``results.distribution_ms``) on 10 million
intended-time latencies: a permutation of 0, 100 ns, 200 ns, …, so every percentile is known
exactly. Quick mode (``FLASHSALE_BENCH_QUICK=1``) uses 1 million.
"""

from __future__ import annotations

import harness
import numpy as np
import pytest

from simulator.results import distribution_ms


@pytest.mark.benchmark(group="targeted")
def test_percentiles_of_10m_samples(benchmark):
    n = harness.sized(10_000_000, 1_000_000)
    step_ns = 100
    values = np.random.default_rng(8).permutation(n).astype(np.int64) * step_ns
    out = benchmark.pedantic(distribution_ms, args=(values,), rounds=harness.sized(5, 1))
    assert out["count"] == n
    for q, key in ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9")):
        exact_ms = q / 100 * (n - 1) * step_ns / 1e6  # linear interpolation between ranks
        assert out[key] == pytest.approx(exact_ms, abs=1e-4), key
    assert out["max"] == pytest.approx((n - 1) * step_ns / 1e6, abs=1e-4)
    assert out["mean"] == pytest.approx((n - 1) * step_ns / 2e6, abs=1e-4)
    harness.record_rate(benchmark, n, "samples_per_s")
