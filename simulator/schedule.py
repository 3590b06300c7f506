"""The order stream: when each buyer clicks "buy", as NumPy structured arrays.

The stream is made block by block (one second of sale time each). A block is drawn from its own
random generator, seeded by ``(scenario seed, block number)``, and everything that falls into a
later block (burst offspring, double clicks) is carried forward. So the stream is the same bit
for bit however it is cut into chunks, and each block needs memory for one second of orders only.

Per block:

1. immigrants: a non-homogeneous Poisson process sampled exactly by inversion. The block's
   cumulative demand Λ is known in closed form at 1 ms bin edges (:mod:`simulator.demand`);
   N ~ Poisson(Λ(block end) − Λ(block start)), N sorted uniforms on that range come from
   normalised exponential spacings, and t = Λ⁻¹(s) by linear interpolation (exact for the
   bin-averaged rate);
2. each immigrant gets its demand group (the whole-sale curve, or one product's own curve) from
   the groups' shares of its bin, and a product (alias sampling of the popularity weights);
3. bursts: Hawkes offspring in cluster form, generation by generation, same product;
4. quantity, retry willingness, repeat buyers (who copy an earlier buyer and product of the block);
5. double clicks: a copy of the order (same order number, so the same order id) sent again after a
   uniform delay.

Worker k of N takes the rows whose global row number is ≡ k (mod N): disjoint, complete, each
worker's slice in time order and at 1/N of the rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.demand import Curve
from simulator.errors import ScenarioError, TooLargeError
from simulator.machine import available_memory_bytes, human_bytes
from simulator.scenario import Scenario

#: one order to send. ``order`` is the order number (the id sent as order_id): a double click
#: repeats its original's number. ``buyer`` is a buyer number; ``product`` indexes
#: ``scenario.products``; ``flags`` holds the FLAG_* bits.
ORDER_DTYPE = np.dtype(
    [
        ("t_ns", "<i8"),
        ("order", "<i8"),
        ("buyer", "<i8"),
        ("product", "<i4"),
        ("qty", "<u2"),
        ("flags", "u1"),
    ],
    align=True,
)
_RAW = np.dtype((np.void, ORDER_DTYPE.itemsize))
FLAG_DUPLICATE = 1  # a double click: the same order sent again
FLAG_RETRIES = 2  # this buyer retries when throttled (scenario.buyers.retry)
FLAG_REPEAT = 4  # a buyer who already ordered earlier
FLAG_REPEATED = 8  # a buyer's first order, when the buyer orders again later (FLAG_REPEAT)

BLOCK_NS = 1_000_000_000
BINS_PER_BLOCK = 1000  # 1 ms bins for the inversion
EXPECT_BIN_S = 0.01  # grid for expected counts with bursts and double clicks
EXPECT_MAX_BINS = 100_000  # a longer sale gets coarser bins: bounded time and memory
SIZE_BINS = 4096  # the coarse grid of the size check, done before anything is drawn

#: bytes a live run holds per scheduled order: the 32-byte row twice while ``materialize`` joins
#: the chunks, the recorder's timestamps, status and outcome (~40 bytes an attempt), the
#: report's arrays over all orders (a generous estimate, so that a run that passes fits)
LIVE_BYTES_PER_ORDER = 160
#: bytes a live run holds per retry it may send (a recorder slot for the attempt)
LIVE_BYTES_PER_RETRY = 48
#: bytes generating one block (one second) holds per order at its peak (the block's arrays)
BLOCK_BYTES_PER_ORDER = 256
#: bytes a live run's engine holds per attempt in flight: its slot (76 bytes, see
#: simulator.load.slots) twice, as the slot ring grows by doubling, plus the chunk's rows as
#: Python lists while they are dispatched
LIVE_BYTES_PER_IN_FLIGHT = 2 * 76 + 200
#: seconds of orders a live run holds beyond its timeout: the chunk loaded ahead of the clock
#: and the regions waiting to be folded into the tally
LIVE_AHEAD_S = 1.0
#: non-empty buckets a per-second latency histogram may have (fewer when a second has fewer
#: orders): 0.098 % buckets spread over a wide latency distribution
LIVE_SECOND_BUCKETS = 4096
#: bytes a worker's tally holds per second of the run besides those buckets (counts, max/min)
LIVE_BYTES_PER_SECOND = 256
#: bytes one open connection holds (socket buffers, transport, parser)
LIVE_BYTES_PER_CONNECTION = 96 * 1024
#: the most orders a streamed schedule (``schedule``, the offline model) may hold: at tens of
#: millions of orders a second, minutes of work (an 11.11 at full scale is a few hundred million)
MAX_STREAM_ORDERS = 10**10

Orders = npt.NDArray[np.void]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class AliasSampler:
    """Walker's alias method: draws from fixed weights in O(1) per draw, one uniform each."""

    __slots__ = ("alias", "k", "prob")

    def __init__(self, weights: npt.ArrayLike) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be a non-empty list of non-negative numbers")
        k = len(w)
        scaled = (w / w.sum()) * k  # normalised first: k / sum overflows for subnormal sums
        prob = np.ones(k)
        alias = np.arange(k)
        small = [i for i in range(k) if scaled[i] < 1.0]
        large = [i for i in range(k) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        self.k, self.prob, self.alias = k, prob, alias

    def sample(self, u: FloatArray) -> IntArray:
        """Map uniforms in [0, 1) to indices distributed as the weights."""
        if self.k == 1:
            return np.zeros(len(u), dtype=np.int64)
        x = u * self.k
        i = x.astype(np.int64)
        np.minimum(i, self.k - 1, out=i)
        keep = (x - i) < self.prob[i]
        return np.where(keep, i, self.alias[i])


@dataclass(frozen=True, slots=True)
class _Group:
    """A source of immigrants: a curve and the products its orders go to."""

    curve: Curve
    products: IntArray  # product indices
    sampler: AliasSampler | None  # None: a single product


def _groups(scenario: Scenario) -> list[_Group]:
    groups: list[_Group] = []
    weights = np.array([p.weight for p in scenario.products])
    if not scenario.demand.is_empty and weights.sum() > 0:
        groups.append(
            _Group(
                scenario.demand.scaled(scenario.scale),
                np.arange(len(weights)),
                AliasSampler(weights) if len(weights) > 1 else None,
            )
        )
    for i, p in enumerate(scenario.products):
        if p.curve is not None and not p.curve.is_empty:
            groups.append(_Group(p.curve.scaled(scenario.scale), np.array([i]), None))
    return groups


def _raw(rows: Orders) -> npt.NDArray[np.void]:
    """Rows as opaque 32-byte records: NumPy copies them whole, not field by field (faster:
    README, Performance, bench/rows_copy.py)."""
    return rows.view(_RAW)


def concat(parts: list[Orders]) -> Orders:
    """Concatenate order arrays (fast whole-record copy)."""
    if not parts:
        return np.empty(0, dtype=ORDER_DTYPE)
    return np.concatenate([_raw(p) for p in parts]).view(ORDER_DTYPE)


def _take(rows: Orders, index: npt.NDArray[np.bool_] | IntArray) -> Orders:
    return _raw(rows)[index].view(ORDER_DTYPE)


def _merge_sorted(base: Orders, extra: Orders) -> Orders:
    """Merge two arrays sorted by t_ns; on equal times base rows come first."""
    if len(extra) == 0:
        return base
    if len(base) == 0:
        return extra
    pos = np.searchsorted(base["t_ns"], extra["t_ns"], side="right") + np.arange(len(extra))
    out = np.empty(len(base) + len(extra), dtype=_RAW)
    is_extra = np.zeros(len(out), dtype=bool)
    is_extra[pos] = True
    out[pos] = _raw(extra)
    out[~is_extra] = _raw(base)
    return out.view(ORDER_DTYPE)


def _sort_by_time(rows: Orders) -> Orders:
    return _take(rows, np.argsort(rows["t_ns"], kind="stable")) if len(rows) > 1 else rows


@dataclass(frozen=True, slots=True)
class ScheduleSize:
    """How big a schedule is, from its curves alone, before anything is drawn.

    ``orders`` is the expected count over the duration (bursts and double clicks included);
    ``peak_per_s`` an upper bound of the mean orders in one second (one block); ``retries`` the
    most retries the retrying buyers may add (each up to ``max_attempts − 1``).
    """

    orders: float
    peak_per_s: float
    retries: float

    def live_bytes(self) -> float:
        """Memory a live run of the whole schedule holds (rows, records, report arrays)."""
        return self.orders * LIVE_BYTES_PER_ORDER + self.retries * LIVE_BYTES_PER_RETRY

    def block_bytes(self) -> float:
        """Memory generating the busiest second holds (its mean plus ten standard deviations)."""
        peak = self.peak_per_s + 10 * math.sqrt(self.peak_per_s) + 1
        return peak * BLOCK_BYTES_PER_ORDER


class Schedule:
    """The deterministic order stream of one scenario at its scale.

    ``chunks()`` streams it in bounded memory; ``materialize()`` returns a slice in one array;
    ``expected_*`` give the means the samples should match. Building one checks that it can be
    generated at all (TooLargeError: more than :data:`MAX_STREAM_ORDERS`, or a second of it
    too big for memory); ``materialize`` checks that its slice fits in memory.
    """

    def __init__(self, scenario: Scenario, duration_s: float | None = None) -> None:
        self.scenario = scenario
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if self.duration_s > 1e9:  # nanosecond timestamps must fit int64; limits.py is tighter
            raise ValueError(f"duration must be ≤ 1e9 s, got {self.duration_s:g}")
        self.end_ns = round(self.duration_s * 1e9)
        # blocks are always drawn over the scenario's whole sale and then cut, so a shorter
        # duration gives a prefix of the same stream
        self._sale_end_ns = max(round(scenario.duration_s * 1e9), self.end_ns)
        self.n_blocks = -(-self.end_ns // BLOCK_NS)
        self.groups = _groups(scenario)
        buyers = scenario.buyers
        self._qty_values = np.array(buyers.qty_values, dtype=np.uint16)
        self._qty = AliasSampler(buyers.qty_weights)
        self._eta = np.array(
            [g.curve.bursts.branching_ratio if g.curve.bursts else 0.0 for g in self.groups]
        )
        self._tau_ns = np.array(
            [g.curve.bursts.decay_s * 1e9 if g.curve.bursts else 0.0 for g in self.groups]
        )
        self.check_streamable()

    # -- size ----------------------------------------------------------------------------------

    def size(self) -> ScheduleSize:
        """The schedule's size from its curves (a coarse grid; no order is drawn)."""
        orders = float(self._expected_per_product(self.duration_s / SIZE_BINS).sum())
        buyers = self.scenario.buyers
        peak = sum(
            g.curve.peak_rate() / (1.0 - (g.curve.bursts.branching_ratio if g.curve.bursts else 0))
            for g in self.groups
        ) * (1.0 + buyers.duplicate_share)
        retry = buyers.retry
        retries = orders * retry.share * max(0, retry.max_attempts - 1)
        return ScheduleSize(orders, peak, retries)

    def _label(self) -> str:
        return self.scenario.source or self.scenario.name

    def check_streamable(self) -> None:
        """TooLargeError unless the stream can be generated in bounded time and memory."""
        size = self.size()
        lower = "lower duration_s, scale or the demand rates"
        if size.orders > MAX_STREAM_ORDERS:
            raise TooLargeError(
                f"{self._label()}: the schedule would hold {size.orders:.3g} orders over "
                f"{self.duration_s:g} s; at most {MAX_STREAM_ORDERS:.0e} are generated "
                f"(minutes of work) — {lower}"
            )
        free = available_memory_bytes()
        if size.block_bytes() > free:
            raise TooLargeError(
                f"{self._label()}: its busiest second would hold up to {size.peak_per_s:.3g} "
                f"orders ({human_bytes(size.block_bytes())} to generate); "
                f"{human_bytes(free)} of memory is free — lower scale or the demand rates"
            )

    def check_materialize(self, share: float = 1.0) -> None:
        """TooLargeError unless ``share`` of a live run of the schedule (1.0: all of it, as the
        N workers of a run share this machine; 1/N: one worker's slice) fits in free memory.
        Called before anything is generated."""
        size = self.size()
        need = size.live_bytes() * share
        free = available_memory_bytes()
        if need > free:
            per_order = size.live_bytes() / max(size.orders, 1.0)
            raise TooLargeError(
                f"{self._label()}: a live run would hold {size.orders * share:.3g} orders over "
                f"{self.duration_s:g} s ({human_bytes(need)} with their records); "
                f"{human_bytes(free)} of memory is free, room for about {free / per_order:.3g} "
                "orders — lower duration_s, scale or the demand rates"
            )

    def check_live_run(
        self, timeout_s: float, drain_s: float, connections: int, workers: int
    ) -> None:
        """TooLargeError unless a live run of the schedule fits in free memory.

        The engine streams the schedule chunk by chunk and folds finished attempts into the
        tally, so a run holds, whatever its length: the attempts in flight (the busiest
        second's orders, with their retries, over the timeout and the chunk loaded ahead), one
        second of the schedule being generated per worker, the tally's per-second counts and
        histograms (a few kB per second of the run, in each worker) and the connections.
        """
        need, in_flight = self.live_run_bytes(timeout_s, drain_s, connections, workers)
        free = available_memory_bytes()
        if need > free:
            raise TooLargeError(
                f"{self._label()}: a live run would hold up to {in_flight:.3g} orders in "
                f"flight and {self.duration_s + drain_s:g} s of per-second counts in each of "
                f"{workers} worker(s) ({human_bytes(need)}); {human_bytes(free)} of memory is "
                "free — lower scale or the demand rates (or duration_s, timeout_s, workers)"
            )

    def live_run_bytes(
        self, timeout_s: float, drain_s: float, connections: int, workers: int
    ) -> tuple[float, float]:
        """(bytes, attempts in flight) a live run holds at its busiest; see check_live_run."""
        size = self.size()
        retry = self.scenario.buyers.retry
        per_s = size.peak_per_s + 10 * math.sqrt(size.peak_per_s) + 1
        per_s *= 1.0 + retry.share * max(0, retry.max_attempts - 1)
        in_flight = per_s * (timeout_s + LIVE_AHEAD_S)
        seconds = math.ceil(self.duration_s + drain_s) + 1
        # two per-second histograms (intended-time latency, service time), 16 bytes a bucket
        second = LIVE_BYTES_PER_SECOND + 2 * 16 * min(per_s, LIVE_SECOND_BUCKETS)
        need = (
            in_flight * LIVE_BYTES_PER_IN_FLIGHT
            + size.block_bytes() * workers
            + seconds * second * workers
            + connections * LIVE_BYTES_PER_CONNECTION
        )
        return need, in_flight

    # -- sampling ------------------------------------------------------------------------------

    def _rng(self, block: int) -> np.random.Generator:
        ss = np.random.SeedSequence(self.scenario.seed, spawn_key=(block,))
        return np.random.Generator(np.random.PCG64(ss))

    def _immigrants(
        self, rng: np.random.Generator, block: int
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Sorted send times (ns), products and demand groups of the block's immigrants."""
        start_ns = block * BLOCK_NS
        stop_ns = min(start_ns + BLOCK_NS, self._sale_end_ns)
        bins = max(1, round(BINS_PER_BLOCK * (stop_ns - start_ns) / BLOCK_NS))
        edges_s = np.linspace(start_ns / 1e9, stop_ns / 1e9, bins + 1)
        per_group = np.array([g.curve.cumulative(edges_s) for g in self.groups])
        lam = per_group.sum(axis=0)
        n = int(rng.poisson(max(lam[-1] - lam[0], 0.0)))
        empty = np.empty(0, dtype=np.int64)
        if n == 0:
            return empty, empty, empty
        # in-place arithmetic below: these arrays hold one block of orders each
        spacings = rng.standard_exponential(n + 1)
        np.cumsum(spacings, out=spacings)
        s = spacings[:n]
        s *= (lam[-1] - lam[0]) / spacings[n]
        s += lam[0]
        offs_ns = np.interp(s, lam, edges_s - edges_s[0])
        offs_ns *= 1e9
        t_ns = offs_ns.astype(np.int64)
        t_ns += start_ns
        products = np.zeros(n, dtype=np.int64)
        group = np.zeros(n, dtype=np.int64)
        if len(self.groups) > 1:
            # the group of each arrival: categorical with its bin's per-group expected counts
            b = np.minimum(np.searchsorted(lam, s, side="right") - 1, bins - 1)
            share = np.diff(per_group, axis=1)
            cum = np.cumsum(share, axis=0)
            u = rng.random(n) * cum[-1, b]
            group = (u[None, :] >= cum[:-1, b]).sum(axis=0).astype(np.int64)
        u = rng.random(n)
        for gi, g in enumerate(self.groups):
            sel = group == gi if len(self.groups) > 1 else slice(None)
            if g.sampler is not None:
                products[sel] = g.products[g.sampler.sample(u[sel])]
            else:
                products[sel] = g.products[0]
        return t_ns, products, group

    def _offspring(
        self, rng: np.random.Generator, t_ns: IntArray, products: IntArray, group: IntArray
    ) -> tuple[IntArray, IntArray]:
        """All Hawkes descendants (every generation) of the given orders: times and products."""
        out_t: list[IntArray] = []
        out_p: list[IntArray] = []
        eta = self._eta[group]
        tau = self._tau_ns[group]
        while len(t_ns):
            kids = rng.poisson(eta)
            if not kids.any():
                break
            t_ns = np.repeat(t_ns, kids)
            tau = np.repeat(tau, kids)
            eta = np.repeat(eta, kids)
            products = np.repeat(products, kids)
            t_ns = t_ns + (rng.standard_exponential(len(t_ns)) * tau).astype(np.int64)
            keep = t_ns < self._sale_end_ns
            t_ns, products, tau, eta = t_ns[keep], products[keep], tau[keep], eta[keep]
            out_t.append(t_ns)
            out_p.append(products)
        if not out_t:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(out_t), np.concatenate(out_p)

    def _blocks(self) -> Iterator[Orders]:
        """Every block's rows, in order; the source of all other views of the stream."""
        buyers = self.scenario.buyers
        bursts = bool(self._eta.any())
        carry_t = np.empty(0, np.int64)  # burst offspring due in later blocks
        carry_p = np.empty(0, np.int64)
        carry_dup = concat([])  # double clicks due in later blocks
        next_order = 0
        dup_lo_ns = round(buyers.duplicate_delay_s[0] * 1e9)
        dup_hi_ns = round(buyers.duplicate_delay_s[1] * 1e9)
        for block in range(self.n_blocks):
            rng = self._rng(block)
            block_end = min((block + 1) * BLOCK_NS, self._sale_end_ns)
            t_ns, products, group = self._immigrants(rng, block)
            if bursts:
                kid_t, kid_p = self._offspring(rng, t_ns, products, group)
                pend_t = np.concatenate([carry_t, kid_t])
                pend_p = np.concatenate([carry_p, kid_p])
                now = pend_t < block_end
                extra_t, extra_p = pend_t[now], pend_p[now]
                carry_t, carry_p = pend_t[~now], pend_p[~now]
                if len(extra_t):
                    t_ns = np.concatenate([t_ns, extra_t])
                    products = np.concatenate([products, extra_p])
                    order = np.argsort(t_ns, kind="stable")
                    t_ns, products = t_ns[order], products[order]
            n = len(t_ns)
            rows = np.zeros(n, dtype=ORDER_DTYPE)  # zeroed padding: bit-for-bit output
            rows["t_ns"] = t_ns
            numbers = np.arange(next_order, next_order + n, dtype=np.int64)
            next_order += n
            rows["order"] = numbers
            rows["qty"] = self._qty_values[self._qty.sample(rng.random(n))] if n else 0
            # Bernoulli draws in float32: half the cost of float64, 2⁻²⁴ resolution is plenty
            flags = np.zeros(n, dtype=np.uint8)
            if buyers.retry.share > 0:
                flags[rng.random(n, dtype=np.float32) < buyers.retry.share] = FLAG_RETRIES
            rows["buyer"] = numbers
            if buyers.repeat_share > 0 and n > 1:
                repeat = rng.random(n, dtype=np.float32) < buyers.repeat_share
                repeat[0] = False
                who = np.flatnonzero(repeat)
                root = (rng.random(len(who)) * who).astype(np.int64)  # an earlier row
                while True:  # follow chains of repeat buyers to the first order of the buyer
                    chained = repeat[root]
                    if not chained.any():
                        break
                    pos = np.searchsorted(who, root[chained])
                    root[chained] = root[pos]
                rows["buyer"][who] = numbers[root]
                products[who] = products[root]
                flags[who] |= FLAG_REPEAT
                flags[root] |= FLAG_REPEATED
            rows["product"] = products
            rows["flags"] = flags
            if buyers.duplicate_share > 0:
                dup = _take(rows, rng.random(n, dtype=np.float32) < buyers.duplicate_share)
                dup["t_ns"] += rng.integers(dup_lo_ns, dup_hi_ns + 1, size=len(dup))
                dup["flags"] |= FLAG_DUPLICATE
                pending = concat([carry_dup, _take(dup, dup["t_ns"] < self._sale_end_ns)])
                now = pending["t_ns"] < block_end
                rows = _merge_sorted(rows, _sort_by_time(_take(pending, now)))
                carry_dup = _take(pending, ~now)
            if block_end > self.end_ns:
                rows = rows[: np.searchsorted(rows["t_ns"], self.end_ns)]
            yield rows

    # -- views ---------------------------------------------------------------------------------

    def chunks(
        self, chunk_orders: int = 1 << 20, worker: int = 0, workers: int = 1
    ) -> Iterator[Orders]:
        """The stream (or worker k of N's slice) in time order, ≤ ``chunk_orders`` rows at a time.

        Chunks are views of one block's rows (so a chunk may be shorter than ``chunk_orders``);
        their concatenation is the same whatever ``chunk_orders`` is.
        """
        if chunk_orders < 1:
            raise ValueError(f"chunk_orders must be ≥ 1, got {chunk_orders}")
        if workers < 1 or not 0 <= worker < workers:
            raise ValueError(f"worker must be in 0…{workers - 1}, got {worker} of {workers}")
        row0 = 0  # global row number of the block's first row
        for rows in self._blocks():
            first = (worker - row0) % workers
            mine = _raw(rows)[first::workers].copy().view(ORDER_DTYPE) if workers > 1 else rows
            row0 += len(rows)
            # views of whole blocks: no copy; a chunk never spans two blocks
            for at in range(0, len(mine), chunk_orders):
                yield mine[at : at + chunk_orders]

    def materialize(self, worker: int = 0, workers: int = 1) -> Orders:
        """Worker k of N's whole slice as one array (fine for live runs; use chunks at scale).

        TooLargeError, before anything is generated, when the slice would not fit in free memory.
        """
        self.check_materialize(1.0 / workers)
        rows = concat(list(self.chunks(1 << 22, worker, workers)))
        self._check_buyer_rows(rows)
        return rows

    def _check_buyer_rows(self, rows: Orders) -> None:
        """ScenarioError when a buyer number has no row in the buyers data file (no wrap):
        the exact check of what the scenario reader checked on the expected count."""
        data = self.scenario.buyers.data
        if data is None or data.wrap or len(rows) == 0:
            return
        top = int(rows["buyer"].max())
        if top >= len(data.rows):
            raise ScenarioError(
                f"{self._label()}: buyers.data: the schedule has buyer number {top:,} "
                f"(buyer k takes row k) and {data.source} has {len(data.rows):,} rows: add "
                "rows, lower the demand or scale, or set wrap = true"
            )

    # -- expectations --------------------------------------------------------------------------

    def expected_per_product(self) -> FloatArray:
        """Expected orders per product over the run (= ∫λ, bursts and double clicks included).

        On 10 ms bins, coarser for a sale longer than 1,000 s (at most 100,000 bins).
        """
        return self._expected_per_product(max(EXPECT_BIN_S, self.duration_s / EXPECT_MAX_BINS))

    def _expected_per_product(self, bin_s: float) -> FloatArray:
        n_products = len(self.scenario.products)
        out = np.zeros(n_products)
        edges = np.arange(0.0, self.duration_s + bin_s / 2, bin_s)
        if edges[-1] < self.duration_s:
            edges = np.append(edges, self.duration_s)
        edges[-1] = self.duration_s
        mid = (edges[:-1] + edges[1:]) / 2
        buyers = self.scenario.buyers
        lo, hi = buyers.duplicate_delay_s
        # P(a double click of an order at t lands before the end)
        room = self.duration_s - mid
        if hi > lo:
            p_dup = np.clip((room - lo) / (hi - lo), 0.0, 1.0)
        else:
            p_dup = (room >= lo).astype(np.float64)
        for g in self.groups:
            per_bin = np.diff(g.curve.cumulative(edges))
            if g.curve.bursts is not None:
                per_bin = g.curve.bursts.expected_bins(per_bin, bin_s)
            total = per_bin.sum() + buyers.duplicate_share * (per_bin * p_dup).sum()
            if g.sampler is not None:
                w = np.array([self.scenario.products[i].weight for i in g.products])
                out[g.products] += total * w / w.sum()
            else:
                out[g.products[0]] += total
        return out

    def expected_orders(self) -> float:
        """Expected length of the stream."""
        return float(self.expected_per_product().sum())


def build_schedule(scenario: Scenario, duration_s: float | None = None) -> Schedule:
    """The schedule of a scenario, optionally cut to its first ``duration_s`` seconds."""
    return Schedule(scenario, duration_s)
