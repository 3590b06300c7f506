"""The model's driver: streams a scenario's schedule through sharded FIFO servers and stock.

Time advances in fixed windows [kW, (k+1)W). Per window, vectorised over all its requests:

1. requests: the window's schedule rows plus the retries due in it, in time order; orders over
   their SKU's per-buyer limit are refused on arrival, as the storefront's validation does;
2. route: shard = hash(buyer) mod K (with ``hot_row``, one queue per product and shard);
3. serve: with one server per queue, FIFO departures in closed form, or with an admission limit
   the exact block rounds of :mod:`simulator.model.kernels`; with c > 1 servers one shared FIFO
   queue (each order to the earliest-free server, :func:`~simulator.model.kernels.shared_fifo`);
   with the storefront's limit on orders in flight across all queues (``max_in_flight``),
   exact rounds over the stretches where it binds (:func:`~simulator.model.kernels.global_limit`);
   state carried per queue (its last departures); an answer leaves the storefront
   ``overhead_ms`` after its service ends (the handling around the service, outside the queue);
4. throttled requests of retrying buyers come back after backoff·factor^(attempt−1)·(1 ± jitter);
   W ≤ the shortest backoff, so a retry always lands in a later window — retries are successive
   waves that die out after ``max_attempts`` (where nothing can be throttled, W is free: about
   :data:`WINDOW_ROWS` schedule rows, fewer windows of fixed work each);
5. stock: every admitted request completing by (k+1)W is decided in completion order
   (:mod:`simulator.model.stock`), per-buyer limits first; later arrivals cannot complete
   before (k+1)W, so this order is final, and results do not depend on chunk size or on W
   (while W ≤ the shortest backoff);
6. the flash-sale flow (a reservation TTL, :mod:`simulator.model.flow`): each order that took
   stock holds it; its end (paid, cancelled, expired) and when are drawn at once, and the
   units of cancelled and expired holds come back at that time, merged into the completion
   order of their group's later orders. W ≤ the shortest time from a reservation to its
   return, so a window's returns land in later windows; a batch spanning more than that (the
   end of the run, an overload's early decision) is decided in slices that long. A token
   bucket (``admit_per_s``, ``burst``) in front of the servers throttles arrivals as the
   storefront's does: it is a single FIFO server of service 1/rate with room for ``burst``
   (GCRA), so the exact admission kernel serves it.

Memory: one window of requests, the servers' state, the requests still queued, the idempotency
ring and fixed-size histograms — not the number of orders; with the flow, also the holds that
will come back (16 bytes each, for up to the TTL). A server's backlog is one number (its
last departure); the requests queued behind it wait in a heap of batches by earliest completion,
so a window only touches the batches due in it. When servers fall so far behind that more than
``backlog_rows`` requests are queued (an overload), they are decided at once: with one server per
shard a later arrival of the same shard cannot complete earlier, so stock, replays and limits
stay exact; only whether a sold-out answer was *false* (another shard still had stock) may be
judged before that shard's sell-out is known, and with several servers per shard the
completion order across them is approximated. The result says how many were decided early
(:class:`simulator.model.overload.Overload`). Time is linear in requests either way.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.model import requests as rq
from simulator.model import service
from simulator.model.config import ModelConfig
from simulator.model.flow import CANCELLED, EXPIRED, FlowSettings, Returns
from simulator.model.kernels import (
    NEVER,
    admit_fifo,
    fifo_departures,
    global_limit,
    lex_order,
    segments,
    shared_fifo,
)
from simulator.model.overload import Overload, check_state_size
from simulator.model.requests import Requests
from simulator.model.stats import ModelStats
from simulator.model.stock import RING_OVER_LIMIT, StockBook, Unjoined, joined, pack, sum_by
from simulator.outcomes import CONFIRMED, REJECTED, THROTTLED, TIMEOUT
from simulator.scenario import Scenario
from simulator.schedule import (
    FLAG_REPEAT,
    FLAG_REPEATED,
    FLAG_RETRIES,
    Schedule,
    build_schedule,
)

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]
#: the watermark that decides everything left
NO_END = np.iinfo(np.int64).max
Progress = Callable[[int], None]

MS = 1_000_000
SECOND = 1_000_000_000
MAX_WINDOW_NS = SECOND
MIN_WINDOW_NS = MS
#: schedule rows a window holds on average where no retry bounds its length: every window
#: costs some fixed work (passes over the 32k (product, shard) groups of singles-day-peak,
#: NumPy calls on its few repeat buyers), and a window of many more rows falls out of the
#: caches (singles-day-peak's first minute with the flow: 0.5 s windows, ~93k rows)
WINDOW_ROWS = 100_000
#: queued requests kept before an overloaded run decides them early (~80 B each)
BACKLOG_ROWS = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One finished model run: what it measured and the stock it ended with."""

    scenario: Scenario
    config: ModelConfig
    schedule: Schedule
    stats: ModelStats
    stock: StockBook
    elapsed_s: float
    window_ns: int
    overload: Overload
    holds: I64 | None = None  # with a TTL: units per (product, end: paid/cancelled/expired)
    admission_throttled: int = 0  # attempts the token bucket refused


def _grouped(key: I64, bound: int | None = None) -> tuple[npt.NDArray[np.intp], I64]:
    """A stable grouping by ``key`` (≥ 0, < 2³¹; < ``bound`` when given): (permutation,
    sorted keys).

    Keys that fit in one or two bytes (``bound`` ≤ 2¹⁶: the queues, usually): NumPy's stable
    sort of uint8/uint16 is a radix sort, linear. Otherwise sorts key·2³² + row number with
    NumPy's default sort: SIMD-vectorised for int64, and ~3x faster than a stable argsort of
    int64 (a merge sort); the row number in the low bits makes the order stable.
    """
    n = len(key)
    if bound is not None and bound <= 1 << 16:
        o = _small_order(key, bound)
        return o, key[o]
    if n >= 1 << 32 or (n and int(key.max()) >= 1 << 31):
        o = np.argsort(key, kind="stable")
        return o, key[o]
    packed = key << 32
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    o = (packed & 0xFFFFFFFF).astype(np.intp, copy=False)
    packed >>= 32
    return o, packed


def _small_order(key: I64, bound: int) -> npt.NDArray[np.intp]:
    """A stable grouping by ``key`` (≥ 0, < ``bound`` ≤ 2¹⁶): NumPy's stable sort of
    uint8/uint16 is a radix sort, linear."""
    return np.argsort(key.astype(np.uint8 if bound <= 1 << 8 else np.uint16), kind="stable")


def _window_ns(
    scenario: Scenario, config: ModelConfig, flow: FlowSettings | None, rate_per_s: float
) -> int:
    """The window length: ``window_s`` when given; otherwise ≤ the shortest retry backoff
    where a request can be throttled (a retry lands in a later window), and about
    :data:`WINDOW_ROWS` schedule rows at the schedule's mean rate (``rate_per_s``), in
    [1 ms, 1 s] and a whole number of them a second. With the flow, ≤ the shortest time from
    a reservation to its return."""
    if config.window_s is not None:
        w = max(1, round(config.window_s * SECOND))
    else:
        w = MAX_WINDOW_NS
        if rate_per_s > 0:  # a whole number of windows a second: none straddles a second
            # of the timelines (ModelStats counts a window within one second without a pass)
            rows_ns = max(MIN_WINDOW_NS, WINDOW_ROWS / rate_per_s * SECOND)
            w = SECOND // math.ceil(SECOND / rows_ns)
        retry = scenario.buyers.retry
        if retry.retries() and config.throttles():
            shortest = config.throttle_ms * MS + retry.shortest_s() * SECOND
            w = int(min(w, max(MIN_WINDOW_NS, shortest)))
    # a window's returns land after it: W ≤ the TTL and the pay delay's lowest value (both
    # ≥ 1 ms: ModelConfig, Buyers; a lognormal or exponential delay gives its min)
    if flow is not None:
        w = min(w, flow.min_lag_ns())
    return w


def flow_settings(scenario: Scenario, config: ModelConfig) -> FlowSettings | None:
    """The flow's settings from the TTL and the scenario's buyers (None: orders are final)."""
    if config.reservation_ttl_s is None:
        return None
    b = scenario.buyers
    return FlowSettings(
        ttl_ns=round(config.reservation_ttl_s * SECOND),
        pay_share=b.pay_share,
        pay_delay=b.pay_delay_s,
        abandon_share=b.abandon_share,
    )


def _ring_bits(schedule: Schedule, config: ModelConfig) -> int:
    """Idempotency ring size: order ids seen over the horizon of retries, doubled, ≤ 2²⁴."""
    sc = schedule.scenario
    backoffs_s = sc.buyers.retry.longest_total_s()
    horizon_s = sc.buyers.duplicate_delay_s[1] + backoffs_s + config.timeout_s
    rate = schedule.expected_orders() / schedule.duration_s * 8  # peaks run well above average
    need = max(1.0, rate * (horizon_s + 1) * 2)
    return int(min(24, max(12, math.ceil(math.log2(need)))))


def _pick(t: I64, g: I64, q: I64, mask: Bool) -> tuple[I64, I64, I64]:
    """The rows of (t, g, q) where ``mask`` is set (indices once: a boolean index per column
    costs several times a gather)."""
    i = np.flatnonzero(mask)
    return t[i], g[i], q[i]


class Model:
    """The offline model of one scenario; :meth:`run` streams it once, start to finish."""

    def __init__(
        self, scenario: Scenario, config: ModelConfig, duration_s: float | None = None
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.n_products = len(scenario.products)
        k, c = config.shards, config.servers
        # before anything is allocated: the state grows with shards × servers × products
        # (c servers sharing a limit N keep max(c, N) departures: about c·⌈N/c⌉)
        per_server = -(-config.queue_limit // c)
        check_state_size(self.n_products, k, c, config.hot_row, per_server)
        self.schedule = build_schedule(scenario, duration_s)
        self.n_bases = self.n_products * k if config.hot_row else k
        self.n_queues = self.n_bases  # c > 1 servers share their queue
        if config.service_samples_ms:
            self.table = service.empirical_table(config.service_samples_ms)
        else:
            self.table = service.lognormal_table(config.service_median_ms, config.service_sigma)
        self.flow = flow_settings(scenario, config)
        rate = self.schedule.expected_orders() / self.schedule.duration_s
        self.window_ns = _window_ns(scenario, config, self.flow, rate)
        self.throttle_ns = round(config.throttle_ms * MS)
        self.overhead_ns = round(config.overhead_ms * MS)
        self.timeout_ns = round(config.timeout_s * SECOND)
        self.ring_bits = _ring_bits(self.schedule, config)

    def run(
        self,
        chunk_orders: int = 1 << 20,
        progress: Progress | None = None,
        backlog_rows: int = BACKLOG_ROWS,
    ) -> ModelResult:
        """Simulate the whole schedule; ``progress(n)`` is called with schedule rows done.

        ``backlog_rows``: queued requests held before they are decided early (see above).
        """
        started = time.perf_counter()
        state = _Run(self, backlog_rows)
        for k, rows in self._stream_windows(chunk_orders):
            state.retries_before(k)
            # room after the window's rows for the requests queued before it (rq.join): a
            # few per server, unless the servers fall behind (then rq.concat joins them)
            n = sum(len(r) for r in rows)
            spare = min(state.pending_rows, 1024 + n // 8)
            state.window(k, rq.from_rows(rows, self._shard_of, spare))
            if progress is not None:
                progress(n)
        state.retries_before(None)
        state.resolve(np.iinfo(np.int64).max)
        state.settle()
        state.stats.fold_service(self.table)
        return ModelResult(
            scenario=self.scenario,
            config=self.config,
            schedule=self.schedule,
            stats=state.stats,
            stock=state.stock,
            elapsed_s=time.perf_counter() - started,
            window_ns=self.window_ns,
            overload=state.overload(),
            holds=state.holds,
            admission_throttled=state.admission_throttled,
        )

    def _shard_of(self, buyer: I64, out: I64 | None = None) -> I64:
        return service.shard_of(buyer, self.config.shards, self.config.seed, out)

    def _stream_windows(
        self, chunk_orders: int
    ) -> Iterator[tuple[int, list[npt.NDArray[np.void]]]]:
        """The schedule cut at window boundaries: (window number, its rows), non-empty only;
        a window's rows as the slices of the chunks they are in (from_rows copies each)."""
        w_ns = self.window_ns
        buf: list[npt.NDArray[np.void]] = []
        cur = -1
        for chunk in self.schedule.chunks(chunk_orders):
            if not len(chunk):
                continue
            t = chunk["t_ns"]
            k0, k1 = int(t[0]) // w_ns, int(t[-1]) // w_ns  # rows come in time order
            cuts = np.searchsorted(t, np.arange(k0 + 1, k1 + 1, dtype=np.int64) * w_ns)
            bounds = [0, *cuts.tolist(), len(chunk)]
            for i, k in enumerate(range(k0, k1 + 1)):
                a, b = bounds[i], bounds[i + 1]
                if a == b:
                    continue
                if k != cur and buf:
                    yield cur, buf
                    buf = []
                cur = k
                buf.append(chunk[a:b])
        if buf:
            yield cur, buf


class _Run:
    """The state of one run: servers, stock, retries waiting, requests in service, results."""

    def __init__(self, model: Model, backlog_rows: int) -> None:
        self.m = model
        cfg = model.config
        self.cfg = cfg
        self.last = np.full(model.n_queues, NEVER, dtype=np.int64)
        limit = cfg.queue_limit
        # c > 1: the K = max(c, N) latest departures per queue (shared_fifo); c = 1: the last N
        width = max(cfg.servers, limit) if cfg.servers > 1 else limit
        self.tail = np.full((model.n_queues, width), NEVER, dtype=np.int64) if width else None
        # with the storefront's limit across all queues: the departures still ahead, sorted
        self.inflight = np.empty(0, dtype=np.int64) if cfg.max_in_flight else None
        sc = model.scenario
        stocks = np.array([sc.stock_of(p) for p in sc.products], dtype=np.int64)
        limits = np.array([p.per_buyer_limit for p in sc.products], dtype=np.int64)
        # orders over the limit are refused on arrival; what buyers hold matters only when a
        # buyer orders again (repeat buyers)
        track = bool(limits.any()) and sc.buyers.repeat_share > 0
        self.stock = StockBook(
            stocks,
            cfg.shards,
            model.ring_bits,
            limits if track else None,
        )
        self.stats = ModelStats(model.n_products, math.ceil(model.schedule.duration_s) + 1)
        # admitted requests not decided yet: a heap of (earliest completion, number, batch)
        self.pending: list[tuple[int, int, Requests]] = []
        self.pending_rows = 0
        self.batches = 0
        self.backlog_rows = backlog_rows
        self.backlog_max_ns = 0  # the longest any admitted request queued
        self.last_arrival_ns = 0
        self.decided_early = 0
        self.retry_bins: dict[int, list[Requests]] = {}
        self.retry = sc.buyers.retry
        limits = np.array([p.per_buyer_limit for p in sc.products], dtype=np.int64)
        self.limits = limits if limits.any() else None  # per product, 0 = none
        # no quantity above the lowest limit: no order is over its limit (the usual case)
        self.lowest_limit = int(limits[limits > 0].min()) if limits.any() else 0
        # the scenario's quantities are all within it: no order is, never a pass over rows
        self.all_within = self.limits is None or max(sc.buyers.qty_values) <= self.lowest_limit
        self.returns = Returns(model.window_ns)
        self.holds = np.zeros((model.n_products, 3), dtype=np.int64) if model.flow else None
        self.n_groups = model.n_products * cfg.shards
        self.admission_throttled = 0
        self.watermark = 0
        self.bucket: I64 | None = None
        if cfg.admit_per_s > 0:
            # GCRA: one FIFO server of service 1/rate with room for `burst` in the system
            self.bucket_ns = max(1, round(SECOND / cfg.admit_per_s))
            width = cfg.burst or max(1, round(cfg.admit_per_s))
            self.bucket = np.full((1, width), NEVER, dtype=np.int64)

    # -- retries ---------------------------------------------------------------------------

    def retries_before(self, k: int | None) -> None:
        """Run the windows holding only retries, before window k (None: all that remain)."""
        while self.retry_bins:
            kr = min(self.retry_bins)
            if k is not None and kr >= k:
                return
            self.window(kr, rq.empty())

    def _due(self, k: int) -> Requests:
        due = rq.concat(self.retry_bins.pop(k, []))
        if len(due) > 1:
            due = due.take(lex_order((due.attempt, due.order, due.t)))
        return due

    def _spawn(self, again: Requests, window_end: int) -> None:
        a = again.attempt.astype(np.int64)
        key = service.order_key(again.order, a, again.duplicate())
        u = service.unit(service.uniforms(key, self.cfg.seed, 1))
        t = again.done + self.retry.delay_ns(a + 1, u)  # the next attempt is retry a + 1
        np.maximum(t, window_end, out=t)  # only when W > the shortest backoff (tiny backoffs)
        nxt = rq.Requests(
            t,
            again.first,
            again.order,
            again.buyer,
            again.product,
            again.shard,
            again.qty,
            again.flags,
            again.attempt + 1,
            again.done,
        )
        self.stats.retries += len(t)
        o, win_sorted = _grouped(t // self.m.window_ns)
        starts, _, _ = segments(win_sorted)
        ends = np.append(starts[1:], len(o))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self.retry_bins.setdefault(int(win_sorted[s]), []).append(nxt.take(o[s:e]))

    # -- one window ------------------------------------------------------------------------

    def window(self, k: int, stream: Requests) -> None:
        """Serve window k: its schedule rows and the retries due in it."""
        self.stats.add_demand(stream.t)
        due = self._due(k)
        if len(due) and len(stream):
            req = rq.concat([stream, due])
            req = req.take(lex_order((req.t,)))
        else:
            req = stream if len(stream) else due
        end = (k + 1) * self.m.window_ns
        if len(req) and not self.all_within:
            req = self._reject_over_limit(req)
        if len(req) and self.bucket is not None:
            req = self._admit(req, end)
        if len(req):
            self._serve(req, end)
        self.resolve(end)
        if self.pending_rows > self.backlog_rows:
            self._decide_early()

    def _reject_over_limit(self, req: Requests) -> Requests:
        """Orders asking more than their SKU's per-buyer limit: refused on arrival.

        The storefront refuses them in validation (422, before any service time or stock);
        they are never retried, and a double click of one is refused again (not a replay).
        The requests left are returned.
        """
        assert self.limits is not None
        if int(req.qty.max()) <= self.lowest_limit:
            return req
        limit = self.limits[req.product]
        over = (limit > 0) & (req.qty > limit)
        if not over.any():
            return req
        bad = req.take(over)
        zero = np.zeros(len(bad), dtype=np.int64)
        self.stats.add_answers(
            bad.t, bad.first, bad.t, zero, np.full(len(bad), REJECTED, np.uint8), bad.product
        )
        return req.take(~over)

    def _admit(self, req: Requests, window_end: int) -> Requests:
        """The token bucket (checked on arrival, after validation): the requests it lets in."""
        assert self.bucket is not None
        n = len(req)
        adm, _, self.bucket = admit_fifo(
            np.zeros(n, dtype=np.int64), req.t, np.full(n, self.bucket_ns, np.int64), self.bucket
        )
        if adm.all():
            return req
        thr = req.take(~adm)
        self.admission_throttled += len(thr)
        self._throttled(thr, window_end)
        return req.take(adm)

    def _throttled(self, thr: Requests, window_end: int) -> None:
        """Answer 429 to these requests; the buyers who retry come back later."""
        thr.done = thr.t + self.m.throttle_ns
        self.stats.add_attempts(thr.t, thr.done, np.full(len(thr), THROTTLED, np.uint8))
        can = ((thr.flags & FLAG_RETRIES) != 0) & (thr.attempt + 1 < self.retry.max_attempts)
        final = thr.take(~can)
        self.stats.add_final(
            final.first,
            final.done,
            np.full(len(final), THROTTLED, np.uint8),
            final.product,
        )
        if can.any():
            self._spawn(thr.take(can), window_end)

    def _route(self, req: Requests) -> I64:
        """The queue of each request: its shard, or with ``hot_row`` its (product, shard)."""
        cfg = self.cfg
        queue: I64 = req.product * cfg.shards + req.shard if cfg.hot_row else req.shard
        return queue

    def _serve(self, req: Requests, window_end: int) -> None:
        """Queue the window's requests in arrival order, FIFO per server, in closed form.

        The kernels see the requests grouped by server (a stable sort of the server ids);
        results are scattered back, so every other column stays in arrival order.
        """
        queue = self._route(req)
        earliest: int | None = None  # the earliest answer, where known without a pass
        simple = self.inflight is None and self.tail is None  # one server a queue, no limit
        if simple and self.m.n_queues <= 1 << 16:  # only the queues' segments, not their keys
            o, q = _small_order(queue, self.m.n_queues), None
        else:
            o, q = _grouped(queue, self.m.n_queues)
        key = service.order_key(req.order, req.attempt, req.duplicate())
        drawn = service.table_index(service.uniforms(key, self.cfg.seed, 0, out=key))
        s = self.m.table.take(drawn)
        t_q, s_q = req.t[o], s[o]
        done = req.done  # written in place: a batch with room keeps it (rq.join)
        if self.inflight is not None:
            admitted, done = self._in_flight(queue, req.t, s)
            adm_q, depart = admitted[o], done[o]
            all_in = bool(admitted.all())
        elif self.tail is not None:
            assert q is not None
            if self.cfg.servers > 1:
                adm_q, depart, self.tail = shared_fifo(
                    q, t_q, s_q, self.tail, self.cfg.servers, self.cfg.queue_limit
                )
            else:
                adm_q, depart, self.tail = admit_fifo(q, t_q, s_q, self.tail)
            done[o] = depart
            all_in = bool(adm_q.all())
            admitted = adm_q if all_in else np.empty(len(o), dtype=bool)
            if not all_in:
                admitted[o] = adm_q
        else:  # one server a queue, no limit: each queue's segment from its count
            counts = np.bincount(queue, minlength=self.m.n_queues)
            qid = np.flatnonzero(counts)
            ends = np.cumsum(counts[qid])
            starts = ends - counts[qid]
            ends -= 1
            depart = fifo_departures(None, t_q, s_q, self.last[qid], (starts,))
            self.last[qid] = depart[ends]
            # a queue's departures ascend: the earliest is among each queue's first
            earliest = int(depart[starts].min()) + self.m.overhead_ns
            done[o] = depart
            all_in = True
            admitted = np.ones(0, dtype=bool)
            adm_q = np.ones(1, dtype=bool)  # every row (broadcast)
        wait = depart - s_q  # the longest wait in a queue: departure − service − arrival
        wait -= t_q
        longest = wait.max(initial=0) if all_in else wait.max(where=adm_q, initial=0)
        self.backlog_max_ns = max(self.backlog_max_ns, int(longest))
        self.last_arrival_ns = max(self.last_arrival_ns, int(req.t[-1]))
        if self.m.overhead_ns:
            done += self.m.overhead_ns
        req.done = done
        self.stats.add_service(drawn if all_in else drawn[admitted], len(self.m.table))
        if not all_in:
            self._throttled(req.take(~admitted), window_end)
            req = req.take(admitted)
        self._hold(req, earliest)

    def _in_flight(self, queue: I64, t: I64, s: I64) -> tuple[Bool, I64]:
        """The queues behind the storefront's limit on orders in flight across all of them
        (:func:`~simulator.model.kernels.global_limit`): admitted, departures, in row order."""
        assert self.inflight is not None
        c, n, limit = self.cfg.servers, self.cfg.queue_limit, self.cfg.max_in_flight
        if self.tail is not None:
            admitted, depart, self.tail, self.inflight = global_limit(
                queue, t, s, self.tail, c, n, self.inflight, limit
            )
        else:
            admitted, depart, self.last, self.inflight = global_limit(
                queue, t, s, self.last, c, n, self.inflight, limit
            )
        return admitted, depart

    # -- stock -----------------------------------------------------------------------------

    def _hold(self, req: Requests, earliest: int | None = None) -> None:
        """Keep admitted requests until the watermark passes their completion (``earliest``:
        the first of them, when the caller knows it)."""
        if len(req):
            if earliest is None:
                earliest = int(req.done.min())
            heapq.heappush(self.pending, (earliest, self.batches, req))
            self.batches += 1
            self.pending_rows += len(req)

    def resolve(self, watermark: int) -> None:
        """Decide every request that completes by ``watermark`` (in completion order)."""
        self.watermark = watermark
        due: list[Requests] = []
        while self.pending and self.pending[0][0] <= watermark:
            due.append(heapq.heappop(self.pending)[2])
            self.pending_rows -= len(due[-1])
        if not due:
            return
        # with one server per queue a group's completions differ, so the rows' order does not
        # matter: the batch queued before joins the window's in its room
        p = rq.join(due) if self.cfg.servers == 1 else rq.concat(due)
        late_rows = np.flatnonzero(p.done > watermark)
        if len(late_rows):
            self._hold(p.take(late_rows))
            p = p.drop(late_rows)  # the few still in service: O(their number), order changes
        self._decide(p, watermark)

    def _decide_early(self) -> None:
        """Decide every queued request now: the servers are too far behind to keep them."""
        batches = [b for _, _, b in self.pending]
        self.pending = []
        self.decided_early += self.pending_rows
        self.pending_rows = 0
        self._decide(rq.concat(batches), self.watermark)

    def _decide(self, p: Requests, watermark: int) -> None:
        """Stock, replays and answers of admitted requests completing by ``watermark`` (or,
        decided early, later), in completion order.

        With the flow, a batch spanning more than the shortest reservation-to-return time is
        decided in slices that long, in time order, so that every return lands after the
        slice that made it.
        """
        flow = self.m.flow
        if flow is None or not len(p):
            self._decide_batch(p, watermark)
            return
        lag = flow.min_lag_ns()
        lo, hi = int(p.done.min()), int(p.done.max())
        if hi - lo < lag:
            self._decide_batch(p, watermark, (lo, hi))
            return
        o = lex_order((p.done,))
        d = p.done[o]
        a = 0
        while a < len(o):  # one slice per pass: bounded by the span over the lag
            cut = int(d[a]) + lag
            b = int(np.searchsorted(d, cut, side="left"))
            bound = watermark if b == len(o) else min(watermark, cut - 1)
            self._decide_batch(p.take(o[a:b]), bound)
            a = b

    def _decide_batch(
        self, p: Requests, watermark: int, span: tuple[int, int] | None = None
    ) -> None:
        """Stock, replays and answers of one batch; with the flow, its holds and returns.

        ``watermark``: every order decided later completes after it, so units coming back by
        then to a group with no later order in this batch can go straight back to stock.
        ``span``: the batch's earliest and latest completion, when the caller has them
        (each reduction over a batch's rows costs about as much as a cheap pass).
        """
        group = self._group(p)
        done = p.done
        if span is None and len(p):
            span = (int(done.min()), int(done.max()))
        candidate = p.duplicate()
        if p.first is not p.t:
            candidate |= p.attempt > 0
        buyers = None
        if self.stock.limits is not None:
            # only a buyer who orders more than once can meet the limit: the schedule marks
            # such buyers' orders (and their double clicks and retries carry the flags)
            check = (p.flags & (FLAG_REPEAT | FLAG_REPEATED)) != 0
            buyers = (p.product, p.buyer, check)
        returns = direct = demand = None
        if self.m.flow is not None and len(p):
            assert span is not None
            returns, direct, demand = self._returns_due(group, done, p.qty, watermark, span[1])
        outcome, replayed, (so, false) = self.stock.resolve(
            group, done, p.qty, p.order, candidate, None, buyers, returns, demand
        )
        if direct is not None:
            self.stock.give_back_chunks(direct)
        if self.stock.limits is not None:
            outcome[outcome == RING_OVER_LIMIT] = REJECTED
        t = p.t
        lat = done - t
        lat_max = int(lat.max()) if len(lat) else 0
        late = lat > self.m.timeout_ns if lat_max > self.m.timeout_ns else None
        if self.m.flow is not None:
            self._hold_stock(p, group, outcome, replayed, late)
        self.stats.replays += int(np.count_nonzero(replayed))
        if len(so):
            self.stats.add_sold_out(p.product[so], false)
        if late is not None:
            outcome[late] = TIMEOUT
            done[late] = t[late] + self.m.timeout_ns
            lat[late] = self.m.timeout_ns
            span, lat_max = None, self.m.timeout_ns  # the latest answer changed: recounted
        self.stats.add_answers(
            t, p.first, done, lat, outcome, p.product, done_span=span, lat_max=lat_max
        )
        self._log_skus(watermark)

    def _log_skus(self, bound: int) -> None:
        """The SKUs' sold-out events up to ``bound``, and no later than anything still to be
        decided (queued orders, returns on their way): those may come before later ones."""
        before = bound + 1 if bound < NO_END else NO_END
        if self.pending:
            before = min(before, self.pending[0][0])
        if (r := self.returns.earliest()) is not None:
            before = min(before, r)
        self.stock.log_skus(before)

    # -- the flow ----------------------------------------------------------------------------

    def _returns_due(
        self, group: I64, done: I64, qty: I64, watermark: int, latest: int
    ) -> tuple[tuple[I64, I64, I64], list[Unjoined], I64 | None]:
        """Returns to merge among this batch's orders (before a later completion of their
        group here) and returns to give back straight (by the watermark, in chunks); the rest
        wait.
        Third: the units this batch asks per group, when there were returns to weigh
        (:meth:`StockBook.resolve` reuses them).

        Where a group's stock covers every order of this batch, a return changes no answer:
        it goes back straight after the batch (the usual case while a SKU has stock).
        ``latest``: the batch's latest completion.
        """
        # at the end (no watermark) only those before the batch's last completion: the rest
        # is for settle(), a window at a time
        top = latest if watermark == NO_END else max(latest, watermark)
        chunks = self.returns.take_chunks(top + 1)
        e = np.empty(0, dtype=np.int64)
        if not chunks:
            return (e, e, e), [], None
        demand = sum_by(group, qty, self.n_groups)
        hard_group = self.stock.left <= demand
        hard = bool(hard_group.any())
        if not hard and top <= watermark:  # the usual case: every return straight back
            return (e, e, e), chunks, demand
        t, g, q = joined(chunks)
        h = np.flatnonzero(hard_group[g]) if hard else np.empty(0, np.intp)
        if not len(h) and top <= watermark:
            return (e, e, e), chunks, demand
        merge = np.zeros(len(t), dtype=bool)
        if len(h):
            rows = np.flatnonzero(hard_group[group])
            gmax = np.full(self.n_groups, np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(gmax, group[rows], done[rows])
            merge[h] = t[h] < gmax[g[h]]
        now = ~merge & (t <= watermark)
        wait = ~merge & ~now
        if wait.any():
            self.returns.add(t[wait], g[wait], q[wait])
        now_t, now_g, now_q = _pick(t, g, q, now)
        return _pick(t, g, q, merge), [(now_t, pack(now_g, now_q))], demand

    def _hold_stock(
        self, p: Requests, group: I64, outcome: U8, replayed: Bool, late: Bool | None
    ) -> None:
        """The holds this batch made: how each ends, and the units that come back.

        ``late``: answers after the client's timeout; their buyers never saw the hold, which
        expires.

        While most rows took stock (the usual case) the ends are drawn for every row and
        the others marked "no hold" (3): gathering four columns by the rows that took
        costs more than hashing the few others.
        """
        flow, holds = self.m.flow, self.holds
        assert flow is not None and holds is not None
        took = outcome == CONFIRMED
        np.greater(took, replayed, out=took)  # confirmed and not a replay
        k = int(np.count_nonzero(took))
        if not k:
            return
        done, qty, product, order = p.done, p.qty, p.product, p.order
        none: Bool | None = None
        if 4 * k < 3 * len(took):  # few holds (stock running out): their rows only
            rows = np.flatnonzero(took)
            done, qty, product, order = done[rows], qty[rows], product[rows], order[rows]
            group = group[rows]
            late = None if late is None else late[rows]
        elif k < len(took):
            none = ~took
        end, words = flow.draw(order, self.cfg.seed)
        if late is not None:
            end[late] = EXPIRED
        if none is not None:  # no hold: 3 (EXPIRED | CANCELLED | 3 = 3)
            np.bitwise_or(end, np.uint8(3), out=end, where=none)
        key = product * 4
        key += end
        holds += sum_by(key, qty, 4 * len(holds)).reshape(-1, 4)[:, :3]
        packed = pack(group, qty)  # packed before the gathers: one gather, not two
        # expiries span a window: a chunk of their own
        back = np.flatnonzero(end == EXPIRED)
        self.returns.add_packed(done[back] + flow.ttl_ns, packed[back])
        back = np.flatnonzero(end == CANCELLED)
        if len(back):
            at = done[back] + flow.delay(words[back])
            self.returns.add_packed(at, packed[back])

    def settle(self) -> None:
        """At the end: every hold still open ends, its units back in stock (a window's worth
        at a time, in time order: memory stays that of the holds themselves)."""
        while (t0 := self.returns.earliest()) is not None:
            horizon = t0 + self.m.window_ns
            self.stock.give_back_chunks(self.returns.take_chunks(horizon))
            self._log_skus(horizon - 1)
        self.stock.log_skus()  # every event is final now

    def overload(self) -> Overload:
        """How the servers coped (call at the end of the run)."""
        m, st = self.m, self.stats
        front = self.tail[:, -1] if self.tail is not None else self.last
        busy_ns = max(0, int(front.max()) - self.last_arrival_ns) if st.attempts else 0
        mean_s = float(m.table.mean()) / SECOND
        return Overload(
            demand_per_s=float(st.sent_s.max()) if len(st.sent_s) else 0.0,
            capacity_per_s=m.n_queues * self.cfg.servers / mean_s,
            backlog_max_s=self.backlog_max_ns / SECOND,
            busy_after_end_s=busy_ns / SECOND,
            decided_early=self.decided_early,
            timeout_s=self.cfg.timeout_s,
        )

    def _group(self, p: Requests) -> I64:
        """Stock group (product, shard) of each request: product·K + shard."""
        return p.product * self.cfg.shards + p.shard
