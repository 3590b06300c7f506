"""The open-loop dispatcher: sends every order at its intended time, whatever the target does.

A :class:`Run` owns one event loop's share of a load run: its slice of the schedule, a transport
(a pool of channels), the recorder, the queue of orders waiting for a free channel, the retry
heap and its stop flag. A tick sends every order due; when no channel is free an order waits in
a FIFO queue and its latency keeps counting from its intended time (no coordinated omission).
Answers are recorded as they come; throttled answers of retrying buyers schedule a new attempt
after a jittered backoff. Nothing here allocates per order beyond the request bytes.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator.load.finetimer import FineTimer, wake_cost_ns
from simulator.load.recorder import Recorder
from simulator.load.transport import Channel, Transport
from simulator.outcomes import (
    ERROR,
    OUTCOME_NAMES,
    R_CONNECT,
    R_QUEUE_TIMEOUT,
    R_UNANSWERED,
    THROTTLED,
    TIMEOUT,
)
from simulator.results import confirmations
from simulator.retry import Retry
from simulator.schedule import FLAG_RETRIES

CHUNK_ROWS = 8192  # schedule rows turned into Python lists at a time (cheap per-order access)


class TargetUnreachableError(Exception):
    """Not a single connection to the target could be opened at the start."""


#: spin before a due order when sleeping on a timerfd: it wakes ~20 µs late (median), p99 ~60 µs
FINE_SPIN_S = 50e-6
#: spin before a due order when sleeping on the loop's timers (1 ms resolution)
COARSE_SPIN_S = 0.001
#: with a timerfd, a wait shorter than this many times the host's CPU cost of one sleep and
#: wake-up is spun through instead: at short gaps the sleep would cost more than it saves
SLEEP_PAYS_FACTOR = 2.0
#: bounds of the measured shortest sleep (a noisy measurement must not make it absurd)
MIN_SLEEP_BOUNDS_S = (10e-6, 500e-6)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How one event loop drives its slice of the schedule."""

    timeout_s: float = 5.0
    drain_s: float = 5.0  # after the last order is due, how long to wait for answers
    stop_drain_s: float = 1.0  # after a stop (Ctrl-C), how long to wait for answers
    retry: Retry = field(default_factory=Retry)
    seed: int = 0
    worker: int = 0
    sweep_s: float = 0.005  # how often timeouts and the drain deadline are checked
    # the last stretch before an order is due is waited out by yielding to the loop (call_soon)
    # so that orders leave on time; before it the loop sleeps on a timer. None: FINE_SPIN_S with
    # a timerfd (simulator.load.finetimer, ~20 µs late), COARSE_SPIN_S with uvloop's own timers
    # (1 ms resolution: without the spin orders would leave up to 1 ms late)
    spin_s: float | None = None
    fine_timer: bool = True  # sleep on a timerfd where there is one (Linux)
    # with a timerfd, the shortest wait worth a sleep; shorter ones are spun through. None:
    # measured at start (SLEEP_PAYS_FACTOR × this host's CPU per timerfd sleep and wake-up)
    min_sleep_s: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A live view of a run, for the progress display."""

    elapsed_s: float
    scheduled: int  # rows due so far
    sent: int
    done: int
    in_flight: int
    queued: int
    target_rate_per_s: float  # rows due in the last second
    achieved_rate_per_s: float  # answers (or failures) in the last second
    p99_ms: float  # intended-time latency of answers in the last second (nan if none)
    outcomes: dict[str, int]  # ATTEMPTS answered so far, by outcome (a retried order counts
    # once per attempt; the report's ``orders.outcomes`` counts orders by final outcome)
    confirmed_units: int  # units confirmed so far, each order id once (results.confirmations)


@dataclass(slots=True)
class RunResult:
    """What a finished (or stopped) run hands back."""

    rows: npt.NDArray[np.void]
    recorder: Recorder
    partial: bool
    wall_s: float


def retry_capacity(rows: npt.NDArray[np.void], retry: Retry) -> int:
    """Most retries the rows can need (:meth:`Retry.capacity` of their retrying rows)."""
    if retry.retries() == 0:
        return 0
    return retry.capacity(int(np.count_nonzero(rows["flags"] & FLAG_RETRIES)))


class Run:
    """One event loop's open-loop run over a slice of the schedule."""

    def __init__(
        self, rows: npt.NDArray[np.void], transport: Transport, config: EngineConfig
    ) -> None:
        self.rows = rows
        self.transport = transport
        self.config = config
        cap = retry_capacity(rows, config.retry)
        self.rec = Recorder.allocate(rows["t_ns"].astype(np.int64), cap)
        rng = np.random.default_rng([config.seed, config.worker, 0x5E7])
        self._jitter = rng.random(cap)  # one uniform draw per possible retry
        self._n_jitter = 0
        self._retrying = cap > 0
        self.rec.reason_labels = dict(transport.reason_labels)  # names of the rule's own codes
        self._build = transport.build
        self._products = rows["product"]
        self._orders = rows["order"]
        self._qtys = rows["qty"]
        self._buyers = rows["buyer"]
        self._flags = rows["flags"]
        self._timeout_ns = round(config.timeout_s * 1e9)
        self._spin_ns = 0  # set in execute, once it is known whether there is a fine timer
        self.min_sleep_ns = 0  # set in execute: waits shorter than this are spun through
        self._fine: FineTimer | None = None
        # dispatcher state: the current chunk of rows as lists, and where we are in it
        self._cbase = 0
        self._ci = 0
        self._ct: list[int] = []
        self._cp: list[int] = []
        self._co: list[int] = []
        self._cq: list[int] = []
        self._cb: list[int] = []
        self._load_chunk(0)
        self._retry_heap: list[tuple[int, int]] = []  # (due t_ns, previous attempt)
        self._free: list[Channel] = []
        self._q_att: deque[int] = deque()
        self._q_pay: deque[bytes] = deque()
        self._in_flight = 0
        self._live = 0
        self._t0 = 0
        self._timer: asyncio.Handle | FineTimer | None = None  # the pending tick
        self._sweeper: asyncio.TimerHandle | None = None
        self._deadline_ns: int | None = None
        self._stopped = False
        self._finished: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def execute(self, start_at_wall_s: float | None = None) -> RunResult:
        """Connect, run the schedule to its end (or until :meth:`stop`), drain, return results.

        ``start_at_wall_s`` (a ``time.time()`` value) lines up the start of several workers.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        opened = await self.transport.start(self, 0)
        if opened == 0:
            await self.transport.close()
            raise TargetUnreachableError("no connection to the target could be opened")
        if self.config.fine_timer:
            self.min_sleep_ns = await self._min_sleep_ns(loop)
        if start_at_wall_s is not None:
            await asyncio.sleep(max(0.0, start_at_wall_s - time.time()))
        if self.config.fine_timer:  # no await from here to the try: closed in its finally
            self._fine = FineTimer.create(loop, self._tick)
        spin_s = self.config.spin_s
        if spin_s is None:
            spin_s = COARSE_SPIN_S if self._fine is None else FINE_SPIN_S
        self._spin_ns = round(spin_s * 1e9)
        started = time.perf_counter()
        self._t0 = time.perf_counter_ns()
        try:
            if not self._stopped:
                self._tick()
            self._sweeper = loop.call_later(self.config.sweep_s, self._sweep)
            await self._finished
        finally:
            for handle in (self._timer, self._sweeper):
                if handle is not None:
                    handle.cancel()
            if self._fine is not None:
                self._fine.close()
            await self.transport.close()
        self._finalize(self._now())
        return RunResult(self.rows, self.rec, self._stopped, time.perf_counter() - started)

    async def _min_sleep_ns(self, loop: asyncio.AbstractEventLoop) -> int:
        """The shortest wait worth a timerfd sleep on this host (config, or measured: ~3 ms)."""
        if self.config.min_sleep_s is not None:
            return round(self.config.min_sleep_s * 1e9)
        cost = await wake_cost_ns(loop)
        if cost is None:
            return 0
        lo, hi = MIN_SLEEP_BOUNDS_S
        return round(min(max(SLEEP_PAYS_FACTOR * cost[0], lo * 1e9), hi * 1e9))

    def stop(self) -> None:
        """Stop dispatching (Ctrl-C): unsent orders stay not sent; answers drain briefly."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ci = len(self._ct)
        self._cbase = len(self.rows)
        self._retry_heap.clear()
        self._q_att.clear()
        self._q_pay.clear()
        if self._t0:
            self._deadline_ns = self._now() + round(self.config.stop_drain_s * 1e9)
            self._check_done()

    def _now(self) -> int:
        return time.perf_counter_ns() - self._t0

    def _finalize(self, now: int) -> None:
        """Attempts still unanswered at the end timed out (they were sent, nothing came back)."""
        rec = self.rec
        m = rec.n_attempts
        open_ = (rec.sent_ns[:m] >= 0) & (rec.done_ns[:m] < 0)
        rec.outcome[:m][open_] = TIMEOUT
        rec.reason[:m][open_] = R_UNANSWERED
        rec.done_ns[:m][open_] = now

    # -- dispatcher ----------------------------------------------------------------------------

    def _load_chunk(self, base: int) -> bool:
        chunk = self.rows[base : base + CHUNK_ROWS]
        self._cbase, self._ci = base, 0
        self._ct = chunk["t_ns"].tolist()
        self._cp = chunk["product"].tolist()
        self._co = chunk["order"].tolist()
        self._cq = chunk["qty"].tolist()
        self._cb = chunk["buyer"].tolist()
        return len(chunk) > 0

    def _tick(self) -> None:
        """Send every order that is due (rows, then retries) and arm the next tick."""
        self._timer = None
        t0 = self._t0
        clock = time.perf_counter_ns
        free, q_att, q_pay = self._free, self._q_att, self._q_pay
        sent, dispatched = self.rec.sent_ns, self.rec.dispatched_ns
        build = self._build
        ts, i, base = self._ct, self._ci, self._cbase
        while True:
            if i >= len(ts):
                if not self._load_chunk(base + len(ts)):
                    break
                ts, i, base = self._ct, 0, self._cbase
            now = clock() - t0
            if ts[i] > now:
                break
            attempt = base + i
            payload = build(self._cp[i], self._co[i], self._cq[i], self._cb[i])
            dispatched[attempt] = now
            if free:
                sent[attempt] = now
                self._in_flight += 1
                free.pop().send(attempt, payload, now)
            else:
                q_att.append(attempt)
                q_pay.append(payload)
            i += 1
        self._ci = i
        heap = self._retry_heap
        while heap and heap[0][0] <= clock() - t0:
            due_ns, previous = heapq.heappop(heap)
            self._dispatch_retry(due_ns, previous)
        self._arm()

    def _arm(self) -> None:
        """Schedule the next tick for the next due order, or note that all are dispatched."""
        assert self._loop is not None
        due: int | None = self._ct[self._ci] if self._ci < len(self._ct) else None
        if self._retry_heap and (due is None or self._retry_heap[0][0] < due):
            due = self._retry_heap[0][0]
        if due is None:
            if self._deadline_ns is None:
                self._deadline_ns = max(
                    self._now(), int(self.rec.intended_ns[: self.rec.n_rows].max(initial=0))
                ) + round(self.config.drain_s * 1e9)
            self._check_done()
            return
        wake_ns = due - self._spin_ns
        wait_ns = wake_ns - self._now()
        if wait_ns < self.min_sleep_ns or wait_ns <= 0:  # too short for a sleep to pay: spin
            self._timer = self._loop.call_soon(self._tick)
        elif self._fine is not None:
            self._fine.arm_at(self._t0 + wake_ns)
            self._timer = self._fine
        else:
            self._timer = self._loop.call_later(wait_ns / 1e9, self._tick)

    def _dispatch_retry(self, due_ns: int, previous: int) -> None:
        rec = self.rec
        attempt = rec.add_retry(previous, due_ns)
        if attempt < 0:  # cannot happen: capacity covers every possible retry
            return
        row = int(rec.row_of_retry[attempt - rec.n_rows])
        payload = self._build(
            int(self._products[row]),
            int(self._orders[row]),
            int(self._qtys[row]),
            int(self._buyers[row]),
        )
        now = self._now()
        rec.dispatched_ns[attempt] = now
        if self._free:
            rec.sent_ns[attempt] = now
            self._in_flight += 1
            self._free.pop().send(attempt, payload, now)
        else:
            self._q_att.append(attempt)
            self._q_pay.append(payload)

    def _maybe_retry(self, attempt: int, now: int) -> None:
        rec, retry = self.rec, self.config.retry
        row = attempt if attempt < rec.n_rows else int(rec.row_of_retry[attempt - rec.n_rows])
        k = int(rec.tries[attempt])
        if self._stopped or not self._flags[row] & FLAG_RETRIES or k >= retry.max_attempts:
            return
        u = float(self._jitter[self._n_jitter % len(self._jitter)])
        self._n_jitter += 1
        backoff_ns = retry.delay_ns(k, u)
        heapq.heappush(self._retry_heap, (now + backoff_ns, attempt))
        if self._timer is None:
            self._arm()

    # -- sink: what channels report ------------------------------------------------------------

    def on_response(
        self, channel: Channel, attempt: int, status: int, outcome: int, reason: int
    ) -> None:
        """Record an answer (classified by the transport's outcome rule); hand the channel the
        next queued order."""
        now = time.perf_counter_ns() - self._t0
        rec = self.rec
        rec.done_ns[attempt] = now
        rec.status[attempt] = status
        rec.outcome[attempt] = outcome
        rec.reason[attempt] = reason
        self._in_flight -= 1
        if outcome == THROTTLED and self._retrying:
            self._maybe_retry(attempt, now)
        if channel.alive:
            self._reuse(channel, now)
        if self._deadline_ns is not None:
            self._check_done()

    def on_failure(self, channel: Channel, attempt: int, outcome: int, reason: int) -> None:
        """Record a failed attempt (error or timeout) and its reason."""
        rec = self.rec
        rec.done_ns[attempt] = self._now()
        rec.outcome[attempt] = outcome
        rec.reason[attempt] = reason
        self._in_flight -= 1
        if self._deadline_ns is not None:
            self._check_done()

    def on_ready(self, channel: Channel) -> None:
        """A channel can take an order: the oldest queued one, or it waits in the free list."""
        self._live += 1
        self._reuse(channel, self._now())

    def on_lost(self, channel: Channel) -> None:
        """A channel went away."""
        self._live -= 1
        if channel in self._free:
            self._free.remove(channel)

    def on_connect_failed(self) -> None:
        """With no connection alive, the queued orders fail now instead of waiting."""
        if self._live > 0 or not self._q_att:
            return
        now = self._now()
        rec = self.rec
        while self._q_att:
            attempt = self._q_att.popleft()
            self._q_pay.popleft()
            rec.done_ns[attempt] = now
            rec.outcome[attempt] = ERROR
            rec.reason[attempt] = R_CONNECT
        if self._deadline_ns is not None:
            self._check_done()

    def _reuse(self, channel: Channel, now: int) -> None:
        if self._q_att:
            attempt = self._q_att.popleft()
            self.rec.sent_ns[attempt] = now
            self._in_flight += 1
            channel.send(attempt, self._q_pay.popleft(), now)
        else:
            self._free.append(channel)

    # -- housekeeping --------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Every few ms: request timeouts, orders queued past the timeout, the drain deadline."""
        assert self._loop is not None
        now = self._now()
        self.transport.sweep(now)
        limit = now - self._timeout_ns
        rec = self.rec
        while self._q_att and rec.intended_ns[self._q_att[0]] < limit:
            attempt = self._q_att.popleft()
            self._q_pay.popleft()
            rec.done_ns[attempt] = now
            rec.outcome[attempt] = TIMEOUT
            rec.reason[attempt] = R_QUEUE_TIMEOUT
        if self._deadline_ns is not None:
            self._check_done()
        if self._finished is not None and not self._finished.done():
            self._sweeper = self._loop.call_later(self.config.sweep_s, self._sweep)

    def _check_done(self) -> None:
        """Finish when everything is dispatched and answered, or at the drain deadline."""
        fut = self._finished
        if fut is None or fut.done() or self._deadline_ns is None:
            return
        idle = (
            self._in_flight == 0
            and not self._q_att
            and not self._retry_heap
            and self._ci >= len(self._ct)
        )
        if idle or self._now() >= self._deadline_ns:
            fut.set_result(None)

    # -- progress ------------------------------------------------------------------------------

    def progress(self) -> Progress:
        """A snapshot for the live display (vectorised; call it a few times a second)."""
        now = self._now() if self._t0 else 0
        rec = self.rec
        m = rec.n_attempts
        intended, done = rec.intended_ns[: rec.n_rows], rec.done_ns[:m]
        scheduled = int(np.searchsorted(intended, now, side="right"))
        last_s = int(np.searchsorted(intended, now - 1_000_000_000, side="right"))
        finished = done >= 0
        recent = finished & (done > now - 1_000_000_000)  # done = −1: not answered yet
        lat = done[recent] - rec.intended_ns[:m][recent]
        counts = np.bincount(rec.outcome[:m][finished], minlength=len(OUTCOME_NAMES))
        units = confirmations(self.rows, rec).units(self.rows)
        return Progress(
            elapsed_s=now / 1e9,
            scheduled=scheduled,
            sent=int(np.count_nonzero(rec.sent_ns[:m] >= 0)),
            done=int(np.count_nonzero(finished)),
            in_flight=self._in_flight,
            queued=len(self._q_att),
            target_rate_per_s=float(scheduled - last_s),
            achieved_rate_per_s=float(np.count_nonzero(recent)),
            p99_ms=float(np.percentile(lat, 99) / 1e6) if len(lat) else float("nan"),
            outcomes={name: int(counts[i]) for i, name in enumerate(OUTCOME_NAMES) if i},
            confirmed_units=units,
        )
