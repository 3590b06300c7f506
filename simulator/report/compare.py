"""Run-to-run comparison: what changed between a base and a new report, and did it regress.

A metric *regresses* when it got worse by more than ``tolerance_pct`` percent of the base value
**and** by more than an absolute noise floor (``min_ms`` for latencies, 0.001 for ratios and
rates), so that 0.3 → 0.4 ms is not a CI failure. Oversell is correctness, not performance: any
increase regresses whatever the tolerance. Rows marked informational are shown, never gated
(raw error counts depend on the run's scale; ``error_rate`` is the gated one).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.report.document import Report
from simulator.report.metrics import HIGHER, LOWER, METRICS, metric_values

#: (metric, gated, absolute floor kind) in the order the table lists them
COMPARED: tuple[tuple[str, bool, str], ...] = (
    ("p50_ms", True, "ms"),
    ("p99_ms", True, "ms"),
    ("p999_ms", True, "ms"),
    ("max_ms", True, "ms"),
    ("service_p99_ms", True, "ms"),
    ("achieved_rate_ratio", True, "ratio"),
    ("throughput_peak_per_s", False, "count"),
    ("error_rate", True, "ratio"),
    ("errors", False, "count"),
    ("throttle_rate", False, "ratio"),
    ("oversell_units", True, "strict"),
)
RATIO_FLOOR = 0.001
DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_MIN_MS = 0.5

SAME, BETTER, WORSE, REGRESSION, MISSING = "same", "better", "worse", "REGRESSION", "n/a"


@dataclass(frozen=True, slots=True)
class Change:
    """One metric in both runs; ``change_pct`` is relative to the base (None: not defined)."""

    metric: str
    base: float | None
    new: float | None
    change_pct: float | None
    verdict: str  # same, better, worse, REGRESSION, n/a
    gated: bool


def _verdict(metric: str, base: float, new: float, floor: str, tol: float, min_ms: float) -> str:
    better = METRICS[metric].better
    if better not in (LOWER, HIGHER) or new == base:
        return SAME
    worse_by = new - base if better == LOWER else base - new
    if floor == "strict":
        return REGRESSION if worse_by > 0 else BETTER
    absolute = {"ms": min_ms, "ratio": RATIO_FLOOR}.get(floor, 0.0)
    if abs(worse_by) <= absolute:
        return SAME
    if worse_by < 0:
        return BETTER
    relative_pct = worse_by / abs(base) * 100 if base else float("inf")
    return REGRESSION if relative_pct > tol else WORSE


def compare(
    base: Report,
    new: Report,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    min_ms: float = DEFAULT_MIN_MS,
) -> list[Change]:
    """Every compared metric of two reports, with its verdict."""
    b, n = metric_values(base), metric_values(new)
    out = []
    for metric, gated, floor in COMPARED:
        bv, nv = b[metric], n[metric]
        if bv is None or nv is None:
            out.append(Change(metric, bv, nv, None, MISSING, gated))
            continue
        pct = (nv - bv) / abs(bv) * 100 if bv else None
        verdict = _verdict(metric, bv, nv, floor, tolerance_pct, min_ms)
        if verdict == REGRESSION and not gated:
            verdict = WORSE
        out.append(Change(metric, bv, nv, pct, verdict, gated))
    return out


def regressions(changes: list[Change]) -> list[Change]:
    """The changes that fail the comparison."""
    return [c for c in changes if c.verdict == REGRESSION]


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.4g}" if abs(x) < 1 else f"{x:,.2f}"


def render_table(base: Report, new: Report, changes: list[Change], tolerance_pct: float) -> str:
    """The comparison as an 80-column table, and a warning when the runs differ in kind."""
    lines = []
    b, n = base.scenario, new.scenario
    if (b.name, b.scale, base.kind) != (n.name, n.scale, new.kind):
        lines.append(
            f"note: comparing {base.kind} {b.name} (scale {b.scale}) with "
            f"{new.kind} {n.name} (scale {n.scale}); counts may not be comparable"
        )
    lines.append(f"{'metric':<22} {'base':>12} {'new':>12} {'change':>9}  {'verdict':<12}")
    lines.append("-" * 71)
    for c in changes:
        pct = "-" if c.change_pct is None else f"{c.change_pct:+.1f}%"
        verdict = c.verdict if c.gated else f"{c.verdict} (info)"
        lines.append(f"{c.metric:<22} {_num(c.base):>12} {_num(c.new):>12} {pct:>9}  {verdict:<12}")
    bad = regressions(changes)
    lines.append("")
    if bad:
        names = ", ".join(c.metric for c in bad)
        lines.append(f"regressed past {tolerance_pct:g}% tolerance: {names}")
    else:
        lines.append(f"no regression past {tolerance_pct:g}% tolerance")
    return "\n".join(lines)
