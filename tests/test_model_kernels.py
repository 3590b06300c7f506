"""The model's vectorised kernels against simple reference loops (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model import histogram as hist
from simulator.model.kernels import NEVER, admit_fifo, fifo_departures, seg_maxacc
from simulator.model.stock import CONFIRMED, SOLD_OUT, StockBook, split_stock


def ref_fifo(queue, arrive, service, tail):
    """Arrival by arrival: admitted iff the L-th last admitted order has left; Lindley."""
    tail = [list(t) for t in tail]
    admitted = np.zeros(len(arrive), bool)
    depart = np.zeros(len(arrive), np.int64)
    for i in range(len(arrive)):
        t = tail[queue[i]]
        if t[0] <= arrive[i]:
            admitted[i] = True
            depart[i] = max(arrive[i], t[-1]) + service[i]
            t.pop(0)
            t.append(depart[i])
    return admitted, depart, np.array(tail, dtype=np.int64)


@st.composite
def queues(draw, max_limit=6):
    n_q = draw(st.integers(1, 4))
    limit = draw(st.integers(1, max_limit))
    n = draw(st.integers(0, 50))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    queue = np.sort(rng.integers(0, n_q, n)).astype(np.int64)
    arrive = np.zeros(n, np.int64)
    for k in range(n_q):
        m = queue == k
        arrive[m] = np.sort(rng.integers(0, draw(st.integers(1, 300)), m.sum()))
    service = rng.integers(1, draw(st.integers(2, 60)), n).astype(np.int64)
    tail = np.where(rng.random((n_q, limit)) < 0.5, NEVER, rng.integers(-30, 60, (n_q, limit)))
    return queue, arrive, service, np.sort(tail, axis=1).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(queues())
def test_admission_limit_equals_the_reference_loop(case):
    queue, arrive, service, tail = case
    admitted, depart, new_tail = admit_fifo(queue, arrive, service, tail)
    ref_adm, ref_dep, ref_tail = ref_fifo(queue, arrive, service, tail)
    assert (admitted == ref_adm).all()
    assert (depart[admitted] == ref_dep[ref_adm]).all()
    assert (new_tail == ref_tail).all()


@settings(max_examples=200, deadline=None)
@given(queues(max_limit=1))
def test_closed_form_departures_equal_lindley(case):
    queue, arrive, service, tail = case
    last = tail[:, -1]
    depart = fifo_departures(queue, arrive, service, last)
    prev = dict(enumerate(last.tolist()))
    for i in range(len(arrive)):  # D_i = max(A_i, D_{i-1}) + S_i per queue
        q = int(queue[i])
        prev[q] = max(int(arrive[i]), prev[q]) + int(service[i])
        assert depart[i] == prev[q]


def test_segmented_running_max_falls_back_without_overflow():
    v = np.array([5, 1, 1 << 61, -(1 << 61), 3, 2], dtype=np.int64)
    seg = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64)
    assert seg_maxacc(v, seg).tolist() == [5, 5, 1 << 61, 1 << 61, 3, 3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), max_size=40),
    st.lists(st.integers(0, 8), min_size=3, max_size=3),
)
def test_stock_take_if_fits_equals_the_sequential_rule(orders, stock):
    """Mixed quantities: each order takes its units iff they still fit, in completion order."""
    book = StockBook(np.array(stock), shards=1, ring_bits=8)
    rows = sorted(((g, i, q) for i, (g, q) in enumerate(orders)))
    group = np.array([g for g, _, _ in rows], dtype=np.int64)
    done = np.array([i for _, i, _ in rows], dtype=np.int64)
    qty = np.array([q for _, _, q in rows], dtype=np.int64)
    ids = np.arange(len(rows), dtype=np.int64)
    outcome, _, _ = book.resolve(group, done, qty, ids, np.zeros(len(rows), bool))
    left = list(stock)
    for (g, _, q), got in zip(rows, outcome, strict=True):
        want = CONFIRMED if q <= left[g] else SOLD_OUT
        left[g] -= q if want == CONFIRMED else 0
        assert got == want
    assert book.left.tolist() == left


def test_stock_split_across_shards_keeps_every_unit():
    parts = split_stock(np.array([10, 3, 0]), 4).reshape(3, 4)
    assert parts.sum(axis=1).tolist() == [10, 3, 0]
    assert parts[0].tolist() == [3, 3, 2, 2]


def test_histogram_percentiles_within_stated_error():
    rng = np.random.default_rng(5)
    x = np.rint(rng.lognormal(np.log(2e6), 1.0, 200_000)).astype(np.int64)
    counts = np.bincount(hist.bucket_of(x), minlength=hist.N_BUCKETS)
    got = hist.percentiles(counts, (50.0, 99.0, 99.9))
    want = np.percentile(x, [50, 99, 99.9], method="inverted_cdf")
    assert np.all(np.abs(got / want - 1) <= hist.RELATIVE_ERROR + 1e-12)
