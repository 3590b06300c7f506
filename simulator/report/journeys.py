"""The journey section of a report: per step and per journey (scenarios with a ``[journey]``).

Per step: its requests, their outcomes and reasons, the intended-time latency (from the time
the step was due: the previous answer plus its think time) and the service time. Per journey:
how many started, how each ended (completed, or at which step in which state), and the time
from the journey's arrival to its last answer. report.json holds it under ``journey``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from simulator.report.sections import Distribution
from simulator.scenario.journey import COMPLETED, TERMINALS

#: how the terminal states read in a table
TERMINAL_LABELS = {
    COMPLETED: "completed",
    "confirmed": "confirmed",
    "sold_out": "sold out",
    "throttled": "throttled",
    "rejected": "rejected",
    "error": "error",
    "timeout": "timeout",
    "poll_limit": "poll limit",
    "missing_value": "value missing",
    "stopped": "stopped by the end of the run",
}


def _int(x: Any) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


def _counts(x: Any) -> dict[str, int]:
    if not isinstance(x, dict):
        return {}
    return {str(k): _int(v) for k, v in x.items()}


@dataclass(frozen=True, slots=True)
class StepReport:
    """One step's requests: counts, outcomes, reasons, latencies."""

    name: str
    order: bool
    requests: int
    outcomes: dict[str, int]
    reasons: dict[str, dict[str, int]]
    latency: Distribution
    service: Distribution

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "order": self.order,
            "requests": self.requests,
            "outcomes": self.outcomes,
            "reasons": self.reasons,
            "latency_ms": self.latency.to_json(),
            "service_ms": self.service.to_json(),
        }

    @classmethod
    def from_json(cls, x: Any) -> StepReport | None:
        if not isinstance(x, dict) or not isinstance(x.get("name"), str):
            return None
        reasons = x.get("reasons")
        return cls(
            name=x["name"],
            order=bool(x.get("order")),
            requests=_int(x.get("requests")),
            outcomes=_counts(x.get("outcomes")),
            reasons=(
                {str(k): _counts(v) for k, v in reasons.items()}
                if isinstance(reasons, dict)
                else {}
            ),
            latency=Distribution.from_json(x.get("latency_ms")),
            service=Distribution.from_json(x.get("service_ms")),
        )


@dataclass(frozen=True, slots=True)
class JourneyReport:
    """The journeys of a run: started, ended by terminal state and step, time, steps."""

    started: int
    terminals: dict[str, int]  # every terminal state → journeys
    ended_at: dict[str, dict[str, int]]  # step → terminal state → journeys (non-zero only)
    time_completed: Distribution
    time_ended: Distribution
    steps: tuple[StepReport, ...] = field(default_factory=tuple)
    streams: tuple[StepReport, ...] = field(default_factory=tuple)  # background traffic
    implicit: bool = False  # no [journey]: the order alone (there for the streams)

    @property
    def ended(self) -> int:
        """Journeys that ended (each once): equals ``started`` in a consistent report."""
        return sum(self.terminals.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "ended": self.ended,
            "terminals": self.terminals,
            "ended_at": self.ended_at,
            "time_ms": {
                "completed": self.time_completed.to_json(),
                "ended": self.time_ended.to_json(),
            },
            "steps": [s.to_json() for s in self.steps],
            "streams": [s.to_json() for s in self.streams],
            "implicit": self.implicit,
        }

    @classmethod
    def from_json(cls, x: Any) -> JourneyReport | None:
        """The section of a report.json (None when there is none, or it is not one)."""
        if not isinstance(x, dict) or not isinstance(x.get("steps"), list):
            return None
        times = x["time_ms"] if isinstance(x.get("time_ms"), dict) else {}
        ended_at = x.get("ended_at")
        steps = tuple(s for s in (StepReport.from_json(v) for v in x["steps"]) if s is not None)
        raw = x["streams"] if isinstance(x.get("streams"), list) else []
        streams = tuple(s for s in (StepReport.from_json(v) for v in raw) if s is not None)
        return cls(
            started=_int(x.get("started")),
            terminals=_counts(x.get("terminals")),
            ended_at=(
                {str(k): _counts(v) for k, v in ended_at.items()}
                if isinstance(ended_at, dict)
                else {}
            ),
            time_completed=Distribution.from_json(times.get("completed")),
            time_ended=Distribution.from_json(times.get("ended")),
            steps=steps,
            streams=streams,
            implicit=bool(x.get("implicit")),
        )


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def _step_line(s: StepReport) -> str:
    ok = s.outcomes.get("confirmed", 0)
    other = " ".join(
        f"{k.replace('_', ' ')} {v:,}" for k, v in s.outcomes.items() if v and k != "confirmed"
    )
    name = s.name + (" *" if s.order else "")
    return (
        f"  {name:<14}{s.requests:>9,} {ok:>7,} {other[:18]:<19}{_ms(s.latency.p50):>8}"
        f"{_ms(s.latency.p99):>9}{_ms(s.service.p99):>9}"
    )


def _streams_text(j: JourneyReport) -> list[str]:
    if not j.streams:
        return []
    head = (
        f"  {'stream':<14}{'requests':>9} {'ok':>7} {'other':<19}{'p50 ms':>8}{'p99 ms':>9}"
        f"{'svc p99':>9}"
    )
    lines = ["streams     background requests, each on a curve of its own", head]
    return lines + [_step_line(s) for s in j.streams]


def render_text(j: JourneyReport) -> list[str]:
    """The terminal lines: steps with their latencies, how journeys ended, the streams."""
    if j.implicit:
        return _streams_text(j)
    lines = [
        f"{'journeys':<12}{j.started:,} started · {j.terminals.get(COMPLETED, 0):,} completed "
        f"· {j.ended:,} ended in all",
        f"  {'step':<14}{'requests':>9} {'ok':>7} {'other':<19}{'p50 ms':>8}{'p99 ms':>9}"
        f"{'svc p99':>9}",
    ]
    lines += [_step_line(s) for s in j.steps]
    lines.append("  * the order step · latency from each step's due time (the previous answer")
    lines.append("    plus its think time)")
    ends = [
        f"{TERMINAL_LABELS.get(t, t)} at {step} {n:,}"
        for step, by in j.ended_at.items()
        for t, n in by.items()
        if n and t != COMPLETED
    ]
    if ends:
        lines.append("  ended       " + " · ".join(ends))
    t = j.time_completed
    if t.count:
        lines.append(
            f"  completed   p50 {_ms(t.p50)} · p99 {_ms(t.p99)} · max {_ms(t.max)} ms from arrival"
        )
    return lines + _streams_text(j)


_HEAD = ("requests", "ok", "other outcomes", "p50 ms", "p90 ms", "p99 ms", "max ms",
         "service p99 ms")  # fmt: skip


def _table(table_id: str, first: str, steps: tuple[StepReport, ...]) -> str:
    head = "".join(f"<th>{h}</th>" for h in (first, *_HEAD))
    rows = []
    for s in steps:
        other = ", ".join(
            f"{k.replace('_', ' ')} {v:,}" for k, v in s.outcomes.items() if v and k != "confirmed"
        )
        cells = (
            escape(s.name) + (" (order)" if s.order else ""),
            f"{s.requests:,}",
            f"{s.outcomes.get('confirmed', 0):,}",
            escape(other) or "—",
            _ms(s.latency.p50),
            _ms(s.latency.p90),
            _ms(s.latency.p99),
            _ms(s.latency.max),
            _ms(s.service.p99),
        )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def render_html(j: JourneyReport) -> str:
    """The journeys as tables: steps (``journey-steps``), where journeys ended
    (``journey-ends``), background streams (``streams``)."""
    streams = _table("streams", "stream", j.streams) if j.streams else ""
    if j.implicit:
        return streams
    ends = [
        f"<tr><td>{escape(step)}</td><td>{escape(TERMINAL_LABELS.get(t, t))}</td>"
        f"<td>{n:,}</td></tr>"
        for step, by in j.ended_at.items()
        for t, n in by.items()
        if n
    ]
    t = j.time_completed
    return (
        f'<p id="journey-summary">{j.started:,} journeys started · '
        f"{j.terminals.get(COMPLETED, 0):,} completed · {j.ended:,} ended in all; completed "
        f"journeys took p50 {_ms(t.p50)} ms, p99 {_ms(t.p99)} ms from arrival to last answer</p>"
        + _table("journey-steps", "step", j.steps)
        + '<table id="journey-ends"><tr><th>last step</th><th>ended</th><th>journeys</th></tr>'
        f"{''.join(ends)}</table>" + streams
    )


__all__ = ["TERMINALS", "JourneyReport", "StepReport", "render_html", "render_text"]
