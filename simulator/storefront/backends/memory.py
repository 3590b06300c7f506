"""In-process stock: the correct ``memory`` backend and the deliberately racy ``memory-racy``.

Both keep everything on the event loop's thread. The correct one checks and takes stock with no
``await`` in between, so no other order can interleave; the racy one awaits a simulated store
round trip between reading and writing, as an inventory service that reads a row, decides in
application code and writes the result back would — and so it oversells.

Every decided order is one row of an append-only log kept in columns: the order id and user id
in lists, the SKU, quantity and outcome packed in one machine integer and the stock left in
another (``array('q')``: no Python object per row). An order id maps to its row for
idempotency; the ledger is the log's confirmed rows, in order. Few objects per order matters
here: this is the storefront's hot path, and every object kept alive per order costs the
allocator and the caches more than the code that makes it (bench/storefront_vs_bare.py).
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Iterable, Mapping

from simulator.storefront.backends.base import (
    OUT_OF_STOCK,
    OVER_LIMIT,
    TAKEN,
    BackendOptions,
    LedgerEntry,
    Reservation,
    SkuSnapshot,
    next_limits,
)

# a row's code: SKU index << _SKU_SHIFT | qty << 2 | outcome (qty < 2**32, validated ≤ 2**31 - 1)
_SKU_SHIFT = 34
_QTY_MASK = (1 << 32) - 1


class MemoryBackend:
    """Correct in-process stock: check-and-decrement in one synchronous step."""

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
        self._load(stocks)

    def _load(self, stocks: Mapping[str, int]) -> None:
        self.limits = next_limits(self._configured_limits, stocks)
        self._initial = dict(stocks)
        self._remaining = dict(stocks)
        self._sold = dict.fromkeys(stocks, 0)
        self._bought: dict[tuple[str, str], int] = {}
        self._sku_names = list(stocks)
        self._sku_codes = {sku: i << _SKU_SHIFT for i, sku in enumerate(self._sku_names)}
        # the order log, one row per decided order
        self._rows: dict[str, int] = {}  # order id → its (first) row
        self._ids: list[str] = []
        self._users: list[str] = []
        self._codes = array("q")  # SKU, qty, outcome
        self._left = array("q")  # the SKU's stock after the decision
        # ledger totals per SKU summed from the log's confirmed rows up to row _summed
        self._summed = 0
        self._ledger_units: dict[str, int] = {}
        self._ledger_orders: dict[str, int] = {}

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
        rows = self._rows
        if order_id in rows:
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
        ids = self._ids
        rows[order_id] = len(ids)
        ids.append(order_id)
        self._users.append(user_id)
        self._codes.append(self._sku_codes[sku] | qty << 2)  # | TAKEN (0)
        self._left.append(remaining)
        return remaining

    def reserve_now(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """:meth:`reserve` without a coroutine, for callers on the event loop's thread."""
        row = self._rows.get(order_id)
        if row is not None:
            return self._replay(row)
        remaining = self._remaining[sku]
        limit = self.limits[sku]
        key = (user_id, sku)
        if limit and self._bought.get(key, 0) + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = OUT_OF_STOCK
        else:
            outcome = TAKEN
            remaining -= qty
            self._remaining[sku] = remaining
            self._sold[sku] += qty
            if limit:
                self._bought[key] = self._bought.get(key, 0) + qty
        self._record(order_id, sku, qty, user_id, outcome, remaining)
        return Reservation(outcome, sku, qty, remaining)

    def _record(
        self, order_id: str, sku: str, qty: int, user_id: str, outcome: int, remaining: int
    ) -> None:
        """Append a decided order to the log; its id now points at this row."""
        self._rows[order_id] = len(self._ids)
        self._ids.append(order_id)
        self._users.append(user_id)
        self._codes.append(self._sku_codes[sku] | qty << 2 | outcome)
        self._left.append(remaining)

    def _replay(self, row: int) -> Reservation:
        """The first outcome of the order in ``row``, again."""
        code = self._codes[row]
        sku = self._sku_names[code >> _SKU_SHIFT]
        return Reservation(code & 3, sku, code >> 2 & _QTY_MASK, self._left[row], replayed=True)

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Reload the stock and forget every order."""
        self._load(stocks)

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters as kept, ledger numbers summed from the ledger itself."""
        # the log only grows, so each row is summed once: a snapshot costs the rows since the last
        codes, names = self._codes, self._sku_names
        units, orders = self._ledger_units, self._ledger_orders
        for code in codes[self._summed :]:
            if code & 3 == TAKEN:
                sku = names[code >> _SKU_SHIFT]
                units[sku] = units.get(sku, 0) + (code >> 2 & _QTY_MASK)
                orders[sku] = orders.get(sku, 0) + 1
        self._summed = len(codes)
        return snapshot_totals(self._initial, self._sold, self._remaining, units, orders)

    async def ledger(self) -> list[LedgerEntry]:
        """The confirmed rows of the log, in order."""
        ids, users, names = self._ids, self._users, self._sku_names
        return [
            (ids[row], names[code >> _SKU_SHIFT], code >> 2 & _QTY_MASK, users[row])
            for row, code in enumerate(self._codes)
            if code & 3 == TAKEN
        ]


class RacyMemoryBackend(MemoryBackend):
    """In-process stock with a read–await–write race: oversells under concurrent orders.

    Reads the remaining stock, the buyer's purchases and the order id's record, awaits
    ``racy_delay_s`` (a store round trip), then writes the value it computed from what it read.
    Every confirmed unit is counted in ``sold`` and the ledger, so ``sold`` can exceed
    ``initial`` while ``initial - remaining`` does not (lost updates) — the audit's job to find.
    Two concurrent orders with one id can both be confirmed: two ledger rows, one id.
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
        row = self._rows.get(order_id)
        first = None if row is None else self._replay(row)
        remaining = self._remaining[sku]
        limit = self.limits[sku]
        key = (user_id, sku)
        bought = self._bought.get(key, 0)
        await asyncio.sleep(self._delay_s)
        if first is not None:
            return first
        if limit and bought + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = OUT_OF_STOCK
        else:
            outcome = TAKEN
            remaining -= qty
            self._remaining[sku] = remaining  # lost update: overwrites other orders' writes
            self._sold[sku] += qty
            self._bought[key] = bought + qty
        self._record(order_id, sku, qty, user_id, outcome, remaining)  # every unit sold is logged
        return Reservation(outcome, sku, qty, remaining)


def snapshot_totals(
    initial: Mapping[str, int],
    sold: Mapping[str, int],
    remaining: Mapping[str, int],
    ledger_units: Mapping[str, int],
    ledger_orders: Mapping[str, int],
) -> dict[str, SkuSnapshot]:
    """Per-SKU snapshot from counters and ledger totals (ledger SKUs not on sale included)."""
    return {
        sku: SkuSnapshot(
            initial=initial.get(sku, 0),
            sold=sold.get(sku, 0),
            ledger_units=ledger_units.get(sku, 0),
            ledger_orders=ledger_orders.get(sku, 0),
            remaining=remaining.get(sku, 0),
        )
        for sku in {**initial, **ledger_units}
    }


def snapshot_from(
    initial: Mapping[str, int],
    sold: Mapping[str, int],
    remaining: Mapping[str, int],
    ledger: Iterable[LedgerEntry],
) -> dict[str, SkuSnapshot]:
    """Per-SKU snapshot from counters and a ledger (ledger SKUs not on sale are included)."""
    units: dict[str, int] = {}
    orders: dict[str, int] = {}
    for _, sku, qty, _ in ledger:
        units[sku] = units.get(sku, 0) + qty
        orders[sku] = orders.get(sku, 0) + 1
    return snapshot_totals(initial, sold, remaining, units, orders)
