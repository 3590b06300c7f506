"""Recorder links and merging, and the vectorised statistics, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.load.recorder import Recorder, merge
from simulator.outcomes import CONFIRMED, THROTTLED, status_table
from simulator.results import distribution_ms, grouped_quantiles, summarize

from .conftest import constant_rows


def finished(n: int, retries: list[tuple[int, int]]) -> Recorder:
    """n rows all confirmed at intended + 1 ms, except rows with retries (row, count)."""
    rec = Recorder.allocate(np.arange(n, dtype=np.int64) * 1_000_000, 2 * n)
    rec.dispatched_ns[:n] = rec.sent_ns[:n] = rec.intended_ns[:n]
    rec.done_ns[:n] = rec.intended_ns[:n] + 1_000_000
    rec.outcome[:n] = CONFIRMED
    for row, count in retries:
        prev = row
        rec.outcome[row] = THROTTLED
        for k in range(count):
            a = rec.n_attempts
            rec.n_attempts += 1
            rec.next_attempt[prev] = a
            rec.row_of_retry[a - n] = row
            rec.tries[a] = k + 2
            rec.intended_ns[a] = rec.done_ns[prev] + 1_000_000
            rec.dispatched_ns[a] = rec.sent_ns[a] = rec.intended_ns[a]
            rec.done_ns[a] = rec.intended_ns[a] + 1_000_000
            rec.outcome[a] = CONFIRMED if k == count - 1 else THROTTLED
            prev = a
    return rec


def test_at_most_48_bytes_per_order_without_retries() -> None:
    rec = Recorder.allocate(np.zeros(10_000, dtype=np.int64), 0)
    assert rec.nbytes() / 10_000 <= 48


def test_final_attempt_follows_retry_chains() -> None:
    rec = finished(5, [(1, 2), (3, 1)])
    final = rec.final_attempt()
    assert final.tolist() == [0, 6, 2, 7, 4]
    assert (rec.row_outcomes() == CONFIRMED).all()
    assert rec.row_of_attempt().tolist() == [0, 1, 2, 3, 4, 1, 1, 3]


def test_merge_renumbers_links_and_keeps_every_attempt() -> None:
    a, b = finished(3, [(0, 1)]), finished(4, [(2, 2)])
    m = merge([a, b])
    assert m.n_rows == 7 and m.n_attempts == 7 + 3
    assert m.next_attempt[0] == 7  # a's retry comes first among retries
    assert m.next_attempt[3 + 2] == 8 and m.next_attempt[8] == 9
    assert m.row_of_retry.tolist() == [0, 5, 5]
    assert (m.row_outcomes() == CONFIRMED).all()


def test_status_table_maps_unknown_codes_to_error() -> None:
    t = status_table(((201, "confirmed"), (429, "throttled")))
    assert t[201] == CONFIRMED and t[429] == THROTTLED and t[500] == 5 and t[0] == 5


@pytest.mark.parametrize(
    ("values_ms", "p50", "p99", "mx"),
    [
        ([1.0] * 100, 1.0, 1.0, 1.0),
        (list(range(1, 101)), 50.5, 99.01, 100.0),
        ([0.0] * 99 + [1000.0], 0.0, 10.0, 1000.0),
    ],
)
def test_distribution(values_ms: list[float], p50: float, p99: float, mx: float) -> None:
    d = distribution_ms((np.array(values_ms) * 1e6).astype(np.int64))
    assert d["p50"] == pytest.approx(p50) and d["p99"] == pytest.approx(p99)
    assert d["max"] == mx and d["count"] == len(values_ms)


def test_empty_distribution_has_no_numbers() -> None:
    assert distribution_ms(np.empty(0, np.int64))["p99"] is None


def test_grouped_quantiles_per_second() -> None:
    groups = np.array([0, 0, 0, 2, 2], dtype=np.int64)
    values = np.array([3, 1, 2, 10, 20], dtype=np.int64) * 1_000_000
    lo, hi = grouped_quantiles(groups, values, 3, (0.0, 1.0))
    assert lo == [1.0, None, 10.0] and hi == [3.0, None, 20.0]


def test_summary_counts_add_up_and_merging_never_averages_percentiles() -> None:
    rows = constant_rows(200, 1_000_000)
    a = finished(100, [])
    b = finished(100, [])
    b.done_ns[:100] = b.intended_ns[:100] + np.arange(100) * 10_000_000  # slow half
    merged = summarize(rows, merge([a, b]), 1.0)
    assert merged["orders"]["outcomes"]["confirmed"] == 200
    alone_a = summarize(rows[:100], a, 1.0)["latency_ms"]["intended"]["p99"]
    alone_b = summarize(rows[100:], b, 1.0)["latency_ms"]["intended"]["p99"]
    values = np.concatenate([np.full(100, 1_000_000), np.arange(100) * 10_000_000])
    exact = np.percentile(values, 99, method="inverted_cdf") / 1e6  # nearest rank
    assert merged["latency_ms"]["intended"]["p99"] == pytest.approx(exact, rel=1e-3)
    assert merged["latency_ms"]["intended"]["p99"] != pytest.approx((alone_a + alone_b) / 2)
    tl = merged["timeline"]
    assert sum(tl["intended_per_s"]) == 200 and sum(tl["outcomes_per_s"]["confirmed"]) == 200
