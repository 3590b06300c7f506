"""Vectorised queueing kernels: many FIFO servers at once, no Python loop per order.

Every function takes arrivals *grouped by queue* (``queue`` non-decreasing, arrival times
non-decreasing within a queue), with integer nanosecond times, so results are exact and equal
to a simple reference loop bit for bit.

Single FIFO server (Lindley): D_i = max(A_i, D_{i−1}) + S_i, D_{−1} = the queue's last departure
d₀. Unrolled, with C_i = S_0 + … + S_i,

    D_i = C_i + max(d₀, max_{j ≤ i} (A_j − C_{j−1}))          (C_{−1} = 0)

i.e. a cumulative sum plus a running maximum, both done per queue segment in one pass over the
whole array (see :func:`seg_cumsum`, :func:`seg_maxacc`).

Admission limit L (at most L orders in the system at once; an arrival that finds L is throttled):
in a FIFO queue the orders in the system are the most recent admitted ones, so arrival i is
admitted iff the departure of the L-th most recently admitted order is ≤ A_i. The next L
admissions therefore depend only on departures that are already known (the last L admitted).
:func:`admit_fifo` uses this to decide L admissions per queue per vectorised round, exactly:
the (m+j)-th admission (j = 0 … L−1) is the first arrival after the (m+j−1)-th whose time is
≥ tail[j], found with one ``searchsorted``; ``idx_j = j + max(ptr, max_{k ≤ j} (ss_k − k))``.
Rounds per call ≈ admitted orders per queue / L; queues that never reach L take a fast path.
"""

from __future__ import annotations

from bisect import bisect_right, insort

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

#: "no departure yet": far in the past, but safe to subtract from without overflow
NEVER = -(1 << 62)


def rows_of(mask: Bool) -> npt.NDArray[np.intp]:
    """``np.flatnonzero(mask)``, also fast where 3–10 % of the mask is set (the repeat
    buyers' rows of a window, ~9 %).

    NumPy finds the set elements of a mask with at most 10 % set by a ``memchr`` per element,
    about twice as slow there as its branchless loop (93k rows, 9 % set: 126 vs 66 µs,
    2026-12-06 08:52 UTC): such a mask is padded with set elements past its end, which tips
    NumPy into the branchless loop, and their indices dropped.
    """
    n = len(mask)
    k = int(np.count_nonzero(mask))
    if not 0.03 * n < k <= 0.1 * n:
        return np.flatnonzero(mask)
    pad = n // 9 + 1  # (k + pad) / (n + pad) > 10 % for any k ≥ 1
    padded = np.empty(n + pad, dtype=bool)
    padded[:n] = mask
    padded[n:] = True
    return np.flatnonzero(padded)[:k]


def seg_starts(queue: npt.NDArray[np.integer]) -> I64:
    """Segment starts: the first element and every element that differs from the one before."""
    if len(queue) == 0:
        return np.empty(0, np.int64)
    change = np.flatnonzero(queue[1:] != queue[:-1]) + 1
    return np.concatenate(([0], change)).astype(np.int64)


def seg_lengths(starts: I64, n: int) -> I64:
    """Segment lengths from their starts (≥ 1 segment) in ``n`` elements (np.diff and
    np.append cost several times more on the few segments of a window)."""
    lengths = np.empty(len(starts), dtype=np.int64)
    lengths[:-1] = starts[1:] - starts[:-1]
    lengths[-1] = n - starts[-1]
    return lengths


def segments(queue: npt.NDArray[np.integer], ranks: bool = True) -> tuple[I64, I64, I64]:
    """Segment starts, segment number of each element, and each element's rank in its segment
    (empty unless ``ranks``)."""
    n = len(queue)
    if n == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    starts = seg_starts(queue)
    lengths = seg_lengths(starts, n)
    seg = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    if not ranks:
        return starts, seg, np.empty(0, np.int64)
    rank = np.arange(n, dtype=np.int64) - starts[seg]
    return starts, seg, rank


def seg_bounds(queue: npt.NDArray[np.integer]) -> tuple[I64, I64]:
    """Segment starts and the segment number of each element (:func:`segments` without ranks)."""
    starts, seg, _ = segments(queue, ranks=False)
    return starts, seg


def seg_cumsum(x: I64, starts: I64, seg: I64) -> I64:
    """Cumulative sum restarting at every segment start."""
    c = np.cumsum(x)
    if len(starts) > 1:
        c -= (c[starts] - x[starts])[seg]
    return c


def seg_maxacc(v: I64, seg: I64) -> I64:
    """Running maximum restarting at every segment (segments numbered 0, 1, … in order).

    Adds seg·R with R > max(v) − min(v), so a segment's values all exceed the previous
    segment's and one ``np.maximum.accumulate`` serves all; falls back to one call per segment
    when that offset would overflow int64.
    """
    if len(v) == 0:
        return v.copy()
    lo, hi = int(v.min()), int(v.max())
    span = hi - lo + 1
    nseg = int(seg[-1]) + 1
    if nseg == 1:
        return np.maximum.accumulate(v)
    if span * nseg < (1 << 62):
        off = seg * span
        w = v - lo
        w += off
        out = np.maximum.accumulate(w)
        out -= off
        out += lo
        return out
    out = np.empty_like(v)
    bounds = np.flatnonzero(np.diff(seg)) + 1
    for a, b in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(v)])), strict=True):
        out[a:b] = np.maximum.accumulate(v[a:b])
    return out


#: rows a segment on average from which :func:`fifo_departures` takes a running maximum per
#: segment (a NumPy call each) rather than one over offset segments (four more passes)
_LONG_SEGMENTS = 1024


def fifo_departures(
    queue: I64 | None,
    arrive: I64,
    service: I64,
    last: I64,
    segs: tuple[I64, ...] | None = None,
) -> I64:
    """Departure times of FIFO single servers; ``last[q]`` is queue q's previous departure.

    ``segs``: (starts, …) of ``queue`` (:func:`segments`, :func:`seg_bounds`), when the caller
    has them already. With ``queue`` None (``segs`` given), ``last`` is each segment's queue's
    previous departure (the caller knows the queues by their segments).

    With G the cumulative sum over the whole array and B = G − C the constant that turns it
    into a segment's own sum, D_i = G_i + max(d₀ − B, max_{j ≤ i} (A_j − G_j + S_j)): one
    cumulative sum, and one running maximum made segmented by adding a per-segment offset
    (as :func:`seg_maxacc`, without a segment number per element) — or, where segments are
    long (:data:`_LONG_SEGMENTS`), one running maximum per segment.
    """
    n = len(arrive)
    if n == 0:
        return np.empty(0, np.int64)
    if segs is None:
        assert queue is not None
        starts = seg_starts(queue)
    else:
        starts = segs[0]
    g = np.cumsum(service)
    u = arrive - g
    u += service
    base = g[starts] - service[starts]  # B per segment
    d0 = last if queue is None else last[queue[starts]]
    u[starts] = np.maximum(u[starts], d0 - base)
    lengths = seg_lengths(starts, n)
    m = u  # the running maximum, in place
    if len(starts) == 1:
        np.maximum.accumulate(u, out=m)
        m += g
        return m
    lo = hi = 0
    long = n >= _LONG_SEGMENTS * len(starts)
    if not long:
        lo, hi = int(u.min()), int(u.max())
    if long or (hi - lo + 1) * len(starts) >= 1 << 62:  # one running maximum per segment
        for a, b in zip(starts.tolist(), (starts + lengths).tolist(), strict=True):
            np.maximum.accumulate(u[a:b], out=m[a:b])
    else:
        off = np.repeat(np.arange(len(starts), dtype=np.int64) * (hi - lo + 1) - lo, lengths)
        u += off  # each segment above the previous one: one running maximum serves all
        np.maximum.accumulate(u, out=m)
        m -= off
    m += g
    return m


def admit_fifo(queue: I64, arrive: I64, service: I64, tail: I64) -> tuple[Bool, I64, I64]:
    """FIFO single servers with an admission limit L = ``tail.shape[1]``.

    ``tail[q]`` holds the departures of queue q's last L admitted orders, oldest first (NEVER
    where fewer). Returns (admitted mask, departures (valid where admitted), the new tail).
    Exact: equals the arrival-by-arrival rule "throttled iff L orders are in the system".
    """
    n = len(arrive)
    limit = tail.shape[1]
    admitted = np.ones(n, dtype=bool)
    if n == 0:
        return admitted, np.empty(0, np.int64), tail.copy()
    starts, seg = seg_bounds(queue)
    ends = np.append(starts[1:], n)
    seg_q = queue[starts]
    depart = fifo_departures(queue, arrive, service, tail[:, -1], (starts, seg))
    # fast path: with everything admitted, is the L-th previous departure always ≤ arrival?
    bad_idx = _violations(queue, arrive, depart, tail, starts, ends, seg_q)
    new_tail = tail.copy()
    if len(bad_idx):
        first_bad = np.full(len(starts), -1, dtype=np.int64)
        bad_seg = seg[bad_idx]
        keep = np.concatenate(([True], bad_seg[1:] != bad_seg[:-1]))
        first_bad[bad_seg[keep]] = bad_idx[keep]
        act = np.flatnonzero(first_bad >= 0)
        _rounds(arrive, service, depart, admitted, new_tail, starts, ends, seg_q, first_bad, act)
        done = np.setdiff1d(np.arange(len(starts)), act)
    else:
        done = np.arange(len(starts))
    if len(done):  # queues admitted whole: tail = last L of (old tail ++ departures)
        pos = (ends[done] - starts[done])[:, None] - limit + np.arange(limit)
        from_new = pos >= 0
        vals = np.where(
            from_new,
            depart[np.where(from_new, starts[done][:, None] + pos, 0)],
            tail[seg_q[done][:, None], np.where(from_new, 0, pos + limit)],
        )
        new_tail[seg_q[done]] = vals
    return admitted, depart, new_tail


def _violations(
    queue: I64, arrive: I64, depart: I64, tail: I64, starts: I64, ends: I64, seg_q: I64
) -> npt.NDArray[np.intp]:
    """Sorted rows whose L-th previous departure (everything admitted) is after their arrival.

    A row L or more places into its queue compares with the departure L rows back; one of the
    first L compares with the carried tail, and only tail entries after the queue's first
    arrival in this call can fail (the tail is in time order), so only the last m of the
    first L rows of a queue still busy with m orders are checked.
    """
    n = len(arrive)
    limit = tail.shape[1]
    parts = []
    if n > limit:
        later = np.flatnonzero(depart[:-limit] > arrive[limit:]) + limit
        parts.append(later[queue[later - limit] == queue[later]])
    a0 = arrive[starts]
    busy = np.flatnonzero(tail[seg_q, -1] > a0)
    if len(busy):
        m = (tail[seg_q[busy]] > a0[busy, None]).sum(axis=1)
        lo = limit - m  # ranks lo … min(L, length) − 1 may fail
        hi = np.minimum(limit, ends[busy] - starts[busy])
        cnt = np.maximum(hi - lo, 0)
        if cnt.sum():
            k = np.repeat(np.arange(len(busy)), cnt)
            rank = lo[k] + np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            rows = starts[busy][k] + rank
            parts.append(rows[tail[seg_q[busy][k], rank] > arrive[rows]])
    if not parts:
        return np.empty(0, np.intp)
    return np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]


def _rounds(
    arrive: I64,
    service: I64,
    depart: I64,
    admitted: Bool,
    new_tail: I64,
    starts: I64,
    ends: I64,
    seg_q: I64,
    first_bad: I64,
    act: I64,
) -> None:
    """Exact block rounds for the queues in ``act`` from their first violation on (in place)."""
    limit = new_tail.shape[1]
    f = first_bad[act]
    s0 = starts[act]
    q = seg_q[act]
    # tail at the first violation: last L of (carried tail ++ the admitted prefix)
    pos = (f - s0)[:, None] - limit + np.arange(limit)
    from_new = pos >= 0
    tail = np.where(
        from_new,
        depart[np.where(from_new, s0[:, None] + pos, 0)],
        new_tail[q[:, None], np.where(from_new, 0, pos + limit)],
    )
    # throttle everything from the first violation on; the rounds re-admit what fits
    span_mask = np.zeros(len(arrive) + 1, dtype=np.int64)
    np.add.at(span_mask, f, 1)
    np.add.at(span_mask, ends[act], -1)
    admitted &= np.cumsum(span_mask[:-1]) == 0
    a_min = int(arrive.min())
    span = int(arrive.max()) - a_min + 2
    seg_ids = np.repeat(np.arange(len(starts), dtype=np.int64), ends - starts)
    key = seg_ids * span + (arrive - a_min)  # sorted: segments in order, times within
    ptr = f.copy()
    end = ends[act]
    segs = np.flatnonzero(first_bad >= 0)
    while len(ptr):
        b = int(min(limit, (end - ptr).max()))
        j = np.arange(b)
        thr = np.clip(tail[:, :b] - a_min, 0, span - 1) + (segs * span)[:, None]
        ss = np.searchsorted(key, thr, side="left")
        idx = np.maximum(np.maximum.accumulate(ss - j, axis=1), ptr[:, None]) + j
        valid = idx < end[:, None]
        safe = np.where(valid, idx, 0)
        a_sel = np.where(valid, arrive[safe], 0)
        s_sel = np.where(valid, service[safe], 0)
        c = np.cumsum(s_sel, axis=1)
        v = a_sel - (c - s_sel)
        v[:, 0] = np.maximum(v[:, 0], tail[:, -1])
        d = c + np.maximum.accumulate(v, axis=1)
        got = valid.sum(axis=1)
        flat = safe[valid]
        admitted[flat] = True
        depart[flat] = d[valid]
        ext = np.concatenate((tail, d), axis=1)
        tail = np.take_along_axis(ext, got[:, None] + np.arange(limit), axis=1)
        last = np.where(got > 0, idx[np.arange(len(ptr)), np.maximum(got - 1, 0)] + 1, end)
        ptr = last
        live = ptr < end
        new_tail[q[~live]] = tail[~live]
        ptr, end, tail, q, segs = ptr[live], end[live], tail[live], q[live], segs[live]


def shared_fifo(
    queue: I64, arrive: I64, service: I64, state: I64, servers: int, limit: int = 0
) -> tuple[Bool, I64, I64]:
    """c servers sharing one FIFO queue (M/G/c), per queue, with an optional admission limit.

    Each admitted arrival starts on the earliest-free server: at max(its arrival, the c-th
    largest departure of the orders admitted before it) — the servers' free times are the c
    largest earlier departures, since FIFO starts are in arrival order. ``state[q]`` holds
    queue q's K largest departures so far, ascending (NEVER where fewer), K = max(c, limit)
    (c without a limit); with a limit N an arrival that finds N orders in the system (K
    largest departures after it) is throttled. Returns (admitted mask, departures (valid where
    admitted), the new state).

    Vectorised where nobody waits: if every order started on arrival, the orders in the system
    at an arrival are its earlier ones not yet departed (one sort and ``searchsorted`` per
    call) — exact up to a queue's first arrival finding every server busy (or the limit
    reached). From there on the queue is walked arrival by arrival with a sorted list (one
    ``bisect`` and one insertion each, O(K) memory moves): a Python loop, only where c > 1
    and only while the servers are saturated.
    """
    n = len(arrive)
    width = state.shape[1]
    admitted = np.ones(n, dtype=bool)
    depart = arrive + service
    new_state = state.copy()
    if n == 0:
        return admitted, depart, new_state
    cap = min(servers, limit) if limit else servers
    starts, seg = seg_bounds(queue)
    ends = np.append(starts[1:], n)
    seg_q = queue[starts]
    first_bad = _first_busy(arrive, depart, state, starts, seg, seg_q, cap)
    walk = np.flatnonzero(first_bad < ends)
    for i in walk.tolist():
        f, e, q = int(first_bad[i]), int(ends[i]), int(seg_q[i])
        top = np.sort(np.concatenate((state[q], depart[starts[i] : f])))[-width:]
        adm, dep, top_list = _walk(
            arrive[f:e].tolist(), service[f:e].tolist(), top.tolist(), servers, limit
        )
        admitted[f:e] = adm
        depart[f:e] = dep
        new_state[q] = top_list
    done = np.setdiff1d(np.arange(len(starts)), walk, assume_unique=True)
    if len(done):  # queues without a wait: state = K largest of (old state ∪ departures)
        rows = np.flatnonzero(np.isin(seg, done))
        vals = np.concatenate((state[seg_q[done]].ravel(), depart[rows]))
        owner = np.concatenate((np.repeat(done, width), seg[rows]))
        order = np.lexsort((vals, owner))
        counts = np.bincount(owner, minlength=len(starts))[done]
        last = np.cumsum(counts)
        pick = (last - width)[:, None] + np.arange(width)
        new_state[seg_q[done]] = vals[order][pick]
    return admitted, depart, new_state


def _first_busy(
    arrive: I64, depart: I64, state: I64, starts: I64, seg: I64, seg_q: I64, cap: int
) -> I64:
    """Per segment, the first row finding ``cap`` orders in the system had nobody waited
    (the segment's end when none). Rows after j depart after A_j (service ≥ 1 ns), so the
    earlier rows still in the system at A_j are j's rank minus the segment's departures ≤ A_j.
    """
    n = len(arrive)
    ends = np.append(starts[1:], n)
    rank = np.arange(n, dtype=np.int64) - starts[seg]
    lo = int(arrive.min())
    span = int(depart.max()) - lo + 2
    if span * len(starts) < (1 << 62):
        off = seg * span - lo
        done_sorted = np.sort(depart + off)
        gone = np.searchsorted(done_sorted, arrive + off, side="right") - starts[seg]
    else:
        gone = np.empty(n, dtype=np.int64)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            gone[a:b] = np.searchsorted(np.sort(depart[a:b]), arrive[a:b], side="right")
    in_system = rank - gone
    carried_max = state[seg_q, -1][seg]
    early = np.flatnonzero(carried_max > arrive)  # the carried departures still ahead
    if len(early):
        in_system[early] += (state[seg_q[seg[early]]] > arrive[early, None]).sum(axis=1)
    bad = np.flatnonzero(in_system >= cap)
    first = ends.copy()
    if len(bad):
        bad_seg = seg[bad]
        keep = np.concatenate(([True], bad_seg[1:] != bad_seg[:-1]))
        first[bad_seg[keep]] = bad[keep]
    return first


def _walk(
    arrive: list[int], service: list[int], top: list[int], servers: int, limit: int
) -> tuple[list[bool], list[int], list[int]]:
    """One queue, arrival by arrival: ``top`` the K largest departures so far (ascending)."""
    width = len(top)
    adm: list[bool] = []
    dep: list[int] = []
    free_at = width - servers  # top[free_at]: the earliest-free of the c busiest servers
    for a, s in zip(arrive, service, strict=True):
        busy = width - bisect_right(top, a)
        if limit and busy >= limit:
            adm.append(False)
            dep.append(a)
            continue
        d = (top[free_at] if busy >= servers else a) + s
        insort(top, d)
        del top[0]
        adm.append(True)
        dep.append(d)
    return adm, dep, top


def serve_queues(
    queue: I64, arrive: I64, service: I64, state: I64, servers: int, queue_limit: int
) -> tuple[Bool, I64, I64]:
    """Rows in arrival order (any queue order) through their queues: (admitted, departures,
    the new state), both in the rows' order.

    ``state``: per queue, the last departure (1-D: one server, no limit), the last L
    departures (one server with a limit L: :func:`admit_fifo`) or the K largest (c > 1
    servers: :func:`shared_fifo`).
    """
    o = np.argsort(queue, kind="stable")
    q, a, s = queue[o], arrive[o], service[o]
    if servers > 1:
        adm_q, dep_q, new_state = shared_fifo(q, a, s, state, servers, queue_limit)
    elif state.ndim == 2:
        adm_q, dep_q, new_state = admit_fifo(q, a, s, state)
    else:
        starts, seg = seg_bounds(q)
        dep_q = fifo_departures(q, a, s, state, (starts, seg))
        adm_q = np.ones(len(q), dtype=bool)
        new_state = state.copy()
        if len(q):
            last = np.append(starts[1:], len(q)) - 1
            new_state[q[last]] = dep_q[last]
    admitted = np.empty(len(o), dtype=bool)
    depart = np.empty(len(o), dtype=np.int64)
    admitted[o] = adm_q
    depart[o] = dep_q
    return admitted, depart, new_state


def _in_system(inflight: I64, arrive: I64, admitted: Bool, depart: I64) -> I64:
    """Orders in the system at each arrival (before it): the carried ones not yet departed,
    plus the earlier admitted rows not yet departed (a row departing by A_i came before i)."""
    carried = len(inflight) - np.searchsorted(inflight, arrive, side="right")
    gone = np.searchsorted(np.sort(depart[admitted]), arrive, side="right")
    before: I64 = np.cumsum(admitted, dtype=np.int64) - admitted
    out: I64 = carried + before - gone
    return out


def _merge(inflight: I64, depart: I64, floor: int) -> I64:
    """The sorted departures after ``floor`` (no later arrival sees the others)."""
    d = np.sort(np.concatenate((inflight, depart)))
    return d[np.searchsorted(d, floor, side="right") :]


def global_limit(
    queue: I64,
    arrive: I64,
    service: I64,
    state: I64,
    servers: int,
    queue_limit: int,
    inflight: I64,
    limit: int,
    block: int = 256,
) -> tuple[Bool, I64, I64, I64]:
    """Queues behind one limit on the orders in the system across *all* of them.

    Rows in arrival order; an arrival finding ``limit`` orders in the system (admitted, not
    departed, in any queue) is throttled, as the storefront's ``max_concurrency`` does, and
    otherwise goes to its queue (:func:`serve_queues`, which may still refuse it by the
    queue's own limit). ``inflight``: the sorted departures still ahead of earlier calls'
    admitted orders. Returns (admitted, departures, the queues' new state, the new
    ``inflight``); exact, equal to the arrival-by-arrival rule.

    In rounds over a block of rows from a pointer p, everything tentatively admitted: the
    block's departures and the orders in the system at each arrival (:func:`_in_system`).
    Up to the first row f finding ``limit`` the answers are exact. From f on, no row that
    arrives departs before A_j + S_j, so for rows f … h−1 with A_r < min_{f ≤ j < r}(A_j +
    S_j) every row admitted from f stays in the system: the count at r is E_r (the orders
    admitted before f still there, non-increasing) plus k_r, the rows admitted from f. Admit
    iff E_r + k_r < L, i.e. k_{r+1} = min(k_r + 1, c_r) with c_r = max(0, L − E_r)
    non-decreasing, so k_{r+1} = min(r + 1, r + min_{j ≤ r}(c_j − j)) — one running minimum.
    Rows f … h−1 are decided (a queue's own limit cuts h at its first refusal there), the
    queues are served with them and p = h. Every round decides at least one row; rounds ≈
    the stretches where the limit binds, each of about a service time.
    """
    n = len(arrive)
    admitted = np.zeros(n, dtype=bool)
    depart = arrive.copy()
    p, b = 0, block
    while p < n:
        e = min(n, p + b)
        a = arrive[p:e]
        adm, dep, new_state = serve_queues(queue[p:e], a, service[p:e], state, servers, queue_limit)
        bad = np.flatnonzero(adm & (_in_system(inflight, a, adm, dep) >= limit))
        if not len(bad):  # nobody met the limit: the block is final
            admitted[p:e], depart[p:e], state = adm, dep, new_state
            inflight = _merge(inflight, dep[adm], int(a[-1]))
            p, b = e, 2 * b
            continue
        f = int(bad[0])
        reach = np.minimum.accumulate(a[f:] + service[p + f : e])
        stop = np.flatnonzero(a[f + 1 :] >= reach[:-1])
        h = f + 1 + int(stop[0]) if len(stop) else e - p
        if queue_limit:
            refused = np.flatnonzero(~adm[f + 1 : h])
            if len(refused):
                h = f + 1 + int(refused[0])
        before = _merge(inflight, dep[:f][adm[:f]], NEVER)
        room = limit - (len(before) - np.searchsorted(before, a[f:h], side="right"))
        np.maximum(room, 0, out=room)
        r = np.arange(h - f)
        k_next = np.minimum(r + 1, r + np.minimum.accumulate(room - r))
        keep = adm[:h].copy()
        keep[f:h] = k_next > np.concatenate(([0], k_next[:-1]))
        rows = p + np.flatnonzero(keep)
        adm2, dep2, state = serve_queues(
            queue[rows], arrive[rows], service[rows], state, servers, queue_limit
        )
        assert adm2.all(), "a row the queue let in tentatively is let in with fewer ahead"
        admitted[rows], depart[rows] = True, dep2
        inflight = _merge(inflight, dep2, int(a[h - 1]))
        p, b = p + h, max(block, 2 * h)
    return admitted, depart, state, inflight


def lex_order(keys: tuple[npt.NDArray[np.integer], ...]) -> npt.NDArray[np.intp]:
    """``np.lexsort(keys)`` (the last key primary; stable), by SIMD sorts of packed int64.

    NumPy's lexsort and stable argsort of int64 are merge sorts, several times slower than
    its default sort of int64. Keys are taken least significant first, as many per pass as
    fit in 63 bits beside the row number, each pass one ``np.sort`` of (keys − their minimum)
    shifted above the current position: a stable sort by those keys (LSD), so the passes
    together give lexsort's order. A key whose span leaves no room falls back to lexsort.
    """
    n = len(keys[0])
    if n < 2:
        return np.arange(n, dtype=np.intp)
    idx_bits = (n - 1).bit_length()
    room = 63 - idx_bits
    spans = []
    for key in keys:
        lo, hi = int(key.min()), int(key.max())
        bits = (hi - lo).bit_length()
        if bits > room:
            return np.lexsort(keys)
        spans.append((lo, bits))
    order: npt.NDArray[np.intp] | None = None  # None: the identity
    i = 0
    while i < len(keys):
        # the keys of this pass: the most that fit, least significant first
        j, used = i, 0
        while j < len(keys) and used + spans[j][1] <= room:
            used += spans[j][1]
            j += 1
        packed: I64 | None = None
        for m in range(j - 1, i - 1, -1):  # most significant of the pass first
            lo, bits = spans[m]
            col = keys[m] if order is None else keys[m][order]
            v = col.astype(np.int64) - lo
            if packed is None:
                packed = v
            else:
                packed <<= bits
                packed |= v
        assert packed is not None
        packed <<= idx_bits
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        pos = (packed & ((1 << idx_bits) - 1)).astype(np.intp, copy=False)
        order = pos if order is None else order[pos]
        i = j
    assert order is not None
    return order
