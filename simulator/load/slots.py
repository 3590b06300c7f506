"""The engine's per-attempt slots: a bounded, recycled ring instead of the whole run's arrays.

Slots come in *regions* of :data:`REGION` slots. A chunk of schedule rows takes one region (its
rows' first attempts, in row order: the dispatcher writes ``slot = base + i``, as cheap as an
index into a whole-run array); retries take slots from a retry region, one after another. A
region is *closed* once nothing more will be put in it (the dispatcher moved on to the next
chunk; a retry region is full); a closed region whose attempts are all over (answered, failed or
timed out) is handed to :meth:`SlotRing.collect` as one batch of NumPy views and then recycled.
Every attempt ends within the timeout (queued ones too), so the ring holds about rate × (queue
wait + timeout) slots whatever the length of the run; it grows by doubling when a region is
needed and none is free, and the slot numbers already handed out stay valid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

#: slots per region: a schedule chunk's rows (the engine loads rows this many at a time). A
#: region is folded in one batch that holds the loop ~0.5 ms (8,192 slots held it ~2 ms: at
#: 50,000 orders/s that alone put the dispatch lag's p99 over 1 ms)
REGION = 2048
#: the fields of a slot and their types (``try``/``sku`` as in :mod:`simulator.records`)
SLOT_FIELDS: tuple[tuple[str, str], ...] = (
    ("intended_ns", "i8"),
    ("dispatched_ns", "i8"),
    ("sent_ns", "i8"),
    ("done_ns", "i8"),
    ("status", "i2"),
    ("outcome", "u1"),
    ("reason", "i4"),
    ("try", "u1"),
    ("final", "?"),
    ("row", "i8"),
    ("order", "i8"),
    ("buyer", "i8"),
    ("sku", "i4"),
    ("qty", "u2"),
    ("flags", "u1"),
    ("first_ns", "i8"),
    ("step", "u1"),  # a journey's step (the order step, or NO_STEP); 0 without a journey
)
#: the ``step`` of a journey's order row that never reached its order step (ended before it)
NO_STEP = 255
#: bytes one slot holds
SLOT_BYTES = sum(np.dtype(t).itemsize for _, t in SLOT_FIELDS)

Batch = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class RetryOf:
    """What a retry needs of the attempt it follows (that attempt's slot may be recycled)."""

    row: int
    order: int
    buyer: int
    sku: int
    qty: int
    flags: int
    first_ns: int
    tries: int  # attempts so far (the retry is attempt tries + 1)
    outcome: int  # the previous attempt's outcome and done time: where the order ends if the
    done_ns: int  # retry is dropped (a stop)


class SlotRing:
    """Per-attempt slots in recycled regions (see the module)."""

    def __init__(self, regions: int = 4) -> None:
        self.n_regions = 0
        self.arrays: Batch = {}
        self._free: list[int] = []
        self._used: list[int] = []  # slots taken in each region
        self._closed: list[bool] = []
        self._rows: deque[int] = deque()  # row regions in load order, not yet collected
        self._retries: deque[int] = deque()  # retry regions in order, not yet collected
        self._retry_region = -1  # the retry region being filled (−1: none)
        self._grow(max(1, regions))

    # -- arrays --------------------------------------------------------------------------------

    def _grow(self, regions: int) -> None:
        """Room for ``regions`` regions in all (slot numbers keep their meaning)."""
        old, n_old = self.arrays, self.n_regions
        cap = regions * REGION
        new: Batch = {}
        for name, dtype in SLOT_FIELDS:
            a = np.zeros(cap, dtype=dtype)
            if old:
                a[: n_old * REGION] = old[name]
            new[name] = a
        self.arrays = new
        self.n_regions = regions
        self._free.extend(range(regions - 1, n_old - 1, -1))  # lowest first from pop()
        self._used.extend([0] * (regions - n_old))
        self._closed.extend([False] * (regions - n_old))
        # the engine writes and reads single slots on its hot path through memoryviews of the
        # arrays (a memoryview's item is a third cheaper to set than a NumPy array's; batches
        # and vector work go through ``arrays``)
        self.intended_ns = new["intended_ns"].data
        self.dispatched_ns = new["dispatched_ns"].data
        self.sent_ns = new["sent_ns"].data
        self.done_ns = new["done_ns"].data
        self.status = new["status"].data
        self.outcome = new["outcome"].data
        self.reason = new["reason"].data
        self.tries = new["try"].data
        self.final = new["final"].data
        self.flags = new["flags"].data
        self.step = new["step"].data

    def nbytes(self) -> int:
        """Memory held by the slots."""
        return sum(a.nbytes for a in self.arrays.values())

    def _take(self) -> int:
        if not self._free:
            self._grow(2 * self.n_regions)
        r = self._free.pop()
        self._used[r] = 0
        self._closed[r] = False
        a, b = r * REGION, (r + 1) * REGION
        for name in ("dispatched_ns", "sent_ns", "done_ns"):
            self.arrays[name][a:b] = -1
        self.arrays["status"][a:b] = 0
        self.arrays["outcome"][a:b] = 0
        self.arrays["reason"][a:b] = 0
        self.arrays["final"][a:b] = True
        self.arrays["step"][a:b] = 0
        return r

    # -- filling -------------------------------------------------------------------------------

    def load_rows(self, rows: npt.NDArray[np.void], first_row: int, row_step: int) -> int:
        """A region for these schedule rows (≤ REGION of them); the slot of the first row.

        The previous row region is closed. ``first_row``/``row_step``: the global schedule row
        numbers of the rows (worker k of N holds rows k, k + N, …).
        """
        n = len(rows)
        if n > REGION:
            raise ValueError(f"a region holds at most {REGION} rows, got {n}")
        if self._rows:
            self._closed[self._rows[-1]] = True
        r = self._take()
        a, b = r * REGION, r * REGION + n
        arr = self.arrays
        arr["intended_ns"][a:b] = rows["t_ns"]
        arr["first_ns"][a:b] = rows["t_ns"]
        arr["try"][a:b] = 1
        arr["row"][a:b] = np.arange(first_row, first_row + n * row_step, row_step)
        arr["order"][a:b] = rows["order"]
        arr["buyer"][a:b] = rows["buyer"]
        arr["sku"][a:b] = rows["product"]
        arr["qty"][a:b] = rows["qty"]
        arr["flags"][a:b] = rows["flags"]
        self._used[r] = n
        self._rows.append(r)
        return a

    def close_rows(self) -> None:
        """No more rows come (the schedule ended, or the run stopped)."""
        if self._rows:
            self._closed[self._rows[-1]] = True

    def add_retry(self, of: RetryOf, intended_ns: int) -> int:
        """A slot for a retry of ``of``, due at ``intended_ns``; its number."""
        return self.add_attempt(
            intended_ns,
            of.first_ns,
            of.tries + 1,
            of.row,
            of.order,
            of.buyer,
            of.sku,
            of.qty,
            of.flags,
        )

    def add_attempt(
        self,
        intended_ns: int,
        first_ns: int,
        tries: int,
        row: int,
        order: int,
        buyer: int,
        sku: int,
        qty: int,
        flags: int,
        step: int = 0,
    ) -> int:
        """A slot for an attempt outside the row regions (a retry, a journey's step), due at
        ``intended_ns``, taken in order from the retry region being filled; its number."""
        r = self._retry_region
        if r < 0 or self._used[r] >= REGION:
            if r >= 0:
                self._closed[r] = True
            r = self._retry_region = self._take()
            self._retries.append(r)
        slot = r * REGION + self._used[r]
        self._used[r] += 1
        arr = self.arrays
        arr["intended_ns"][slot] = intended_ns
        arr["first_ns"][slot] = first_ns
        arr["try"][slot] = tries
        arr["row"][slot] = row
        arr["order"][slot] = order
        arr["buyer"][slot] = buyer
        arr["sku"][slot] = sku
        arr["qty"][slot] = qty
        arr["flags"][slot] = flags
        arr["step"][slot] = step
        return slot

    def retry_of(self, slot: int) -> RetryOf:
        """What a retry of the attempt in ``slot`` carries over."""
        arr = self.arrays
        return RetryOf(
            int(arr["row"][slot]),
            int(arr["order"][slot]),
            int(arr["buyer"][slot]),
            int(arr["sku"][slot]),
            int(arr["qty"][slot]),
            int(arr["flags"][slot]),
            int(arr["first_ns"][slot]),
            int(arr["try"][slot]),
            int(arr["outcome"][slot]),
            int(arr["done_ns"][slot]),
        )

    def close_retries(self) -> None:
        """Close the retry region being filled (the next retry opens a new one), so that a
        region of rare retries is folded within a bounded time too."""
        r = self._retry_region
        if r >= 0 and self._used[r]:
            self._closed[r] = True
            self._retry_region = -1

    # -- emptying ------------------------------------------------------------------------------

    def _batch(self, r: int) -> Batch:
        a = r * REGION
        b = a + self._used[r]
        return {name: arr[a:b] for name, arr in self.arrays.items()}

    def collect(self, everything: bool = False) -> Iterator[Batch]:
        """Batches (views) of the closed regions whose attempts are all over, oldest first; each
        region is recycled once the caller asks for the next batch. ``everything``: every region,
        over or not (the end of a run; unanswered attempts are then as they are)."""
        if everything:
            self.close_rows()
            if self._retry_region >= 0:
                self._closed[self._retry_region] = True
                self._retry_region = -1
        for regions in (self._rows, self._retries):
            while regions:
                r = regions[0]
                if not everything:
                    if not self._closed[r]:
                        break
                    a, b = r * REGION, r * REGION + self._used[r]
                    out = self.arrays["done_ns"][a:b] < 0
                    if regions is self._retries:  # taken slots are dispatched at once, except
                        out &= self.arrays["dispatched_ns"][a:b] >= 0  # a journey's unsent row
                    if self._used[r] and out.any():
                        break  # the oldest is still out: the newer ones wait (bounded)
                regions.popleft()
                if self._used[r]:
                    yield self._batch(r)
                self._free.append(r)

    def finalize(self, now_ns: int, timeout: int, reason: int = 0) -> None:
        """The end of a run: every attempt sent and not answered timed out at ``now_ns``
        (outcome ``timeout``, reason code ``reason``)."""
        for r in (*self._rows, *self._retries):
            a = r * REGION
            b = a + self._used[r]
            arr = self.arrays
            open_ = (arr["sent_ns"][a:b] >= 0) & (arr["done_ns"][a:b] < 0)
            arr["outcome"][a:b][open_] = timeout
            arr["reason"][a:b][open_] = reason
            arr["done_ns"][a:b][open_] = now_ns

    def pending(self) -> Batch:
        """Every slot not yet collected, concatenated (for the live progress; a copy)."""
        parts = [self._batch(r) for r in (*self._rows, *self._retries) if self._used[r]]
        if not parts:
            return {name: np.zeros(0, dtype=t) for name, t in SLOT_FIELDS}
        return {name: np.concatenate([p[name] for p in parts]) for name, _ in SLOT_FIELDS}
