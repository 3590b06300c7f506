"""The timerfd wake-up: fires once, not before its deadline, re-arms and cancels; the engine
sleeps on it between orders and still sends none early."""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import pytest
import uvloop

from simulator.load.engine import EngineConfig, Run
from simulator.load.finetimer import FineTimer
from simulator.load.transport import parse_endpoint
from simulator.load.transport.lean import LeanTransport
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
    run = Run(rows, transport, EngineConfig(timeout_s=2.0, drain_s=1.0, fine_timer=fine))
    result = uvloop.run(run.execute())
    rec = result.recorder
    assert (run._fine is not None) == fine  # closed after the run, but it was there
    lag = rec.dispatched_ns[: len(rows)] - rec.intended_ns[: len(rows)]
    assert lag.min() >= 0  # never before its time
    assert np.median(lag) < 1_000_000  # and on time, not batched by the millisecond
    assert np.count_nonzero(rec.done_ns[: len(rows)] >= 0) == len(rows)
