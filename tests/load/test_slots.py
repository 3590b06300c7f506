"""The engine's bounded per-attempt slots: regions recycled once folded, slot numbers valid
across growth, and a long run's memory set by what is in flight, not by its length."""

from __future__ import annotations

import asyncio

import numpy as np
import uvloop

from simulator.load.engine import EngineConfig, Run
from simulator.load.slots import REGION, SlotRing
from simulator.load.tally import Tally
from simulator.outcomes import (
    CONFIRMED,
    NOT_SENT,
    R_UNANSWERED,
    SOLD_OUT,
    THROTTLED,
    TIMEOUT,
    OutcomeRule,
)
from simulator.records import MemoryRecords
from simulator.retry import Retry

from .conftest import constant_rows


def _rows(n: int, t0: int = 0) -> np.ndarray:
    rows = constant_rows(n, 1000)
    rows["t_ns"] += t0
    return rows


def test_a_region_is_collected_only_when_closed_and_over() -> None:
    ring = SlotRing(regions=2)
    a = ring.load_rows(_rows(10), first_row=0, row_step=1)
    assert list(ring.collect()) == []  # still open: the dispatcher may be in it
    b = ring.load_rows(_rows(5), first_row=10, row_step=1)  # closes the first
    assert list(ring.collect()) == []  # closed, but nothing answered
    ring.arrays["done_ns"][a : a + 9] = 7
    assert list(ring.collect()) == []  # one attempt still out
    ring.done_ns[a + 9] = 8
    (batch,) = ring.collect()
    assert batch["row"].tolist() == list(range(10)) and (batch["done_ns"] >= 7).all()
    ring.arrays["done_ns"][b : b + 5] = 9
    assert list(ring.collect()) == []  # the second is still the open one
    (last,) = ring.collect(everything=True)
    assert last["row"].tolist() == list(range(10, 15))


def test_growing_keeps_slot_numbers_and_their_contents() -> None:
    ring = SlotRing(regions=1)
    first = ring.load_rows(_rows(3), first_row=100, row_step=4)
    ring.sent_ns[first] = 42
    for k in range(5):  # nothing collected: the ring must grow
        ring.load_rows(_rows(REGION, t0=k), first_row=0, row_step=1)
    assert ring.n_regions >= 6
    assert ring.sent_ns[first] == 42
    assert ring.arrays["row"][first : first + 3].tolist() == [100, 104, 108]


def test_retries_take_their_own_slots_and_carry_the_order() -> None:
    ring = SlotRing(regions=2)
    a = ring.load_rows(_rows(2), first_row=0, row_step=1)
    ring.done_ns[a] = 5
    ring.outcome[a] = THROTTLED
    of = ring.retry_of(a)
    assert (of.row, of.tries, of.outcome, of.done_ns) == (0, 1, THROTTLED, 5)
    slot = ring.add_retry(of, 1_000)
    assert ring.tries[slot] == 2 and ring.arrays["first_ns"][slot] == of.first_ns
    ring.close_retries()
    ring.done_ns[slot] = 2_000
    batches = list(ring.collect())  # the retry region is closed and over; the rows are open
    assert [b["try"].tolist() for b in batches] == [[2]]


def test_the_end_of_a_run_times_out_what_was_sent_and_unanswered_with_its_reason() -> None:
    ring = SlotRing(regions=1)
    a = ring.load_rows(_rows(3), first_row=0, row_step=1)
    ring.arrays["sent_ns"][a : a + 2] = 10
    ring.done_ns[a] = 20
    ring.outcome[a], ring.reason[a] = CONFIRMED, 201
    ring.finalize(99, TIMEOUT, R_UNANSWERED)
    (batch,) = ring.collect(everything=True)
    assert batch["outcome"].tolist() == [CONFIRMED, TIMEOUT, NOT_SENT]
    assert batch["reason"].tolist() == [201, R_UNANSWERED, 0]
    assert batch["done_ns"].tolist() == [20, 99, -1]
    t = Tally()
    t.fold_batch(batch)
    assert t.reason_counts() == {
        "confirmed": {"status 201": 1},
        "timeout": {"unanswered at the end": 1},
    }


class _Echo:
    """An in-process transport: every order is answered on the next loop turn (201, then 409
    past the stock), so a run of many orders takes little time and no socket."""

    def __init__(self, channels: int, stock: int, throttle_first: bool = False) -> None:
        self.channels = channels
        self.stock = stock
        self.throttle_first = throttle_first
        self.seen: set[int] = set()
        self.sink = None
        self.rule = OutcomeRule()  # the contract's status map, as the real transports classify
        self.reason_labels: dict[int, str] = {}

    def build(self, sku: int, order: int, qty: int, buyer: int) -> bytes:
        return order.to_bytes(8, "little")

    async def start(self, sink, now_ns: int) -> int:  # type: ignore[no-untyped-def]
        self.sink = sink
        for _ in range(self.channels):
            sink.on_ready(_Chan(self))
        return self.channels

    def sweep(self, now_ns: int) -> None:
        return None

    async def close(self) -> None:
        return None

    def answer(self, chan: _Chan, attempt: int, payload: bytes) -> None:
        order = int.from_bytes(payload, "little")
        if self.throttle_first and order not in self.seen:
            self.seen.add(order)
            status = 429
        elif self.stock > 0:
            self.stock -= 1
            status = 201
        else:
            status = 409
        outcome, reason = self.rule.of_status(status)
        self.sink.on_response(chan, attempt, status, outcome, reason)  # type: ignore[attr-defined]


class _Chan:
    alive = True

    def __init__(self, t: _Echo) -> None:
        self.t = t

    def send(self, attempt: int, payload: bytes, now_ns: int) -> None:
        asyncio.get_running_loop().call_soon(self.t.answer, self, attempt, payload)


def test_a_long_run_folds_as_it_goes_and_holds_only_recent_slots() -> None:
    n = 12 * REGION  # 12 regions' worth of orders, 20 µs apart (~2 s at 50,000/s)
    rows = constant_rows(n, 20_000)
    records = MemoryRecords()
    run = Run(rows, _Echo(16, stock=1000), EngineConfig(timeout_s=1.0, drain_s=0.5), records)
    result = uvloop.run(run.execute())
    t = result.tally
    assert t.scheduled == t.attempts == n
    assert t.row_outcomes[CONFIRMED] == 1000 and t.row_outcomes[SOLD_OUT] == n - 1000
    assert run.slots.n_regions <= 8  # recycled, not one region per chunk
    assert len(records.parts) >= 12  # folded in batches while the run went on
    assert sorted(records.arrays(("a", "b"))["row"].tolist()) == list(range(n))
    # reasons are folded batch by batch too, and the records carry them
    assert t.reason_counts() == {
        "confirmed": {"status 201": 1000},
        "sold_out": {"status 409": n - 1000},
    }
    assert (records.arrays(("a", "b"))["reason"] == records.arrays(("a", "b"))["status"]).all()


def test_retries_and_a_chunked_schedule_add_up() -> None:
    rows = constant_rows(4 * REGION, 5_000, flags=2)  # every buyer retries
    chunks = [rows[i : i + 3000] for i in range(0, len(rows), 3000)]  # as a generator would
    retry = Retry(share=1.0, max_attempts=2, backoff_s=0.001, jitter=0.5)
    # 65,536 attempts in 0.16 s of schedule: the run ends when all are answered; the drain only
    # bounds it (a short one cut retries off on a loaded machine)
    cfg = EngineConfig(timeout_s=1.0, drain_s=10.0, retry=retry)
    run = Run(iter(chunks), _Echo(8, stock=10**9, throttle_first=True), cfg)
    t = uvloop.run(run.execute()).tally
    assert t.scheduled == len(rows) and t.retries == len(rows)
    assert t.row_outcomes[CONFIRMED] == len(rows)  # every order ends on its confirmed retry
    assert t.attempt_outcomes[THROTTLED] == len(rows)
    assert t.reason_counts() == {
        "confirmed": {"status 201": len(rows)},
        "throttled": {"status 429": len(rows)},
    }
    assert t.combined("order").total == len(rows)


def test_a_stop_counts_the_rest_of_the_schedule_as_not_sent() -> None:
    rows = constant_rows(3 * REGION, 100_000)  # 2.5 s
    chunks = (rows[i : i + 1000] for i in range(0, len(rows), 1000))
    run = Run(chunks, _Echo(4, stock=10), EngineConfig(timeout_s=1.0, stop_drain_s=0.1))

    async def main() -> object:
        asyncio.get_running_loop().call_later(0.3, run.stop)
        return await run.execute()

    result = uvloop.run(main())
    t = result.tally  # type: ignore[attr-defined]
    assert result.partial  # type: ignore[attr-defined]
    assert t.scheduled == len(rows) and int(t.row_outcomes.sum()) == len(rows)
    assert 0 < t.row_outcomes[0] < len(rows)  # not sent: the rest, never generated into slots
