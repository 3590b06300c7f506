"""The model's vectorised kernels against simple reference loops (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import histogram as hist
from simulator.model.kernels import (
    NEVER,
    admit_fifo,
    fifo_departures,
    lex_order,
    seg_maxacc,
    shared_fifo,
)
from simulator.model.stock import CONFIRMED, SOLD_OUT, StockBook, split_stock, sum_by


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


@pytest.mark.parametrize("queues", [3, 40])
def test_closed_form_departures_long_and_short_segments(queues):
    """Segments long enough for a running maximum each (3 queues, ~2,000 rows each) and short
    ones (one running maximum over offset segments) equal the Lindley loop; with ``queue``
    None the caller gives each segment's previous departure."""
    from simulator.model.kernels import _LONG_SEGMENTS

    rng = np.random.default_rng(queues)
    n = 6000
    queue = np.sort(rng.integers(0, queues, n)).astype(np.int64)
    arrive = np.zeros(n, np.int64)
    for k in range(queues):
        m = queue == k
        arrive[m] = np.sort(rng.integers(0, 300 * n, m.sum()))
    service = rng.integers(1, 600, n).astype(np.int64)
    last = rng.integers(-50, 5000, queues).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(queue[1:] != queue[:-1]) + 1))
    assert (n >= _LONG_SEGMENTS * len(starts)) == (queues == 3)
    depart = fifo_departures(queue, arrive, service, last)
    by_segment = fifo_departures(None, arrive, service, last[queue[starts]], (starts,))
    prev = dict(enumerate(last.tolist()))
    want = np.empty(n, np.int64)
    for i in range(n):  # D_i = max(A_i, D_{i-1}) + S_i per queue
        q = int(queue[i])
        prev[q] = want[i] = max(int(arrive[i]), prev[q]) + int(service[i])
    assert (depart == want).all() and (by_segment == want).all()


def ref_shared(queue, arrive, service, servers, limit, free, in_system):
    """c servers, one FIFO queue each, arrival by arrival: throttled iff ``limit`` orders are in
    the system; otherwise served by the server free earliest, from max(arrival, its free time).
    ``free[q]``: the servers' free times; ``in_system[q]``: departures of admitted orders."""
    free = {q: list(v) for q, v in free.items()}
    in_system = {q: list(v) for q, v in in_system.items()}
    admitted = np.zeros(len(arrive), bool)
    depart = np.zeros(len(arrive), np.int64)
    for i in range(len(arrive)):
        q, a = int(queue[i]), int(arrive[i])
        if limit and sum(d > a for d in in_system[q]) >= limit:
            continue
        k = min(range(servers), key=lambda j: free[q][j])
        d = max(a, free[q][k]) + int(service[i])
        free[q][k] = d
        in_system[q].append(d)
        admitted[i], depart[i] = True, d
    return admitted, depart


@st.composite
def shared_queues(draw):
    servers = draw(st.integers(1, 5))
    limit = draw(st.sampled_from([0, 0, 1, 2, 3, 5, 8]))
    return servers, limit, draw(queues(max_limit=1))[:3]


@settings(max_examples=400, deadline=None)
@given(shared_queues(), st.integers(1, 3))
def test_shared_fifo_equals_earliest_free_server_reference(case, cuts):
    """In one call or cut into several (state carried), shared_fifo is the reference loop."""
    servers, limit, (queue, arrive, service) = case
    n_q = int(queue.max()) + 1 if len(queue) else 1
    width = max(servers, limit)
    state = np.full((n_q, width), NEVER, np.int64)
    admitted = np.zeros(len(arrive), bool)
    depart = np.zeros(len(arrive), np.int64)
    order = np.lexsort((arrive, queue))
    assert (order == np.arange(len(order))).all()
    # cut by time, as the model's windows do: every queue's arrivals before t, then after
    bounds = np.linspace(0, int(arrive.max()) + 1 if len(arrive) else 1, cuts + 1)[1:-1]
    window = np.searchsorted(bounds, arrive, side="right")
    for w in range(cuts):
        rows = np.flatnonzero(window == w)
        adm, dep, state = shared_fifo(
            queue[rows], arrive[rows], service[rows], state, servers, limit
        )
        admitted[rows], depart[rows] = adm, dep
    never = {q: [NEVER] * servers for q in range(n_q)}
    ref_adm, ref_dep = ref_shared(
        queue, arrive, service, servers, limit, never, {q: [] for q in range(n_q)}
    )
    assert (admitted == ref_adm).all()
    assert (depart[admitted] == ref_dep[ref_adm]).all()


def test_shared_fifo_with_one_server_is_lindley_and_the_limit_rule():
    rng = np.random.default_rng(3)
    queue = np.repeat(np.arange(3), 200).astype(np.int64)
    arrive = np.concatenate([np.sort(rng.integers(0, 4000, 200)) for _ in range(3)])
    service = rng.integers(1, 40, 600).astype(np.int64)
    tail = np.full((3, 4), NEVER, np.int64)
    adm, dep, _ = shared_fifo(queue, arrive, service, tail, 1, 4)
    ref_adm, ref_dep, _ = admit_fifo(queue, arrive, service, tail)
    assert (adm == ref_adm).all() and (dep[adm] == ref_dep[adm]).all()
    assert not adm.all()  # the limit did bite


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


@given(st.lists(st.integers(1, 10**12), min_size=1, max_size=300))
def test_histogram_percentiles_stay_within_the_observed_min_and_max(values):
    x = np.array(values, dtype=np.int64)
    counts = np.bincount(hist.bucket_of(x), minlength=hist.N_BUCKETS)
    qs = (0.0, 50.0, 90.0, 99.0, 99.9, 100.0)
    got = hist.percentiles(counts, qs, int(x.min()), int(x.max()))
    assert np.all(got >= x.min()) and np.all(got <= x.max())
    assert np.all(np.diff(got) >= 0)
    want = np.percentile(x, qs, method="inverted_cdf")  # the clamp only moves towards the truth
    assert np.all(np.abs(got / want - 1) <= hist.RELATIVE_ERROR + 1e-12)


def test_histogram_percentiles_of_nothing_stay_nan_when_clamped():
    got = hist.percentiles(np.zeros((2, hist.N_BUCKETS), np.int64), (50.0,), 3, 9)
    assert np.isnan(got).all()


def ref_stock_batches(stock, batches):
    """Batch by batch, rows in completion order: replay an id decided in an earlier batch or
    by its first attempt in this batch, else the first completion of the id decides."""
    left = list(stock)
    decided: dict[int, int] = {}
    zero = [0 if s == 0 else None for s in stock]
    first_out: list[int | None] = [None] * len(stock)
    results = []
    for group, done, qty, order, cand in batches:
        before = dict(decided)
        firsts = {int(o) for o, c in zip(order, cand, strict=True) if not c}
        out = np.zeros(len(group), np.uint8)
        later = []
        for i in np.argsort(done, kind="stable"):
            o, g, q = int(order[i]), int(group[i]), int(qty[i])
            if cand[i] and o in before:
                out[i] = before[o]
            elif cand[i] and (o in firsts or o in decided):
                later.append(i)
            else:
                out[i] = CONFIRMED if q <= left[g] else SOLD_OUT
                if out[i] == CONFIRMED:
                    left[g] -= q
                    if left[g] == 0:
                        zero[g] = int(done[i])
                elif first_out[g] is None:
                    first_out[g] = int(done[i])
                decided[o] = int(out[i])
        for i in later:
            out[i] = decided[int(order[i])]
        results.append(out)
    return results, left, zero, first_out


@pytest.mark.parametrize("seed", range(6))
def test_stock_in_any_row_order_with_replays_and_a_widening_ring(seed):
    """Shuffled batches of first attempts, double clicks and retries; ids that outgrow the
    ring's one-byte, then two-byte slots (ids 2²⁰ and 2⁴⁰ up, 9-bit ring) keep their results."""
    rng = np.random.default_rng(seed)
    n_groups = 3
    stock = rng.integers(0, 40, n_groups).tolist()
    bases = [0, (1 << 20) + 128, (1 << 40) + 256]  # distinct slots mod 2⁹
    ids = [b + np.arange(128, dtype=np.int64) for b in bases]
    group_of = {int(o): int(rng.integers(0, n_groups)) for part in ids for o in part}
    batches, t = [], 0
    for b in range(len(bases)):
        new = ids[b][rng.random(128) < 0.8]
        old = np.concatenate(ids[: b + 1])
        again = rng.choice(old, int(rng.integers(0, 60)))
        order = np.concatenate((new, again))
        cand = np.arange(len(order)) >= len(new)
        done = t + rng.permutation(len(order)).astype(np.int64)
        t += len(order)
        group = np.array([group_of[int(o)] for o in order], dtype=np.int64)
        qty = rng.integers(1, 4, len(order)).astype(np.int64)
        p = rng.permutation(len(order))  # any row order
        batches.append((group[p], done[p], qty[p], order[p], cand[p]))
    book = StockBook(np.array(stock), shards=1, ring_bits=9)
    got = [book.resolve(g, d, q, o, c)[0] for g, d, q, o, c in batches]
    want, left, zero, first_out = ref_stock_batches(stock, batches)
    for g, w in zip(got, want, strict=True):
        assert g.tolist() == w.tolist()
    assert book.ring.dtype == np.int64
    assert book.left.tolist() == left
    never = np.iinfo(np.int64).max
    assert book.zero_ns.tolist() == [never if z is None else z for z in zero]
    assert book.first_sold_out_ns.tolist() == [never if f is None else f for f in first_out]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 300),
    st.lists(st.sampled_from([1, 7, 1000, 1 << 30, 1 << 40, 1 << 62]), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_lex_order_is_lexsorts_order(n, spans, seed):
    """Packed SIMD sorts, a pass per 63 bits, give lexsort's stable order for any spans."""
    rng = np.random.default_rng(seed)
    keys = tuple(rng.integers(-(s // 2), s // 2 + 1, n, dtype=np.int64) for s in spans)
    assert lex_order(keys).tolist() == np.lexsort(keys).tolist()


def test_sum_by_is_an_exact_integer_bincount():
    key = np.array([3, 0, 3, 1, 3], dtype=np.int64)
    w = np.array([1, 2, 3, (1 << 60), 5], dtype=np.int64)
    assert sum_by(key, w, 5).tolist() == [2, 1 << 60, 0, 9, 0]  # exact beyond 2⁵³


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=120),
    st.sampled_from([0, 10**9]),
)
def test_candidates_find_their_first_attempt_in_the_batch(rows, spread):
    """_first_attempts (a table over the ids' range, or binary search where it is wide)
    against a scan: which candidates have a first attempt of their id among the rows, and
    which row that is."""
    from simulator.model.stock import _first_attempts

    order = np.array([i * (spread + 1) for i, _ in rows], dtype=np.int64)
    candidate = np.array([c for _, c in rows], dtype=bool)
    seen: set[int] = set()
    for i, o in enumerate(order.tolist()):  # one first attempt per id: later ones repeat it
        if not candidate[i]:
            candidate[i] = o in seen
            seen.add(o)
    free = np.flatnonzero(candidate)
    if not len(free):
        return
    inb, first = _first_attempts(order, candidate, free)
    firsts = {int(order[j]): j for j in np.flatnonzero(~candidate).tolist()}
    assert inb.tolist() == [int(order[i]) in firsts for i in free]
    assert first.tolist() == [firsts[int(order[i])] for i in free[inb]]


def test_service_times_counted_per_table_entry_fold_into_the_histogram():
    """ModelStats.add_service counts draws per table entry; fold_service gives the histogram,
    sum, minimum and maximum of the service times themselves."""
    from simulator.model.stats import ModelStats

    table = np.array([5, 9, 9, 120, 7_000, 1 << 40], dtype=np.int64)
    draws = [np.array([0, 3, 3, 5], dtype=np.intp), np.array([2, 3], dtype=np.intp)]
    st = ModelStats(1, 1)
    for d in draws:
        st.add_service(d, len(table))
    st.fold_service(table)
    s = table[np.concatenate(draws)]
    assert st.service.tolist() == np.bincount(hist.bucket_of(s), minlength=hist.N_BUCKETS).tolist()
    assert (st.service_sum_ns, st.service_min_ns, st.service_max_ns) == (
        int(s.sum()),
        int(s.min()),
        int(s.max()),
    )
    assert st.service_draws is None


def test_the_held_units_ring_widens_when_buyer_tags_grow():
    """Two bytes a slot while tags fit; a buyer number far beyond the ring widens it, and
    every unit kept before reads back the same."""
    book = StockBook(np.array([100], dtype=np.int64), 1, 4, limits=np.array([5]))
    assert book.held.dtype == np.uint16
    book._hold(np.array([3, 6]), np.array([2, 4]))
    far = 5 + (300 << 4)  # tag 301: past one byte beside the units' byte
    book._hold(np.array([far]), np.array([1]))
    assert book.held.dtype == np.uint32
    assert book._held(np.array([3, 6, far, 5, 3 + (1 << 4)])).tolist() == [2, 4, 1, 0, 0]


def test_schedule_rows_read_at_once_equal_a_read_per_field():
    """from_rows' one transposing copy of the rows' words (in blocks; with room after them;
    from a window's rows in two chunks) against the copy per field it falls back to (rows not
    contiguous), on every field's range."""
    from simulator.model.requests import _BLOCK_ROWS, from_rows
    from simulator.schedule import ORDER_DTYPE

    rng = np.random.default_rng(5)
    rows = np.zeros(2 * _BLOCK_ROWS + 2002, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.sort(rng.integers(0, 1 << 62, len(rows)))
    rows["order"] = rng.integers(0, 1 << 62, len(rows))
    rows["buyer"] = rng.integers(0, 1 << 62, len(rows))
    rows["product"] = rng.integers(0, (1 << 31) - 1, len(rows))
    rows["qty"] = rng.integers(0, 1 << 16, len(rows))
    rows["flags"] = rng.integers(0, 256, len(rows))
    every_other = rows[::2]  # strided: the per-field read
    a = from_rows(every_other.copy(), lambda b, _out: b % 7)
    b = from_rows(every_other, lambda b, _out: b % 7)

    def into(b, out):
        np.remainder(b, 7, out=out)
        return out

    cut = len(every_other) // 3
    parts = [every_other[:cut].copy(), every_other[cut:].copy()]
    c = from_rows(parts, into, spare=100)
    d = from_rows(parts, lambda b, _out: b % 7, spare=100)
    assert c.room is not None and len(c.room[0]) == len(every_other) + 100
    for name in ("t", "order", "buyer", "product", "shard", "qty", "flags"):
        y = getattr(b, name)
        for r in (a, c, d):
            x = getattr(r, name)
            assert x.dtype == y.dtype and x.tolist() == y.tolist(), name
