"""CI thresholds: ``<metric> <op> <number>`` checked against a finished report.

``p99_ms < 250``, ``oversell_units == 0``, ``error_rate < 0.01``, ``achieved_rate_ratio > 0.95``
— the metric names and their definitions are in :mod:`simulator.report.metrics`; operators are
``< <= > >= == !=``. Parsed by hand (never ``eval``) so that a bad expression gets an error
that says what is wrong with it. A metric the report does not have fails its threshold (a CI
gate on oversell must not pass because the audit did not run): the audit's metrics are "n/a"
when the storefront's records were not read (the source failed, or ``[audit] source = "none"``),
even though the clients' own view still gives a number.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import UsageError
from simulator.report.document import Report
from simulator.report.metrics import (
    LIFECYCLE_METRICS,
    METRICS,
    canonical,
    metric_values,
    nearest,
)
from simulator.report.sections import CheckedThreshold

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
#: metrics that only the storefront's records can vouch for
AUDIT_METRICS = ("oversell_units", "audit_problems", *LIFECYCLE_METRICS)
_MISTAKES = {"=": "==", "=<": "<=", "=>": ">=", "<>": "!=", "===": "==", "!": "!="}
_SHAPE = re.compile(r"\s*([^<>=!\s]*)\s*([<>=!]+)\s*(.*?)\s*", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
EXAMPLE = "expected '<metric> <op> <number>', e.g. 'p99_ms < 250'"


class ThresholdError(UsageError):
    """A threshold expression that cannot be parsed; the message quotes it and says why."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed expression: ``metric op bound`` (metric in its canonical spelling)."""

    text: str
    metric: str
    op: str
    bound: float

    def check(self, value: float) -> bool:
        """Whether ``value`` meets the threshold."""
        return OPS[self.op](value, self.bound)


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """A threshold checked against a report: the metric's value (None: not in the report)."""

    threshold: Threshold
    value: float | None
    passed: bool

    def checked(self) -> CheckedThreshold:
        """The result as the report states it (``expr``, ``value``, ``passed``)."""
        t = self.threshold
        return CheckedThreshold(f"{t.metric} {t.op} {t.bound:g}", self.value, self.passed)

    def line(self) -> str:
        """``PASS  p99_ms < 250  (p99_ms = 12.3)`` — one line for the terminal."""
        return result_line(self.checked())


def result_line(c: CheckedThreshold, report: Report | None = None) -> str:
    """``PASS  p99_ms < 250  (p99_ms = 12.3)`` — a checked threshold on one terminal line.

    A metric without a value shows as ``n/a`` with the reason (:func:`missing_reason`).
    """
    metric = c.expr.split()[0] if c.expr.split() else c.expr
    if c.value is None:
        shown = f"{metric} n/a: {missing_reason(metric, report)}"
    else:
        shown = f"{metric} = {c.value:.6g}"
    return f"{'PASS' if c.passed else 'FAIL'}  {c.expr}  ({shown})"


def missing_reason(metric: str, report: Report | None) -> str:
    """Why ``metric`` has no value in ``report``: the audit off or unread, or simply absent."""
    audit = report.audit if report is not None else None
    if metric in AUDIT_METRICS and audit is not None and not audit.available:
        if audit.source == "none":
            return 'the audit is off ([audit] source = "none")'
        return "the audit could not read the storefront's records"
    if metric in LIFECYCLE_METRICS and audit is not None and not audit.lifecycle:
        return "no reservation lifecycle in this audit (the storefront has no reservation TTL)"
    return "not in this report"


def parse_threshold(text: str) -> Threshold:
    """Parse one expression; :class:`ThresholdError` naming the problem if it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ThresholdError(f"empty threshold: {EXAMPLE}")
    m = _SHAPE.fullmatch(text)
    if m is None:
        raise ThresholdError(f"threshold {text!r}: no comparison operator; {EXAMPLE}")
    name, op, rest = m.groups()
    if not name:
        raise ThresholdError(f"threshold {text!r}: no metric before {op!r}; {EXAMPLE}")
    if not _NAME.fullmatch(name):
        raise ThresholdError(f"threshold {text!r}: {name!r} is not a metric name; {EXAMPLE}")
    if op not in OPS:
        hint = f" (did you mean {_MISTAKES[op]!r}?)" if op in _MISTAKES else ""
        raise ThresholdError(
            f"threshold {text!r}: unknown operator {op!r}{hint}; use one of {' '.join(OPS)}"
        )
    metric = canonical(name)
    if metric is None:
        raise ThresholdError(
            f"threshold {text!r}: unknown metric {name!r}; did you mean {nearest(name)!r}? "
            "(`flashsale report --metrics` lists them)"
        )
    if not rest:
        raise ThresholdError(f"threshold {text!r}: no number after {op!r}; {EXAMPLE}")
    if len(rest.split()) > 1:
        raise ThresholdError(
            f"threshold {text!r}: unexpected text after {rest.split()[0]!r} "
            "(one comparison per threshold; give several thresholds instead)"
        )
    try:
        bound = float(rest)
    except ValueError:
        unit = (
            " (write the number only: the unit is in the metric's name)"
            if rest[:1].isdigit()
            else ""
        )
        raise ThresholdError(f"threshold {text!r}: {rest!r} is not a number{unit}") from None
    if not math.isfinite(bound):
        raise ThresholdError(f"threshold {text!r}: the bound must be a finite number")
    return Threshold(text.strip(), metric, op, bound)


def parse_thresholds(texts: Iterable[str]) -> list[Threshold]:
    """Parse every expression first, so that a typo fails before anything runs."""
    return [parse_threshold(t) for t in texts]


def evaluate(
    report: Report | Mapping[str, Any], exprs: Iterable[str | Threshold]
) -> list[ThresholdResult]:
    """Check each threshold against a report (or its JSON); a metric the report lacks fails."""
    doc = report if isinstance(report, Report) else Report.from_json(dict(report))
    values = metric_values(doc)
    if doc.audit is not None and not doc.audit.available:
        # the clients' view alone cannot say there was no oversell: no value, not a PASS
        values.update(dict.fromkeys(AUDIT_METRICS))
    results = []
    for e in exprs:
        t = e if isinstance(e, Threshold) else parse_threshold(e)
        value = values[t.metric]
        results.append(ThresholdResult(t, value, value is not None and t.check(value)))
    return results


def check(report: Report, thresholds: Iterable[Threshold]) -> tuple[CheckedThreshold, ...]:
    """The thresholds checked against a finished report, as it states them."""
    return tuple(r.checked() for r in evaluate(report, thresholds))


def render_results(
    results: Sequence[ThresholdResult | CheckedThreshold], report: Report | None = None
) -> str:
    """The results as terminal lines, with a last line counting the failures.

    ``report``, when given, lets a metric without a value say why.
    """
    lines = [
        result_line(r.checked() if isinstance(r, ThresholdResult) else r, report) for r in results
    ]
    failed = sum(not r.passed for r in results)
    lines.append(
        f"thresholds: {len(results) - failed} passed, {failed} failed"
        if results
        else "thresholds: none given"
    )
    return "\n".join(lines)


def describe_metrics() -> str:
    """Every metric a threshold can name, with its meaning (``flashsale report --metrics``)."""
    width = max(len(n) for n in METRICS)
    rows = []
    for m in METRICS.values():
        unit = f" [{m.unit}]" if m.unit else ""
        better = f", {m.better} is better" if m.better else ""
        rows.append(f"{m.name:<{width}}  {m.description}{unit}{better}")
    return "\n".join(rows)
