"""The flash-sale flow in the model: reserve → pay, cancel or expire, and the stock coming back.

With a reservation TTL an order that gets stock holds it (pre-deduct). Each hold's end is a pure
function of its order (hashed draws, as :mod:`simulator.model.service`), known when the hold is
made: its buyer pays with probability ``pay_share`` after a delay drawn from ``pay_delay_s`` (a
:class:`~simulator.scenario.model.Think`: uniform, constant, lognormal or exponential, the last two
with a ``min``), counted from the reservation (the model's completion time of the order). A payment
before the TTL settles the hold (paid, no stock back). A buyer who does not pay either leaves
silently (``abandon_share``: the hold expires at reservation + TTL and its units return then) or
cancels at the same delay (units back at once); a cancel or payment at or after the TTL finds the
hold expired. Returned units are free again for orders completing strictly after the return (a
second wave of sales); :mod:`simulator.model.stock` merges them into the completion order. Paying
and cancelling are not queued at the model's servers (they take no stock; the model's servers serve
orders). A hold whose answer came after the client's timeout is one its buyer never saw: it expires
(:mod:`simulator.model.sim`).

The delay is a non-decreasing function of 21 hashed bits (the distribution's inverse CDF at
the bits' midpoint, in whole ns; a uniform as lo + ⌊bits·(hi − lo)/2²¹⌋), never below its
lowest value: the lower end of [lo, hi], the constant, or the ``min`` a lognormal or
exponential delay must give. That lowest value bounds the model's windows
(:meth:`FlowSettings.min_lag_ns`), so a cancel's units always come back in a later window
than the reservation's: a delay that could reach 0 has no such bound and is refused.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator.model import service
from simulator.model.stock import Returned, Unjoined, joined, pack
from simulator.scenario.model import Think

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

SECOND = 1_000_000_000
#: a hold's end
PAID, CANCELLED, EXPIRED = 0, 1, 2
END_NAMES = ("paid", "cancelled", "expired")
#: the hashed-draw stream of the holds' ends (0 service, 1 retry jitter, 7 shards)
_FLOW = 3
#: the 21 delay bits of a hold's hashed word (bits 22…42)
_DELAY_MASK = ((1 << 21) - 1) << 22
#: the longest delay the model keeps (s): later is "after any TTL" (and fits int64 ns)
_LONGEST_S = 1e9


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """The reservation TTL and what buyers do with their holds (``Buyers`` pay keys)."""

    ttl_ns: int
    pay_share: float = 1.0
    pay_delay: Think = field(default_factory=lambda: Think("uniform", 5.0, 60.0))
    abandon_share: float = 1.0
    # derived: the delay's lowest value, a uniform's ends (ns), the in-time threshold
    _lo_ns: int = field(init=False, repr=False, compare=False)
    _hi_ns: int = field(init=False, repr=False, compare=False)
    _below: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = self.pay_delay
        lo = round(d.lowest * SECOND)
        hi = round(d.b * SECOND) if d.kind == "uniform" else lo
        object.__setattr__(self, "_lo_ns", lo)
        object.__setattr__(self, "_hi_ns", hi)
        if self.cancels and lo < 1:
            raise ValueError(
                f"the pay delay {d.as_toml()!r} can be 0: give a lowest delay (min) ≥ 1 ns"
            )
        object.__setattr__(self, "_below", self._in_time_below())

    @property
    def cancels(self) -> bool:
        """Whether some holders cancel (so stock may come back before the TTL)."""
        return self.pay_share < 1.0 and self.abandon_share < 1.0

    def min_lag_ns(self) -> int:
        """The shortest time from a reservation to its stock coming back."""
        lag = self.ttl_ns
        if self.cancels:
            lag = min(lag, self._lo_ns)
        return max(1, lag)

    def ends(self, order: I64, done: I64, seed: int) -> tuple[U8, I64]:
        """Each hold's end (PAID, CANCELLED, EXPIRED) and when it ends (ns).

        One hashed word per order gives three uniforms: whether the buyer pays (its top 21
        bits), the delay (the next 21) and whether a non-payer leaves or cancels (the low 22).
        """
        end, w = self.draw(order, seed)
        at = done + self.ttl_ns
        hit = np.flatnonzero(end != EXPIRED)
        at[hit] = done[hit] + self.delay(w[hit])
        return end, at

    def draw(self, order: I64, seed: int) -> tuple[U8, U64]:
        """Each hold's end and its hashed word (:meth:`delay` turns words into delays).

        Integer thresholds on the word's bits, no float: the delay is a non-decreasing function
        of its 21 bits, so "paid or cancelled before the TTL" is those bits below the first
        value whose delay reaches the TTL (:meth:`_in_time_below`).
        """
        key = order.view(np.uint64) if order.dtype == np.int64 else order.astype(np.uint64)
        w = np.empty(len(key), dtype=np.uint64)
        end = np.empty(len(key), dtype=np.uint8)
        for a in range(0, len(key), service.BLOCK):  # a block's passes stay in the cache
            b = a + service.BLOCK
            self._ends(service.uniforms(key[a:b], seed, _FLOW, out=w[a:b]), end[a:b])
        return end, w

    def _ends(self, w: U64, end: U8) -> None:
        """The ends of holds with hashed words ``w``, into ``end``."""
        in_time = (w & np.uint64(_DELAY_MASK)) < np.uint64(self._below << 22)
        pay = round(self.pay_share * (1 << 21))
        paid = in_time if pay >= 1 << 21 else (w < np.uint64(pay << 43)) & in_time
        # arithmetic on the masks (np.where on a random mask is several times slower)
        if not self.cancels:  # a hold not paid in time expires: EXPIRED (2) or PAID (0)
            np.multiply(np.uint8(EXPIRED), ~paid, out=end, dtype=np.uint8)
            return
        leaves = (w & np.uint64((1 << 22) - 1)) < np.uint64(round(self.abandon_share * (1 << 22)))
        # in time: paid → PAID (0); not paid: cancels → CANCELLED (1), leaves → EXPIRED (2)
        np.subtract(np.uint8(EXPIRED), in_time, out=end, dtype=np.uint8)
        end += leaves & in_time
        end *= ~paid

    def delay(self, w: U64) -> I64:
        """The pay (or cancel) delay (ns) of hashed words, from their 21 delay bits."""
        bits = ((w >> np.uint64(22)) & np.uint64((1 << 21) - 1)).astype(np.float64)
        d = self.pay_delay
        if d.kind == "uniform":  # lo + ⌊bits·(hi − lo)/2²¹⌋ (float64 product, truncated)
            lo, hi = self._lo_ns, self._hi_ns
            bits *= (hi - lo) / (1 << 21)
            delay = bits.astype(np.int64)
            delay += lo
            return delay
        bits += 0.5
        bits *= 1.0 / (1 << 21)
        s = np.minimum(d.quantile(bits), _LONGEST_S)
        s *= SECOND
        delay = np.rint(s).astype(np.int64)
        return np.maximum(delay, self._lo_ns, out=delay)

    def _in_time_below(self) -> int:
        """The first 21-bit delay draw whose delay is ≥ the TTL (2²¹: none), by bisection on
        :meth:`delay`'s own arithmetic (non-decreasing in the bits)."""
        a, b = 0, 1 << 21
        while a < b:
            mid = (a + b) // 2
            if int(self.delay(np.array([mid << 22], dtype=np.uint64))[0]) >= self.ttl_ns:
                b = mid
            else:
                a = mid + 1
        return a


class Returns:
    """Units on their way back to stock, in chunks no wider than ``bin_ns`` (the model's
    window) kept in a heap by their earliest time, so a window touches only the chunks due
    in it. A chunk holds times and group·2¹⁶ + units (quantities are < 2¹⁶)."""

    def __init__(self, bin_ns: int) -> None:
        self.bin_ns = bin_ns
        self._heap: list[tuple[int, int, int, I64, I64]] = []
        self._n = 0
        self.rows = 0

    def add(self, t: I64, group: I64, qty: I64) -> None:
        """Units ``qty`` of ``group`` come back at ``t``."""
        self.add_packed(t, pack(group, qty))

    def add_packed(self, t: I64, packed: I64) -> None:
        """Returns at ``t`` of :func:`pack`'s words (group·2¹⁶ + units)."""
        if not len(t):
            return
        lo, hi = int(t.min()), int(t.max())
        if hi - lo < self.bin_ns:  # e.g. a window's expiries: its completions + the TTL
            self._push(t, packed, lo, hi)
            return
        b = t // self.bin_ns
        b0, b1 = int(b.min()), int(b.max())
        if b1 - b0 < 1 << 16:  # a small range: NumPy's stable sort of uint16 is a radix sort
            o = np.argsort((b - b0).astype(np.uint16), kind="stable")
        else:
            o = np.argsort(b, kind="stable")
        bs = b[o]
        starts = np.concatenate(([0], np.flatnonzero(bs[1:] != bs[:-1]) + 1))
        ts, ps = t[o], packed[o]  # a chunk per bin: slices (views) of these
        lo_s = np.minimum.reduceat(ts, starts).tolist()
        hi_s = np.maximum.reduceat(ts, starts).tolist()
        cuts = [*starts.tolist(), len(o)]
        for k, (lo, hi) in enumerate(zip(lo_s, hi_s, strict=True)):
            self._push(ts[cuts[k] : cuts[k + 1]], ps[cuts[k] : cuts[k + 1]], lo, hi)

    def _push(self, t: I64, packed: I64, lo: int, hi: int) -> None:
        heapq.heappush(self._heap, (lo, self._n, hi, t, packed))
        self._n += 1
        self.rows += len(t)

    def earliest(self) -> int | None:
        """The earliest time a return is due (a lower bound), None when none is."""
        return self._heap[0][0] if self._heap else None

    def take_chunks(self, horizon: int) -> list[Unjoined]:
        """Every return due before ``horizon`` (exclusive), removed, as the chunks they were
        kept in: (t, group·2¹⁶ + units) each, neither joined nor unpacked (units going
        straight back to stock need neither:
        :meth:`~simulator.model.stock.StockBook.give_back_chunks`)."""
        parts: list[Unjoined] = []
        while self._heap and self._heap[0][0] < horizon:
            _, _, hi, t, packed = heapq.heappop(self._heap)
            self.rows -= len(t)
            if hi >= horizon:  # the chunk holding the horizon: its later part waits
                due = t < horizon
                later = ~due
                self._push(t[later], packed[later], horizon, hi)
                t, packed = t[due], packed[due]
            parts.append((t, packed))
        return parts

    def take_before(self, horizon: int) -> Returned:
        """Every return due before ``horizon`` (exclusive), removed: (t, group, qty)."""
        return joined(self.take_chunks(horizon))
