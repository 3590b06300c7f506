"""The retry rule (simulator/retry.py): delays for given draws, scalar and array alike, and the
capacity a recorder needs; the callers (engine, Locust users, model) all use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.retry import Retry

R = Retry(share=1.0, max_attempts=4, backoff_s=0.2, backoff_factor=2.0, jitter=0.5)


@pytest.mark.parametrize(
    ("retry", "k", "u", "delay_ns"),
    [
        (R, 1, 0.5, 200_000_000),  # the middle draw: no jitter
        (R, 1, 0.0, 100_000_000),  # the lowest draw: 1 − jitter
        (R, 2, 0.5, 400_000_000),  # doubled per retry
        (R, 3, 0.75, 1_000_000_000),  # 0.8 s × 1.25
        (Retry(backoff_s=0.01, backoff_factor=1.0, jitter=0.0), 3, 0.9, 10_000_000),
        (Retry(backoff_s=0.0, jitter=1.0), 2, 0.3, 0),
        (Retry(backoff_s=1e-9, backoff_factor=1.0, jitter=0.0), 1, 0.1, 1),
    ],
)
def test_delay_of_retry_k_for_a_draw(retry: Retry, k: int, u: float, delay_ns: int) -> None:
    assert retry.delay_ns(k, u) == delay_ns
    assert retry.delay_ns(np.array([k]), np.array([u])).tolist() == [delay_ns]
    assert math.isclose(retry.delay_s(k, u), delay_ns / 1e9, abs_tol=1e-12)


@pytest.mark.parametrize("k", [0, -1])
def test_retry_numbers_start_at_one(k: int) -> None:
    with pytest.raises(ValueError, match="retry number must be ≥ 1"):
        R.delay_s(k, 0.5)
    with pytest.raises(ValueError, match="retry number must be ≥ 1"):
        R.delay_ns(np.array([1, k]), np.array([0.5, 0.5]))


@pytest.mark.parametrize(
    ("retry", "retries", "capacity_of_10", "shortest_s", "longest_total_s"),
    [
        (R, 3, 30, 0.1, 0.3 + 0.6 + 1.2),
        (Retry(share=0.0), 0, 0, 0.0, 0.0),  # nobody retries
        (Retry(share=1.0, max_attempts=1), 0, 0, 0.0, 0.0),  # one attempt: no retry
        (Retry(share=0.3, max_attempts=2, backoff_s=0.05, jitter=0.0), 1, 10, 0.05, 0.05),
        # a factor below one: later retries are the shortest
        (
            Retry(share=1.0, max_attempts=3, backoff_s=1.0, backoff_factor=0.5, jitter=0.0),
            2,
            20,
            0.5,
            1.5,
        ),
    ],
)
def test_capacity_and_bounds(
    retry: Retry, retries: int, capacity_of_10: int, shortest_s: float, longest_total_s: float
) -> None:
    assert retry.retries() == retries
    assert retry.capacity(10) == capacity_of_10
    assert math.isclose(retry.shortest_s(), shortest_s)
    assert math.isclose(retry.longest_total_s(), longest_total_s)


retries = st.builds(
    Retry,
    share=st.just(1.0),
    max_attempts=st.integers(1, 12),
    backoff_s=st.floats(0.0, 30.0),
    backoff_factor=st.floats(1.0, 4.0),
    jitter=st.floats(0.0, 1.0),
)
draws = st.floats(0.0, 1.0, exclude_max=True)


@given(retries, st.integers(1, 12), draws)
def test_delay_stays_within_the_jitter_band(retry: Retry, k: int, u: float) -> None:
    base = retry.backoff_s * retry.backoff_factor ** (k - 1)
    d = retry.delay_s(k, u)
    assert base * (1 - retry.jitter) * (1 - 1e-12) <= d <= base * (1 + retry.jitter) * (1 + 1e-12)
    assert retry.delay_ns(k, u) >= 0


@given(retries, st.integers(1, 11), draws)
def test_delay_grows_with_k_for_a_fixed_draw(retry: Retry, k: int, u: float) -> None:
    assert retry.delay_s(k, u) <= retry.delay_s(k + 1, u)
    assert retry.delay_ns(k, u) <= retry.delay_ns(k + 1, u)


@given(retries, st.lists(st.tuples(st.integers(1, 12), draws), min_size=1, max_size=40))
def test_arrays_give_the_scalar_delays_element_for_element(
    retry: Retry, pairs: list[tuple[int, float]]
) -> None:
    k = np.array([p[0] for p in pairs], dtype=np.int64)
    u = np.array([p[1] for p in pairs])
    assert retry.delay_s(k, u).tolist() == [retry.delay_s(a, b) for a, b in pairs]
    assert retry.delay_ns(k, u).tolist() == [retry.delay_ns(a, b) for a, b in pairs]
    assert retry.delay_ns(k.astype(np.uint8), u).tolist() == retry.delay_ns(k, u).tolist()


@given(retries)
def test_the_shortest_and_longest_bound_every_delay(retry: Retry) -> None:
    n = retry.retries()
    if n == 0:
        return
    k = np.repeat(np.arange(1, n + 1), 3)
    u = np.tile([0.0, 0.5, 1 - 2**-53], n)
    d = retry.delay_s(k, u)
    assert d.min() >= retry.shortest_s() * (1 - 1e-12)
    assert d.reshape(n, 3).max(axis=1).sum() <= retry.longest_total_s() * (1 + 1e-12)
