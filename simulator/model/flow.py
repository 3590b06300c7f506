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
stock; the model's servers serve orders).
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
#: hashed-draw streams (0 service, 1 retry jitter in :mod:`simulator.model.sim`)
_PAYS, _DELAY, _ABANDON = 3, 4, 5


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
        """Each hold's end (PAID, CANCELLED, EXPIRED) and when it ends (ns)."""
        key = order.astype(np.uint64)
        pays = service.unit(service.uniforms(key, seed, _PAYS)) < self.pay_share
        lo, hi = self.delay_ns
        u = service.unit(service.uniforms(key, seed, _DELAY))
        delay = lo + np.floor(u * (hi - lo)).astype(np.int64)
        in_time = delay < self.ttl_ns
        end = np.full(len(order), EXPIRED, dtype=np.uint8)
        end[pays & in_time] = PAID
        if self.cancels:
            leaves = service.unit(service.uniforms(key, seed, _ABANDON)) < self.abandon_share
            end[~pays & ~leaves & in_time] = CANCELLED
        at = done + np.where(end == EXPIRED, self.ttl_ns, delay)
        return end, at


class Returns:
    """Units on their way back to stock: (time, group, units), in batches by earliest time."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, I64, I64, I64]] = []
        self._n = 0
        self.rows = 0

    def add(self, t: I64, group: I64, qty: I64) -> None:
        """Units ``qty`` of ``group`` come back at ``t``."""
        if len(t):
            heapq.heappush(self._heap, (int(t.min()), self._n, t, group, qty))
            self._n += 1
            self.rows += len(t)

    def take_before(self, horizon: int) -> tuple[I64, I64, I64]:
        """Every return due before ``horizon`` (exclusive), removed: (t, group, qty)."""
        parts: list[tuple[I64, I64, I64]] = []
        while self._heap and self._heap[0][0] < horizon:
            _, _, t, g, q = heapq.heappop(self._heap)
            self.rows -= len(t)
            parts.append((t, g, q))
        if not parts:
            e = np.empty(0, dtype=np.int64)
            return e, e, e
        t, g, q = (np.concatenate(c) for c in zip(*parts, strict=True))
        late = t >= horizon
        if late.any():
            self.add(t[late], g[late], q[late])
            keep = ~late
            t, g, q = t[keep], g[keep], q[keep]
        return t, g, q
