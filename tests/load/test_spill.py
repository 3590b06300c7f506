"""Per-second histograms spilled to disk: the same figures as kept in memory, bounded memory."""

from __future__ import annotations

import os
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.load.tally import SecondHistograms


def feed(h: SecondHistograms, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for seconds, values in batches:
        h.add(seconds, values)
        h.consolidate()  # as the engine's folds do, batch by batch


batches_st = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 40), st.integers(0, 2**31)),
    min_size=1,
    max_size=40,
)


def make(spec: list[tuple[int, int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for second, n, seed in spec:  # seconds in any order: late values for old seconds too
        rng = np.random.default_rng(seed)
        values = rng.lognormal(14, 1.5, n).astype(np.int64)
        out.append((np.full(n, second, dtype=np.int64), values))
    return out


@settings(max_examples=40, deadline=None)
@given(spec=batches_st, hold=st.integers(1, 5))
def test_spilled_seconds_read_back_exactly(spec: list[tuple[int, int, int]], hold: int) -> None:
    batches = make(spec)
    kept, spilled = SecondHistograms(), SecondHistograms(hold_s=hold)
    feed(kept, batches)
    feed(spilled, batches)
    assert len(spilled.per_second) <= hold + 1
    qs = (0.5, 0.99, 1.0)
    assert spilled.quantiles(62, qs) == kept.quantiles(62, qs)
    a = [(s, i.tolist(), c.tolist()) for s, i, c in kept.seconds()]
    b = [(s, i.tolist(), c.tolist()) for s, i, c in spilled.seconds()]
    assert a == b
    # merged into another (as the parent merges its workers): the same again
    into = SecondHistograms()
    path = spilled.spill_path
    into.merge(pickle.loads(pickle.dumps(spilled)))
    assert [(s, i.tolist(), c.tolist()) for s, i, c in into.seconds()] == a
    if path is not None:
        assert not os.path.exists(path)  # merged: its file is gone


def test_memory_holds_only_recent_seconds_and_the_file_goes_with_it() -> None:
    h = SecondHistograms(hold_s=10)
    for s in range(300):
        h.add(np.full(500, s, dtype=np.int64), np.arange(500, dtype=np.int64) * 1000 + s)
        h.consolidate()
    assert len(h.per_second) <= 11 and h.spill_path is not None
    path = h.spill_path
    assert os.path.getsize(path) > 0
    assert sum(1 for _ in h.seconds()) == 300
    del h
    assert not os.path.exists(path)  # the last holder gone: the file is deleted
