"""What the model measured, accumulated window by window in memory that does not grow with
orders: outcome counts, mergeable latency histograms, per-second timelines, per-SKU numbers.

Two latency views, both from the *intended* time (coordinated-omission-free, as wrk2):
``latency`` per request (each attempt, from the moment it was meant to be sent) and
``order_latency`` per scheduled order (from its first click to its final answer, retries
and backoffs included). Timelines are indexed by second of the sale: demand and sent by
intended time, completed and outcomes by answer time, p50/p99 by intended time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator import histogram as hist
from simulator.outcomes import OUTCOME_NAMES

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

_NS = 1_000_000_000
_NONE = 1 << 62  # a minimum before any value


def _grow(a: npt.NDArray[np.generic], n: int) -> npt.NDArray[np.generic]:
    """``a`` with its first axis at least ``n`` long (doubling, zero-filled)."""
    if len(a) >= n:
        return a
    out = np.zeros((max(n, 2 * len(a)), *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


@dataclass
class ModelStats:
    """Accumulated results of one model run."""

    n_products: int
    seconds: int
    rows: int = 0
    attempts: int = 0
    retries: int = 0
    replays: int = 0
    outcomes: I64 = field(init=False)
    attempt_outcomes: I64 = field(init=False)
    latency_sum_ns: int = 0
    order_latency_sum_ns: int = 0
    service_sum_ns: int = 0
    latency: I64 = field(init=False)
    order_latency: I64 = field(init=False)
    service: I64 = field(init=False)
    latency_max_ns: int = 0
    service_max_ns: int = 0
    order_latency_max_ns: int = 0
    latency_min_ns: int = _NONE
    service_min_ns: int = _NONE
    order_latency_min_ns: int = _NONE
    demand_s: I64 = field(init=False)
    sent_s: I64 = field(init=False)
    completed_s: I64 = field(init=False)
    outcomes_s: I64 = field(init=False)
    latency_s: npt.NDArray[np.int32] = field(init=False)
    confirmed_orders: I64 = field(init=False)
    sold_out_answers: I64 = field(init=False)
    false_sold_out: I64 = field(init=False)
    #: service times drawn from a table, counted per entry until :meth:`fold_service`
    service_draws: I64 | None = None

    def __post_init__(self) -> None:
        s = max(1, self.seconds)
        self.outcomes = np.zeros(len(OUTCOME_NAMES), dtype=np.int64)
        self.attempt_outcomes = np.zeros(len(OUTCOME_NAMES), dtype=np.int64)
        self.latency = np.zeros(hist.N_BUCKETS, dtype=np.int64)
        self.order_latency = np.zeros(hist.N_BUCKETS, dtype=np.int64)
        self.service = np.zeros(hist.N_BUCKETS, dtype=np.int64)
        self.demand_s = np.zeros(s, dtype=np.int64)
        self.sent_s = np.zeros(s, dtype=np.int64)
        self.completed_s = np.zeros(s, dtype=np.int64)
        self.outcomes_s = np.zeros((s, len(OUTCOME_NAMES)), dtype=np.int64)
        self.latency_s = np.zeros((s, hist.N_BUCKETS), dtype=np.int32)
        self.confirmed_orders = np.zeros(self.n_products, dtype=np.int64)
        self.sold_out_answers = np.zeros(self.n_products, dtype=np.int64)
        self.false_sold_out = np.zeros(self.n_products, dtype=np.int64)

    def _per_second(self, name: str, sec: I64) -> None:
        arr: I64 = _grow(getattr(self, name), int(sec.max()) + 1)  # type: ignore[assignment]
        arr += np.bincount(sec, minlength=len(arr))
        setattr(self, name, arr)

    def add_demand(self, t_ns: I64) -> None:
        """Scheduled orders (first clicks), in time order (the schedule's)."""
        if len(t_ns):
            self.rows += len(t_ns)
            s0, s1 = int(t_ns[0]) // _NS, int(t_ns[-1]) // _NS
            if s0 == s1:  # a window within one second (the usual case): no pass over rows
                self.demand_s = _grow(self.demand_s, s1 + 1)  # type: ignore[assignment]
                self.demand_s[s1] += len(t_ns)
            else:
                self._per_second("demand_s", t_ns // _NS)

    def add_attempts(self, intended: I64, done: I64, outcome: U8) -> I64:
        """Answered requests (every attempt): latency, sent and completed per second.

        Returns the latency buckets (reused for first attempts' order latency).
        """
        if not len(intended):
            return np.empty(0, dtype=np.int64)
        self.attempts += len(intended)
        self.attempt_outcomes += np.bincount(outcome, minlength=len(OUTCOME_NAMES))
        lat = done - intended
        self.latency_sum_ns += int(lat.sum())
        b = hist.bucket_of(lat)
        self.latency += np.bincount(b, minlength=hist.N_BUCKETS)
        self.latency_max_ns = max(self.latency_max_ns, int(lat.max()))
        self.latency_min_ns = min(self.latency_min_ns, int(lat.min()))
        sec = intended // _NS
        self._per_second("sent_s", sec)
        self._per_second("completed_s", done // _NS)
        s0, s1 = int(sec.min()), int(sec.max()) + 1
        self.latency_s = _grow(self.latency_s, s1)  # type: ignore[assignment]
        flat = (sec - s0) * hist.N_BUCKETS + b
        counts = np.bincount(flat, minlength=(s1 - s0) * hist.N_BUCKETS)
        self.latency_s[s0:s1] += counts.reshape(s1 - s0, hist.N_BUCKETS).astype(np.int32)
        return b

    def add_answers(
        self,
        intended: I64,
        first_ns: I64,
        done: I64,
        lat: I64,
        outcome: U8,
        product: I64,
        *,
        done_span: tuple[int, int] | None = None,
        lat_max: int | None = None,
    ) -> None:
        """Answered requests that are also their orders' final answers (served requests).

        The same as :meth:`add_attempts` then :meth:`add_final`, fused: one histogram pass per
        (second, bucket) serves the latency, per-second latency and sent counts, and one per
        (second, product, outcome) the outcomes, completions and confirmed orders. ``lat`` is
        ``done − intended``; ``first_ns`` may be ``intended`` itself (every row a first attempt).
        ``done_span`` (the earliest and latest ``done``) and ``lat_max``: when the caller has
        them (a reduction over the rows fewer each).
        """
        n = len(intended)
        if not n:
            return
        self.attempts += n
        lat_sum, lat_min = int(lat.sum()), int(lat.min())
        if lat_max is None:
            lat_max = int(lat.max())
        self.latency_sum_ns += lat_sum
        self.latency_max_ns = max(self.latency_max_ns, lat_max)
        self.latency_min_ns = min(self.latency_min_ns, lat_min)
        b = hist.bucket_of(lat, positive=lat_min >= 1)
        s0, s1 = int(intended.min()) // _NS, int(intended.max()) // _NS + 1
        if s1 - s0 == 1:  # within one second (the usual window): no division per row
            counts = np.bincount(b, minlength=hist.N_BUCKETS).reshape(1, hist.N_BUCKETS)
        else:
            sec = intended // _NS
            sec -= s0
            sec *= hist.N_BUCKETS
            sec += b
            counts = np.bincount(sec, minlength=(s1 - s0) * hist.N_BUCKETS)
            counts = counts.reshape(s1 - s0, hist.N_BUCKETS)
        lat_counts = counts.sum(axis=0)
        self.latency += lat_counts
        self.latency_s = _grow(self.latency_s, s1)  # type: ignore[assignment]
        self.latency_s[s0:s1] += counts.astype(np.int32)
        self.sent_s = _grow(self.sent_s, s1)  # type: ignore[assignment]
        self.sent_s[s0:s1] += counts.sum(axis=1)
        # order latency: from the order's first click; the same as above for first attempts
        if first_ns is intended or not (later := intended != first_ns).any():
            self.order_latency_sum_ns += lat_sum
            self.order_latency_max_ns = max(self.order_latency_max_ns, lat_max)
            self.order_latency_min_ns = min(self.order_latency_min_ns, lat_min)
            self.order_latency += lat_counts
        else:
            olat = done - first_ns
            self.order_latency_sum_ns += int(olat.sum())
            self.order_latency_max_ns = max(self.order_latency_max_ns, int(olat.max()))
            self.order_latency_min_ns = min(self.order_latency_min_ns, int(olat.min()))
            b[later] = hist.bucket_of(olat[later])
            self.order_latency += np.bincount(b, minlength=hist.N_BUCKETS)
        # outcomes by second of answer and product
        n_out, n_prod = len(OUTCOME_NAMES), self.n_products
        if done_span is None:
            done_span = (int(done.min()), int(done.max()))
        d0, d1 = done_span[0] // _NS, done_span[1] // _NS + 1
        self.outcomes_s = _grow(self.outcomes_s, d1)  # type: ignore[assignment]
        self.completed_s = _grow(self.completed_s, d1)  # type: ignore[assignment]
        # (second of answer − d0, product, outcome) of each answer; within one second (the
        # usual window) no division per row
        one = d1 - d0 == 1
        if (d1 - d0) * n_prod <= n:
            if one:
                dsec = product * n_out
            else:
                dsec = done // _NS
                dsec -= d0
                dsec *= n_prod
                dsec += product
                dsec *= n_out
            dsec += outcome
            c3 = np.bincount(dsec, minlength=(d1 - d0) * n_prod * n_out)
            c3 = c3.reshape(d1 - d0, n_prod, n_out)
            by_sec = c3.sum(axis=1)
            by_prod = c3.sum(axis=0)
            total = by_prod.sum(axis=0)
            self.confirmed_orders += by_prod[:, 1]
        else:  # many products: two smaller histograms
            if one:
                dsec = outcome.astype(np.int64)
            else:
                dsec = done // _NS
                dsec -= d0
                dsec *= n_out
                dsec += outcome
            by_sec = np.bincount(dsec, minlength=(d1 - d0) * n_out).reshape(d1 - d0, n_out)
            total = by_sec.sum(axis=0)
            self.confirmed_orders += np.bincount(product[outcome == 1], minlength=n_prod)
        self.outcomes_s[d0:d1] += by_sec
        self.completed_s[d0:d1] += by_sec.sum(axis=1)
        self.attempt_outcomes += total
        self.outcomes += total

    def add_service(self, entry: npt.NDArray[np.intp], entries: int) -> None:
        """Service times of admitted requests (time at the server, queueing excluded), as the
        entries of a table of ``entries`` service times they were drawn from
        (:mod:`simulator.model.service`): counted per entry, and turned into the histogram,
        sum, minimum and maximum once, by :meth:`fold_service` (not a bucket per request)."""
        if len(entry):
            counts = np.bincount(entry, minlength=entries)
            if self.service_draws is None:
                self.service_draws = counts
            else:
                self.service_draws += counts

    def fold_service(self, table: I64) -> None:
        """The service times counted per entry of ``table`` into the histogram, sum, minimum
        and maximum (call once the draws are counted, e.g. at the end of a run)."""
        counts, self.service_draws = self.service_draws, None
        if counts is None or not counts.any():
            return
        np.add.at(self.service, hist.bucket_of(table), counts)
        self.service_sum_ns += int(counts @ table)
        drawn = table[counts > 0]
        self.service_max_ns = max(self.service_max_ns, int(drawn.max()))
        self.service_min_ns = min(self.service_min_ns, int(drawn.min()))

    def add_final(
        self,
        first_ns: I64,
        done: I64,
        outcome: U8,
        product: I64,
        same_as: tuple[I64, I64] | None = None,
    ) -> None:
        """Scheduled orders that got their final answer.

        ``same_as`` = (latency buckets, intended times) of these requests: where the intended
        time is the order's first, the order latency is the request latency (no recount).
        """
        if not len(done):
            return
        self.outcomes += np.bincount(outcome, minlength=len(OUTCOME_NAMES))
        lat = done - first_ns
        self.order_latency_sum_ns += int(lat.sum())
        if same_as is not None:
            buckets, intended = same_as
            later = intended != first_ns
            if later.any():
                buckets = buckets.copy()
                buckets[later] = hist.bucket_of(lat[later])
        else:
            buckets = hist.bucket_of(lat)
        self.order_latency += np.bincount(buckets, minlength=hist.N_BUCKETS)
        self.order_latency_max_ns = max(self.order_latency_max_ns, int(lat.max()))
        self.order_latency_min_ns = min(self.order_latency_min_ns, int(lat.min()))
        sec = done // _NS
        top = int(sec.max()) + 1
        self.outcomes_s = _grow(self.outcomes_s, top)  # type: ignore[assignment]
        flat = sec * len(OUTCOME_NAMES) + outcome
        self.outcomes_s += np.bincount(
            flat, minlength=len(self.outcomes_s) * len(OUTCOME_NAMES)
        ).reshape(self.outcomes_s.shape)
        self.confirmed_orders += np.bincount(product[outcome == 1], minlength=self.n_products)

    def add_sold_out(self, product: I64, false: Bool) -> None:
        """Sold-out answers (server side), and which were false (stock left on another shard)."""
        self.sold_out_answers += np.bincount(product, minlength=self.n_products)
        self.false_sold_out += np.bincount(product[false], minlength=self.n_products)
