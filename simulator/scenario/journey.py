"""A buyer's journey: named steps, each a request, run in order for every schedule row.

A scenario without ``[journey]`` sends one order request per row (the target's own shape). With
one, every row starts a journey: step after step, each due at the previous answer plus its
think time, its latency counted from that due time (open loop within the journey too). One step
is the *order step*: its outcome is the buyer's outcome in the counts and the audit.

- ``think_s`` before a step: a :class:`~simulator.scenario.model.Think` distribution, drawn
  per journey from the scenario's seed and the row (the same draws whatever the target does);
- ``probability``: the share of journeys that take the step (the rest skip it); ``unless``
  names an earlier step: only journeys that did not take that one may take this one (70 % pay;
  of the others, half cancel: ``probability = 0.5, unless = "pay"``);
- ``extract``: values taken from the answer (:class:`Extract`: a JSON path into the body, a
  header, a cookie or a regex over the body) into the journey's variables, for later steps'
  templates (``{token}``, ``{order_ref}``);
- ``poll``: the step is repeated every ``every_s`` until the value at its rule is one of
  ``until`` or ``max`` requests were made (:class:`Poll`).

A step's answer is classified like an order's (its ``status`` map extends the defaults, and an
optional body rule): a step whose outcome is not ``confirmed`` ("ok" for other steps) ends the
journey with that outcome, as does a value a later step needs that its extract rule did not
find. Every started journey ends in exactly one terminal state (:data:`TERMINALS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.demand import Curve
from simulator.outcomes import DEFAULT_STATUS, OUTCOME_NAMES
from simulator.scenario.model import BodyOutcome, Target, Think

#: how a value is taken from an answer
EXTRACT_KINDS = ("json", "header", "cookie", "regex")
#: methods a step may use
STEP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: the journey's terminal states besides "ended on an outcome" (OUTCOME_NAMES of the step)
COMPLETED = "completed"
POLL_LIMIT = "poll_limit"  # a polling step made its most requests without its condition
MISSING = "missing_value"  # an extract rule found nothing that a later step needs
STOPPED = "stopped"  # the run ended (or was stopped) before the journey did
#: every terminal state a journey can end in: completed, or at a step by one of these
TERMINALS = (COMPLETED, *OUTCOME_NAMES[1:], POLL_LIMIT, MISSING, STOPPED)


@dataclass(frozen=True, slots=True)
class Extract:
    """Take a journey variable from an answer: ``kind`` is json (``expr`` a parsed JSON path
    in ``path``), header (a name), cookie (a Set-Cookie name) or regex (group 1, or the whole
    match, over the body)."""

    var: str
    kind: str
    expr: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Poll:
    """Repeat the step every ``every_s`` until the value ``rule`` finds is one of ``until``
    (as text, like a body rule's keys), at most ``max`` requests in all."""

    rule: Extract
    until: tuple[str, ...]
    every_s: float = 0.5
    max: int = 20


@dataclass(frozen=True, slots=True)
class Step:
    """One request of the journey (the fields a request shape has, as :class:`Target`'s)."""

    name: str
    path: str
    method: str = "POST"
    body: str = ""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    status: tuple[tuple[int, str], ...] = DEFAULT_STATUS
    outcome: BodyOutcome | None = None
    think: Think = field(default_factory=Think)
    probability: float = 1.0
    unless: str | None = None  # taken only by journeys that did not take this (earlier) step
    extract: tuple[Extract, ...] = ()
    poll: Poll | None = None

    def templates(self) -> tuple[tuple[str, str], ...]:
        """Every template of the step's request with its key under the step (for messages)."""
        out = [("path", self.path), ("body", self.body)]
        out += [(f"headers.{name}", value) for name, value in self.headers]
        return tuple(out)

    @property
    def reads_answer(self) -> bool:
        """Whether anything is taken from its answers (the transport keeps bodies/headers)."""
        return bool(self.extract) or self.poll is not None or self.outcome is not None


@dataclass(frozen=True, slots=True)
class Stream:
    """Background traffic (``[[streams]]``): one request (the fields of a :class:`Step`, no
    think time, extract or poll) sent open loop on a demand curve of its own, its products
    drawn by the products' weights; recorded and reported per stream, never an order."""

    name: str
    request: Step
    demand: Curve


@dataclass(frozen=True, slots=True)
class Journey:
    """The steps every buyer takes, and which one is the order (its index). ``implicit``: the
    target's one order request as a one-step journey (a scenario with streams and no
    ``[journey]``)."""

    steps: tuple[Step, ...]
    order_step: int
    implicit: bool = False

    def names(self) -> tuple[str, ...]:
        """The steps' names in order."""
        return tuple(s.name for s in self.steps)

    def variables(self) -> tuple[str, ...]:
        """Every variable some step extracts, in order of first extraction."""
        out: dict[str, None] = {}
        for s in self.steps:
            for e in s.extract:
                out.setdefault(e.var, None)
        return tuple(out)


def requests_of(journey: Journey, streams: Sequence[Stream]) -> tuple[Step, ...]:
    """The requests a journey run sends, in the order of its attempts' ``step`` numbers: the
    journey's steps, then the streams' requests."""
    return (*journey.steps, *(x.request for x in streams))


def order_journey(target: Target) -> Journey:
    """The target's order request as a one-step journey (for streams without a journey)."""
    step = Step(
        name="order",
        path=target.orders_path,
        method=target.method,
        body=target.body,
        content_type=target.content_type,
        headers=target.headers,
        status=target.status,
        outcome=target.outcome,
    )
    return Journey((step,), 0, implicit=True)
