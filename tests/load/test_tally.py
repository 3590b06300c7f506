"""Histograms and tallies: percentiles within 0.1 % of exact, merging exact, counts add up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.histogram import LIVE, Histogram, Scale, relative_error
from simulator.load.recorder import merge
from simulator.load.tally import Tally, tally_of_recorder
from simulator.results import PERCENTILES, confirmations, measure_tally, summarize

from .conftest import constant_rows
from .test_recorder import finished

QS = tuple(q for q, _ in PERCENTILES)


def exact(values: np.ndarray, q: float) -> float:
    """Nearest rank: the sample at rank ⌈q/100 · n⌉ (what the histogram approximates)."""
    return float(np.percentile(values, q, method="inverted_cdf"))


def test_the_live_scale_resolves_a_thousandth() -> None:
    assert relative_error(LIVE.sub_bits) <= 0.001
    assert LIVE.mid(LIVE.index(np.array([1_024], dtype=np.int64)))[0] == pytest.approx(1024, 1e-3)


@pytest.mark.parametrize(
    ("sub_bits", "lo", "hi", "message"),
    [(17, 10, 40, "sub_bits"), (9, 40, 10, "exponents"), (9, -1, 10, "exponents")],
)
def test_a_scale_refuses_a_bad_range(sub_bits: int, lo: int, hi: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scale(sub_bits, lo, hi)


def test_percentiles_of_recorded_latencies_are_within_a_thousandth_of_exact() -> None:
    # a recorded-like mix: a lognormal body around 3 ms, a 1 % stall tail near 2 s
    rng = np.random.default_rng(7)
    body = rng.lognormal(np.log(3e6), 0.6, 200_000)
    stall = rng.uniform(1.5e9, 2.5e9, 2_000)
    values = np.concatenate([body, stall]).astype(np.int64)
    h = Histogram.empty()
    for part in np.array_split(values, 7):  # in batches, as the engine folds them
        h.add(part)
    got = h.percentiles(QS)
    for q, v in zip(QS, got, strict=True):
        assert v == pytest.approx(exact(values, q), rel=1e-3), q
    assert h.max_ns == values.max() and h.total == len(values)
    assert h.mean_ns() == pytest.approx(values.mean(), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**11), min_size=1, max_size=300))
def test_percentiles_never_leave_the_observed_range(values: list[int]) -> None:
    v = np.array(values, dtype=np.int64)
    h = Histogram.empty()
    h.add(v)
    got = h.percentiles((0.0, 50.0, 99.0, 99.9, 100.0))
    assert (got >= v.min()).all() and (got <= v.max()).all()


def test_merging_two_halves_gives_the_whole() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(1_000, 10**9, 5_000), rng.integers(10**6, 10**10, 3_000)
    whole, left, right = Histogram.empty(), Histogram.empty(), Histogram.empty()
    whole.add(np.concatenate([a, b]))
    left.add(a)
    right.add(b)
    left.merge(right)
    assert (left.counts == whole.counts).all()
    assert (left.total, left.sum_ns, left.min_ns, left.max_ns) == (
        whole.total, whole.sum_ns, whole.min_ns, whole.max_ns,
    )  # fmt: skip


def test_histograms_of_different_scales_do_not_merge() -> None:
    with pytest.raises(ValueError, match="scales"):
        Histogram.empty().merge(Histogram.empty(Scale(7, 10, 40)))


def test_merged_tallies_report_what_one_tally_of_everything_reports() -> None:
    rows = constant_rows(200, 1_000_000)
    a = finished(100, [(3, 2), (50, 1)])
    b = finished(100, [(7, 1)])
    b.done_ns[:100] = b.intended_ns[:100] + np.arange(100) * 7_000_000
    whole = summarize(rows, merge([a, b]), 1.0)
    t = tally_of_recorder(rows[:100], a)
    t.merge(tally_of_recorder(rows[100:], b))
    parts = measure_tally(t, 1.0).to_json()
    assert parts == whole
    assert parts["orders"]["scheduled"] == 200 and parts["orders"]["retries"] == 4


def test_a_tally_counts_every_order_once_and_confirmed_units_as_the_exact_rule() -> None:
    rows = constant_rows(100, 1_000_000)
    rows["order"][10] = rows["order"][9]  # a double click the server confirmed twice
    rec = finished(100, [(20, 1)])
    t = tally_of_recorder(rows, rec)
    s = measure_tally(t, 1.0)
    assert s.orders.scheduled == sum(s.orders.outcomes.values()) == 100
    assert s.orders.attempts == sum(s.orders.attempt_outcomes.values()) == 101
    assert s.orders.confirmed_units == confirmations(rows, rec).units()


def test_an_empty_tally_reports_nothing_measured() -> None:
    s = measure_tally(Tally(), 1.0)
    assert s.latency["intended"].count == 0 and s.latency["intended"].p99 is None
    assert s.orders.scheduled == 0 and "intended" not in s.spectrum
