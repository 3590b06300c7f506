"""The dispatcher's waiting rules on a simulated clock: coalescing, the answer that sends the row
that has come due, the backstop, spins and sleeps, retries between rows.

A discrete-event driver plays the event loop: the run's timerfd is a stub that fires exactly at
its deadline, a spin (``call_soon``) ticks at the next due time, and answers arrive when the test
says. Hypothesis draws the schedule's gaps, each request's answer delay and status (429s make
retrying buyers retry), the connections and the waiting parameters; whatever it draws, every row
leaves once, never early, in order, and at most ``coalesce_s`` after its time.
"""

from __future__ import annotations

import heapq
import itertools
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.load.engine as engine
from simulator.load.engine import EngineConfig, Run
from simulator.load.transport import parse_endpoint
from simulator.load.transport.lean import LeanTransport
from simulator.outcomes import CONFIRMED, THROTTLED
from simulator.records import MemoryRecords
from simulator.retry import Retry
from simulator.scenario import Target
from simulator.schedule import FLAG_RETRIES, ORDER_DTYPE

US = 1_000
ANSWERS = {
    201: b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
    429: b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}",
}


class _Timer:
    """The timerfd's place: fires (the driver calls the run's tick) exactly at its deadline."""

    def __init__(self) -> None:
        self.armed = False
        self.deadline = 0
        self.arms = 0

    def arm_at(self, deadline_ns: int) -> None:
        self.armed, self.deadline = True, deadline_ns
        self.arms += 1

    def cancel(self) -> None:
        self.armed = False

    def close(self) -> None:
        self.armed = False


class _Socket:
    """A connection's transport: keeps what was written."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, payload: bytes) -> None:
        self.writes += 1


@dataclass(frozen=True)
class Case:
    """A run on the simulated loop: the rows' gaps, each request's answer delay and whether it
    is throttled (taken in turn, again from the first when used up), the connections and the
    waiting parameters (µs), whether the buyers retry a 429, and whether an answer sends the
    order that has come due (``EngineConfig.answers_send``)."""

    gaps_us: list[int]
    delays_us: list[int]
    throttle: list[bool]
    conns: int = 1
    coalesce_us: int = 100
    min_sleep_us: int = 500
    retrying: bool = False
    answers_send: bool = True


def _drive(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], Run, dict[str, int]]:
    """Run the rows to their end on the simulated loop; (records, run, counters)."""
    gaps_us, conns, retrying = case.gaps_us, case.conns, case.retrying
    coalesce_us, min_sleep_us = case.coalesce_us, case.min_sleep_us
    n_draws = min(len(case.delays_us), len(case.throttle))
    delays_us, throttle = case.delays_us[:n_draws], case.throttle[:n_draws]
    n = len(gaps_us)
    rows = np.zeros(n, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.cumsum(np.asarray(gaps_us, dtype=np.int64)) * US
    rows["order"] = rows["buyer"] = np.arange(n)
    rows["qty"] = 1
    rows["flags"] = FLAG_RETRIES if retrying else 0
    clock = [0]
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter_ns=lambda: clock[0]))
    transport = LeanTransport(parse_endpoint("http://127.0.0.1:9"), Target(), ("a",), 1, 5.0, 1.0)
    retry = Retry(share=1.0, max_attempts=2, backoff_s=50e-6, jitter=0.5)
    config = EngineConfig(
        timeout_s=5.0,
        min_sleep_s=min_sleep_us / 1e6,
        coalesce_s=coalesce_us / 1e6,
        retry=retry if retrying else Retry(),
        answers_send=case.answers_send,
    )
    records = MemoryRecords()
    run = Run(rows, transport, config, records)
    loop = uvloop.new_event_loop()
    run._loop = loop  # never run: a spin's call_soon only queues a handle, the driver ticks
    timer = _Timer()
    run._fine = timer  # type: ignore[assignment]
    run._spin_ns, run.min_sleep_ns = 50 * US, min_sleep_us * US
    transport.sink = run
    channels = []
    for _ in range(conns):
        conn = transport._conn_class(transport)
        conn.transport = _Socket()  # type: ignore[assignment]
        conn.alive = True
        channels.append(conn)
        run._free.append(conn)
    run._t0 = 0
    answers: list[tuple[int, int, Any]] = []  # (time, seq, connection)
    draws = itertools.cycle(list(zip(delays_us, throttle, strict=True)))  # request by request
    sent_on: dict[int, int] = {id(c): c.transport.writes for c in channels}  # type: ignore[union-attr]
    status_of: dict[int, int] = {}
    seq = 0
    counts = {"ticks": 0, "answers": 0, "spins": 0}
    events: list[int] = [0]  # when the loop woke (the start, answers, timer, spins)
    own: list[int] = [0]  # when the loop woke for a tick of its own (the start, timer, spins)
    real_tick = run._tick

    def tick() -> None:
        counts["ticks"] += 1
        real_tick()

    def own_tick() -> None:
        own.append(clock[0])
        tick()

    run._tick = tick  # type: ignore[method-assign]

    def note_sends() -> None:  # every request written since: its answer is on its way
        nonlocal seq
        for c in channels:
            w = c.transport.writes  # type: ignore[union-attr]
            if w > sent_on[id(c)]:
                assert w == sent_on[id(c)] + 1  # one request at a time on a connection
                sent_on[id(c)] = w
                delay, throttled = next(draws)
                status_of[id(c)] = 429 if throttled else 201
                seq += 1
                heapq.heappush(answers, (clock[0] + max(1, delay) * US, seq, c))

    tick()
    note_sends()
    for _ in range(20 * n + 100):
        spin = run._timer is not None and not isinstance(run._timer, _Timer)
        times = [answers[0][0]] if answers else []
        if timer.armed:
            times.append(timer.deadline)
        if spin:
            times.append(max(clock[0], run._armed_for))
        if not times:
            break
        clock[0] = max(clock[0], min(times))
        events.append(clock[0])
        if answers and answers[0][0] <= clock[0]:
            _, _, c = heapq.heappop(answers)
            counts["answers"] += 1
            c.data_received(ANSWERS[status_of[id(c)]])
        elif timer.armed and timer.deadline <= clock[0]:
            timer.armed = False
            own_tick()
        else:
            counts["spins"] += 1
            assert run._timer is not None
            run._timer.cancel()
            own_tick()
        note_sends()
    else:
        raise AssertionError("the run did not end")
    assert run._idle()
    run._finalize(clock[0])
    loop.close()
    counts["arms"] = timer.arms
    rec = records.arrays(("a",))
    rec["wakes"] = np.asarray(events, dtype=np.int64)
    rec["ticks"] = np.asarray(own, dtype=np.int64)
    return rec, run, counts


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        Case,
        gaps_us=st.lists(st.integers(0, 400), min_size=1, max_size=120),
        delays_us=st.lists(st.integers(1, 600), min_size=1, max_size=40),
        throttle=st.lists(st.booleans(), min_size=1, max_size=40),
        conns=st.integers(1, 4),
        coalesce_us=st.integers(1, 300),
        min_sleep_us=st.integers(0, 500),
        retrying=st.booleans(),
        answers_send=st.booleans(),
    )
)
def test_every_row_leaves_once_in_order_never_early_and_within_the_backstop(case: Case) -> None:
    with pytest.MonkeyPatch.context() as mp:
        rec, run, _ = _drive(case, mp)
    gaps_us, coalesce_us, retrying = case.gaps_us, case.coalesce_us, case.retrying
    first = rec["try"] == 1
    rows = rec["row"][first]
    assert np.array_equal(np.sort(rows), np.arange(len(gaps_us)))  # each row once
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert lag.min() >= 0  # never early, retries included
    # the backstop: nothing waits more than coalesce_s past its time to be taken
    assert lag.max() <= coalesce_us * US
    if case.answers_send:
        # and nothing waits for a later wake-up of the loop than the first one at or after its
        # time (an answer, the timer, a spin): each attempt, retries included, is taken then
        wakes = rec["wakes"]
        first_wake = wakes[np.searchsorted(wakes, rec["intended_ns"], side="left")]
        assert np.array_equal(rec["dispatched_ns"], first_wake)
    else:
        # the window rule: attempts leave on the loop's own wake-ups (the start, the backstop,
        # a sleep's end, a spin), never on an answer's, and at the first one at or after their
        # time: the orders due within a window leave together
        ticks = rec["ticks"]
        first_tick = ticks[np.minimum(np.searchsorted(ticks, rec["intended_ns"]), len(ticks) - 1)]
        assert np.array_equal(rec["dispatched_ns"], first_tick)
    order = np.argsort(rows, kind="stable")
    assert (np.diff(rec["dispatched_ns"][first][order]) >= 0).all()  # rows leave in order
    assert (rec["sent_ns"] >= rec["dispatched_ns"]).all()
    assert (rec["done_ns"] > rec["sent_ns"]).all()  # every attempt answered
    retried = rec["try"] > 1
    assert retried.any() <= retrying
    if retrying:  # a throttled first attempt of a retrying buyer is retried once
        throttled = first & (rec["outcome"] == THROTTLED)
        assert np.count_nonzero(retried) == np.count_nonzero(throttled)
    else:
        assert not retried.any()
    assert run.tally.attempts == len(rec["row"])


def test_an_answer_after_the_next_rows_time_sends_it_without_a_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Saturated: each answer comes when the next order is due (one connection, answers 20 µs
    after their request, orders 20 µs apart); that answer sends it on the channel it freed. No
    tick runs after the start: the backstop, about to wake the loop before the next row is even
    due, is moved instead (one timerfd arm per ``coalesce_s``, not one per row)."""
    gaps = [0] + [20] * 299
    rec, _, counts = _drive(Case(gaps, [20], [False]), monkeypatch)
    assert counts["answers"] == 300 and counts["spins"] == 0
    assert counts["ticks"] <= 2
    span_us = sum(gaps) + 20
    assert counts["arms"] <= span_us // 100 + 2  # 300 rows: 62 arms at most, not 300
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert (lag == 0).all()  # each sent the moment the answer before it came
    assert (rec["outcome"] == CONFIRMED).all()


def test_without_answers_sending_the_orders_of_a_window_leave_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``answers_send=False``: orders 10 µs apart on four connections answered in 20 µs leave in
    groups on the backstop, one tick for each ``coalesce_s`` (100 µs) of them instead of one
    wake-up each, every one at most 100 µs late."""
    gaps = [0] + [10] * 299
    rec, _, counts = _drive(Case(gaps, [20], [False], conns=4, answers_send=False), monkeypatch)
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert lag.min() >= 0 and lag.max() <= 100 * US
    groups = np.unique(rec["dispatched_ns"], return_counts=True)[1]
    assert len(groups) <= 300 // 10 + 2 and groups.max() >= 5  # ~10 orders a group, not 1
    assert counts["spins"] == 0
    assert (rec["outcome"] == CONFIRMED).all()


def test_the_next_row_far_off_is_slept_for_not_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer that sends the due row when the row after is further than a sleep pays: the
    timer is armed for that row (a sleep until shortly before it), and it leaves on time."""
    gaps = [0, 10, 10, 2_000, 10, 10]
    rec, _, counts = _drive(Case(gaps, [12], [False], min_sleep_us=200), monkeypatch)
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert lag.max() <= 100 * US
    assert counts["arms"] >= 1  # the 2 ms wait was slept on the timer


def test_the_driver_sees_a_broken_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above can fail: with the answer's row sending made early on purpose (the
    row after the due one sent too), the checks catch it."""
    real = Run.on_response

    def early(self: Run, channel: Any, attempt: int, *rest: int) -> None:
        real(self, channel, attempt, *rest)
        if self._free and self._ci < len(self._ct):  # send the next row now, due or not
            self._dispatch(self._cbase + self._ci, b"x")
            self._ci += 1

    monkeypatch.setattr(Run, "on_response", early)
    rec, _, _ = _drive(Case([0, 10, 300, 300, 300], [5], [False], 2, 100, 0), monkeypatch)
    lag = rec["dispatched_ns"] - rec["intended_ns"]
    assert lag.min() < 0
