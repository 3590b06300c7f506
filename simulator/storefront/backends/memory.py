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

Reservation mode adds a state and an expiry per row and one heap of (expiry, row) for all
holds: :meth:`MemoryBackend.expire_due` pops what is due, no task or timer per reservation.
"""

from __future__ import annotations

import asyncio
import heapq
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import replace

from simulator.storefront.backends.base import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    OUT_OF_STOCK,
    OVER_LIMIT,
    PAID,
    REFUSED,
    TAKEN,
    BackendOptions,
    LedgerEntry,
    OrderState,
    Overdue,
    Reservation,
    SkuSnapshot,
    next_limits,
    overdue_totals,
)

# a row's code: SKU index << _SKU_SHIFT | qty << 2 | outcome (qty < 2**32, validated ≤ 2**31 - 1)
_SKU_SHIFT = 34
_QTY_MASK = (1 << 32) - 1
# a row's state in reservation mode (index into _STATUS)
_HELD, _PAID, _EXPIRED, _CANCELLED, _REFUSED = range(5)
_STATUS = (HELD, PAID, EXPIRED, CANCELLED, REFUSED)
_RETURNED = (_EXPIRED, _CANCELLED)


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
        options = options or BackendOptions()
        self._configured_limits = dict(limits)
        self._ttl_s = options.reservation_ttl_s
        self._clock = options.clock
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
        # reservation mode: per row its state and expiry; the holds by expiry; paid rows in order
        self._state = bytearray()
        self._expiry = array("d")
        self._due: list[tuple[float, int]] = []
        self._paid_rows: list[int] = []
        zero = dict.fromkeys(stocks, 0)
        self._held, self._reserved, self._returned = dict(zero), dict(zero), dict(zero)
        self._double, self._late_paid = dict(zero), dict(zero)

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
            self._count_taken(sku, qty)
            if limit:
                self._bought[key] = self._bought.get(key, 0) + qty
        expires_at = self._record(order_id, sku, qty, user_id, outcome, remaining)
        return Reservation(outcome, sku, qty, remaining, expires_at=expires_at)

    def _count_taken(self, sku: str, qty: int) -> None:
        """Count units just taken: sold (confirm-on-order) or held and reserved."""
        if self._ttl_s is None:
            self._sold[sku] += qty
        else:
            self._held[sku] += qty
            self._reserved[sku] += qty

    def _record(
        self, order_id: str, sku: str, qty: int, user_id: str, outcome: int, remaining: int
    ) -> float:
        """Append a decided order to the log; its id now points at this row.

        In reservation mode a taken order becomes a hold: returns its expiry (else 0.0).
        """
        row = len(self._ids)
        self._rows[order_id] = row
        self._ids.append(order_id)
        self._users.append(user_id)
        self._codes.append(self._sku_codes[sku] | qty << 2 | outcome)
        self._left.append(remaining)
        if self._ttl_s is None:
            return 0.0
        expires_at = self._clock() + self._ttl_s if outcome == TAKEN else 0.0
        self._state.append(_HELD if outcome == TAKEN else _REFUSED)
        self._expiry.append(expires_at)
        if outcome == TAKEN:
            heapq.heappush(self._due, (expires_at, row))
        return expires_at

    def _replay(self, row: int) -> Reservation:
        """The first outcome of the order in ``row``, again."""
        code = self._codes[row]
        sku = self._sku_names[code >> _SKU_SHIFT]
        expires_at = self._expiry[row] if self._ttl_s is not None else 0.0
        qty = code >> 2 & _QTY_MASK
        return Reservation(code & 3, sku, qty, self._left[row], True, expires_at)

    # -- reservations ----------------------------------------------------------------------

    def _state_of(self, row: int, changed: bool = False) -> OrderState:
        """The order in ``row`` as the caller sees it (a hold past its expiry reads expired)."""
        code = self._codes[row]
        sku = self._sku_names[code >> _SKU_SHIFT]
        qty = code >> 2 & _QTY_MASK
        order_id, user_id = self._ids[row], self._users[row]
        if self._ttl_s is None:
            status = CONFIRMED if code & 3 == TAKEN else REFUSED
            return OrderState(order_id, status, sku, qty, user_id)
        state, expires_at = self._state[row], self._expiry[row]
        if state == _HELD and self._clock() >= expires_at:
            state = _EXPIRED
        return OrderState(order_id, _STATUS[state], sku, qty, user_id, expires_at, changed)

    def _settle(self, row: int, new: int) -> None:
        """Write a hold's end (paid, expired or cancelled) with its stock effect, as it stands.

        The correct backend calls it only for a row still held; the racy one also for a row
        that changed since it looked, and these counters then name what went wrong.
        """
        old = self._state[row]
        code = self._codes[row]
        sku = self._sku_names[code >> _SKU_SHIFT]
        qty = code >> 2 & _QTY_MASK
        if new == _PAID:
            self._sold[sku] += qty
            self._paid_rows.append(row)
            if old in _RETURNED:
                self._late_paid[sku] += 1
        else:
            self._remaining[sku] += qty
            self._returned[sku] += qty
            if old in _RETURNED:
                self._double[sku] += 1
            elif old == _PAID:
                self._late_paid[sku] += 1
        if old == _HELD:
            self._held[sku] -= qty
        self._state[row] = new

    def pay_now(self, order_id: str) -> OrderState | None:
        """:meth:`pay` without a coroutine: a hold still in time is paid, one past it expired."""
        return self._end_now(order_id, _PAID)

    def cancel_now(self, order_id: str) -> OrderState | None:
        """:meth:`cancel` without a coroutine (a hold past its expiry is expired instead)."""
        return self._end_now(order_id, _CANCELLED)

    def _end_now(self, order_id: str, end: int) -> OrderState | None:
        """End a hold as ``end`` (expired instead when its time is up); other states as they are."""
        row = self._rows.get(order_id)
        if row is None:
            return None
        if self._ttl_s is None or self._state[row] != _HELD:
            return self._state_of(row)
        self._settle(row, _EXPIRED if self._clock() >= self._expiry[row] else end)
        return self._state_of(row, changed=True)

    def expire_due_now(self) -> int:
        """:meth:`expire_due` without a coroutine: pop the due holds off the heap."""
        due, state, now, expired = self._due, self._state, self._clock(), 0
        while due and due[0][0] <= now:
            row = heapq.heappop(due)[1]
            if state[row] == _HELD:
                self._settle(row, _EXPIRED)
                expired += 1
        return expired

    def order_now(self, order_id: str) -> OrderState | None:
        """:meth:`order` without a coroutine."""
        row = self._rows.get(order_id)
        return None if row is None else self._state_of(row)

    async def pay(self, order_id: str) -> OrderState | None:
        """Pay a hold in one synchronous step (see :meth:`pay_now`)."""
        return self.pay_now(order_id)

    async def cancel(self, order_id: str) -> OrderState | None:
        """Cancel a hold in one synchronous step (see :meth:`cancel_now`)."""
        return self.cancel_now(order_id)

    async def expire_due(self) -> int:
        """Expire the due holds in one synchronous step (see :meth:`expire_due_now`)."""
        return self.expire_due_now()

    async def overdue_holds(self, before: float) -> dict[str, Overdue]:
        """The holds on the heap of expiries due before ``before`` and still held.

        Walks only the heap's entries due before then (a heap's children are never due
        earlier than their parent), so it costs the overdue holds, not every hold.
        """
        state, codes, names, due = self._state, self._codes, self._sku_names, self._due
        found: list[tuple[str, int, float]] = []
        stack = [0]
        while stack:
            i = stack.pop()
            if i < len(due) and due[i][0] < before:
                expires_at, row = due[i]
                if state[row] == _HELD:
                    code = codes[row]
                    found.append((names[code >> _SKU_SHIFT], code >> 2 & _QTY_MASK, expires_at))
                stack += (2 * i + 1, 2 * i + 2)
        return overdue_totals(found)

    async def stock_left(self, sku: str) -> int:
        """The SKU's remaining stock."""
        return self._remaining.get(sku, 0)

    async def order(self, order_id: str) -> OrderState | None:
        """Where an order stands."""
        return self.order_now(order_id)

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Reload the stock and forget every order."""
        self._load(stocks)

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters as kept, ledger numbers summed from the ledger itself."""
        # the log only grows, so each row is summed once: a snapshot costs the rows since the last
        codes, names = self._codes, self._sku_names
        units, orders = self._ledger_units, self._ledger_orders
        if self._ttl_s is None:
            for code in codes[self._summed :]:
                if code & 3 == TAKEN:
                    sku = names[code >> _SKU_SHIFT]
                    units[sku] = units.get(sku, 0) + (code >> 2 & _QTY_MASK)
                    orders[sku] = orders.get(sku, 0) + 1
            self._summed = len(codes)
            return snapshot_totals(self._initial, self._sold, self._remaining, units, orders)
        for row in self._paid_rows[self._summed :]:
            code = codes[row]
            sku = names[code >> _SKU_SHIFT]
            units[sku] = units.get(sku, 0) + (code >> 2 & _QTY_MASK)
            orders[sku] = orders.get(sku, 0) + 1
        self._summed = len(self._paid_rows)
        totals = snapshot_totals(self._initial, self._sold, self._remaining, units, orders)
        return {
            sku: replace(
                snap,
                paid=snap.sold,
                held=self._held.get(sku, 0),
                reserved=self._reserved.get(sku, 0),
                returned=self._returned.get(sku, 0),
                double_returns=self._double.get(sku, 0),
                paid_after_expiry=self._late_paid.get(sku, 0),
            )
            for sku, snap in totals.items()
        }

    async def ledger(self) -> list[LedgerEntry]:
        """The confirmed rows of the log, in order (reservation mode: paid, in payment order)."""
        ids, users, names, codes = self._ids, self._users, self._sku_names, self._codes
        if self._ttl_s is None:
            rows: Iterable[int] = (row for row, code in enumerate(codes) if code & 3 == TAKEN)
        else:
            rows = self._paid_rows
        return [
            (ids[row], names[codes[row] >> _SKU_SHIFT], codes[row] >> 2 & _QTY_MASK, users[row])
            for row in rows
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
            self._count_taken(sku, qty)
            self._bought[key] = bought + qty
        # every unit sold is logged
        expires_at = self._record(order_id, sku, qty, user_id, outcome, remaining)
        return Reservation(outcome, sku, qty, remaining, expires_at=expires_at)

    async def pay(self, order_id: str) -> OrderState | None:
        """Look at the hold, await the round trip, then write paid whatever happened meanwhile."""
        row = self._rows.get(order_id)
        if row is None or self._ttl_s is None:
            return self.order_now(order_id)
        state, in_time = self._state[row], self._clock() < self._expiry[row]
        await asyncio.sleep(self._delay_s)
        if state != _HELD:
            return self._state_of(row)
        self._settle(row, _PAID if in_time else _EXPIRED)  # no second look: may pay a returned hold
        return self._state_of(row, changed=True)

    async def cancel(self, order_id: str) -> OrderState | None:
        """Look at the hold, await the round trip, then give its stock back regardless."""
        row = self._rows.get(order_id)
        if row is None or self._ttl_s is None:
            return self.order_now(order_id)
        state, in_time = self._state[row], self._clock() < self._expiry[row]
        await asyncio.sleep(self._delay_s)
        if state != _HELD:
            return self._state_of(row)
        self._settle(row, _CANCELLED if in_time else _EXPIRED)  # may return a hold twice
        return self._state_of(row, changed=True)

    async def expire_due(self) -> int:
        """Collect the due holds, await the round trip, then return each one's stock regardless."""
        due, state, now = self._due, self._state, self._clock()
        rows = []
        while due and due[0][0] <= now:
            row = heapq.heappop(due)[1]
            if state[row] == _HELD:
                rows.append(row)
        await asyncio.sleep(self._delay_s)
        for row in rows:
            self._settle(row, _EXPIRED)  # a hold paid or cancelled meanwhile is returned too
        return len(rows)


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


def hold_totals(
    totals: Mapping[str, SkuSnapshot],
    held: Mapping[str, int],
    reserved: Mapping[str, int],
    ledger: Iterable[LedgerEntry],
    returns: Iterable[tuple[str, str, int]],
) -> dict[str, SkuSnapshot]:
    """Reservation-mode numbers added to a snapshot, counted from a store's own records.

    ``held``/``reserved`` are summed from the holds, ``returns`` lists every stock return as
    (order_id, sku, qty): a second return of one order is a double return, an order both in
    the ledger (paid) and returned a payment after expiry.
    """
    paid_ids = {entry[0] for entry in ledger}
    returned: dict[str, int] = {}
    events: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    for order_id, sku, qty in returns:
        returned[sku] = returned.get(sku, 0) + qty
        events[sku] = events.get(sku, 0) + 1
        seen.setdefault(sku, set()).add(order_id)
    return {
        sku: replace(
            snap,
            paid=snap.sold,
            held=held.get(sku, 0),
            reserved=reserved.get(sku, 0),
            returned=returned.get(sku, 0),
            double_returns=events.get(sku, 0) - len(seen.get(sku, ())),
            paid_after_expiry=len(seen.get(sku, set()) & paid_ids),
        )
        for sku, snap in totals.items()
    }
