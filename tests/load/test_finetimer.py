"""The timerfd wake-up: fires once, not before its deadline, re-arms and cancels; the engine
sleeps on it between orders and still sends none early."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time

import numpy as np
import pytest
import uvloop

from simulator.load.engine import MIN_SLEEP_BOUNDS_S, EngineConfig, Run
from simulator.load.finetimer import FineTimer, wake_cost_ns
from simulator.load.transport import parse_endpoint
from simulator.load.transport.lean import LeanTransport
from simulator.records import MemoryRecords
from simulator.scenario import Target

from .conftest import constant_rows

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux")


def _with_timer(body) -> list[int]:  # type: ignore[no-untyped-def]
    """Run ``body(timer, fired)`` on a uvloop loop; the perf_counter_ns of each wake-up."""
    fired: list[int] = []

    async def main() -> None:
        timer = FineTimer.create(
            asyncio.get_running_loop(), lambda: fired.append(time.perf_counter_ns())
        )
        assert timer is not None
        try:
            await body(timer, fired)
        finally:
            timer.close()
            timer.close()  # idempotent

    uvloop.run(main())
    return fired


def test_fires_once_and_not_before_its_deadline() -> None:
    deadlines: list[int] = []

    async def body(timer: FineTimer, fired: list[int]) -> None:
        for gap_us in (300, 50, 2000):
            deadline = time.perf_counter_ns() + gap_us * 1000
            deadlines.append(deadline)
            timer.arm_at(deadline)
            assert timer.armed
            await asyncio.sleep(0.02)
            assert not timer.armed

    fired = _with_timer(body)
    assert len(fired) == 3
    for at, deadline in zip(fired, deadlines, strict=True):
        assert deadline <= at < deadline + 15_000_000  # late by scheduling only (CI is noisy)


def test_re_arming_replaces_the_deadline_and_cancel_disarms() -> None:
    async def body(timer: FineTimer, fired: list[int]) -> None:
        now = time.perf_counter_ns()
        timer.arm_at(now + 1_000_000)
        timer.arm_at(now + 30_000_000)  # replaces the first
        await asyncio.sleep(0.015)
        assert fired == []
        await asyncio.sleep(0.04)
        assert len(fired) == 1 and fired[0] >= now + 30_000_000
        timer.arm_at(time.perf_counter_ns() + 2_000_000)
        timer.cancel()
        await asyncio.sleep(0.02)
        assert len(fired) == 1
        # a deadline already past fires at once
        timer.arm_at(time.perf_counter_ns() - 5_000_000)
        await asyncio.sleep(0.005)
        assert len(fired) == 2

    _with_timer(body)


def test_a_wakeup_already_due_is_dropped_by_cancel() -> None:
    async def body(timer: FineTimer, fired: list[int]) -> None:
        timer.arm_at(time.perf_counter_ns() + 200_000)
        time.sleep(0.002)  # expired while the loop was busy: the wake-up is pending
        timer.cancel()
        await asyncio.sleep(0.01)
        assert fired == []

    _with_timer(body)


@pytest.mark.parametrize("fine", [True, False], ids=["timerfd", "loop-timers"])
def test_the_engine_sleeps_between_orders_and_sends_none_early(fake_store, fine: bool) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    rows = constant_rows(600, 1_000_000)  # 0.6 s at 1,000/s: ~1 ms between orders
    transport = LeanTransport(parse_endpoint(url), Target(), ("a", "b"), 4, 2.0, 1.0)
    records = MemoryRecords()
    run = Run(rows, transport, EngineConfig(timeout_s=2.0, drain_s=1.0, fine_timer=fine), records)
    uvloop.run(run.execute())
    rec = records.arrays(("a", "b"))
    assert (run._fine is not None) == fine  # closed after the run, but it was there
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert len(lag) == len(rows) and lag.min() >= 0  # never before its time
    assert np.median(lag) < 1_000_000  # and on time, not batched by the millisecond
    assert np.count_nonzero(rec["done_ns"] >= 0) == len(rows)


def test_wake_cost_is_measured_in_plausible_units() -> None:
    async def main() -> tuple[int, int] | None:
        return await wake_cost_ns(asyncio.get_running_loop(), samples=8, ahead_ns=100_000)

    cost = uvloop.run(main())
    assert cost is not None
    cpu_ns, late_ns = cost
    assert 0 < cpu_ns < 100_000_000  # some CPU per cycle, far below a 100 ms absurdity
    assert late_ns >= 0  # a wake-up is never early


def _run_counting_arms(run: Run) -> int:
    """Run ``run`` to its end; how many times a timerfd was armed meanwhile."""
    arms = 0
    real_arm = FineTimer.arm_at

    def counting_arm(self: FineTimer, deadline_ns: int) -> None:
        nonlocal arms
        arms += 1
        real_arm(self, deadline_ns)

    FineTimer.arm_at = counting_arm  # type: ignore[method-assign]
    try:
        uvloop.run(run.execute())
    finally:
        FineTimer.arm_at = real_arm  # type: ignore[method-assign]
    return arms


@pytest.mark.parametrize(
    ("min_sleep_s", "sleeps"), [(None, None), (0.0, True), (10.0, False)],
    ids=["measured", "always-sleep", "never-sleep"],
)  # fmt: skip
def test_short_waits_are_spun_through_and_long_ones_slept(
    fake_store, min_sleep_s: float | None, sleeps: bool | None
) -> None:
    """Waits below the shortest sleep that pays are spun through, longer ones slept; on time.
    (Coalescing off: with it, a short wait with requests in flight arms a backstop.)"""
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    rows = constant_rows(300, 2_000_000)  # 0.6 s at 500/s
    transport = LeanTransport(parse_endpoint(url), Target(), ("a", "b"), 4, 2.0, 1.0)
    config = EngineConfig(timeout_s=2.0, drain_s=1.0, min_sleep_s=min_sleep_s, coalesce_s=None)
    records = MemoryRecords()
    run = Run(rows, transport, config, records)
    arms = _run_counting_arms(run)
    lo, hi = MIN_SLEEP_BOUNDS_S
    if min_sleep_s is None:
        assert lo * 1e9 <= run.min_sleep_ns <= hi * 1e9
    else:
        assert run.min_sleep_ns == round(min_sleep_s * 1e9)
    engine_arms = arms - (16 if min_sleep_s is None else 0)  # the measurement's own sleeps
    if sleeps is False:
        assert engine_arms == 0
    else:  # 2 ms gaps are long enough to sleep through on any host (bounds ≤ 0.5 ms)
        assert engine_arms >= len(rows) // 2
    rec = records.arrays(("a", "b"))
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert len(lag) == len(rows) and lag.min() >= 0
    assert np.count_nonzero(rec["done_ns"] >= 0) == len(rows)


@pytest.mark.parametrize("coalesce_s", [1e-3, None], ids=["1ms", "default"])
def test_short_waits_with_answers_coming_coalesce(fake_store, coalesce_s: float | None) -> None:
    """Orders closer together than a sleep pays, with requests in flight, leave with the answers
    (no spinning, no timerfd per order): never early, every one sent and answered once, and the
    backstop armed far less often than once per order."""
    url, _ = fake_store("ok", ("a=1000000", "b=1000000"))
    rows = constant_rows(4_000, 100_000)  # 0.4 s at 10,000/s: 100 µs apart
    transport = LeanTransport(parse_endpoint(url), Target(), ("a", "b"), 16, 2.0, 1.0)
    config = EngineConfig(timeout_s=2.0, drain_s=3.0, min_sleep_s=0.001)
    if coalesce_s is not None:
        config = dataclasses.replace(config, coalesce_s=coalesce_s)
    records = MemoryRecords()
    run = Run(rows, transport, config, records)
    arms = _run_counting_arms(run)
    rec = records.arrays(("a", "b"))
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert len(lag) == len(rows) and lag.min() >= 0  # never before its time
    assert np.count_nonzero(rec["done_ns"] >= 0) == len(rows)
    assert np.array_equal(np.sort(rec["row"]), np.arange(len(rows)))  # each row once
    assert arms > 0  # 1 ms min sleep: every wait is short, so only backstops were armed
    if coalesce_s is not None:  # answers come far more often than the 1 ms backstop: a
        assert arms < len(rows) // 4  # backstop per order would be 4,000 arms
    assert np.median(lag) < 1_000_000
