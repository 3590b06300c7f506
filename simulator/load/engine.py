"""The open-loop dispatcher: sends every order at its intended time, whatever the target does.

A :class:`Run` owns one event loop's share of a load run: its slice of the schedule (consumed
chunk by chunk as it is generated, never held whole), a transport (a pool of channels), the
attempts' slots (:mod:`simulator.load.slots`, a bounded recycled ring), the run's
:class:`~simulator.load.tally.Tally`, the queue of orders waiting for a free channel, the retry
heap and its stop flag. A tick sends every order due; when no channel is free an order waits in
a FIFO queue and its latency keeps counting from its intended time (no coordinated omission).
Answers are written into their slots as they come; every few ms the sweep folds the regions of
slots that are over into the tally in NumPy batches (and hands them to a per-attempt sink, when
there is one). Throttled answers of retrying buyers schedule a new attempt after a jittered
backoff. Nothing here allocates per order beyond the request bytes, so a run's memory does not
grow with its length.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.load.finetimer import FineTimer, wake_cost_ns
from simulator.load.slots import REGION, Batch, RetryOf, SlotRing
from simulator.load.tally import Tally, first_confirmed
from simulator.load.transport import Channel, Transport
from simulator.outcomes import (
    CONFIRMED,
    ERROR,
    OUTCOME_NAMES,
    R_CONNECT,
    R_QUEUE_TIMEOUT,
    R_UNANSWERED,
    THROTTLED,
    TIMEOUT,
)
from simulator.retry import Retry
from simulator.schedule import BLOCK_NS, FLAG_RETRIES

#: schedule rows turned into Python lists at a time (cheap per-order access): one slot region
CHUNK_ROWS = REGION
#: retry draws taken from the worker's seeded stream at a time
JITTER_BLOCK = 4096
#: a retry region still filling after this long is closed, so that its attempts get folded
RETRY_REGION_S = 1.0
#: per-second histograms kept in memory behind the newest second (older ones are spilled to
#: a temporary file: simulator.load.tally.SecondHistograms); answers come within the timeout
SECONDS_IN_MEMORY = 30


class TargetUnreachableError(Exception):
    """Not a single connection to the target could be opened at the start."""


#: spin before a due order when sleeping on a timerfd, which wakes tens of µs late
#: (finetimer.wake_cost_ns measures it on the host; the README has the figures)
FINE_SPIN_S = 50e-6
#: spin before a due order when sleeping on the loop's timers (1 ms resolution)
COARSE_SPIN_S = 0.001
#: with a timerfd, a wait shorter than this many times the host's CPU cost of one sleep and
#: wake-up is spun through instead: at short gaps the sleep would cost more than it saves
SLEEP_PAYS_FACTOR = 2.0
#: bounds of the measured shortest sleep (a noisy measurement must not make it absurd)
MIN_SLEEP_BOUNDS_S = (10e-6, 500e-6)
#: with a wait too short for a sleep and answers on their way, an order leaves with the first
#: answer after its time (no spinning through the loop), or this long after it at the latest
COALESCE_S = 100e-6


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How one event loop drives its slice of the schedule."""

    timeout_s: float = 5.0
    drain_s: float = 5.0  # after the last order is due, how long to wait for answers
    stop_drain_s: float = 1.0  # after a stop (Ctrl-C), how long to wait for answers
    retry: Retry = field(default_factory=Retry)
    seed: int = 0
    worker: int = 0
    workers: int = 1  # worker k of N holds the schedule rows k, k + N, … (their record numbers)
    sweep_s: float = 0.005  # how often timeouts and the drain deadline are checked
    # the last stretch before an order is due is waited out by yielding to the loop (call_soon)
    # so that orders leave on time; before it the loop sleeps on a timer. None: FINE_SPIN_S with
    # a timerfd (simulator.load.finetimer, tens of µs late), COARSE_SPIN_S with uvloop's timers
    # (1 ms resolution: without the spin orders would leave up to 1 ms late)
    spin_s: float | None = None
    fine_timer: bool = True  # sleep on a timerfd where there is one (Linux)
    # with a timerfd, the shortest wait worth a sleep; shorter ones are spun through. None:
    # measured at start (SLEEP_PAYS_FACTOR × this host's CPU per timerfd sleep and wake-up)
    min_sleep_s: float | None = None
    # with a timerfd, a wait too short for a sleep and requests in flight: the order leaves
    # when the next answer comes in (the loop wakes for it anyway), or ``coalesce_s`` after its
    # time at the latest (a backstop timerfd). None: spin through the loop as with no requests
    # in flight (orders leave within µs of their time, for a whole core)
    coalesce_s: float | None = COALESCE_S
    # coalescing, what an answer does with an order that has come due: sends it (True: an order
    # leaves at the first wake-up of the loop after its time), or leaves it to the backstop
    # (False: the orders due within ``coalesce_s`` leave together at its end, each up to
    # ``coalesce_s`` late; an idle target is woken once for them instead of once for each)
    answers_send: bool = True


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
    confirmed_units: int  # units confirmed so far, each order id once (results.first_confirmed)


Orders = npt.NDArray[np.void]
#: what receives every batch of finished attempts (views into recycled slots: copy to keep)
Sink = Callable[[Batch], None]
#: how far back the live progress looks for rates and the p99 (ns)
WINDOW_NS = 1_000_000_000


@dataclass(slots=True)
class RunResult:
    """What a finished (or stopped) run hands back: its tally, not per-attempt arrays."""

    tally: Tally
    partial: bool
    wall_s: float
    slot_bytes: int  # memory the attempts' slots held at the end (the most they held)


def retry_capacity(rows: npt.NDArray[np.void], retry: Retry) -> int:
    """Most retries the rows can need (:meth:`Retry.capacity` of their retrying rows)."""
    if retry.retries() == 0:
        return 0
    return retry.capacity(int(np.count_nonzero(rows["flags"] & FLAG_RETRIES)))


def row_chunks(rows: npt.NDArray[np.void] | Iterable[npt.NDArray[np.void]]) -> Iterator[Orders]:
    """The rows (one array, or chunks as the schedule generates them) in chunks of at most
    :data:`CHUNK_ROWS` rows, none spanning two schedule blocks (seconds): a chunk's slot
    region is then closed, and folded, within about a second of its last row being sent."""
    parts: Iterable[npt.NDArray[np.void]] = [rows] if isinstance(rows, np.ndarray) else rows
    for part in parts:
        n = len(part)
        if n == 0:
            continue
        sec = part["t_ns"] // BLOCK_NS
        edges = [0, *(np.flatnonzero(np.diff(sec)) + 1).tolist(), n]
        for a, b in itertools.pairwise(edges):
            for at in range(a, b, CHUNK_ROWS):
                yield part[at : min(at + CHUNK_ROWS, b)]


class Run:
    """One event loop's open-loop run over a slice of the schedule (an array or its chunks)."""

    def __init__(
        self,
        rows: Orders | Iterable[Orders],
        transport: Transport,
        config: EngineConfig,
        sink: Sink | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.sink = sink
        self.tally = Tally()
        # per-second histograms of seconds long past go to disk: memory independent of length
        self.tally.latency_s.hold_s = self.tally.service_s.hold_s = SECONDS_IN_MEMORY
        self.slots = SlotRing()
        self._source = row_chunks(rows)
        self._rng = np.random.default_rng([config.seed, config.worker, 0x5E7])
        self._jitter = self._rng.random(JITTER_BLOCK)  # the retries' uniform draws, in order
        self._n_jitter = 0
        self._retrying = config.retry.retries() > 0
        self.tally.reason_labels.update(transport.reason_labels)  # names of the rule's own codes
        self._build = transport.build
        self._timeout_ns = round(config.timeout_s * 1e9)
        self._spin_ns = 0  # set in execute, once it is known whether there is a fine timer
        self.min_sleep_ns = 0  # set in execute: waits shorter than this are spun through
        self._fine: FineTimer | None = None
        # dispatcher state: the current chunk of rows as lists, and where we are in it
        self._rows_loaded = 0  # this worker's rows taken from the schedule so far
        self._max_intended = 0
        self._more = True  # the schedule may have more rows
        self._cbase = 0  # slot of the chunk's first row
        self._ci = 0
        self._ct: list[int] = []
        self._cp: list[int] = []
        self._co: list[int] = []
        self._cq: list[int] = []
        self._cb: list[int] = []
        # live progress: recent chunks' due times, recent answers (done, latency), confirmations
        self._recent_due: deque[tuple[int, npt.NDArray[np.int64]]] = deque()
        self._recent_done: deque[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = deque()
        self._stopped = False
        self._load_chunk()
        # (due t_ns, seq, what: a RetryOf here, a journey's step in JourneyRun)
        self._retry_heap: list[tuple[int, int, Any]] = []
        self._retry_seq = 0
        self._retry_close_ns = 0
        self._free: list[Channel] = []
        self._q_att: deque[int] = deque()
        self._q_pay: deque[bytes] = deque()
        self._in_flight = 0
        self._live = 0
        self._t0 = 0
        self._timer: asyncio.Handle | FineTimer | None = None  # the pending tick
        self._armed_for = 0  # when the pending tick's order or retry is due
        # coalescing (EngineConfig.coalesce_s): the next answer sends what is due; the fine
        # timer is armed as a backstop at _backstop_at (ns of the run; 0: not armed by it)
        self._coalescing = False
        self._coalesce_ns = -1 if config.coalesce_s is None else round(config.coalesce_s * 1e9)
        self._answers_send = config.answers_send
        self._backstop_at = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._deadline_ns: int | None = None
        self._stopped = False
        self._order_step: int | None = None  # a journey's order step (its attempts are orders)
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
        if self._stopped:  # stopped while connecting or waiting for the start: drain and end
            self._deadline_ns = round(self.config.stop_drain_s * 1e9)
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
        wall_s = time.perf_counter() - started
        return RunResult(self.tally, self._stopped, wall_s, self.slots.nbytes())

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
        self._coalescing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ci = len(self._ct)
        self._more = False
        self.slots.close_rows()
        self._drop_retries()
        self._q_att.clear()
        self._q_pay.clear()
        if self._t0:
            self._deadline_ns = self._now() + round(self.config.stop_drain_s * 1e9)
            self._check_done()

    def _now(self) -> int:
        return time.perf_counter_ns() - self._t0

    def _finalize(self, now: int) -> None:
        """Attempts still unanswered at the end timed out (they were sent, nothing came back);
        every slot is folded; retries still waiting are dropped; rows of the schedule never
        reached (a stop) count as not sent, so the tally adds up to the schedule."""
        self.slots.finalize(now, TIMEOUT, R_UNANSWERED)
        self._drop_retries()
        self._fold(everything=True)
        for chunk in self._source:  # a stopped run: the rest of the schedule, never sent
            self.tally.add_unsent_rows(chunk["t_ns"].astype(np.int64))

    def _drop_retries(self) -> None:
        """Retries not sent: their orders end on the answer before (as the report counts)."""
        for _, _, of in self._retry_heap:
            self.tally.add_dropped_retry(of.outcome, of.first_ns, of.done_ns)
        self._retry_heap.clear()

    # -- folding -------------------------------------------------------------------------------

    def _fold(self, everything: bool = False) -> None:
        """Fold the slot regions that are over into the tally (and the sink), in batches; what
        comes due meanwhile is sent between two batches (a batch takes ~0.5 ms)."""
        for batch in self.slots.collect(everything):
            self.tally.fold_batch(batch)
            if self.sink is not None:
                self.sink(batch)
            self._note(batch)
            if not everything:
                self._send_due()

    def _send_due(self) -> None:
        """Send what has come due, from outside the tick (housekeeping between two batches)."""
        if self._timer is None or self._stopped or self._armed_for > self._now():
            return
        if self._timer is not self._fine:  # a spin's handle: no second chain of ticks (the
            self._timer.cancel()  # timerfd needs no cancel: the tick's _arm re-arms it)
        self._tick()

    def _note(self, batch: Batch) -> None:
        """Keep what the live progress needs of a folded batch (bounded: the last second)."""
        done = np.asarray(batch["done_ns"], dtype=np.int64)
        answered = done >= 0
        if answered.any():
            d = done[answered]
            lat = d - np.asarray(batch["intended_ns"], dtype=np.int64)[answered]
            self._recent_done.append((d, lat))
            horizon = int(d.max()) - 2 * WINDOW_NS
            while self._recent_done and int(self._recent_done[0][0].max()) < horizon:
                self._recent_done.popleft()

    # -- dispatcher ----------------------------------------------------------------------------

    def _load_chunk(self) -> bool:
        """The next chunk of rows into a slot region and Python lists; False at the end."""
        chunk = next(self._source, None) if self._more and not self._stopped else None
        if chunk is None:
            self._more = False
            self._ct, self._ci = [], 0
            self.slots.close_rows()
            return False
        cfg = self.config
        local = self._rows_loaded
        self._cbase = self.slots.load_rows(chunk, cfg.worker + local * cfg.workers, cfg.workers)
        self._rows_loaded += len(chunk)
        self._take_lists(chunk)
        self._note_due(local, chunk["t_ns"].astype(np.int64))
        return True

    def _take_lists(self, chunk: Orders) -> None:
        """The chunk's fields as Python lists (cheap per-row access in the tick), from row 0."""
        self._ci = 0
        self._ct = chunk["t_ns"].tolist()
        self._cp = chunk["product"].tolist()
        self._co = chunk["order"].tolist()
        self._cq = chunk["qty"].tolist()
        self._cb = chunk["buyer"].tolist()
        self._max_intended = max(self._max_intended, self._ct[-1])

    def _note_due(self, local: int, t: npt.NDArray[np.int64]) -> None:
        """Keep a chunk's due times (its first row's number among this worker's rows ``local``)
        for the live progress, the last two windows of them."""
        due = self._recent_due
        if len(t):
            due.append((local, t))
        while len(due) > 1 and int(due[1][1][0]) < self._ct[0] - 2 * WINDOW_NS:
            due.popleft()

    def _tick(self) -> None:
        """Send every order that is due (rows, then retries) and arm the next tick."""
        self._timer = None
        t0 = self._t0
        clock = time.perf_counter_ns
        free, q_att, q_pay = self._free, self._q_att, self._q_pay
        slots = self.slots
        sent, dispatched = slots.sent_ns, slots.dispatched_ns
        build = self._build
        ts, i, base = self._ct, self._ci, self._cbase
        while True:
            if i >= len(ts):
                self._ci = i
                if not self._load_chunk():
                    break
                ts, i, base = self._ct, 0, self._cbase
                sent, dispatched = slots.sent_ns, slots.dispatched_ns  # the ring may have grown
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
            due_ns, _, of = heapq.heappop(heap)
            self._dispatch_retry(due_ns, of)
        self._arm()

    def _arm(self) -> None:
        """Schedule the next tick for the next due order, or note that all are dispatched.

        A wait long enough for a sleep to pay sleeps (on the timerfd, until ``spin_s`` before
        the order). A shorter one, with requests in flight and a timerfd, *coalesces*: the next
        answer sends what is due (:meth:`_due_on_answer`), a backstop wakes the loop
        ``coalesce_s`` after the order's time if no answer came (with ``answers_send`` off, no
        answer sends: the backstop sends what came due in its window). Otherwise the loop is
        spun through (``call_soon``) until the order is due.
        """
        assert self._loop is not None
        due: int | None = self._ct[self._ci] if self._ci < len(self._ct) else None
        if self._retry_heap and (due is None or self._retry_heap[0][0] < due):
            due = self._retry_heap[0][0]
        fine = self._fine
        self._coalescing = False
        if due is None:
            if fine is not None and fine.armed:
                fine.cancel()
            if self._deadline_ns is None:
                self._deadline_ns = self._drain_deadline()
            self._check_done()
            return
        self._armed_for = due
        wake_ns = due - self._spin_ns
        wait_ns = wake_ns - (time.perf_counter_ns() - self._t0)  # (self._now(), inline)
        if wait_ns >= self.min_sleep_ns and wait_ns > 0:  # a sleep pays
            if fine is not None:
                fine.arm_at(self._t0 + wake_ns)
                self._backstop_at = 0
                self._timer = fine
            else:
                self._timer = self._loop.call_later(wait_ns / 1e9, self._tick)
            return
        if fine is not None and self._in_flight > 0 and self._coalesce_ns >= 0:
            backstop = due + self._coalesce_ns
            # an armed backstop that comes no later stays (no syscall per order)
            if not (fine.armed and 0 < self._backstop_at <= backstop):
                fine.arm_at(self._t0 + backstop)
                self._backstop_at = backstop
            self._coalescing = self._answers_send  # False: nothing but the backstop sends
            self._timer = fine
            return
        if fine is not None and fine.armed:
            fine.cancel()
        self._timer = self._loop.call_soon(self._tick)

    def _due_on_answer(self, now: int) -> None:
        """Coalescing, an answer came in at ``now``: send what has come due, and wait anew (the
        last answer in flight came: no other will send what is due next, see :meth:`_arm`)."""
        if not self._stopped:
            self._tick()

    def _dispatch_retry(self, due_ns: int, of: RetryOf) -> None:
        attempt = self.slots.add_retry(of, due_ns)
        self._dispatch(attempt, self._build(of.sku, of.order, of.qty, of.buyer))

    def _dispatch(self, attempt: int, payload: bytes) -> None:
        """Send an attempt taken outside the row loop on a free channel, or queue it (the
        row loop in :meth:`_tick` does the same inline, its hot path)."""
        slots = self.slots
        now = self._now()
        slots.dispatched_ns[attempt] = now
        if self._free:
            slots.sent_ns[attempt] = now
            self._in_flight += 1
            self._free.pop().send(attempt, payload, now)
        else:
            self._q_att.append(attempt)
            self._q_pay.append(payload)

    def _draw(self) -> float:
        """The next uniform draw of this worker's retry stream (taken in blocks)."""
        if self._n_jitter >= len(self._jitter):
            self._jitter = self._rng.random(JITTER_BLOCK)
            self._n_jitter = 0
        u = float(self._jitter[self._n_jitter])
        self._n_jitter += 1
        return u

    def _maybe_retry(self, attempt: int, now: int, retry_after_s: float = -1.0) -> None:
        """Schedule a retry of a throttled attempt of a retrying buyer: after the backoff rule's
        delay, or the answer's ``Retry-After`` when that is longer."""
        slots, retry = self.slots, self.config.retry
        k = int(slots.tries[attempt])
        if self._stopped or not slots.flags[attempt] & FLAG_RETRIES or k >= retry.max_attempts:
            return
        backoff_ns = max(retry.delay_ns(k, self._draw()), round(retry_after_s * 1e9))
        slots.final[attempt] = False
        self._retry_seq += 1
        heapq.heappush(
            self._retry_heap, (now + backoff_ns, self._retry_seq, slots.retry_of(attempt))
        )
        self._rearm(now + backoff_ns)

    def _rearm(self, due_ns: int) -> None:
        """Something new is due at ``due_ns``: arm the tick for it unless one comes sooner."""
        if self._timer is None:
            if self._loop is not None and not self._stopped:
                self._arm()
        elif due_ns < self._armed_for:
            self._timer.cancel()
            self._timer = None
            self._arm()

    # -- sink: what channels report ------------------------------------------------------------

    def on_response(
        self, channel: Channel, attempt: int, status: int, outcome: int, reason: int
    ) -> None:
        """Record an answer (classified by the transport's outcome rule); the channel takes the
        oldest queued order, or the row that has come due (coalescing), or goes back free."""
        now = time.perf_counter_ns() - self._t0
        slots = self.slots
        slots.done_ns[attempt] = now
        slots.status[attempt] = status
        slots.outcome[attempt] = outcome
        slots.reason[attempt] = reason
        if outcome == THROTTLED and self._retrying:
            self._maybe_retry(attempt, now, getattr(channel, "retry_after_s", -1.0))
        # (one request in flight ended; where the channel sends another, the count stays)
        if not channel.alive:
            self._in_flight -= 1
            if self._coalescing and (now >= self._armed_for or self._in_flight == 0):
                self._due_on_answer(now)
        elif self._q_att:  # _reuse, inline
            attempt = self._q_att.popleft()
            slots.sent_ns[attempt] = now
            channel.send(attempt, self._q_pay.popleft(), now)
            if self._coalescing and now >= self._armed_for:
                self._due_on_answer(now)  # what has come due is taken (and queued) now
        elif self._coalescing and now >= self._armed_for:
            # coalescing and an order has come due: when it is the one row due before the next
            # (no retry due sooner), it goes out on the channel this answer freed — the tick's
            # work without the tick; anything else is the tick's
            i, ts, heap = self._ci, self._ct, self._retry_heap
            if (
                i + 1 < len(ts)
                and ts[i] <= now < ts[i + 1]
                and not (heap and heap[0][0] <= ts[i + 1])
            ):
                attempt = self._cbase + i
                payload = self._build(self._cp[i], self._co[i], self._cq[i], self._cb[i])
                slots.dispatched_ns[attempt] = now
                slots.sent_ns[attempt] = now
                channel.send(attempt, payload, now)
                self._ci = i + 1
                nxt = ts[i + 1]
                if nxt - self._spin_ns - now >= self.min_sleep_ns:
                    self._arm()  # a sleep pays until the next one: the tick's rule decides
                else:
                    self._armed_for = nxt
                    if self._backstop_at < nxt and self._fine is not None:
                        # the backstop would wake the loop before the next row is even due
                        # (a timerfd read, a tick, a re-arm): moved now, one syscall instead
                        self._backstop_at = nxt + self._coalesce_ns
                        self._fine.arm_at(self._t0 + self._backstop_at)
            else:
                self._in_flight -= 1
                self._free.append(channel)
                self._due_on_answer(now)
        else:
            self._in_flight -= 1
            self._free.append(channel)
            if self._coalescing and self._in_flight == 0:
                self._due_on_answer(now)
        if self._deadline_ns is not None:
            self._check_done()

    def on_failure(self, channel: Channel, attempt: int, outcome: int, reason: int) -> None:
        """Record a failed attempt (error or timeout) and its reason."""
        slots = self.slots
        slots.done_ns[attempt] = self._now()
        slots.outcome[attempt] = outcome
        slots.reason[attempt] = reason
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
        slots = self.slots
        while self._q_att:
            attempt = self._q_att.popleft()
            self._q_pay.popleft()
            slots.done_ns[attempt] = now
            slots.outcome[attempt] = ERROR
            slots.reason[attempt] = R_CONNECT
            self._failed(attempt, now)
        if self._deadline_ns is not None:
            self._check_done()

    def _failed(self, attempt: int, now: int) -> None:
        """An attempt failed without a channel's report (a queue timeout, no connection):
        nothing more to do for a single order (a journey ends there)."""

    def _reuse(self, channel: Channel, now: int) -> None:
        if self._q_att:
            attempt = self._q_att.popleft()
            self.slots.sent_ns[attempt] = now
            self._in_flight += 1
            channel.send(attempt, self._q_pay.popleft(), now)
        else:
            self._free.append(channel)

    # -- housekeeping --------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Every few ms: request timeouts, orders queued past the timeout, folding the slots
        that are over into the tally, the drain deadline."""
        assert self._loop is not None
        now = self._now()
        self.transport.sweep(now)
        limit = now - self._timeout_ns
        slots = self.slots
        while self._q_att and slots.intended_ns[self._q_att[0]] < limit:
            attempt = self._q_att.popleft()
            self._q_pay.popleft()
            slots.done_ns[attempt] = now
            slots.outcome[attempt] = TIMEOUT
            slots.reason[attempt] = R_QUEUE_TIMEOUT
            self._failed(attempt, now)
        if now >= self._retry_close_ns:
            slots.close_retries()
            self._retry_close_ns = now + round(RETRY_REGION_S * 1e9)
        self._fold()
        if self._deadline_ns is not None:
            self._check_done()
        if self._finished is not None and not self._finished.done():
            self._sweeper = self._loop.call_later(self.config.sweep_s, self._sweep)

    def _drain_deadline(self) -> int:
        """When the run ends at the latest, once every row is dispatched: ``drain_s`` after
        the last row's intended time (or now, if later)."""
        return max(self._now(), self._max_intended) + round(self.config.drain_s * 1e9)

    def _idle(self) -> bool:
        """Everything dispatched and answered."""
        return (
            self._in_flight == 0
            and not self._q_att
            and not self._retry_heap
            and self._ci >= len(self._ct)
            and not self._more
        )

    def _check_done(self) -> None:
        """Finish when everything is dispatched and answered, or at the drain deadline."""
        fut = self._finished
        if fut is None or fut.done() or self._deadline_ns is None:
            return
        if self._idle() or self._now() >= self._deadline_ns:
            fut.set_result(None)

    # -- progress ------------------------------------------------------------------------------

    def _due_by(self, t_ns: int) -> int:
        """This worker's rows due by ``t_ns`` (exact within the recent chunks)."""
        due = self._recent_due
        if not due:
            return 0
        for local, t in reversed(due):
            if len(t) and int(t[0]) <= t_ns:
                return local + int(np.searchsorted(t, t_ns, side="right"))
        return due[0][0]

    def progress(self) -> Progress:
        """A snapshot for the live display: the tally plus the slots not folded yet
        (vectorised over the slots in flight and the last second; a few times a second)."""
        now = self._now() if self._t0 else 0
        t = self.tally
        pend = self.slots.pending()
        p_done = pend["done_ns"]
        finished = p_done >= 0
        counts = t.attempt_outcomes.copy()
        counts += np.bincount(pend["outcome"][finished], minlength=len(OUTCOME_NAMES))[
            : len(OUTCOME_NAMES)
        ]
        since = now - WINDOW_NS
        d_parts = [d for d, _ in self._recent_done] + [p_done[finished]]
        l_parts = [lat for _, lat in self._recent_done]
        l_parts.append(p_done[finished] - pend["intended_ns"][finished])
        d_all, l_all = np.concatenate(d_parts), np.concatenate(l_parts)
        recent = d_all > since
        lat = l_all[recent]
        # units confirmed so far by the one rule (results.first_confirmed): the folded confirmed
        # orders (bounded by the stock) and the ones still in the slots
        ok = (pend["outcome"] == CONFIRMED) & finished
        if self._order_step is not None:  # a journey: only its order step confirms orders
            ok &= pend["step"] == self._order_step
        folded = t.confirmed()
        pending = (pend["order"][ok], pend["sku"][ok], pend["qty"][ok], p_done[ok])
        units = first_confirmed(
            *(
                np.concatenate([a, np.asarray(b, dtype=np.int64)])
                for a, b in zip(folded, pending, strict=True)
            )
        ).units()
        scheduled = self._due_by(now)
        return Progress(
            elapsed_s=now / 1e9,
            scheduled=scheduled,
            sent=t.sent + int(np.count_nonzero(pend["sent_ns"] >= 0)),
            done=int(t.done_per_s.sum()) + int(np.count_nonzero(finished)),
            in_flight=self._in_flight,
            queued=len(self._q_att),
            target_rate_per_s=float(scheduled - self._due_by(since)),
            achieved_rate_per_s=float(np.count_nonzero(recent)),
            p99_ms=float(np.percentile(lat, 99) / 1e6) if len(lat) else float("nan"),
            outcomes={name: int(counts[i]) for i, name in enumerate(OUTCOME_NAMES) if i},
            confirmed_units=units,
        )
