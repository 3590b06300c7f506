"""The memory backend's reservations against a plain reference model, in any order of steps."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from simulator.storefront.backends import (
    CANCELLED,
    EXPIRED,
    HELD,
    OUT_OF_STOCK,
    PAID,
    REFUSED,
    TAKEN,
    BackendOptions,
)
from simulator.storefront.backends.memory import MemoryBackend

TTL_S = 1.0
STOCK = {"a": 4, "b": 2}
IDS = st.sampled_from([f"o{i}" for i in range(6)])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Order:
    status: str
    sku: str
    qty: int
    expires_at: float
    remaining: int  # the SKU's stock as first decided


class Reservations(RuleBasedStateMachine):
    """Reserve, pay, cancel, let time pass and expire, reset: the backend agrees with a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        options = BackendOptions(reservation_ttl_s=TTL_S, clock=self.clock)
        self.backend = MemoryBackend(STOCK, {}, options)
        self._fresh(STOCK)

    def _fresh(self, stocks: dict[str, int]) -> None:
        self.stocks = dict(stocks)
        self.free = dict(stocks)
        self.orders: dict[str, Order] = {}
        self.paid = dict.fromkeys(stocks, 0)
        self.returned = dict.fromkeys(stocks, 0)
        self.reserved = dict.fromkeys(stocks, 0)

    def _give_back(self, order: Order, status: str) -> None:
        order.status = status
        self.free[order.sku] += order.qty
        self.returned[order.sku] += order.qty

    @rule(order_id=IDS, sku=st.sampled_from(sorted(STOCK)), qty=st.integers(1, 3))
    def reserve(self, order_id: str, sku: str, qty: int) -> None:
        r = self.backend.reserve_now(order_id, sku, qty, "u")
        first = self.orders.get(order_id)
        if first is not None:
            assert r.replayed and (r.sku, r.qty, r.remaining) == (
                first.sku,
                first.qty,
                first.remaining,
            )
            assert r.expires_at == first.expires_at
            return
        if self.free[sku] >= qty:
            self.free[sku] -= qty
            self.reserved[sku] += qty
            order = Order(HELD, sku, qty, self.clock.now + TTL_S, self.free[sku])
            assert (r.outcome, r.expires_at) == (TAKEN, order.expires_at)
        else:
            order = Order(REFUSED, sku, qty, 0.0, self.free[sku])
            assert r.outcome == OUT_OF_STOCK
        assert r.remaining == order.remaining
        self.orders[order_id] = order

    def _end(self, order_id: str, status: str) -> None:
        method = self.backend.pay_now if status == PAID else self.backend.cancel_now
        state = method(order_id)
        order = self.orders.get(order_id)
        if order is None:
            assert state is None
            return
        assert state is not None
        changed = order.status == HELD
        if changed and self.clock.now >= order.expires_at:
            self._give_back(order, EXPIRED)
        elif changed and status == PAID:
            order.status = PAID
            self.paid[order.sku] += order.qty
        elif changed:
            self._give_back(order, CANCELLED)
        assert (state.status, state.changed) == (order.status, changed)

    @rule(order_id=IDS)
    def pay(self, order_id: str) -> None:
        self._end(order_id, PAID)

    @rule(order_id=IDS)
    def cancel(self, order_id: str) -> None:
        self._end(order_id, CANCELLED)

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5]), sweep=st.booleans())
    def time_passes(self, seconds: float, sweep: bool) -> None:
        self.clock.now += seconds
        if not sweep:
            return
        due = [
            o for o in self.orders.values() if o.status == HELD and o.expires_at <= self.clock.now
        ]
        for order in due:
            self._give_back(order, EXPIRED)
        assert self.backend.expire_due_now() == len(due)

    @rule(b=st.integers(0, 3))
    def reset(self, b: int) -> None:
        stocks = {"a": 4, "b": b}
        self.clock.now += 0.25
        import asyncio

        asyncio.run(self.backend.reset(stocks))
        self._fresh(stocks)

    @invariant()
    def agrees(self) -> None:
        import asyncio

        snapshot = asyncio.run(self.backend.snapshot())
        for sku, initial in self.stocks.items():
            s = snapshot[sku]
            held = sum(o.qty for o in self.orders.values() if o.sku == sku and o.status == HELD)
            assert (s.initial, s.remaining, s.paid, s.held) == (
                initial,
                self.free[sku],
                self.paid[sku],
                held,
            )
            assert (s.reserved, s.returned) == (self.reserved[sku], self.returned[sku])
            assert s.initial == s.paid + s.held + s.remaining
            assert s.reserved == s.paid + s.held + s.returned
            assert s.double_returns == s.paid_after_expiry == 0
        for order_id, order in self.orders.items():
            state = self.backend.order_now(order_id)
            assert state is not None
            expect = order.status
            if expect == HELD and self.clock.now >= order.expires_at:
                expect = EXPIRED  # due, not swept yet: it reads expired
            assert state.status == expect


Reservations.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestReservations = Reservations.TestCase
