"""A worker's slice in users mode: the schedule block by block, attempts in a recycled slot ring,
folded into the run's tally as they end. No locust import (tested as plain code).

The Locust users (:mod:`simulator.locust.users`) :meth:`~SliceFeed.claim` the next order, send it
at its intended time and write the attempt's times, status, outcome and reason into the slot the
claim named, exactly as the engine writes its slots (:mod:`simulator.load.slots`). Every few
tenths of a second (and at the end) the node calls :meth:`~SliceFeed.fold`: the regions whose
attempts are all over go into the :class:`~simulator.load.tally.Tally` (histograms, per-second
counters, confirmed orders), the :class:`~simulator.locust.live.SliceCounts` of the live view and,
when asked for, the per-attempt orders stream, and their slots are recycled. So a worker holds the
rows of the chunk being handed out, the attempts in flight and the tally, whatever the length of
the run, and what it hands back at the end is that tally.

Under gevent a method runs without a switch, so no lock is needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from simulator.load.slots import Batch, RetryOf, SlotRing
from simulator.load.tally import Tally
from simulator.locust.live import SliceCounts
from simulator.outcomes import R_UNANSWERED, TIMEOUT
from simulator.schedule import Orders

#: a retry region still filling after this long is closed, so that its attempts get folded
RETRY_REGION_NS = 1_000_000_000


class Claim(NamedTuple):
    """One order handed to a user: its slot and what its request needs."""

    slot: int
    t_ns: int  # intended send time, ns from the slice's sale start
    product: int
    order: int
    qty: int
    buyer: int
    flags: int


class SliceFeed:
    """The slice's orders for the users, in time order, and where their attempts are kept."""

    def __init__(
        self,
        source: Iterator[Orders],
        worker: int,
        slices: int,
        counts: SliceCounts,
        sink: Callable[[Batch], None] | None = None,
    ) -> None:
        self.ring = SlotRing()
        self.tally = Tally()
        self.counts = counts
        self.sink = sink  # the per-attempt orders stream, if any
        self.rows_sent_twice = 0  # rows handed out and sent a second time (an integrity failure)
        self.busy = 0  # orders held by users: claimed and not over (retries included)
        self._source = source
        self._worker = worker
        self._slices = slices
        self._loaded = 0  # rows taken from the source so far
        self._more = True
        self._rows: list[tuple[int, ...]] = []  # the chunk being handed out, as tuples
        self._base = 0  # slot of the chunk's first row
        self._i = 0
        self._given_back: deque[Claim] = deque()
        self._retry_close_ns = 0

    # -- handing out -------------------------------------------------------------------------

    def _load(self) -> bool:
        chunk = next(self._source, None) if self._more else None
        if chunk is None:
            self._more = False
            self._rows, self._i = [], 0
            self.ring.close_rows()
            return False
        first = self._worker + self._loaded * self._slices
        self._base = self.ring.load_rows(chunk, first, self._slices)
        self._loaded += len(chunk)
        cols = ("t_ns", "product", "order", "qty", "buyer", "flags")
        self._rows = list(zip(*(chunk[c].tolist() for c in cols), strict=True))
        self._i = 0
        return True

    def claim(self) -> Claim | None:
        """The next order (a given-back one first), or None when every order is handed out."""
        if self._given_back:
            self.busy += 1
            return self._given_back.popleft()
        if self._i >= len(self._rows) and not self._load():
            return None
        i = self._i
        self._i = i + 1
        self.busy += 1
        return Claim(self._base + i, *self._rows[i])

    def give_back(self, claim: Claim) -> None:
        """A claimed order its user could not send (stopped while waiting): handed out again
        before any other."""
        self.busy -= 1
        self._given_back.appendleft(claim)

    def release(self) -> None:
        """A user is done with its order (its last attempt is over)."""
        self.busy -= 1

    @property
    def exhausted(self) -> bool:
        """Every row of the slice has been handed out (and none is waiting to be again)."""
        return not self._more and self._i >= len(self._rows) and not self._given_back

    @property
    def settled(self) -> bool:
        """Every row handed out and every order over."""
        return self.exhausted and self.busy == 0

    # -- attempts ------------------------------------------------------------------------------

    def retry_of(self, slot: int) -> RetryOf:
        """What a retry of the attempt in ``slot`` carries; the attempt no longer decides its
        order (its region may be folded while the retry waits)."""
        self.ring.final[slot] = False
        return self.ring.retry_of(slot)

    def add_retry(self, of: RetryOf, intended_ns: int) -> int:
        """A slot for the retry of ``of``, due at ``intended_ns``."""
        return self.ring.add_retry(of, intended_ns)

    def drop_retry(self, of: RetryOf) -> None:
        """A retry that will not be sent (its user was stopped): the order ends on the answer
        before, as the engine counts it."""
        self.tally.add_dropped_retry(of.outcome, of.first_ns, of.done_ns)
        self.counts.add_dropped_retry(of.outcome)

    # -- folding -------------------------------------------------------------------------------

    def fold(self, now_ns: int, everything: bool = False) -> None:
        """Fold the regions whose attempts are all over into the tally, the counts and the
        stream (``everything``: all of them, at the end)."""
        if now_ns >= self._retry_close_ns:
            self.ring.close_retries()
            self._retry_close_ns = now_ns + RETRY_REGION_NS
        for batch in self.ring.collect(everything):
            self.tally.fold_batch(batch)
            self.counts.fold(batch)
            if self.sink is not None:
                self.sink(batch)

    def finish(self, now_ns: int) -> None:
        """The end of the run: attempts sent and unanswered time out now, every slot is folded,
        and the rows never handed out (a stopped run) count as not sent."""
        self.ring.finalize(now_ns, TIMEOUT, R_UNANSWERED)
        self.fold(now_ns, everything=True)
        self._more = False
        for chunk in self._source:
            self.tally.add_unsent_rows(chunk["t_ns"].astype(np.int64))
            self.counts.outcomes[0] += len(chunk)


def retry_uniform(seed: int, order: int, flags: int, tries: int) -> float:
    """The uniform of a retry's delay in users mode: a draw per (order, flags, retry) from the
    scenario's seed, so the same scenario and seed give the same delays."""
    return float(np.random.default_rng([seed, order, flags, tries]).random())
