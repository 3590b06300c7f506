"""Stock over time: free, held and sold units sampled about once a second, in a bounded ring.

The storefront samples its backend's snapshot (:meth:`Backend.snapshot`) once a second and
keeps, per sample, the units free (on sale), held (live reservations) and sold (paid, or
confirmed without a TTL) for the totals over every SKU and for at most :data:`MAX_SKUS` SKUs
(the largest initial stocks). ``GET /inventory/history`` serves them; the audit fetches them
after a run and the HTML report stacks them over time.

Memory is fixed when the history starts: a ring of ``capacity`` samples (default one hour) of
``(1 + MAX_SKUS) × 3`` int64 plus one float64 each, ≈ 0.8 MB for an hour; a longer run keeps
its last hour (``dropped`` says how many samples fell off the front). A snapshot of a Redis or
PostgreSQL store reads its records, which grow with the sale: when one takes more than
:data:`MAX_SHARE` of the interval, the sampler waits longer (never more than that share of its
time goes to sampling) and the samples say when they were taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

import numpy as np

from simulator.storefront.backends import Backend, SkuSnapshot
from simulator.storefront.backends.base import cancel_until_done

_log = logging.getLogger(__name__)

#: SKUs kept one by one (the rest are only in the totals)
MAX_SKUS = 8
#: samples kept: one hour at one a second
CAPACITY = 3600
#: seconds between samples, at least
INTERVAL_S = 1.0
#: the most of its time the sampler spends taking snapshots
MAX_SHARE = 0.05
#: what each sample holds per series, in this order
KINDS = ("free", "held", "sold")


class StockHistory:
    """A bounded ring of (time, free/held/sold for the totals and the first SKUs) samples."""

    def __init__(self, capacity: int = CAPACITY, max_skus: int = MAX_SKUS) -> None:
        if capacity < 1 or max_skus < 0:
            raise ValueError("capacity must be ≥ 1 and max_skus ≥ 0")
        self.capacity = capacity
        self.max_skus = max_skus
        self._t = np.zeros(capacity, dtype=np.float64)
        self._v = np.zeros((capacity, 1 + max_skus, len(KINDS)), dtype=np.int64)
        self.clear(0.0, {})

    def clear(self, started_at: float, initial: Mapping[str, int]) -> None:
        """Start again at ``started_at`` (clock seconds) for a sale with this initial stock."""
        ranked = sorted(initial, key=lambda sku: (-initial[sku], sku))
        self.skus: tuple[str, ...] = tuple(ranked[: self.max_skus])
        self.started_at = started_at
        self.count = 0  # samples ever recorded since the start
        self.initial_total = sum(initial.values())

    def record(self, now: float, snapshot: Mapping[str, SkuSnapshot]) -> None:
        """Add one sample taken at ``now`` (oldest dropped when the ring is full)."""
        i = self.count % self.capacity
        self._t[i] = now - self.started_at
        row = self._v[i]
        row[:] = 0
        for s in snapshot.values():
            row[0] += (s.remaining, s.held, s.sold)
        for k, sku in enumerate(self.skus, start=1):
            one = snapshot.get(sku)
            if one is not None:
                row[k] = (one.remaining, one.held, one.sold)
        self.count += 1

    def to_json(self) -> dict[str, object]:
        """The samples, oldest first: ``t_s`` (since the start) and per series free/held/sold."""
        n = min(self.count, self.capacity)
        first = self.count - n
        order = (np.arange(n) + first) % self.capacity
        values = self._v[order]
        series: dict[str, dict[str, list[int]]] = {}
        for k, name in enumerate(("total", *self.skus)):
            series[name] = {kind: values[:, k, j].tolist() for j, kind in enumerate(KINDS)}
        return {
            "started_at": self.started_at,
            "interval_s": INTERVAL_S,
            "capacity": self.capacity,
            "dropped": first,
            "initial_total": self.initial_total,
            "skus": list(self.skus),
            "t_s": [round(t, 3) for t in self._t[order].tolist()],
            "series": series,
        }


class Sampler:
    """The task that fills a :class:`StockHistory` from a backend about once a second."""

    def __init__(
        self, backend: Backend, history: StockHistory, clock: Callable[[], float] = time.time
    ) -> None:
        self.backend = backend
        self.history = history
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start sampling (the first sample at once)."""
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(self._stopping))

    async def stop(self) -> None:
        """Stop sampling before the backend closes."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await cancel_until_done([task])

    async def restart(self, initial: Mapping[str, int]) -> None:
        """Start the history again (a reset) with a first sample of the stock as it is now."""
        self.history.clear(self.clock(), initial)
        try:
            await self.sample()
        except Exception:  # the next sample comes within a second; the reset itself stands
            _log.exception("sampling the stock after a reset failed")

    async def sample(self) -> float:
        """Take one sample now; returns how long the snapshot took (seconds)."""
        began = time.perf_counter()
        snapshot = await self.backend.snapshot()
        self.history.record(self.clock(), snapshot)
        return time.perf_counter() - began

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                cost_s = await self.sample()
            except Exception:  # a store hiccup: no sample this second
                _log.exception("sampling the stock failed")
                cost_s = 0.0
            pause_s = max(INTERVAL_S, cost_s / MAX_SHARE) - cost_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(pause_s, 0.0))
