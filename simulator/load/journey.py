"""Buyer journeys on the open-loop engine: every schedule row starts one, step after step.

A :class:`JourneyRun` is the engine's :class:`~simulator.load.engine.Run` with rows that start
journeys instead of sending one order each (:mod:`simulator.scenario.journey` describes them).
Open loop stays the rule: a row's journey starts at its intended time whatever the target does;
step k+1 is due at the answer of step k plus its think time, and its latency counts from that
due time (a full connection pool or a late dispatcher shows, as for orders). Every request of
every step takes an attempt slot (the ring of :mod:`simulator.load.slots`, its ``step`` field
saying which); the order step's attempts are the run's orders (its :class:`Tally`, the audit's
client view), each step's attempts are also folded into a tally of that step, and every journey
ends in exactly one terminal state (:data:`simulator.scenario.journey.TERMINALS`), counted with
its time from arrival to its last answer. A journey that ends before its order step still ends
its schedule row: the row's order counts with the outcome that ended the journey (its reason:
"journey ended at login"), or as not sent when the run stopped first.

Buyer state lives in preallocated per-journey slots (Python lists indexed by slot, recycled):
no dict per request. Think times and step choices are drawn per row from the scenario's seed
(a counter-based hash of the row number), so a journey takes the same steps at the same
offsets whatever the target answers and however many workers share the schedule.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from simulator import jsonpath
from simulator.histogram import LIVE, Histogram, Scale
from simulator.load.engine import CHUNK_ROWS, EngineConfig, Orders, Run, Sink
from simulator.load.slots import NO_STEP, Batch, SlotRing
from simulator.load.tally import Tally
from simulator.load.transport import Channel, Endpoint, Transport
from simulator.load.transport.lean import retry_after_seconds
from simulator.load.transport.template import StepTemplate
from simulator.outcomes import (
    CONFIRMED,
    ERROR,
    NOT_SENT,
    OUTCOME_NAMES,
    R_JOURNEY_STEP,
    R_MISSING_VALUE,
    R_POLL_LIMIT,
    R_UNANSWERED,
    THROTTLED,
    TIMEOUT,
    OutcomeRule,
    value_key,
)
from simulator.retry import Retry
from simulator.scenario import Scenario
from simulator.scenario.journey import (
    COMPLETED,
    MISSING,
    POLL_LIMIT,
    STOPPED,
    TERMINALS,
    Extract,
    Journey,
    Step,
    Stream,
    order_journey,
    requests_of,
)
from simulator.schedule import FLAG_RETRIES, ORDER_DTYPE, build_schedule

I64 = npt.NDArray[np.int64]
_TERMINAL = {name: i for i, name in enumerate(TERMINALS)}
#: salts of the per-row draws (think times, step choices)
_THINK_LANE, _THINK_LANE2, _TAKE_LANE = 1, 2, 3
_U53 = 1.0 / (1 << 53)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser: a well-mixed 64-bit value per input (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_uniforms(seed: int, rows: I64, n_steps: int, lane: int) -> npt.NDArray[np.float64]:
    """Uniforms in (0, 1), one per (row, step), a function of (seed, row, step, lane) only."""
    key = _splitmix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    r = rows.astype(np.uint64)[:, None] * np.uint64(4 * 64)
    s = np.arange(n_steps, dtype=np.uint64)[None, :] * np.uint64(4) + np.uint64(lane)
    x = _splitmix((r + s) ^ key)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * _U53


def think_ns(journey: Journey, seed: int, rows: I64) -> I64:
    """Each row's think time before each step, in ns: shape (rows, steps)."""
    n = len(journey.steps)
    out = np.zeros((len(rows), n), dtype=np.int64)
    if all(s.think.is_zero for s in journey.steps):
        return out
    u1 = row_uniforms(seed, rows, n, _THINK_LANE)
    u2 = row_uniforms(seed, rows, n, _THINK_LANE2)
    for k, step in enumerate(journey.steps):
        if not step.think.is_zero:
            out[:, k] = np.round(step.think.draw(u1[:, k], u2[:, k]) * 1e9).astype(np.int64)
    return out


def takes(journey: Journey, seed: int, rows: I64) -> npt.NDArray[np.bool_]:
    """Whether each row's journey takes each step (its probability): shape (rows, steps)."""
    p = np.array([s.probability for s in journey.steps])
    if (p >= 1.0).all():
        return np.ones((len(rows), len(p)), dtype=bool)
    took = row_uniforms(seed, rows, len(p), _TAKE_LANE) < p[None, :]
    names = journey.names()
    for k, step in enumerate(journey.steps):
        if step.unless is not None:  # an earlier step: its column is final already
            took[:, k] &= ~took[:, names.index(step.unless)]
    return took


@dataclass(slots=True)
class JourneyTally:
    """Per step: a :class:`Tally` of its requests; per journey: its terminal state, where it
    ended, and its time from arrival to its last answer (completed and ended apart). Merges by
    adding counts, like a tally."""

    names: tuple[str, ...]
    order_step: int
    stream_names: tuple[str, ...] = ()
    implicit: bool = False  # the target's order as a one-step journey (streams only)
    steps: list[Tally] = field(default_factory=list)
    streams: list[Tally] = field(default_factory=list)
    started: int = 0
    ends: I64 = field(default_factory=lambda: np.zeros((0, len(TERMINALS)), dtype=np.int64))
    times: dict[str, Histogram] = field(default_factory=dict)  # "completed" / "ended"
    scale: Scale = LIVE

    def __post_init__(self) -> None:
        if not self.steps:
            self.steps = [Tally() for _ in self.names]
        if not self.streams:
            self.streams = [Tally() for _ in self.stream_names]
        if self.ends.shape[0] != len(self.names):
            self.ends = np.zeros((len(self.names), len(TERMINALS)), dtype=np.int64)
        for kind in ("completed", "ended"):
            self.times.setdefault(kind, Histogram.empty(self.scale))

    def add_ends(self, step: I64, terminal: I64, time_ns: I64) -> None:
        """Count journeys ended at ``step`` in ``terminal`` after ``time_ns`` (batches)."""
        if len(step) == 0:
            return
        np.add.at(self.ends, (step, terminal), 1)
        done = terminal == _TERMINAL[COMPLETED]
        self.times["completed"].add(np.maximum(time_ns[done], 0))
        self.times["ended"].add(np.maximum(time_ns[~done], 0))

    def ended(self) -> int:
        """Journeys that ended (in any terminal state)."""
        return int(self.ends.sum())

    def terminals(self) -> dict[str, int]:
        """Journeys by terminal state (every state listed)."""
        return {name: int(self.ends[:, i].sum()) for i, name in enumerate(TERMINALS)}

    def merge(self, other: JourneyTally) -> None:
        """Add another worker's journeys (the same journey)."""
        self.started += other.started
        self.ends += other.ends
        for mine, theirs in zip(self.steps, other.steps, strict=True):
            mine.merge(theirs)
        for mine, theirs in zip(self.streams, other.streams, strict=True):
            mine.merge(theirs)
        for kind, h in other.times.items():
            self.times[kind].merge(h)


def extract_value(rule: Extract, headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
    """The value ``rule`` takes from an answer, or None when it is not there."""
    kind = rule.kind
    if kind == "json":
        try:
            value = jsonpath.get(orjson.loads(body), rule.path)
        except (orjson.JSONDecodeError, jsonpath.Missing):
            return None
        if isinstance(value, dict | list):
            return orjson.dumps(value).decode()
        return None if value is None else value_key(value)
    if kind == "header":
        want = rule.expr.lower().encode("latin-1")
        for name, value in headers:
            if name == want:
                return value.decode("latin-1").strip()
        return None
    if kind == "cookie":
        for name, value in headers:
            if name == b"set-cookie":
                pair = value.decode("latin-1").split(";", 1)[0]
                k, eq, v = pair.partition("=")
                if eq and k.strip() == rule.expr:
                    return v.strip()
        return None
    m = re.search(rule.expr, body.decode("utf-8", "replace"))
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


def cookie_jar(headers: list[tuple[bytes, bytes]], jar: dict[str, str] | None) -> dict[str, str]:
    """The buyer's cookies after an answer's ``Set-Cookie`` headers (an empty value or a
    Max-Age of 0 deletes one)."""
    out = dict(jar or {})
    for name, value in headers:
        if name != b"set-cookie":
            continue
        parts = value.decode("latin-1").split(";")
        k, eq, v = parts[0].partition("=")
        k = k.strip()
        if not eq or not k:
            continue
        gone = any(p.strip().lower() in ("max-age=0", "max-age=-1") for p in parts[1:])
        if gone or not v.strip():
            out.pop(k, None)
        else:
            out[k] = v.strip()
    return out


def cookie_line(jar: dict[str, str]) -> bytes:
    if not jar:
        return b""
    text = "; ".join(f"{k}={v}" for k, v in jar.items())
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return b""
    return b"Cookie: " + text.encode("latin-1", "replace") + b"\r\n"


def _think_bound_s(step: Step) -> float:
    """A generous upper bound of a step's think time (for the drain deadline)."""
    t = step.think
    if t.kind == "constant":
        return t.a
    if t.kind == "uniform":
        return t.b
    if t.kind == "exponential":
        return 10.0 * t.a
    return float(t.a * np.exp(4.0 * t.b))


def allowance_s(journey: Journey, timeout_s: float, retry: Retry) -> float:
    """How long after its start a journey could still be going (think times, timeouts and
    retries, polls): what a run waits beyond its drain for the last journeys to end."""
    return sum(
        _think_bound_s(s)
        + timeout_s * retry.max_attempts
        + (s.poll.max * (s.poll.every_s + timeout_s) if s.poll else 0.0)
        for s in journey.steps
    )


def step_rules(steps: Iterable[Step]) -> list[OutcomeRule]:
    """Each step's outcome rule: its status map (extending the defaults), and its body rule."""
    return [
        OutcomeRule(
            s.status,
            *(
                (s.outcome.path, s.outcome.statuses, s.outcome.values, s.outcome.other)
                if s.outcome is not None
                else ()
            ),
        )
        for s in steps
    ]


class Next(NamedTuple):
    """A journey's next request: step ``k``'s attempt ``tries``, due at ``due_ns`` (its
    order's first intended time ``first_ns``, for a retry)."""

    due_ns: int
    k: int
    tries: int
    first_ns: int


class JourneyBook:
    """Journeys under way, in recycled per-journey slots (lists indexed by slot: the row's
    numbers, its draws, the values and cookies taken so far, the progress), and the rule that
    moves a journey on at each answer: one owner for the engine (:class:`JourneyRun`) and
    Locust's users (:class:`simulator.locust.journey_feed.JourneyFeed`), which differ only in
    how they send what :meth:`_after_answer` returns. ``slots`` is the attempts' ring; the
    subclass sets the requests' templates and rules, the retry rule and the journeys' tally."""

    slots: SlotRing
    journeys: JourneyTally
    _templates: list[StepTemplate]  # the steps', then the streams'
    _rules: list[OutcomeRule]
    _retry: Retry
    _order_step: int | None

    def _book_init(self, journey: Journey) -> None:
        steps = journey.steps
        self._steps = steps
        self._n_steps = len(steps)
        self._order_step = journey.order_step
        variables = journey.variables()
        self._extracts = [[(variables.index(e.var), e) for e in s.extract] for s in steps]
        self._n_vars = len(variables)
        self._j_free: list[int] = []
        self._j_row: list[int] = []
        self._j_prod: list[int] = []
        self._j_order: list[int] = []
        self._j_qty: list[int] = []
        self._j_buyer: list[int] = []
        self._j_flags: list[int] = []
        self._j_start: list[int] = []
        self._j_think: list[list[int]] = []
        self._j_take: list[list[bool]] = []
        self._j_vars: list[list[str | None]] = []
        self._j_jar: list[dict[str, str] | None] = []
        self._j_cookie: list[bytes] = []
        self._j_polls: list[int] = []
        self._j_ordered: list[bool] = []
        self._j_live: list[bool] = []
        self._live_journeys = 0  # journeys started and not ended
        self._owner: list[int] = []  # attempt slot → journey slot (−1: a stream's request)
        self._ends: list[tuple[int, int, int]] = []  # (step, terminal, time ns), not folded yet

    def _alloc(self) -> int:
        if self._j_free:
            return self._j_free.pop()
        j = len(self._j_row)
        for ints in (
            self._j_row,
            self._j_prod,
            self._j_order,
            self._j_qty,
            self._j_buyer,
            self._j_flags,
            self._j_start,
            self._j_polls,
        ):
            ints.append(0)
        self._j_ordered.append(False)
        self._j_live.append(False)
        self._j_cookie.append(b"")
        self._j_think.append([])
        self._j_take.append([])
        self._j_vars.append([None] * self._n_vars)
        self._j_jar.append(None)
        return j

    def _begin(
        self,
        row: int,
        product: int,
        order: int,
        qty: int,
        buyer: int,
        flags: int,
        t_row: int,
        think: list[int],
        take: list[bool],
    ) -> int:
        """A journey starts for schedule row ``row`` (intended at ``t_row``): its slot."""
        j = self._alloc()
        self._j_row[j] = row
        self._j_prod[j] = product
        self._j_order[j] = order
        self._j_qty[j] = qty
        self._j_buyer[j] = buyer
        self._j_flags[j] = flags
        self._j_start[j] = t_row
        self._j_think[j] = think
        self._j_take[j] = take
        values = self._j_vars[j]
        for v in range(self._n_vars):
            values[v] = None
        self._j_jar[j] = None
        self._j_cookie[j] = b""
        self._j_polls[j] = 0
        self._j_ordered[j] = False
        self._j_live[j] = True
        self._live_journeys += 1
        self.journeys.started += 1
        return j

    def _own(self, attempt: int, j: int) -> None:
        """Note whose the attempt is: journey ``j`` (−1: a stream's request)."""
        owner = self._owner
        if attempt >= len(owner):
            owner.extend([0] * (len(self.slots.intended_ns) - len(owner)))
        owner[attempt] = j

    def _next_step(self, j: int, k: int) -> int:
        """The next step journey ``j`` takes after step ``k`` (−1: none left)."""
        take = self._j_take[j]
        for n in range(k + 1, self._n_steps):
            if take[n]:
                return n
        return -1

    def _step_request(
        self, j: int, k: int, intended_ns: int, first_ns: int, tries: int, now: int
    ) -> tuple[int, bytes] | None:
        """The attempt slot and request bytes of step ``k`` of journey ``j``; None when the
        journey has ended, or cannot send it (a value it needs is missing: it ends there)."""
        if not self._j_live[j]:
            return None
        payload = self._templates[k].render(
            self._j_prod[j],
            self._j_order[j],
            self._j_qty[j],
            self._j_buyer[j],
            self._j_vars[j],
            self._j_cookie[j],
        )
        if payload is None:
            self._end(j, k, _TERMINAL[MISSING], ERROR, R_MISSING_VALUE, now)
            return None
        attempt = self._slot(j, intended_ns, first_ns, tries, k)
        self._own(attempt, j)
        if k == self._order_step:
            self._j_ordered[j] = True
        return attempt, payload

    def _stream_request(
        self, t_row: int, stream: int, product: int, order: int, qty: int, buyer: int
    ) -> tuple[int, bytes]:
        """The attempt slot and request bytes of a background stream's row (stream ≥ 1)."""
        k = self._n_steps + stream - 1
        payload = self._templates[k].render(product, order, qty, buyer, [])
        assert payload is not None  # a stream's template has no journey variables
        attempt = self.slots.add_attempt(t_row, t_row, 1, -1, order, buyer, product, qty, 0, k)
        self._own(attempt, -1)
        return attempt, payload

    def _slot(self, j: int, intended_ns: int, first_ns: int, tries: int, step: int) -> int:
        """An attempt slot for journey ``j``'s row (a step's request, or its order row)."""
        return self.slots.add_attempt(
            intended_ns,
            first_ns,
            tries,
            self._j_row[j],
            self._j_order[j],
            self._j_buyer[j],
            self._j_prod[j],
            self._j_qty[j],
            self._j_flags[j],
            step,
        )

    def _end(self, j: int, k: int, terminal: int, outcome: int, reason: int, now: int) -> None:
        """Journey ``j`` ends at step ``k`` in ``terminal``; an order never sent ends its row
        with ``outcome`` (not sent, when the run stopped first)."""
        if not self._j_live[j]:
            return
        k = max(k, 0)
        if not self._j_ordered[j]:
            slots = self.slots
            start = self._j_start[j]
            attempt = self._slot(j, start, start, 1, NO_STEP)
            slots.outcome[attempt] = NOT_SENT if terminal == _TERMINAL[STOPPED] else outcome
            slots.reason[attempt] = R_JOURNEY_STEP + k
        self._ends.append((k, terminal, now - self._j_start[j]))
        self._j_live[j] = False  # (its values are cleared when the slot starts a journey)
        self._j_jar[j] = None
        self._live_journeys -= 1
        self._j_free.append(j)

    def _classify(self, attempt: int, status: int, body: bytes, now: int) -> tuple[int, int]:
        """Record a whole answer to ``attempt`` by its step's rule: (outcome, reason)."""
        slots = self.slots
        rule = self._rules[int(slots.step[attempt])]
        if rule.reads_body(status):
            outcome, reason = rule.of_body(status, body)
        else:
            outcome, reason = rule.of_status(status)
        slots.done_ns[attempt] = now
        slots.status[attempt] = status
        slots.outcome[attempt] = outcome
        slots.reason[attempt] = reason
        return outcome, reason

    def _split_batch(self, batch: Batch) -> Batch:
        """A batch of finished attempts into each step's and stream's own tally; returns the
        order rows (the order step's attempts, and the rows of journeys ended before it):
        what the run's tally and the orders' sink take."""
        step = batch["step"]
        for k, t in enumerate((*self.journeys.steps, *self.journeys.streams)):
            mine = step == k
            if mine.any():
                t.fold_batch({n: a[mine] for n, a in batch.items()})
        main = (step == self._order_step) | (step == NO_STEP)
        return batch if main.all() else {n: a[main] for n, a in batch.items()}

    def _fold_ends(self) -> None:
        """The journeys ended since the last fold into the journeys' tally."""
        if self._ends:
            ends = np.array(self._ends, dtype=np.int64)
            self._ends = []
            self.journeys.add_ends(ends[:, 0], ends[:, 1], ends[:, 2])

    def _first_step(self, j: int, now: int) -> Next | None:
        """The first request of journey ``j`` just begun (None: it takes no step at all)."""
        k = self._next_step(j, -1)
        if k < 0:
            self._end(j, 0, _TERMINAL[COMPLETED], CONFIRMED, 0, now)
            return None
        self._j_polls[j] = 0
        due = self._j_start[j] + self._j_think[j][k]
        return Next(due, k, 1, due)

    def _after_answer(
        self,
        j: int,
        k: int,
        attempt: int,
        outcome: int,
        reason: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        now: int,
        retry_u: Callable[[int], float] | None,
        stopped: bool,
    ) -> Next | None:
        """Journey ``j``'s answer to step ``k`` (in ``attempt``) at ``now``: the journey's next
        request (a retry after the backoff or ``Retry-After``, the poll again, or the next step
        after its think time), or None when the journey ended here. ``retry_u(tries)``: the
        uniform draw of a retry's jitter (None: throttled answers are not retried);
        ``stopped``: the run stopped, nothing more is sent."""
        if not self._j_live[j]:
            return None
        slots = self.slots
        if outcome == THROTTLED and retry_u is not None and not stopped:
            tries = int(slots.tries[attempt])
            retry = self._retry
            if self._j_flags[j] & FLAG_RETRIES and tries < retry.max_attempts:
                wait_s = -1.0
                for name, value in headers:
                    if name == b"retry-after":
                        wait_s = retry_after_seconds(value)
                delay = max(retry.delay_ns(tries, retry_u(tries)), round(wait_s * 1e9))
                slots.final[attempt] = False
                return Next(now + delay, k, tries + 1, int(slots.arrays["first_ns"][attempt]))
        if self._extracts[k]:
            values = self._j_vars[j]
            for idx, rule in self._extracts[k]:
                values[idx] = extract_value(rule, headers, body)
        if any(name == b"set-cookie" for name, _ in headers):
            jar = cookie_jar(headers, self._j_jar[j])
            self._j_jar[j] = jar
            self._j_cookie[j] = cookie_line(jar)
        if outcome != CONFIRMED:
            self._end(j, k, _TERMINAL[OUTCOME_NAMES[outcome]], outcome, reason, now)
            return None
        poll = self._steps[k].poll
        if poll is not None and extract_value(poll.rule, headers, body) not in poll.until:
            self._j_polls[j] += 1
            if self._j_polls[j] >= poll.max:
                self._end(j, k, _TERMINAL[POLL_LIMIT], TIMEOUT, R_POLL_LIMIT, now)
                return None
            if stopped:  # answers drain after a stop; nothing more is sent
                self._end(j, k, _TERMINAL[STOPPED], NOT_SENT, 0, now)
                return None
            due = now + round(poll.every_s * 1e9)
            return Next(due, k, 1, due)
        n = self._next_step(j, k)
        if n < 0:
            self._end(j, k, _TERMINAL[COMPLETED], CONFIRMED, 0, now)
            return None
        if stopped:
            self._end(j, k, _TERMINAL[STOPPED], NOT_SENT, 0, now)
            return None
        self._j_polls[j] = 0
        due = now + self._j_think[j][n]
        return Next(due, n, 1, due)


class JourneyRun(Run, JourneyBook):
    """One event loop's open-loop run of journeys over a slice of the schedule (see module)."""

    def __init__(
        self,
        rows: Orders | Iterable[Orders],
        transport: Transport,
        config: EngineConfig,
        sink: Sink | None,
        journey: Journey,
        templates: Sequence[StepTemplate],
        seed: int,
        streams: Sequence[Stream] = (),
    ) -> None:
        self.journey = journey
        self._templates = list(templates)  # the steps', then the streams'
        self._rules = step_rules(requests_of(journey, streams))
        self._seed = seed
        self._retry = config.retry
        self.journeys = JourneyTally(
            journey.names(), journey.order_step, tuple(x.name for x in streams), journey.implicit
        )
        self._book_init(journey)
        # the current chunk's rows beyond the engine's lists
        self._crow: list[int] = []
        self._cs: list[int] = []  # per row: 0 a buyer, s + 1 a request of stream s
        self._buyer_rows = 0  # buyer rows taken so far (their schedule row numbers)
        self._cf: list[int] = []
        self._cthink: list[list[int]] = []
        self._ctake: list[list[bool]] = []
        self._allowance_ns = round(allowance_s(journey, config.timeout_s, config.retry) * 1e9)
        super().__init__(rows, transport, config, sink)
        self._order_step = journey.order_step  # (Run's own is None: no journey)
        self.tally.journey = self.journeys
        for rule in self._rules:  # the steps' own reason names (as users mode has them)
            self.tally.reason_labels.update(rule.labels)
        for k, name in enumerate(journey.names()):
            self.tally.reason_labels[R_JOURNEY_STEP + k] = f"journey ended at {name}"
        deliver = getattr(transport, "deliver_answers", None)
        if deliver is None:
            raise ValueError("journeys need a transport that hands over whole answers (lean)")
        deliver()

    # -- rows ----------------------------------------------------------------------------------

    def _load_chunk(self) -> bool:
        """The next chunk of rows (journey starts) into Python lists; False at the end."""
        chunk = next(self._source, None) if self._more and not self._stopped else None
        if chunk is None:
            self._more = False
            self._ct, self._ci = [], 0
            return False
        cfg = self.config
        n = len(chunk)
        if "stream" in (chunk.dtype.names or ()):
            kind = chunk["stream"]
            buyer = kind == 0
            self._cs = kind.tolist()
        else:
            buyer = np.ones(n, dtype=bool)
            self._cs = []
        local = self._buyer_rows
        nth = local + np.cumsum(buyer) - 1  # each buyer row's number among this worker's
        rows = cfg.worker + nth.astype(np.int64) * cfg.workers
        self._buyer_rows += int(np.count_nonzero(buyer))
        self._rows_loaded += n
        self._take_lists(chunk)
        self._cf = chunk["flags"].tolist()
        self._crow = rows.tolist()
        self._cthink = think_ns(self.journey, self._seed, rows).tolist()
        self._ctake = takes(self.journey, self._seed, rows).tolist()
        self._note_due(local, chunk["t_ns"][buyer].astype(np.int64))
        return True

    def _tick(self) -> None:
        """Start every journey that is due, then send every step that is due."""
        self._timer = None
        t0 = self._t0
        clock = time.perf_counter_ns
        ts, i = self._ct, self._ci
        while True:
            if i >= len(ts):
                self._ci = i
                if not self._load_chunk():
                    break
                ts, i = self._ct, 0
            now = clock() - t0
            if ts[i] > now:
                break
            if self._cs and self._cs[i]:
                self._background(i, ts[i])
            else:
                self._start(i, ts[i], now)
            i += 1
        self._ci = i
        heap = self._retry_heap
        while heap and heap[0][0] <= clock() - t0:
            due_ns, _, item = heapq.heappop(heap)
            step: tuple[int, int, int, int] = item
            j, k, tries, first_ns = step
            self._dispatch_step(j, k, tries, first_ns, due_ns)
        self._arm()

    # -- journeys ------------------------------------------------------------------------------

    def _start(self, i: int, t_row: int, now: int) -> None:
        """Row ``i`` of the chunk starts its journey (intended at ``t_row``)."""
        j = self._begin(
            self._crow[i],
            self._cp[i],
            self._co[i],
            self._cq[i],
            self._cb[i],
            self._cf[i],
            t_row,
            self._cthink[i],
            self._ctake[i],
        )
        self._go(j, self._first_step(j, now), now)

    def _background(self, i: int, t_row: int) -> None:
        """Row ``i`` of the chunk is a request of a background stream: send it (or queue it)."""
        attempt, payload = self._stream_request(
            t_row, self._cs[i], self._cp[i], self._co[i], self._cq[i], self._cb[i]
        )
        self._dispatch(attempt, payload)

    def _go(self, j: int, nxt: Next | None, now: int) -> None:
        """Send journey ``j``'s next request now if it is due, or when it is."""
        if nxt is None:
            return
        item = (j, nxt.k, nxt.tries, nxt.first_ns)
        if nxt.due_ns <= now:
            self._dispatch_step(*item, nxt.due_ns)
        else:
            self._retry_seq += 1
            heapq.heappush(self._retry_heap, (nxt.due_ns, self._retry_seq, item))
            self._rearm(nxt.due_ns)

    def _dispatch_step(self, j: int, k: int, tries: int, first_ns: int, due_ns: int) -> None:
        """Send (or queue) a request of step ``k`` for journey ``j``, intended at ``due_ns``."""
        got = self._step_request(j, k, due_ns, first_ns, tries, self._now())
        if got is not None:
            self._dispatch(*got)

    # -- answers -------------------------------------------------------------------------------

    def on_answer(
        self,
        channel: Channel,
        attempt: int,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """A whole answer to a step's request: classify it by the step's rule, take its values
        and cookies, and move the journey on (or end it)."""
        now = self._now()
        outcome, reason = self._classify(attempt, status, body, now)
        self._in_flight -= 1
        if channel.alive:
            self._reuse(channel, now)
        j = self._owner[attempt]
        if j >= 0:  # a journey's step (a stream's request is only recorded)
            k = int(self.slots.step[attempt])
            draw = self._retry_draw if self._retrying else None
            nxt = self._after_answer(
                j, k, attempt, outcome, reason, headers, body, now, draw, self._stopped
            )
            self._go(j, nxt, now)
        if self._coalescing and (now >= self._armed_for or self._in_flight == 0):
            self._due_on_answer(now)
        if self._deadline_ns is not None:
            self._check_done()

    def _retry_draw(self, tries: int) -> float:
        """A retry's jitter: the next draw of this worker's retry stream (as for orders)."""
        return self._draw()

    def on_response(
        self, channel: Channel, attempt: int, status: int, outcome: int, reason: int
    ) -> None:
        """A transport that classifies answers itself cannot drive a journey."""
        raise RuntimeError("a journey's transport must hand over whole answers (on_answer)")

    def on_failure(self, channel: Channel, attempt: int, outcome: int, reason: int) -> None:
        """A step's request failed (error or timeout): its journey ends there."""
        super().on_failure(channel, attempt, outcome, reason)
        self._failed(attempt, self._now())

    def _failed(self, attempt: int, now: int) -> None:
        slots = self.slots
        outcome = int(slots.outcome[attempt])
        j = self._owner[attempt]
        if j < 0:
            return
        step, reason = int(slots.step[attempt]), int(slots.reason[attempt])
        self._end(j, step, _TERMINAL[OUTCOME_NAMES[outcome]], outcome, reason, now)

    # -- the end -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop starting journeys and sending steps: the journeys under way end as stopped."""
        if self._stopped:
            return
        now = self._now() if self._t0 else 0
        rest = np.array(self._ct[self._ci :], dtype=np.int64)  # this chunk's rows not reached
        if self._cs:
            rest = rest[np.array(self._cs[self._ci :]) == 0]
        self.tally.add_unsent_rows(rest)  # (later chunks are counted at the end)
        for attempt in self._q_att:  # queued, never sent: stopped where they were
            j = self._owner[attempt]
            if j < 0:
                continue
            self._end(j, int(self.slots.step[attempt]), _TERMINAL[STOPPED], NOT_SENT, 0, now)
        super().stop()

    def _drop_retries(self) -> None:
        """Steps waiting to be sent are not: their journeys end as stopped (an order retry
        dropped ends its order on the answer before)."""
        now = self._now() if self._t0 else 0
        for _, _, item in self._retry_heap:
            step: tuple[int, int, int, int] = item
            j, k, tries, first_ns = step
            if k == self._order_step and tries > 1:
                self.tally.add_dropped_retry(THROTTLED, first_ns, -1)
            self._end(j, k, _TERMINAL[STOPPED], NOT_SENT, 0, now)
        self._retry_heap.clear()

    def _finalize(self, now: int) -> None:
        self.slots.finalize(now, TIMEOUT, R_UNANSWERED)
        self._drop_retries()
        for j, live in enumerate(self._j_live):
            if live:
                self._end(j, -1, _TERMINAL[STOPPED], NOT_SENT, 0, now)
        self._fold(everything=True)
        for chunk in self._source:
            t = chunk["t_ns"].astype(np.int64)
            if "stream" in (chunk.dtype.names or ()):
                t = t[chunk["stream"] == 0]
            self.tally.add_unsent_rows(t)

    def _idle(self) -> bool:
        return self._live_journeys == 0 and super()._idle()

    def _drain_deadline(self) -> int:
        """``drain_s`` after the last journey could have ended (think times, timeouts, polls)."""
        return super()._drain_deadline() + self._allowance_ns

    # -- folding -------------------------------------------------------------------------------

    def _fold(self, everything: bool = False) -> None:
        """Fold the attempts that are over: the order step's (and rows ended before it) into
        the run's tally and sink, every step's into its own tally; then the journeys' ends."""
        for batch in self.slots.collect(everything):
            orders = self._split_batch(batch)
            if len(orders["step"]):
                self.tally.fold_batch(orders)
                if self.sink is not None:
                    self.sink(orders)
                self._note(orders)
            if not everything:
                self._send_due()  # as Run._fold: a fold must not hold what comes due back
        self._fold_ends()


#: a row of a run with background streams: a schedule row and whose it is (0: a buyer's)
STREAM_ROW = np.dtype(
    [*((name, ORDER_DTYPE[name]) for name in ORDER_DTYPE.names or ()), ("stream", "u1")]
)


def _tagged(chunks: Iterable[Orders], stream: int) -> Iterator[Orders]:
    for c in chunks:
        out = np.zeros(len(c), dtype=STREAM_ROW)
        for name in ORDER_DTYPE.names or ():
            out[name] = c[name]
        out["stream"] = stream
        yield out


def merged_rows(sources: Sequence[Iterable[Orders]]) -> Iterator[Orders]:
    """Several time-ordered row streams (chunks) as one, in time order (each source's rows in
    their own order; rows of different sources at the same ns in no set order), each row
    tagged with its source's index in ``stream``. Vectorised: rows are merged up to the
    earliest of the sources' buffered last times at a time."""
    its = [iter(_tagged(src, k)) for k, src in enumerate(sources)]
    bufs: list[Orders | None] = [None] * len(its)
    while True:
        for k, it in enumerate(its):
            b = bufs[k]
            if b is None or len(b) == 0:
                bufs[k] = next(it, None)
        live = [b for b in bufs if b is not None and len(b)]
        if not live:
            return
        horizon = min(int(b["t_ns"][-1]) for b in live)
        parts = []
        for k, b in enumerate(bufs):
            if b is None or not len(b):
                continue
            cut = int(np.searchsorted(b["t_ns"], horizon, side="right"))
            parts.append(b[:cut])
            bufs[k] = b[cut:]
        out = np.concatenate(parts)
        yield out[np.argsort(out["t_ns"], kind="stable")]


def stream_schedules(
    scenario: Scenario, duration_s: float | None, worker: int, workers: int
) -> list[Iterator[Orders]]:
    """Each background stream's rows (worker k of N's share): the scenario's products drawn
    by weight on the stream's own curve, from a seed of its own."""
    from simulator.scenario import Buyers

    out = []
    flat = tuple(replace(p, curve=None) for p in scenario.products)
    if sum(p.weight for p in flat) <= 0:
        flat = tuple(replace(p, weight=1.0) for p in flat)
    for k, stream in enumerate(scenario.streams):
        sc = replace(
            scenario,
            demand=stream.demand,
            products=flat,
            buyers=Buyers(),
            seed=(scenario.seed * 1_000_003 + 7919 * (k + 1)) % (2**63),
            journey=None,
            streams=(),
        )
        out.append(build_schedule(sc, duration_s).chunks(CHUNK_ROWS, worker, workers))
    return out


def make_run(
    rows: Orders | Iterable[Orders],
    transport: Transport,
    config: EngineConfig,
    sink: Sink | None,
    scenario: Scenario,
    endpoint: Endpoint,
    duration_s: float | None = None,
) -> Run:
    """The engine's run for a scenario: one order per row, or a journey per row (and the
    background streams' requests between them)."""
    journey = scenario.journey
    if journey is None and not scenario.streams:
        return Run(rows, transport, config, sink)
    if journey is None:
        journey = order_journey(scenario.target)
    if scenario.streams:
        buyers = [rows] if isinstance(rows, np.ndarray) else rows
        rows = merged_rows(
            [buyers, *stream_schedules(scenario, duration_s, config.worker, config.workers)]
        )
    variables = journey.variables()
    data, host, base = scenario.buyers.data, endpoint.host_header, endpoint.base_path
    templates = [
        StepTemplate(s, scenario.products, host, base, variables, data)
        for s in requests_of(journey, scenario.streams)
    ]
    return JourneyRun(
        rows, transport, config, sink, journey, templates, scenario.seed, scenario.streams
    )
