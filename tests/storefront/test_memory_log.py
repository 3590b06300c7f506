"""The memory backend's order log against a plain reference model, order by order.

The backend keeps its orders in packed columns (for speed); the reference keeps one dict per
order. Any sequence of orders (repeated ids, several SKUs, per-buyer limits, sell-outs) and
snapshots taken at any point must give the same answers from both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.storefront.backends.base import OUT_OF_STOCK, OVER_LIMIT, TAKEN, Reservation
from simulator.storefront.backends.memory import MemoryBackend

STOCK = {"durian": 6, "walet": 4, "manggis": 2**40}
LIMITS = {"walet": 2}


@dataclass
class Reference:
    """The storefront contract with nothing packed: what the log must agree with."""

    remaining: dict[str, int] = field(default_factory=lambda: dict(STOCK))
    first: dict[str, Reservation] = field(default_factory=dict)
    bought: dict[tuple[str, str], int] = field(default_factory=dict)
    ledger: list[tuple[str, str, int, str]] = field(default_factory=list)

    def order(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        if order_id in self.first:
            return self.first[order_id]._replace(replayed=True)
        limit = LIMITS.get(sku, 0)
        if limit and self.bought.get((user_id, sku), 0) + qty > limit:
            r = Reservation(OVER_LIMIT, sku, qty, self.remaining[sku])
        elif self.remaining[sku] < qty:
            r = Reservation(OUT_OF_STOCK, sku, qty, self.remaining[sku])
        else:
            self.remaining[sku] -= qty
            self.bought[(user_id, sku)] = self.bought.get((user_id, sku), 0) + qty
            self.ledger.append((order_id, sku, qty, user_id))
            r = Reservation(TAKEN, sku, qty, self.remaining[sku])
        self.first[order_id] = r
        return r


orders = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"]),
            st.sampled_from(sorted(STOCK)),
            st.one_of(st.integers(1, 3), st.just(2**31 - 1)),
            st.sampled_from(["ana", "budi"]),
        ),
        st.just("snapshot"),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(orders, st.booleans())
def test_the_log_answers_like_the_reference(steps: list, fast: bool) -> None:
    backend = MemoryBackend(STOCK, LIMITS)
    ref = Reference()

    async def check() -> None:
        for step in steps:
            if step == "snapshot":
                snap = await backend.snapshot()
                for sku, n in STOCK.items():
                    units = sum(q for _, s, q, _ in ref.ledger if s == sku)
                    count = sum(1 for _, s, _, _ in ref.ledger if s == sku)
                    assert (snap[sku].ledger_units, snap[sku].ledger_orders) == (units, count)
                    assert snap[sku].sold == units == n - snap[sku].remaining
                continue
            expected = ref.order(*step)
            if fast:  # the HTTP layer's path: confirm_now first, reserve_now when it says -1
                remaining = backend.confirm_now(*step)
                got = (
                    Reservation(TAKEN, step[1], step[2], remaining)
                    if remaining >= 0
                    else backend.reserve_now(*step)
                )
            else:
                got = await backend.reserve(*step)
            assert got == expected, step
        assert await backend.ledger() == ref.ledger

    asyncio.run(check())


def test_reset_forgets_the_log_and_its_totals() -> None:
    async def check() -> None:
        backend = MemoryBackend(STOCK, LIMITS)
        assert backend.confirm_now("o1", "durian", 2, "ana") == 4
        assert (await backend.snapshot())["durian"].ledger_units == 2
        await backend.reset({"durian": 1})
        assert await backend.ledger() == []
        snap = await backend.snapshot()
        assert set(snap) == {"durian"} and snap["durian"].ledger_units == 0
        assert backend.reserve_now("o1", "durian", 2, "ana").outcome == OUT_OF_STOCK
        assert backend.confirm_now("o2", "durian", 1, "ana") == 0
        assert await backend.ledger() == [("o2", "durian", 1, "ana")]

    asyncio.run(check())
