"""The flash-sale flow in the model: reserve → pay, cancel or expire, and the stock coming back.

With a reservation TTL an order that gets stock holds it (pre-deduct). Each hold's end is a
pure function of its order (hashed draws, as :mod:`simulator.model.service`), known when the
hold is made: its buyer pays with probability ``pay_share`` after a delay uniform in
``pay_delay_s``, counted from the reservation (the model's completion time of the order). A
payment before the TTL settles the hold (paid, no stock back). A buyer who does not pay either
leaves silently (``abandon_share``: the hold expires at reservation + TTL and its units return
then) or cancels at the same delay (units back at once); a cancel or payment at or after the
TTL finds the hold expired. Returned units are free again for orders completing strictly
after the return (a second wave of sales); :mod:`simulator.model.stock` merges them into the
completion order. Paying and cancelling are not queued at the model's servers (they take no
stock; the model's servers serve orders). A hold whose answer came after the client's timeout
is one its buyer never saw: it expires (:mod:`simulator.model.sim`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.model import service

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

SECOND = 1_000_000_000
#: a hold's end
PAID, CANCELLED, EXPIRED = 0, 1, 2
END_NAMES = ("paid", "cancelled", "expired")
#: the hashed-draw stream of the holds' ends (0 service, 1 retry jitter, 7 shards)
_FLOW = 3


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """The reservation TTL and what buyers do with their holds (``Buyers`` pay keys)."""

    ttl_ns: int
    pay_share: float = 1.0
    delay_ns: tuple[int, int] = (5 * SECOND, 60 * SECOND)
    abandon_share: float = 1.0

    @property
    def cancels(self) -> bool:
        """Whether some holders cancel (so stock may come back before the TTL)."""
        return self.pay_share < 1.0 and self.abandon_share < 1.0

    def min_lag_ns(self) -> int:
        """The shortest time from a reservation to its stock coming back."""
        lag = self.ttl_ns
        if self.cancels:
            lag = min(lag, self.delay_ns[0])
        return max(1, lag)

    def ends(self, order: I64, done: I64, seed: int) -> tuple[U8, I64]:
        """Each hold's end (PAID, CANCELLED, EXPIRED) and when it ends (ns).

        One hashed word per order gives three uniforms: whether the buyer pays (its top 21
        bits), the delay (the next 21) and whether a non-payer leaves or cancels (the low 22).
        """
        w = service.uniforms(order.astype(np.uint64), seed, _FLOW)
        # shares as integer thresholds on the bits: no conversion to float
        pays = (w >> np.uint64(43)) < np.uint64(round(self.pay_share * (1 << 21)))
        lo, hi = self.delay_ns
        u = ((w >> np.uint64(22)) & np.uint64((1 << 21) - 1)).astype(np.float64)
        u *= (hi - lo) / (1 << 21)
        delay = u.astype(np.int64)
        delay += lo
        in_time = delay < self.ttl_ns
        end = np.full(len(order), EXPIRED, dtype=np.uint8)
        end[pays & in_time] = PAID
        if self.cancels:
            leaves = (w & np.uint64((1 << 22) - 1)) < np.uint64(
                round(self.abandon_share * (1 << 22))
            )
            end[~pays & ~leaves & in_time] = CANCELLED
        at = done + np.where(end == EXPIRED, self.ttl_ns, delay)
        return end, at


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
        if not len(t):
            return
        packed = group << 16
        packed |= qty
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
        cuts = np.flatnonzero(bs[1:] != bs[:-1]) + 1
        for a, z in zip([0, *cuts.tolist()], [*cuts.tolist(), len(o)], strict=True):
            i = o[a:z]
            ti = t[i]
            self._push(ti, packed[i], int(ti.min()), int(ti.max()))

    def _push(self, t: I64, packed: I64, lo: int, hi: int) -> None:
        heapq.heappush(self._heap, (lo, self._n, hi, t, packed))
        self._n += 1
        self.rows += len(t)

    def earliest(self) -> int | None:
        """The earliest time a return is due (a lower bound), None when none is."""
        return self._heap[0][0] if self._heap else None

    def take_before(self, horizon: int) -> tuple[I64, I64, I64]:
        """Every return due before ``horizon`` (exclusive), removed: (t, group, qty)."""
        parts: list[tuple[I64, I64]] = []
        while self._heap and self._heap[0][0] < horizon:
            _, _, hi, t, packed = heapq.heappop(self._heap)
            self.rows -= len(t)
            if hi < horizon:
                parts.append((t, packed))
                continue
            due = t < horizon  # the chunk holding the horizon: its later part waits
            parts.append((t[due], packed[due]))
            later = ~due
            self._push(t[later], packed[later], horizon, hi)
        if not parts:
            e = np.empty(0, dtype=np.int64)
            return e, e, e
        if len(parts) == 1:
            t, packed = parts[0]
        else:
            t = np.concatenate([p[0] for p in parts])
            packed = np.concatenate([p[1] for p in parts])
        return t, packed >> 16, packed & 0xFFFF
