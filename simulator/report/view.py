"""Read a report — a live run's ``report.json`` or the offline model's — into one typed view.

The two shapes (see :func:`simulator.results.summarize` and
:func:`simulator.model.report.build_report`) carry the same facts under different keys. Every
renderer works on a :class:`ReportView` so that each reads a fact in one place. Optional
sections that are missing or malformed become ``None``/empty plus a note in
:attr:`ReportView.notes`; only a document without outcome counts is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import FlashsaleError
from simulator.files import read_json_object
from simulator.outcomes import OUTCOME_NAMES

#: latency distribution keys (ms) of both report shapes
DIST_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")

Dist = dict[str, float | None]
Series = list[float | None]


class ReportError(FlashsaleError):
    """A file is not a readable report; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-second series; ``None``/empty where the report does not have them.

    Rates count attempts: ``intended`` by the second they were due, ``sent`` by the second they
    left (the model: by the second due), ``done`` and ``outcomes`` by the second answered.
    ``latency`` (intended-time) and ``service`` map p50/p99/max to values by second due.
    ``sku_units`` maps a SKU to the units confirmed per second (by second answered).
    """

    second: list[int]
    intended: list[int] | None
    sent: list[int] | None
    done: list[int] | None
    outcomes: dict[str, list[int]]
    latency: dict[str, Series]
    service: dict[str, Series]
    sku_units: dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class SkuStock:
    """One product's stock and what was sold of it (None where the report does not say)."""

    sku: str
    initial: int | None
    client_units: int | None  # units the clients saw confirmed (the model: units sold)
    sold: int | None  # the server's sold counter
    ledger_units: int | None
    remaining: int | None
    oversell_units: int
    sell_out_s: float | None  # when its stock reached zero (None: never, or unknown)


@dataclass(frozen=True, slots=True)
class ReportView:
    """A report's facts under one set of names, for every renderer."""

    kind: str  # "run" or "simulate"
    scenario: str
    target: str  # where the load went ("" for the model)
    started_at: str
    scale: float | None
    duration_s: float | None
    orders: dict[str, int | None]  # scheduled, attempts, retries, sent, confirmed_units
    outcomes: dict[str, int]  # final outcome of every scheduled order
    latency: dict[str, Dist]  # intended, service, order, dispatch_lag, queue_wait
    timeline: Timeline | None
    spectrum: dict[str, list[tuple[float, float]]]  # kind → [(percentile, ms), ...]
    skus: list[SkuStock]
    audit_available: bool | None  # None: no audit section at all
    audit_problems: list[str]
    oversell_units: int | None
    notes: tuple[str, ...]


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report file; :class:`ReportError` naming the file if it is missing or not JSON."""
    try:
        data = read_json_object(path, "a report.json")
    except FlashsaleError as exc:
        raise ReportError(str(exc)) from None
    read_report(data, str(path))  # fail now, naming the file, if it is not a report
    return data


# -- small readers: a value of the expected type or None --------------------------------------


def _int(x: Any) -> int | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return int(x)


def _float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _dist(x: Any) -> Dist:
    d = _dict(x)
    return {k: _float(d.get(k)) for k in DIST_KEYS}


def _counts(x: Any, n: int) -> list[int] | None:
    if not isinstance(x, list):
        return None
    out = [_int(v) or 0 for v in x[:n]]
    return out + [0] * (n - len(out))


def _values(x: Any, n: int) -> Series | None:
    if not isinstance(x, list):
        return None
    out = [_float(v) for v in x[:n]]
    return out + [None] * (n - len(out))


def _outcomes(x: Any, source: str) -> dict[str, int]:
    if not isinstance(x, dict) or not x:
        raise ReportError(f"{source}: not a flashsale report (no outcome counts)")
    out: dict[str, int] = {}
    for name in OUTCOME_NAMES:
        v = x.get(name, 0)
        n = _int(v)
        if n is None or n < 0:
            raise ReportError(f"{source}: outcome {name!r} is not a count: {v!r}")
        out[name] = n
    return out


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


def _scenario_name(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, dict) and isinstance(x.get("name"), str):
        return str(x["name"])
    return "?"


def _target(x: Any) -> str:
    t = _dict(x)
    parts = [str(t[k]) for k in ("url", "backend", "transport") if isinstance(t.get(k), str)]
    return " · ".join(parts)


# -- the two shapes -----------------------------------------------------------------------------


def read_report(data: Any, source: str = "report") -> ReportView:
    """The view of a run or model report (a capacity search's summary: its best report)."""
    if not isinstance(data, dict):
        raise ReportError(f"{source}: expected a JSON object (a report)")
    if data.get("mode") == "simulate-find" and isinstance(data.get("report"), dict):
        data = data["report"]
    orders = data.get("orders")
    if isinstance(orders, dict):
        return _run_view(data, orders, source)
    if _int(orders) is not None:
        return _model_view(data, source)
    raise ReportError(f"{source}: not a flashsale report (no 'orders' section)")


def _timeline_common(t: dict[str, Any]) -> tuple[list[int], int]:
    second = t.get("second")
    n = len(second) if isinstance(second, list) else 0
    return list(range(n)), n


def _run_view(data: dict[str, Any], orders: dict[str, Any], source: str) -> ReportView:
    """A live run's report, or the model's in the same shape (``mode: simulate``)."""
    notes: list[str] = []
    if data.get("partial"):
        notes.append("PARTIAL run: stopped before the end of the schedule")
    scenario = data.get("scenario")
    meta = scenario if isinstance(scenario, dict) else data
    model_skus = _dict(data.get("skus"))  # the model's own per-SKU section (sell-out times)
    lat = _dict(data.get("latency_ms"))
    latency: dict[str, Dist] = {
        k: _dist(lat.get(k)) for k in ("intended", "service", "order") if k in lat
    }
    for key, name in (("dispatch_lag_ms", "dispatch_lag"), ("queue_wait_ms", "queue_wait")):
        if key in data:
            latency[name] = _dist(data[key])
    timeline = _run_timeline(data.get("timeline"), notes)
    audit = data.get("audit")
    skus: list[SkuStock] = []
    problems: list[str] = []
    available: bool | None = None
    oversell: int | None = None
    if isinstance(audit, dict):
        available = bool(audit.get("available", True))
        oversell = _int(audit.get("oversell_units"))
        problems = [str(p) for p in audit.get("problems", []) if isinstance(p, str)]
        units = timeline.sku_units if timeline is not None else {}
        for sku, s in _dict(audit.get("skus")).items():
            s = _dict(s)
            initial = _int(s.get("initial"))
            skus.append(
                SkuStock(
                    sku=str(sku),
                    initial=initial,
                    client_units=_int(s.get("client_units")),
                    sold=_int(s.get("sold")),
                    ledger_units=_int(s.get("ledger_units")),
                    remaining=_int(s.get("remaining")),
                    oversell_units=_int(s.get("oversell_units")) or 0,
                    sell_out_s=_sell_out(units.get(str(sku)), initial)
                    if str(sku) in units
                    else _float(_dict(model_skus.get(sku)).get("sell_out_s")),
                )
            )
        if oversell is None:
            oversell = sum(s.oversell_units for s in skus) if skus else None
    else:
        notes.append("no audit section: oversell and stock per product are not in this report")
    run = _dict(data.get("run"))
    return ReportView(
        kind="simulate" if data.get("mode") == "simulate" else "run",
        scenario=_scenario_name(scenario),
        target=_target(data.get("target")),
        started_at=str(run.get("started_at", "")),
        scale=_float(meta.get("scale")),
        duration_s=_float(meta.get("duration_s")),
        orders={
            k: _int(orders.get(k))
            for k in ("scheduled", "attempts", "retries", "sent", "confirmed_units")
        },
        outcomes=_outcomes(orders.get("outcomes"), source),
        latency=latency,
        timeline=timeline,
        spectrum=_spectrum(data.get("latency_spectrum")),
        skus=skus,
        audit_available=available,
        audit_problems=problems,
        oversell_units=oversell,
        notes=tuple(notes),
    )


def _sell_out(units: list[int] | None, initial: int | None) -> float | None:
    """End of the second in which confirmed units reached the initial stock (None: never)."""
    if units is None or initial is None:
        return None
    total = 0
    for s, u in enumerate(units):
        total += u
        if total >= initial:
            return float(s + 1)
    return None


def _run_timeline(x: Any, notes: list[str]) -> Timeline | None:
    t = _dict(x)
    second, n = _timeline_common(t)
    if n == 0:
        notes.append("no timeline: the plots over time are skipped")
        return None
    outcomes = {
        name: c
        for name, series in _dict(t.get("outcomes_per_s")).items()
        if (c := _counts(series, n)) is not None
    }
    latency = {k: v for k in ("p50", "p99", "max") if (v := _values(t.get(f"{k}_ms"), n))}
    service = {k: v for k in ("p50", "p99", "max") if (v := _values(t.get(f"service_{k}_ms"), n))}
    sku_units = {
        str(sku): c
        for sku, series in _dict(t.get("confirmed_units_per_s")).items()
        if (c := _counts(series, n)) is not None
    }
    return Timeline(
        second=second,
        intended=_counts(t.get("intended_per_s"), n),
        sent=_counts(t.get("sent_per_s"), n),
        done=_counts(t.get("done_per_s"), n),
        outcomes=outcomes,
        latency=latency,
        service=service,
        sku_units=sku_units,
    )


def _model_view(data: dict[str, Any], source: str) -> ReportView:
    """The model's first report shape (top-level counts), as older model reports have it."""
    notes: list[str] = []
    t = _dict(data.get("timeline"))
    second, n = _timeline_common(t)
    timeline: Timeline | None = None
    if n:
        timeline = Timeline(
            second=second,
            intended=_counts(t.get("demand"), n),
            sent=_counts(t.get("sent"), n),
            done=_counts(t.get("completed"), n),
            outcomes={
                name: c
                for name, series in _dict(t.get("outcomes")).items()
                if (c := _counts(series, n)) is not None
            },
            latency={k: v for k in ("p50", "p99", "max") if (v := _values(t.get(f"{k}_ms"), n))},
            service={},
            sku_units={},
        )
    else:
        notes.append("no timeline: the plots over time are skipped")
    skus = []
    for sku, s in _dict(data.get("skus")).items():
        s = _dict(s)
        stock, sold = _int(s.get("stock")), _int(s.get("sold_units"))
        over = max(0, sold - stock) if stock is not None and sold is not None else 0
        skus.append(
            SkuStock(
                sku=str(sku),
                initial=stock,
                client_units=sold,
                sold=sold,
                ledger_units=None,
                remaining=None if stock is None or sold is None else stock - sold,
                oversell_units=over,
                sell_out_s=_float(s.get("sell_out_s")),
            )
        )
    sent = sum(timeline.sent) if timeline is not None and timeline.sent is not None else None
    return ReportView(
        kind="simulate",
        scenario=_scenario_name(data.get("scenario")),
        target="",
        started_at="",
        scale=_float(data.get("scale")),
        duration_s=_float(data.get("duration_s")),
        orders={
            "scheduled": _int(data.get("orders")),
            "attempts": _int(data.get("attempts")),
            "retries": _int(data.get("retries")),
            "sent": sent,
            "confirmed_units": _int(data.get("sold_units")),
        },
        outcomes=_outcomes(data.get("outcomes"), source),
        latency={
            str(name): _dist(data[key])
            for key, name in (
                ("latency_ms", "intended"),
                ("service_ms", "service"),
                ("order_latency_ms", "order"),
            )
            if key in data
        },
        timeline=timeline,
        spectrum=_spectrum(data.get("latency_spectrum")),
        skus=skus,
        audit_available=None,
        audit_problems=[],
        oversell_units=_int(data.get("oversell_units")),
        notes=tuple(notes),
    )
