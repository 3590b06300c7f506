"""In-process stock: the correct ``memory`` backend and the deliberately racy ``memory-racy``.

Both keep everything in plain dicts on the event loop's thread. The correct one checks and
takes stock with no ``await`` in between, so no other order can interleave; the racy one awaits
a simulated store round trip between reading and writing, as an inventory service that reads a
row, decides in application code and writes the result back would — and so it oversells.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from simulator.storefront.backends.base import (
    CONFIRMED,
    OVER_LIMIT,
    SOLD_OUT,
    BackendOptions,
    LedgerEntry,
    Reservation,
    SkuSnapshot,
    next_limits,
)

#: one order's first outcome, kept per order id: (order_id, sku, qty, user_id, outcome,
#: remaining). Its first four fields are the :data:`LedgerEntry`, so a confirmed order's record
#: is also its ledger entry: one tuple per order, not two (each young tuple costs the garbage
#: collector a visit before it is untracked: ~1.5k instructions per order, bench/storefront_vs_bare)
OrderRecord = tuple[str, str, int, str, int, int]


class MemoryBackend:
    """Correct in-process stock: check-and-decrement in one synchronous step.

    This is the storefront's hot path in benchmarks, so :meth:`reserve` is written to allocate
    little: one :data:`OrderRecord` tuple per order, kept for idempotency and, when confirmed,
    in the ledger too.
    """

    name = "memory"
    #: decides with no I/O, so the HTTP layer may call :meth:`confirm_now` and
    #: :meth:`reserve_now` without awaiting
    synchronous = True

    def __init__(
        self,
        stocks: Mapping[str, int],
        limits: Mapping[str, int],
        options: BackendOptions | None = None,
    ) -> None:
        self._configured_limits = dict(limits)
        self.limits: dict[str, int] = {}
        self._initial: dict[str, int] = {}
        self._remaining: dict[str, int] = {}
        self._sold: dict[str, int] = {}
        # order id → its record: a plain tuple, not a Reservation, because the garbage
        # collector untracks exact tuples of atomic values, and keeping hundreds of thousands
        # of tracked records alive made full collections cost ~10% of throughput
        self._orders: dict[str, OrderRecord] = {}
        self._bought: dict[tuple[str, str], int] = {}
        self._ledger: list[OrderRecord] = []  # the records of confirmed orders, in order
        self._load(stocks)

    def _load(self, stocks: Mapping[str, int]) -> None:
        self.limits = next_limits(self._configured_limits, stocks)
        self._initial = dict(stocks)
        self._remaining = dict(stocks)
        self._sold = dict.fromkeys(stocks, 0)
        self._orders = {}
        self._bought = {}
        self._ledger = []

    async def start(self) -> None:
        """Nothing to connect to: the stock was loaded at construction."""

    async def close(self) -> None:
        """Nothing to release."""

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Check and take stock with no await in between: exactly as many units as there are."""
        return self.reserve_now(order_id, sku, qty, user_id)

    def confirm_now(self, order_id: str, sku: str, qty: int, user_id: str) -> int:
        """Confirm a new order that fits: the SKU's remaining stock, or -1 with nothing changed.

        The HTTP layer's fast path for the common case: it returns a plain int instead of a
        :class:`Reservation` (a NamedTuple costs a Python-level ``__new__`` per order). For -1
        (a repeated order id, too little stock, over the buyer's limit) the caller asks
        :meth:`reserve_now`, which then decides and records the outcome.
        """
        orders = self._orders
        if order_id in orders:
            return -1
        remaining = self._remaining[sku] - qty
        if remaining < 0:
            return -1
        limit = self.limits[sku]
        if limit:
            key = (user_id, sku)
            bought = self._bought.get(key, 0) + qty
            if bought > limit:
                return -1
            self._bought[key] = bought
        self._remaining[sku] = remaining
        self._sold[sku] += qty
        self._ledger.append(record := (order_id, sku, qty, user_id, CONFIRMED, remaining))
        orders[order_id] = record
        return remaining

    def reserve_now(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """:meth:`reserve` without a coroutine, for callers on the event loop's thread."""
        done = self._orders.get(order_id)
        if done is not None:
            return _replay(done)
        remaining = self._remaining[sku]
        limit = self.limits[sku]
        if limit:
            key = (user_id, sku)
            bought = self._bought.get(key, 0)
            if bought + qty > limit:
                self._orders[order_id] = (order_id, sku, qty, user_id, OVER_LIMIT, remaining)
                return Reservation(OVER_LIMIT, sku, qty, remaining)
        if remaining < qty:
            outcome = SOLD_OUT
        else:
            outcome = CONFIRMED
            remaining -= qty
            self._remaining[sku] = remaining
            self._sold[sku] += qty
            if limit:
                self._bought[key] = bought + qty
        record = (order_id, sku, qty, user_id, outcome, remaining)
        if outcome == CONFIRMED:
            self._ledger.append(record)
        self._orders[order_id] = record
        return Reservation(outcome, sku, qty, remaining)

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Reload the stock and forget every order."""
        self._load(stocks)

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters as kept, ledger numbers summed from the ledger itself."""
        return snapshot_from(self._initial, self._sold, self._remaining, self._ledger)

    async def ledger(self) -> list[LedgerEntry]:
        """A copy of the ledger."""
        return [record[:4] for record in self._ledger]


class RacyMemoryBackend(MemoryBackend):
    """In-process stock with a read–await–write race: oversells under concurrent orders.

    Reads the remaining stock, the buyer's purchases and the order id's record, awaits
    ``racy_delay_s`` (a store round trip), then writes the value it computed from what it read.
    Every confirmed unit is counted in ``sold`` and the ledger, so ``sold`` can exceed
    ``initial`` while ``initial - remaining`` does not (lost updates) — the audit's job to find.
    """

    name = "memory-racy"
    synchronous = False  # its reserve awaits a round trip: reserve_now/confirm_now are not it

    def __init__(
        self,
        stocks: Mapping[str, int],
        limits: Mapping[str, int],
        options: BackendOptions | None = None,
    ) -> None:
        super().__init__(stocks, limits, options)
        self._delay_s = (options or BackendOptions()).racy_delay_s

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Read, await the simulated round trip, then write what was computed from the read."""
        done = self._orders.get(order_id)
        remaining = self._remaining[sku]
        limit = self.limits[sku]
        key = (user_id, sku)
        bought = self._bought.get(key, 0)
        await asyncio.sleep(self._delay_s)
        if done is not None:
            return _replay(done)
        if limit and bought + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = SOLD_OUT
        else:
            outcome = CONFIRMED
            remaining -= qty
            self._remaining[sku] = remaining  # lost update: overwrites other orders' writes
            self._sold[sku] += qty
            self._bought[key] = bought + qty
        record = (order_id, sku, qty, user_id, outcome, remaining)
        if outcome == CONFIRMED:
            self._ledger.append(record)  # every unit sold is in the ledger, oversold or not
        self._orders[order_id] = record
        return Reservation(outcome, sku, qty, remaining)


def _replay(record: OrderRecord) -> Reservation:
    """An order id's first outcome, again."""
    _, sku, qty, _, outcome, remaining = record
    return Reservation(outcome, sku, qty, remaining, replayed=True)


def snapshot_from(
    initial: Mapping[str, int],
    sold: Mapping[str, int],
    remaining: Mapping[str, int],
    ledger: Iterable[LedgerEntry | OrderRecord],
) -> dict[str, SkuSnapshot]:
    """Per-SKU snapshot from counters and a ledger (ledger SKUs not on sale are included)."""
    units: dict[str, int] = {}
    orders: dict[str, int] = {}
    for entry in ledger:
        sku, qty = entry[1], entry[2]
        units[sku] = units.get(sku, 0) + qty
        orders[sku] = orders.get(sku, 0) + 1
    return {
        sku: SkuSnapshot(
            initial=initial.get(sku, 0),
            sold=sold.get(sku, 0),
            ledger_units=units.get(sku, 0),
            ledger_orders=orders.get(sku, 0),
            remaining=remaining.get(sku, 0),
        )
        for sku in {**initial, **units}
    }
