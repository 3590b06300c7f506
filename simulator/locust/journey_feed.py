"""A worker's slice in users mode when its scenario has a journey or background streams: what
is due next, every buyer's state, every request's slot, the tallies. No locust import (tested as
plain code).

The rules are the engine's (:class:`simulator.load.journey.JourneyRun`), from the same objects:
a schedule row starts a journey at its intended time; step k+1 is due at the answer of step k
plus its think time (drawn per row from the seed, :func:`~simulator.load.journey.think_ns`) and
taken or skipped by the row's draw (:func:`~simulator.load.journey.takes`); each request goes
out from the step's :class:`~simulator.load.transport.template.StepTemplate`, its answer is
classified by the step's own rule (:func:`~simulator.load.journey.step_rules`), its values and
cookies taken by :func:`~simulator.load.journey.extract_value` and
:func:`~simulator.load.journey.cookie_jar`; a polling step is due again ``every_s`` after an
answer that does not meet its condition; a throttled answer of a retrying buyer is tried again
after the retry's delay (or the answer's Retry-After, whichever is longer). Every request takes
an attempt slot of a :class:`~simulator.load.slots.SlotRing` (its ``step`` saying which); the
order step's attempts, and the order rows of journeys that ended before it, are the run's
orders (its :class:`Tally`), every step's and stream's attempts are also folded into a
:class:`~simulator.load.journey.JourneyTally`, and every journey ends in exactly one terminal
state. A stream's row is one request, recorded under its stream.

The Locust users (:mod:`simulator.locust.users`) are senders, not buyers: a user
:meth:`~JourneyFeed.claim`\\ s whatever is due first (a row, or a step of a journey under way),
sleeps until its time, sends it and hands the answer back here; a step due later is kept in a
heap until a user claims it. Claims go in due order and the user that hands an answer back is
free to claim at once, so the items held by users are always the earliest ones: a step never
waits behind a later one, and the pool only needs to be as large as the requests in flight
(not one user per buyer, asleep through its think times). Buyer state lives in per-journey
slots (lists indexed by slot, recycled), as in the engine.

Under gevent a method runs without a switch, so no lock is needed.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from simulator.load.journey import (
    JourneyBook,
    JourneyTally,
    Next,
    step_rules,
    takes,
    think_ns,
)
from simulator.load.slots import Batch, SlotRing
from simulator.load.tally import Tally
from simulator.load.transport.template import StepTemplate
from simulator.locust.feed import retry_uniform
from simulator.locust.live import SliceCounts
from simulator.locust.stats import request_names
from simulator.outcomes import (
    NOT_SENT,
    OUTCOME_NAMES,
    R_JOURNEY_STEP,
    R_UNANSWERED,
    THROTTLED,
    TIMEOUT,
)
from simulator.retry import Retry
from simulator.scenario.journey import (
    STOPPED,
    TERMINALS,
    Journey,
    Stream,
    requests_of,
)
from simulator.schedule import Orders

#: a retry region still filling after this long is closed, so that its attempts get folded
RETRY_REGION_NS = 1_000_000_000
_TERMINAL = {name: i for i, name in enumerate(TERMINALS)}

Headers = list[tuple[bytes, bytes]]  # an answer's headers: (lower-case name, value)


class Start(NamedTuple):
    """A schedule row handed to a user: a buyer's journey start, or a stream's request."""

    t_ns: int  # intended time, ns from the slice's sale start
    product: int
    order: int
    qty: int
    buyer: int
    flags: int
    row: int  # the row's number in the buyers' schedule (−1: a stream's row)
    stream: int  # 0: a buyer; s + 1: a request of stream s
    think: list[int]  # the row's think time before each step (ns)
    take: list[bool]  # whether the row's journey takes each step


class Send(NamedTuple):
    """A request of a journey under way, due at ``t_ns``."""

    t_ns: int
    j: int  # the journey's slot
    k: int  # its step
    tries: int
    first_ns: int  # the first attempt's due time (retries keep it)


Claim = Start | Send


class JourneyFeed(JourneyBook):
    """The slice's rows and journeys for the users (see the module)."""

    def __init__(
        self,
        source: Iterator[Orders],
        journey: Journey,
        streams: Sequence[Stream],
        templates: Sequence[StepTemplate],
        seed: int,
        retry: Retry,
        worker: int,
        slices: int,
        counts: SliceCounts,
        sink: Callable[[Batch], None] | None = None,
    ) -> None:
        self.journey = journey
        self.slots = SlotRing()
        self.tally = Tally()
        self.journeys = JourneyTally(
            journey.names(), journey.order_step, tuple(x.name for x in streams), journey.implicit
        )
        self.tally.journey = self.journeys
        for k, name in enumerate(journey.names()):
            self.tally.reason_labels[R_JOURNEY_STEP + k] = f"journey ended at {name}"
        requests = requests_of(journey, streams)
        self._rules = step_rules(requests)
        for rule in self._rules:
            self.tally.reason_labels.update(rule.labels)
        self.methods = [s.method for s in requests]
        self.stat_names = request_names(requests, journey.order_step)  # Locust's names
        self._templates = list(templates)  # the steps', then the streams'
        self._seed = seed
        self._retry = retry
        self._book_init(journey)
        self.counts = counts
        self.sink = sink  # the per-attempt orders stream, if any
        self.rows_sent_twice = 0  # (a row is started once by construction; kept for the report)
        self.busy = 0  # claims held by users
        self._heap: list[tuple[int, int, Send]] = []  # steps due later: (due, seq, send)
        self._seq = 0
        self._given_back: deque[Claim] = deque()
        # the rows: the chunk being handed out, as lists
        self._source = source
        self._worker = worker
        self._slices = slices
        self._more = True
        self._buyer_rows = 0  # buyer rows taken so far
        self._rows: list[tuple[int, int, int, int, int, int, int, int]] = []
        self._think: list[list[int]] = []
        self._take: list[list[bool]] = []
        self._i = 0
        self._retry_close_ns = 0

    # -- handing out -------------------------------------------------------------------------

    def _load(self) -> bool:
        chunk = next(self._source, None) if self._more else None
        if chunk is None:
            self._more = False
            self._rows, self._think, self._take, self._i = [], [], [], 0
            return False
        n = len(chunk)
        if "stream" in (chunk.dtype.names or ()):
            kind = chunk["stream"].astype(np.int64)
        else:
            kind = np.zeros(n, dtype=np.int64)
        buyer = kind == 0
        nth = self._buyer_rows + np.cumsum(buyer) - 1  # each buyer row's number among ours
        rows = self._worker + nth.astype(np.int64) * self._slices
        rows[~buyer] = -1
        self._buyer_rows += int(np.count_nonzero(buyer))
        cols = [chunk[c].tolist() for c in ("t_ns", "product", "order", "qty", "buyer", "flags")]
        self._rows = list(zip(*cols, rows.tolist(), kind.tolist(), strict=True))
        draw_rows = np.where(buyer, rows, 0)
        self._think = think_ns(self.journey, self._seed, draw_rows).tolist()
        self._take = takes(self.journey, self._seed, draw_rows).tolist()
        self._i = 0
        return True

    def claim(self) -> Claim | None:
        """What is due first (a given-back claim before anything), or None when nothing is
        left to hand out now (rows all handed out, no step waiting)."""
        if self._given_back:
            self.busy += 1
            return self._given_back.popleft()
        if self._i >= len(self._rows) and self._more:
            self._load()
        heap = self._heap
        i = self._i
        if heap and (i >= len(self._rows) or heap[0][0] <= self._rows[i][0]):
            self.busy += 1
            return heapq.heappop(heap)[2]
        if i >= len(self._rows):
            return None
        self._i = i + 1
        self.busy += 1
        t, product, order, qty, buyer, flags, row, stream = self._rows[i]
        return Start(
            t, product, order, qty, buyer, flags, row, stream, self._think[i], self._take[i]
        )

    def give_back(self, claim: Claim) -> None:
        """A claim its user could not send (stopped while waiting): handed out again first."""
        self.busy -= 1
        self._given_back.appendleft(claim)

    def release(self) -> None:
        """A user is done with its claim."""
        self.busy -= 1

    @property
    def ring(self) -> SlotRing:
        """The attempts' slots (as the orders' feed names them)."""
        return self.slots

    @property
    def live(self) -> int:
        """Journeys started and not ended."""
        return self._live_journeys

    @property
    def exhausted(self) -> bool:
        """Every row has been handed out (and none is waiting to be again)."""
        return not self._more and self._i >= len(self._rows) and not self._given_back

    @property
    def settled(self) -> bool:
        """Every row handed out, every journey ended, every request answered."""
        return self.exhausted and self.busy == 0 and self.live == 0

    # -- journeys ------------------------------------------------------------------------------

    def start(self, row: Start, now_ns: int) -> Send | None:
        """The row's journey starts (at its intended time): its first step to send now, or
        None (due later: kept until claimed; or no step taken)."""
        j = self._begin(
            row.row, row.product, row.order, row.qty, row.buyer, row.flags, row.t_ns,
            row.think, row.take,
        )  # fmt: skip
        return self._due(j, self._first_step(j, now_ns), now_ns)

    def _due(self, j: int, nxt: Next | None, now_ns: int) -> Send | None:
        """Journey ``j``'s next request to send now (due already), or None: kept until a
        user claims it (or there is none: the journey ended)."""
        if nxt is None:
            return None
        send = Send(nxt.due_ns, j, nxt.k, nxt.tries, nxt.first_ns)
        if send.t_ns <= now_ns:
            return send
        self._seq += 1
        heapq.heappush(self._heap, (send.t_ns, self._seq, send))
        return None

    def request(self, send: Send, now_ns: int) -> tuple[int, bytes] | None:
        """The attempt slot and request bytes of ``send``; None when its journey cannot send
        it (a value it needs is missing: the journey ends there) or has ended."""
        return self._step_request(send.j, send.k, send.t_ns, send.first_ns, send.tries, now_ns)

    def stream_request(self, row: Start) -> tuple[int, bytes]:
        """The attempt slot and request bytes of a stream's row."""
        return self._stream_request(
            row.t_ns, row.stream, row.product, row.order, row.qty, row.buyer
        )

    # -- answers -------------------------------------------------------------------------------

    def answered(
        self, attempt: int, status: int, headers: Headers, body: bytes, now_ns: int
    ) -> tuple[int, int, Send | None]:
        """A whole answer to the request in ``attempt``, read at ``now_ns``: its outcome and
        reason (by its step's rule), and its journey's next request if due at once."""
        outcome, reason = self._classify(attempt, status, body, now_ns)
        j = self._owner[attempt]
        if j < 0 or not self._j_live[j]:  # a stream's request is only recorded
            return outcome, reason, None
        k = int(self.slots.step[attempt])
        order, flags, seed = self._j_order[j], self._j_flags[j], self._seed

        def retry_u(tries: int) -> float:  # per (order, flags, try), as for the users' orders
            return retry_uniform(seed, order, flags, tries)

        nxt = self._after_answer(
            j, k, attempt, outcome, reason, headers, body, now_ns, retry_u, False
        )
        return outcome, reason, self._due(j, nxt, now_ns)

    def failed(self, attempt: int, outcome: int, reason: int, now_ns: int) -> None:
        """The request in ``attempt`` got no answer (an error or a timeout): its journey ends
        there with that outcome."""
        ring = self.slots
        ring.done_ns[attempt] = now_ns
        ring.outcome[attempt] = outcome
        ring.reason[attempt] = reason
        j = self._owner[attempt]
        if j >= 0:
            k = int(ring.step[attempt])
            self._end(j, k, _TERMINAL[OUTCOME_NAMES[outcome]], outcome, reason, now_ns)

    def interrupted(self, attempt: int, now_ns: int) -> None:
        """Its user was stopped while the request in ``attempt`` was out: the answer is never
        read (a timeout, "unanswered", as at the end of an engine's run) and its journey ends
        as stopped."""
        ring = self.slots
        ring.done_ns[attempt] = now_ns
        ring.outcome[attempt] = TIMEOUT
        ring.reason[attempt] = R_UNANSWERED
        j = self._owner[attempt]
        if j >= 0:
            self._end(j, int(ring.step[attempt]), _TERMINAL[STOPPED], NOT_SENT, 0, now_ns)

    # -- folding -------------------------------------------------------------------------------

    def fold(self, now_ns: int, everything: bool = False) -> None:
        """Fold the attempts that are over: the order step's (and the order rows of journeys
        that ended before it) into the run's tally, the live counts and the stream; every
        step's and stream's into its own tally; then the journeys' ends."""
        if now_ns >= self._retry_close_ns:
            self.slots.close_retries()
            self._retry_close_ns = now_ns + RETRY_REGION_NS
        for batch in self.slots.collect(everything):
            orders = self._split_batch(batch)
            if len(orders["step"]):
                self.tally.fold_batch(orders)
                self.counts.fold(orders)
                if self.sink is not None:
                    self.sink(orders)
        self._fold_ends()

    def finish(self, now_ns: int) -> None:
        """The end of the run: requests out and unanswered time out now, steps waiting are not
        sent (their journeys end as stopped; an order's retry dropped ends its order on the
        answer before), journeys under way end as stopped, the rows never handed out count as
        not sent; everything is folded."""
        self.slots.finalize(now_ns, TIMEOUT, R_UNANSWERED)
        unsent: list[int] = []
        waiting = [*self._given_back, *(item for _, _, item in self._heap)]
        self._given_back.clear()
        self._heap.clear()
        for item in waiting:
            if isinstance(item, Start):
                if item.stream == 0:
                    unsent.append(item.t_ns)
                continue
            if item.k == self._order_step and item.tries > 1:
                self.tally.add_dropped_retry(THROTTLED, item.first_ns, -1)
                self.counts.add_dropped_retry(THROTTLED)
            self._end(item.j, item.k, _TERMINAL[STOPPED], NOT_SENT, 0, now_ns)
        for j, live in enumerate(self._j_live):
            if live:
                self._end(j, 0, _TERMINAL[STOPPED], NOT_SENT, 0, now_ns)
        self.fold(now_ns, everything=True)
        unsent += [r[0] for r in self._rows[self._i :] if r[7] == 0]
        self._rows, self._i = [], 0
        self._more = False
        chunks = [np.array(unsent, dtype=np.int64)]
        for chunk in self._source:
            t = chunk["t_ns"].astype(np.int64)
            if "stream" in (chunk.dtype.names or ()):
                t = t[chunk["stream"] == 0]
            chunks.append(t)
        for t in chunks:
            if len(t):
                self.tally.add_unsent_rows(t)
                self.counts.outcomes[NOT_SENT] += len(t)
