"""Capacity search: the smallest setting of one knob (shards, servers, queue limit) meeting an SLO.

Strategy: a doubling sweep lo, 2·lo, 4·lo, … (hi always tried last) until a setting passes,
then a binary search between the last failing and the first passing setting. This assumes the
SLO metric improves monotonically with the knob (true for latency vs shards or servers; a queue
limit trades latency for throttling, so check the table it prints). Each probe is a full model
run of the scenario.

A setting meets the SLOs only when every one of them passes *and* it serves the load: the share
of scheduled orders refused by the service — finally throttled, timed out or failed — is at most
``max_refused`` (default 0: none). Otherwise fast refusals would pass a latency SLO (a 429 takes
no time) and the answer would be the smallest, most overloaded setting. Sold-out answers are
correct answers and orders rejected for the buyer's limit are the scenario's own; neither counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.model.config import ModelConfig
from simulator.model.report import build_report
from simulator.model.sim import Model
from simulator.outcomes import ERROR, OUTCOME_NAMES, THROTTLED, TIMEOUT
from simulator.report.thresholds import evaluate, parse_threshold
from simulator.scenario import Scenario

KNOBS = {"shards": "shards", "servers": "servers", "queue_limit": "queue_limit"}
_VARY = re.compile(r"^\s*([a-z_]+)\s*=\s*(\d+)\s*\.\.\s*(\d+)\s*$")
#: final outcomes that mean the service did not serve the order
REFUSED = tuple(OUTCOME_NAMES[c] for c in (THROTTLED, TIMEOUT, ERROR))


@dataclass(frozen=True, slots=True)
class Vary:
    """The knob to search and its inclusive range."""

    knob: str
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Probe:
    """One tried setting: its value, whether it met every SLO while serving the load, each SLO's
    metric (inf: not in the report), and the share of orders refused."""

    value: int
    ok: bool
    metrics: tuple[float, ...]
    p99_ms: float | None
    refused: int
    refused_share: float
    elapsed_s: float


def parse_vary(text: str) -> Vary:
    """'shards=1..64' → Vary('shards', 1, 64); ValueError on anything else."""
    m = _VARY.match(text)
    if not m:
        raise ValueError(f"expected KNOB=LO..HI (e.g. shards=1..64), got {text!r}")
    knob, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
    if knob not in KNOBS:
        raise ValueError(f"unknown knob {knob!r}; one of {', '.join(KNOBS)}")
    low_bound = 0 if knob == "queue_limit" else 1
    if not low_bound <= lo <= hi:
        raise ValueError(f"range must satisfy {low_bound} ≤ LO ≤ HI, got {lo}..{hi}")
    return Vary(knob, lo, hi)


def refused_share(report: dict[str, Any]) -> tuple[int, float]:
    """Orders the service refused (throttled, timed out, failed) and their share of the
    scheduled orders."""
    outcomes = report["orders"]["outcomes"]
    refused = sum(int(outcomes.get(name, 0)) for name in REFUSED)
    scheduled = int(report["orders"]["scheduled"])
    return refused, refused / scheduled if scheduled else 0.0


def find_capacity(
    scenario: Scenario,
    config: ModelConfig,
    slos: str | Sequence[str],
    vary: Vary,
    duration_s: float | None = None,
    on_probe: Callable[[Probe], None] | None = None,
    max_refused: float = 0.0,
) -> tuple[int | None, list[Probe], dict[str, Any] | None]:
    """(smallest passing value or None, every probe in the order tried, the passing report).

    A value passes when every SLO holds and at most ``max_refused`` of the orders were refused.
    """
    if not 0.0 <= max_refused <= 1.0:
        raise ValueError(f"the refused share allowed must be in 0..1, got {max_refused!r}")
    texts = [slos] if isinstance(slos, str) else list(slos)
    if not texts:
        raise ValueError("a capacity search needs at least one SLO")
    # the same checker as run thresholds; a bad expression fails before any run
    thresholds = [parse_threshold(t) for t in texts]
    tried: dict[int, tuple[Probe, dict[str, Any]]] = {}
    order: list[Probe] = []

    def probe(value: int) -> bool:
        if value not in tried:
            cfg = config.replace(**{KNOBS[vary.knob]: value})
            result = Model(scenario, cfg, duration_s).run()
            report = build_report(result)
            checked = evaluate(report, thresholds)
            refused, share = refused_share(report)
            p = Probe(
                value=value,
                ok=all(c.passed for c in checked) and share <= max_refused,
                metrics=tuple(math.inf if c.value is None else c.value for c in checked),
                p99_ms=report["latency_ms"]["intended"]["p99"],
                refused=refused,
                refused_share=share,
                elapsed_s=result.elapsed_s,
            )
            tried[value] = (p, report)
            order.append(p)
            if on_probe is not None:
                on_probe(p)
        return tried[value][0].ok

    fail, value = None, vary.lo
    while True:
        if probe(value):
            break
        fail = value
        if value >= vary.hi:
            return None, order, None
        value = min(vary.hi, max(value * 2, value + 1))
    ok_value = value
    lo = fail if fail is not None else ok_value
    while ok_value - lo > 1:
        mid = (lo + ok_value) // 2
        if probe(mid):
            ok_value = mid
        else:
            lo = mid
    return ok_value, order, tried[ok_value][1]
