"""The model's results in the report shape of a live run, and the metrics SLOs are checked on.

Percentiles come from the mergeable histograms of :mod:`simulator.model.histogram`
(relative error ≤ 0.39 %, stated in the report); the maximum is exact.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.model import histogram as hist
from simulator.model.sim import ModelResult
from simulator.model.stats import OUTCOME_NAMES
from simulator.model.stock import INF

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_LABELS = ("p50", "p90", "p99", "p99.9")
_NS = 1e9

METHOD = (
    "vectorised queue model: K shards (stock split by buyer hash), c FIFO servers per shard "
    "fed round-robin, closed-form departures D = cumsum(S) + max.accumulate(A − cumsum(S) + S), "
    "exact admission limit, stock taken in completion order, retries as waves"
)


def _latency(counts: np.ndarray[Any, Any], max_ns: int) -> dict[str, float | None]:
    total = int(counts.sum())
    if total == 0:
        return {label: None for label in (*_LABELS, "max")}
    values = hist.percentiles(counts, PERCENTILES)
    out: dict[str, float | None] = {
        label: round(float(v) / 1e6, 4) for label, v in zip(_LABELS, values, strict=True)
    }
    out["max"] = round(max_ns / 1e6, 4)
    return out


def _seconds(ns: int) -> float | None:
    return None if ns >= INF else round(ns / _NS, 4)


def build_report(result: ModelResult) -> dict[str, Any]:
    """A JSON-ready report of one model run (same outcome names and latency keys as a run)."""
    sc, st, book, cfg = result.scenario, result.stats, result.stock, result.config
    k = cfg.shards
    n_s = max(len(st.demand_s), len(st.sent_s), len(st.completed_s), len(st.outcomes_s))
    n_s = min(n_s, len(st.latency_s))

    def series(a: np.ndarray[Any, Any]) -> list[int]:
        out = np.zeros(n_s, dtype=np.int64)
        m = min(n_s, len(a))
        out[:m] = a[:m]
        return [int(x) for x in out]

    per_s = hist.percentiles(st.latency_s[:n_s].astype(np.int64), (50.0, 99.0)) / 1e6
    outcomes = {name: int(st.outcomes[i]) for i, name in enumerate(OUTCOME_NAMES)}
    zero = book.zero_ns.reshape(-1, k)
    first_so = book.first_sold_out_ns.reshape(-1, k)
    sold = (book.initial - book.left).reshape(-1, k).sum(axis=1)
    initial = book.initial.reshape(-1, k).sum(axis=1)
    skus: dict[str, Any] = {}
    for i, p in enumerate(sc.products):
        all_zero = bool((zero[i] < INF).all())
        skus[p.id] = {
            "stock": int(initial[i]),
            "sold_units": int(sold[i]),
            "confirmed_orders": int(st.confirmed_orders[i]),
            "sold_out_answers": int(st.sold_out_answers[i]),
            "false_sold_out": int(st.false_sold_out[i]),
            "first_sold_out_s": _seconds(int(first_so[i].min())),
            "sell_out_s": _seconds(int(zero[i].max())) if all_zero else None,
            "shard_sell_out_s": [_seconds(int(z)) for z in zero[i]] if k > 1 else None,
        }
    elapsed = result.elapsed_s
    return {
        "scenario": sc.name,
        "file": sc.source,
        "mode": "simulate",
        "seed": sc.seed,
        "scale": sc.scale,
        "duration_s": result.schedule.duration_s,
        "model": {**cfg.describe(), "window_s": result.window_ns / _NS, "method": METHOD},
        "orders": st.rows,
        "attempts": st.attempts,
        "retries": st.retries,
        "replays": st.replays,
        "outcomes": outcomes,
        "latency_ms": _latency(st.latency, st.latency_max_ns),
        "order_latency_ms": _latency(st.order_latency, st.order_latency_max_ns),
        "service_ms": _latency(st.service, st.service_max_ns),
        "latency_relative_error": hist.RELATIVE_ERROR,
        "stock_units": int(initial.sum()),
        "sold_units": int(sold.sum()),
        "oversell_units": int(max(0, (sold - initial).max(initial=0))),
        "false_sold_out": int(st.false_sold_out.sum()),
        "skus": skus,
        "timeline": {
            "second": list(range(n_s)),
            "demand": series(st.demand_s),
            "sent": series(st.sent_s),
            "completed": series(st.completed_s),
            "outcomes": {name: series(st.outcomes_s[:, i]) for i, name in enumerate(OUTCOME_NAMES)},
            "p50_ms": [None if math.isnan(v) else round(float(v), 4) for v in per_s[:, 0]],
            "p99_ms": [None if math.isnan(v) else round(float(v), 4) for v in per_s[:, 1]],
        },
        "elapsed_s": round(elapsed, 3),
        "orders_per_s": round(st.rows / elapsed) if elapsed > 0 else None,
    }


# -- SLOs --------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_SLO = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$"
)


def metrics(report: dict[str, Any]) -> dict[str, float]:
    """The flat numbers an SLO can name: p50_ms … max_ms, outcome counts and shares, …"""
    out: dict[str, float] = {}
    for key, value in report["latency_ms"].items():
        out[f"{key}_ms"] = math.inf if value is None else float(value)
    for key, value in report["order_latency_ms"].items():
        out[f"order_{key}_ms"] = math.inf if value is None else float(value)
    total = max(1, report["orders"])
    for name, count in report["outcomes"].items():
        out[name] = float(count)
        out[f"{name}_share"] = count / total
    for key in ("oversell_units", "false_sold_out", "sold_units", "retries", "replays"):
        out[key] = float(report[key])
    return out


def parse_slo(text: str) -> tuple[str, str, float]:
    """'p99_ms < 200' → ('p99_ms', '<', 200.0); ValueError if it is not that shape."""
    m = _SLO.match(text)
    if not m:
        raise ValueError(f"not an SLO of the form 'metric < number': {text!r}")
    return m.group(1), m.group(2), float(m.group(3))


def check_slo(report: dict[str, Any], slo: str) -> tuple[bool, float]:
    """Whether a report meets an SLO, and the metric's value."""
    name, op, bound = parse_slo(slo)
    values = metrics(report)
    if name not in values:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(sorted(values))})")
    return _OPS[op](values[name], bound), values[name]
