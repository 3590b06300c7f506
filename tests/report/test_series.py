"""The sections a run's report gains: latency spectrum, service time and units per second."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.report.document import Report
from simulator.results import latency_spectrum, sku_units_per_s, timeline

from .synth import Synthetic


def test_spectrum_of_nothing_is_empty() -> None:
    assert latency_spectrum(np.array([], dtype=np.int64)) == []


def test_spectrum_of_one_value() -> None:
    assert latency_spectrum(np.array([2_500_000], dtype=np.int64)) == [[0.0, 2.5], [100.0, 2.5]]


def test_spectrum_levels_and_nearest_rank_values() -> None:
    values = np.arange(1, 1025, dtype=np.int64) * 1_000_000  # 1 … 1024 ms, shuffled below
    np.random.default_rng(1).shuffle(values)
    points = latency_spectrum(values, ticks_per_half=1)
    # levels 0, 50, 75, … , 1 − 2⁻¹⁰ (1/(1 − p) = 1024 = n), then the maximum
    assert [p for p, _ in points] == [round(100 * (1 - 2.0**-k), 6) for k in range(11)] + [100.0]
    # the sample at rank ⌈p·n⌉ (1-based): p = 50 % → 512 ms, 75 % → 768 ms
    assert points[1] == [50.0, 512.0] and points[2] == [75.0, 768.0]
    assert points[0] == [0.0, 1.0] and points[-1] == [100.0, 1024.0]


def test_spectrum_is_monotone_and_bounded_in_size() -> None:
    rng = np.random.default_rng(2)
    values = rng.lognormal(14, 1, 1_000_000).astype(np.int64)
    points = latency_spectrum(values)
    ps, ms = zip(*points, strict=True)
    assert list(ps) == sorted(ps) and list(ms) == sorted(ms)
    assert len(points) <= 5 * 20 + 2
    assert ms[-1] == round(values.max() / 1e6, 4)


def test_spectrum_rejects_bad_ticks() -> None:
    with pytest.raises(ValueError, match="ticks_per_half"):
        latency_spectrum(np.array([1], dtype=np.int64), ticks_per_half=0)


def test_units_per_second_end_at_the_audit_numbers(oversold_run: Synthetic) -> None:
    s = oversold_run
    n = len(s.report["timeline"]["second"])
    units = sku_units_per_s(s.rows, s.rec, s.skus, n)
    assert set(units) == set(s.skus)
    for sku in s.skus:
        assert len(units[sku]) == n
        assert sum(units[sku]) == s.report["audit"]["skus"][sku]["client_units"]


def test_sell_out_second_from_units(oversold_run: Synthetic) -> None:
    view = Report.from_json(oversold_run.report)
    units = view.timeline.sku_units if view.timeline else {}
    for s in view.skus:
        assert s.initial is not None and s.sell_out_s is not None
        cum = np.cumsum(units[s.sku])
        first = int(np.argmax(cum >= s.initial))
        assert s.sell_out_s == first + 1  # by the end of the second it happened in


def test_service_per_second(clean_run: Synthetic) -> None:
    rec = clean_run.rec
    n = len(clean_run.report["timeline"]["second"])
    out = timeline(rec, n)
    assert {"service_p50_ms", "service_p99_ms", "service_max_ms"} <= set(out)
    m = rec.n_attempts
    svc = rec.done_ns[:m] - rec.sent_ns[:m]
    sec = rec.sent_ns[:m] // 1_000_000_000
    for s in (0, 10):
        assert out["service_max_ms"][s] == round(svc[sec == s].max() / 1e6, 4)
        p50, mx = out["service_p50_ms"][s], out["service_max_ms"][s]
        assert p50 is not None and mx is not None and p50 <= mx
