"""Admission control in front of ``POST /orders``: a token bucket and a waiting room.

A real flash sale admits buyers at a set rate (:class:`TokenBucket`: ``admit_per_s`` with a
``burst``, refusals answered 429) or lets a fixed number shop at once (:class:`WaitingRoom`:
``max_active`` sessions of ``session_s`` each, the rest queued and answered 503). Buyers who come
before the sale opens queue; at the drop the queue is admitted in arrival order (``fifo``) or
shuffled once (``shuffle``, a lottery). Both answer how long to wait, for ``Retry-After``. Both
are plain objects on the event loop's thread, driven by an injected clock, so they can be tested
without sleeping.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable

#: the waiting room's orders at the drop
ROOM_ORDERS = ("fifo", "shuffle")


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1 (HTTP allows no fractions)."""
    return str(max(1, math.ceil(wait_s)))


class TokenBucket:
    """``rate_per_s`` admissions per second on average, up to ``burst`` at once."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> float:
        """Admit one (0.0) or say how many seconds until a token is there (nothing taken)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class WaitingRoom:
    """At most ``max_active`` buyers shop at once, each for ``session_s``; the rest queue.

    Nobody is admitted before ``opens_at`` (clock seconds); then the queue is admitted as
    sessions end, in arrival order or, with ``order="shuffle"``, in an order drawn once at the
    drop (buyers arriving after it join the end).
    """

    def __init__(
        self,
        max_active: int,
        session_s: float,
        order: str,
        clock: Callable[[], float],
        opens_at: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self._max_active = max_active
        self._session_s = session_s
        self._shuffle = order == "shuffle"
        self._clock = clock
        self._opens_at = opens_at
        self._dropped = False
        self._rng = random.Random(seed)
        self._active: dict[str, float] = {}  # buyer → end of session
        self._ends: list[tuple[float, str]] = []  # the same, by end
        self._queue: deque[str] = deque()
        self._tickets: dict[str, int] = {}  # queued buyer → place in line (since the start)
        self._served = 0  # tickets admitted so far

    @property
    def queued(self) -> int:
        """Buyers waiting now."""
        return len(self._queue)

    def enter(self, buyer: str) -> tuple[float, int]:
        """(0.0, 0) when ``buyer`` may shop now, else (seconds to wait, place in line from 1)."""
        now = self._clock()
        self._refresh(now)
        end = self._active.get(buyer)
        if end is not None:
            return 0.0, 0
        if buyer not in self._tickets:
            self._tickets[buyer] = self._served + len(self._queue)
            self._queue.append(buyer)
            self._refresh(now)
            if buyer in self._active:
                return 0.0, 0
        place = self._tickets[buyer] - self._served + 1
        if now < self._opens_at:
            return self._opens_at - now + self._session_s * (place - 1) / self._max_active, place
        return self._session_s * place / self._max_active, place

    def _refresh(self, now: float) -> None:
        """End the sessions that are over, then admit from the head of the line."""
        ends, active = self._ends, self._active
        while ends and ends[0][0] <= now:
            end, buyer = heapq.heappop(ends)
            if active.get(buyer) == end:
                del active[buyer]
        if now < self._opens_at:
            return
        if not self._dropped:
            self._dropped = True
            if self._shuffle:
                self._rng.shuffle(self._queue)
                for place, buyer in enumerate(self._queue):
                    self._tickets[buyer] = self._served + place
        queue = self._queue
        while queue and len(active) < self._max_active:
            buyer = queue.popleft()
            del self._tickets[buyer]
            self._served += 1
            end = now + self._session_s
            active[buyer] = end
            heapq.heappush(ends, (end, buyer))
