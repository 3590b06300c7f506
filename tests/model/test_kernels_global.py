"""The global in-flight limit (the storefront's ``max_concurrency``) against an event loop."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model.kernels import NEVER, global_limit


def ref_global(queue, arrive, service, servers, queue_limit, limit):
    """One arrival at a time, in time order: throttled iff ``limit`` orders are in the system
    across all queues (admitted, not departed), or ``queue_limit`` in its own queue; else
    served by its queue's earliest-free server from max(arrival, that server's free time)."""
    free: dict[int, list[int]] = {}
    admitted = np.zeros(len(arrive), bool)
    depart = np.zeros(len(arrive), np.int64)
    for i in range(len(arrive)):
        q, a = int(queue[i]), int(arrive[i])
        ahead = depart[:i][admitted[:i]]
        if (ahead > a).sum() >= limit:
            continue
        if queue_limit and (depart[:i][admitted[:i] & (queue[:i] == q)] > a).sum() >= queue_limit:
            continue
        servers_q = free.setdefault(q, [NEVER] * servers)
        k = int(np.argmin(servers_q))
        depart[i] = max(a, servers_q[k]) + int(service[i])
        servers_q[k] = int(depart[i])
        admitted[i] = True
    return admitted, depart


@st.composite
def cases(draw):
    n_q = draw(st.integers(1, 5))
    n = draw(st.integers(0, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrive = np.sort(rng.integers(0, draw(st.integers(1, 400)), n)).astype(np.int64)
    queue = rng.integers(0, n_q, n).astype(np.int64)
    service = rng.integers(1, draw(st.integers(2, 80)), n).astype(np.int64)
    servers = draw(st.sampled_from([1, 1, 2, 3]))
    queue_limit = draw(st.sampled_from([0, 0, 1, 2, 4]))
    limit = draw(st.integers(1, 8))
    cuts = draw(st.integers(1, 3))
    block = draw(st.sampled_from([1, 3, 16, 256]))
    return n_q, queue, arrive, service, servers, queue_limit, limit, cuts, block


def _state(n_q: int, servers: int, queue_limit: int) -> np.ndarray:
    """The per-queue state the model keeps (sim.py): last departures, or the tail of them."""
    width = max(servers, queue_limit) if servers > 1 else queue_limit
    if width:
        return np.full((n_q, width), NEVER, np.int64)
    return np.full(n_q, NEVER, np.int64)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_global_limit_equals_the_one_event_at_a_time_reference(case):
    """In one call or cut by time into several (state and orders in flight carried)."""
    n_q, queue, arrive, service, servers, queue_limit, limit, cuts, block = case
    state = _state(n_q, servers, queue_limit)
    inflight = np.empty(0, np.int64)
    admitted = np.zeros(len(arrive), bool)
    depart = np.zeros(len(arrive), np.int64)
    bounds = np.linspace(0, int(arrive.max()) + 1 if len(arrive) else 1, cuts + 1)[1:-1]
    window = np.searchsorted(bounds, arrive, side="right")
    for w in range(cuts):
        rows = np.flatnonzero(window == w)
        adm, dep, state, inflight = global_limit(
            queue[rows], arrive[rows], service[rows], state, servers, queue_limit,
            inflight, limit, block,
        )  # fmt: skip
        admitted[rows], depart[rows] = adm, dep
        assert len(inflight) <= limit
    ref_adm, ref_dep = ref_global(queue, arrive, service, servers, queue_limit, limit)
    assert (admitted == ref_adm).all()
    assert (depart[admitted] == ref_dep[ref_adm]).all()


def test_the_limit_binds_across_queues_where_each_queue_alone_would_not():
    """Four queues, each at most 3 deep, behind a limit of 6: the limit sheds, and exactly."""
    rng = np.random.default_rng(18)
    n = 4000
    arrive = np.sort(rng.integers(0, 400_000, n)).astype(np.int64)
    queue = rng.integers(0, 4, n).astype(np.int64)
    service = rng.integers(200, 700, n).astype(np.int64)
    adm, dep, _, inflight = global_limit(
        queue, arrive, service, _state(4, 1, 0), 1, 0, np.empty(0, np.int64), 6
    )
    ref_adm, ref_dep = ref_global(queue, arrive, service, 1, 0, 6)
    assert 0 < (~adm).sum() < n // 2
    assert (adm == ref_adm).all() and (dep[adm] == ref_dep[adm]).all()
    assert len(inflight) <= 6
