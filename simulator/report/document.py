"""The report document: one typed model of a run's (or the model's) ``report.json``.

This module owns the schema (:data:`REPORT_VERSION`). The three writers — ``flashsale run``
(:mod:`simulator.load.runner`), the Locust master (:mod:`simulator.locust.results`) and the
offline model (:mod:`simulator.model.report`) — assemble a :class:`Report` once;
:meth:`Report.to_json` is the only place its JSON shape is spelled, and
:meth:`Report.from_json` the only reader (version 2, version 1 files and the model's first
shape). Every renderer works on the typed model. Reading is tolerant: an optional section that
is missing or malformed becomes ``None``/empty plus a note in :attr:`Report.notes`; only a
document without outcome counts is rejected (:class:`ReportError` naming the file).

Version 2 (against 1): ``orders.confirmed_units`` counts each order id once (version 1 counted
double clicks twice); ``target.storefront`` states the bundled storefront's settings;
``thresholds`` are in the one write; ``audit.skus.*.sell_out_s`` is stated; an integer too wide
for JSON readers (beyond 64 bits, e.g. a seed) is written as a string.

Optional sections added within version 2 (a reader of an older file finds them missing, and
an older reader keeps them verbatim): ``stock_history`` (the bundled storefront's free / held /
sold units over time) and, with a reservation TTL, the audit's lifecycle figures
(``audit.undersell_units``, ``double_returns``, ``paid_after_expiry``, ``excess_units``,
``holds`` and per SKU the fields of :class:`~simulator.report.sections.Lifecycle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.outcomes import OUTCOME_NAMES
from simulator.report.journeys import JourneyReport
from simulator.report.sections import (
    Audit,
    CheckedThreshold,
    Distribution,
    Orders,
    ReportError,
    RunInfo,
    ScenarioInfo,
    SkuStock,
    StockHistory,
    TargetInfo,
    Timeline,
    _dict,
    _float,
    _int,
    _optional_outcomes,
    _outcomes,
    _reasons,
    sell_out_s,
)

#: the version of the report.json schema written here (``flashsale_report``)
REPORT_VERSION = 2
#: latency kinds: the first three in ``latency_ms``, the others top-level ``<kind>_ms``
LATENCY_KINDS = ("intended", "service", "order", "dispatch_lag", "queue_wait")
_TOP_LEVEL_LATENCY = ("dispatch_lag", "queue_wait")
#: the sections every writer states; anything else at the top level is kept verbatim in ``extra``
_KNOWN = {
    "flashsale_report", "mode", "partial", "complete", "exit_code", "scenario", "target", "run",
    "orders", "latency_ms", "dispatch_lag_ms", "queue_wait_ms", "latency_spectrum", "timeline",
    "audit", "thresholds", "journey", "stock_history",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Report:
    """A run's (``kind`` "run") or the model's ("simulate") report: every fact, typed.

    ``latency`` maps the kinds of :data:`LATENCY_KINDS` a report has to their distributions;
    ``spectrum`` a latency kind to [(percentile, ms), ...]. ``extra`` keeps the sections only
    one writer has (the model's ``model``/``skus``, the Locust ``locust`` section) verbatim.
    ``notes`` are what the reader had to skip (never written).
    """

    kind: str
    orders: Orders
    scenario: ScenarioInfo = field(default_factory=ScenarioInfo)
    target: TargetInfo = field(default_factory=TargetInfo)
    run: RunInfo = field(default_factory=RunInfo)
    latency: dict[str, Distribution] = field(default_factory=dict)
    spectrum: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    timeline: Timeline | None = None
    journey: JourneyReport | None = None  # steps and journeys (a scenario with a [journey])
    audit: Audit | None = None
    #: the storefront's free / held / sold units over time (bundled storefront only)
    stock_history: StockHistory | None = None
    thresholds: tuple[CheckedThreshold, ...] = ()
    exit_code: int = 0
    complete: bool = True
    partial: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    version: int = REPORT_VERSION

    # -- what renderers ask, in one place --------------------------------------------------

    @property
    def outcomes(self) -> dict[str, int]:
        """The final outcome of every scheduled order."""
        return self.orders.outcomes

    @property
    def skus(self) -> tuple[SkuStock, ...]:
        """Stock per product (empty without an audit)."""
        return self.audit.skus if self.audit is not None else ()

    @property
    def oversell_units(self) -> int | None:
        """Units sold beyond the initial stock (None: no audit)."""
        return self.audit.oversell_units if self.audit is not None else None

    def remarks(self) -> tuple[str, ...]:
        """What a reader should know before the numbers: a partial run, skipped sections."""
        if not self.partial:
            return self.notes
        lost = self.run.worker_errors
        cause = "; ".join(lost) if lost else "stopped before the end of the schedule"
        return (f"PARTIAL run: {cause}", *self.notes)

    def with_thresholds(self, checked: Sequence[CheckedThreshold]) -> Report:
        """This report with its thresholds checked: a failed one makes the exit code ≥ 1."""
        code = self.exit_code
        if not all(c.passed for c in checked):
            code = max(code, 1)
        return replace(self, thresholds=tuple(checked), exit_code=code)

    # -- JSON --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The report.json object (JSON-ready: plain dicts, lists, numbers and strings)."""
        out: dict[str, Any] = {"flashsale_report": REPORT_VERSION}
        if self.kind != "run":
            out["mode"] = self.kind
        out.update(partial=self.partial, complete=self.complete, exit_code=self.exit_code)
        out["scenario"] = self.scenario.to_json()
        out["target"] = self.target.to_json()
        out["run"] = self.run.to_json()
        out["orders"] = self.orders.to_json()
        out["latency_ms"] = {
            k: d.to_json() for k, d in self.latency.items() if k not in _TOP_LEVEL_LATENCY
        }
        for k in _TOP_LEVEL_LATENCY:
            if k in self.latency:
                out[f"{k}_ms"] = self.latency[k].to_json()
        if self.spectrum:
            out["latency_spectrum"] = {k: [list(p) for p in v] for k, v in self.spectrum.items()}
        if self.timeline is not None:
            out["timeline"] = self.timeline.to_json()
        if self.journey is not None:
            out["journey"] = self.journey.to_json()
        out["audit"] = None if self.audit is None else self.audit.to_json()
        if self.stock_history is not None:
            out["stock_history"] = self.stock_history.to_json()
        out["thresholds"] = [t.to_json() for t in self.thresholds]
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = "report", require_outcomes: bool = True) -> Report:
        """Read a report: version 2 or 1, a capacity search's summary (its best report), or
        the model's first shape. :class:`ReportError` naming ``source`` if it is not one;
        ``require_outcomes=False`` reads what there is of a partial document (calibration)."""
        if not isinstance(data, dict):
            raise ReportError(f"{source}: expected a JSON object (a report)")
        if data.get("mode") == "simulate-find" and isinstance(data.get("report"), dict):
            data = data["report"]
        orders = data.get("orders")
        if _int(orders) is not None and not isinstance(orders, str):
            from simulator.report.legacy import read_first_model_shape

            return read_first_model_shape(data, source)
        if not isinstance(orders, dict):
            if require_outcomes:
                raise ReportError(f"{source}: not a flashsale report (no 'orders' section)")
            orders = {}
        return _read(data, orders, source, require_outcomes)


def _spectrum(x: Any) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for kind, points in _dict(x).items():
        if not isinstance(points, list):
            continue
        pairs = [
            (float(p[0]), float(p[1]))
            for p in points
            if isinstance(p, list | tuple)
            and len(p) == 2
            and _float(p[0]) is not None
            and _float(p[1]) is not None
        ]
        if pairs:
            out[str(kind)] = pairs
    return out


def _thresholds(x: Any) -> tuple[CheckedThreshold, ...]:
    if not isinstance(x, list):
        return ()
    return tuple(
        CheckedThreshold(str(t["expr"]), _float(t.get("value")), bool(t.get("passed")))
        for t in x
        if isinstance(t, dict) and isinstance(t.get("expr"), str)
    )


def _read(data: dict[str, Any], orders: dict[str, Any], source: str, strict: bool) -> Report:
    notes: list[str] = []
    partial = bool(data.get("partial"))
    scenario = ScenarioInfo.from_json(data.get("scenario"))
    if scenario.scale is None and isinstance(data.get("scenario"), str):
        scenario = replace(scenario, scale=_float(data.get("scale")),
                           duration_s=_float(data.get("duration_s")))  # fmt: skip
    lat = _dict(data.get("latency_ms"))
    latency: dict[str, Distribution] = {
        k: Distribution.from_json(lat[k]) for k in ("intended", "service", "order") if k in lat
    }
    for k in _TOP_LEVEL_LATENCY:
        if f"{k}_ms" in data:
            latency[k] = Distribution.from_json(data[f"{k}_ms"])
    timeline = Timeline.from_json(data.get("timeline"))
    if timeline is None:
        notes.append("no timeline: the plots over time are skipped")
    audit = None
    if isinstance(data.get("audit"), dict):
        units = timeline.sku_units if timeline is not None else {}
        model_skus = _dict(data.get("skus"))  # the model's per-SKU section (sell-out times)
        audit_skus = _dict(data["audit"].get("skus"))
        sell_out = {
            str(s): sell_out_s(u, _int(_dict(audit_skus.get(s)).get("initial")))
            for s, u in units.items()
        }
        for sku, s in model_skus.items():
            sell_out.setdefault(str(sku), _float(_dict(s).get("sell_out_s")))
        audit = Audit.from_dict(data["audit"], sell_out)
    else:
        notes.append("no audit section: oversell and stock per product are not in this report")
    outcomes = (
        _outcomes(orders.get("outcomes"), source)
        if strict or "outcomes" in orders
        else dict.fromkeys(OUTCOME_NAMES, 0)
    )
    exit_code = _int(data.get("exit_code"))
    complete = data.get("complete")
    return Report(
        kind="simulate" if data.get("mode") == "simulate" else "run",
        orders=Orders(
            outcomes=outcomes,
            scheduled=_int(orders.get("scheduled")),
            attempts=_int(orders.get("attempts")),
            retries=_int(orders.get("retries")),
            sent=_int(orders.get("sent")),
            attempt_outcomes=_optional_outcomes(orders.get("attempt_outcomes")),
            confirmed_units=_int(orders.get("confirmed_units")),
            replays=_int(orders.get("replays")),
            reasons=_reasons(orders.get("reasons")),
        ),
        scenario=scenario,
        target=TargetInfo.from_json(data.get("target")),
        run=RunInfo.from_json(data.get("run")),
        latency=latency,
        spectrum=_spectrum(data.get("latency_spectrum")),
        timeline=timeline,
        journey=JourneyReport.from_json(data.get("journey")),
        audit=audit,
        stock_history=StockHistory.from_json(data.get("stock_history")),
        thresholds=_thresholds(data.get("thresholds")),
        exit_code=exit_code if exit_code is not None else 0,
        complete=complete if isinstance(complete, bool) else not partial,
        partial=partial,
        extra={k: v for k, v in data.items() if k not in _KNOWN},
        notes=tuple(notes),
        version=_int(data.get("flashsale_report")) or 1,
    )
