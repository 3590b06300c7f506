"""The model's results in the report shape of a live run, and the metrics SLOs are checked on.

Percentiles come from the mergeable histograms of :mod:`simulator.model.histogram`
(relative error ≤ 0.39 %, stated in the report); the maximum is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.model import histogram as hist
from simulator.model.sim import ModelResult
from simulator.model.stock import INF
from simulator.outcomes import OUTCOME_NAMES
from simulator.results import REPORT_VERSION

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_LABELS = ("p50", "p90", "p99", "p99.9")
_NS = 1e9

METHOD = (
    "vectorised queue model: K shards (stock split by buyer hash), c FIFO servers per shard "
    "fed round-robin, closed-form departures D = cumsum(S) + max.accumulate(A − cumsum(S) + S), "
    "exact admission limit, stock taken in completion order, retries as waves"
)


def _distribution(
    counts: np.ndarray[Any, Any], sum_ns: int, max_ns: int, min_ns: int = 0
) -> dict[str, Any]:
    """count, p50 … p99.9 (histogram, ±0.39 %), exact mean and max, in ms (a run's shape)."""
    total = int(counts.sum())
    out: dict[str, Any] = {"count": total}
    if total == 0:
        out.update({label: None for label in _LABELS})
        out.update(mean=None, max=None)
        return out
    values = hist.percentiles(counts, PERCENTILES, min_ns, max_ns)
    for label, v in zip(_LABELS, values, strict=True):
        out[label] = round(float(v) / 1e6, 4)
    out["mean"] = round(sum_ns / total / 1e6, 4)
    out["max"] = round(max_ns / 1e6, 4)
    return out


def _seconds(ns: int) -> float | None:
    return None if ns >= INF else round(ns / _NS, 4)


def _ms_list(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [None if math.isnan(v) else round(float(v), 4) for v in values]


def _timeline(result: ModelResult) -> dict[str, Any]:
    st = result.stats
    n_s = max(len(st.demand_s), len(st.sent_s), len(st.completed_s), len(st.outcomes_s))
    n_s = max(1, min(n_s, len(st.latency_s)))

    def series(a: np.ndarray[Any, Any]) -> list[int]:
        out = np.zeros(n_s, dtype=np.int64)
        m = min(n_s, len(a))
        out[:m] = a[:m]
        return [int(x) for x in out]

    per_s = hist.percentiles(
        st.latency_s[:n_s].astype(np.int64),
        (50.0, 99.0, 100.0),
        st.latency_min_ns,
        st.latency_max_ns,
    )
    per_s /= 1e6
    return {
        "second": list(range(n_s)),
        "intended_per_s": series(st.sent_s),
        "sent_per_s": series(st.sent_s),
        "done_per_s": series(st.completed_s),
        "demand_per_s": series(st.demand_s),
        "outcomes_per_s": {
            name: series(st.outcomes_s[:, i])
            for i, name in enumerate(OUTCOME_NAMES)
            if name != "not_sent"
        },
        "p50_ms": _ms_list(per_s[:, 0]),
        "p99_ms": _ms_list(per_s[:, 1]),
        "max_ms": _ms_list(per_s[:, 2]),
    }


def build_report(result: ModelResult) -> dict[str, Any]:
    """A JSON-ready report of one model run, in the shape of a live run's report.json.

    The same sections as :func:`simulator.results.summarize` and the runner (``orders``,
    ``latency_ms`` intended/service/order, ``timeline``, ``audit``), with the model's own:
    ``model`` (its settings), ``skus`` (sell-out times per SKU and shard), ``false_sold_out``.
    The model sends every request at its intended time: no dispatch lag, no client queue.
    """
    sc, st, book, cfg = result.scenario, result.stats, result.stock, result.config
    k = cfg.shards
    zero = book.zero_ns.reshape(-1, k)
    first_so = book.first_sold_out_ns.reshape(-1, k)
    sold = (book.initial - book.left).reshape(-1, k).sum(axis=1)
    initial = book.initial.reshape(-1, k).sum(axis=1)
    skus: dict[str, Any] = {}
    audit_skus: dict[str, Any] = {}
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
        audit_skus[p.id] = {
            "initial": int(initial[i]),
            "scenario_stock": sc.stock_of(p),
            "sold": int(sold[i]),
            "remaining": int(initial[i] - sold[i]),
            "client_orders": int(st.confirmed_orders[i]),
            "oversell_units": int(max(0, sold[i] - initial[i])),
        }
    oversell = sum(s["oversell_units"] for s in audit_skus.values())
    elapsed = result.elapsed_s
    zero_lag = {"count": st.attempts, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p99.9": 0.0,
                "mean": 0.0, "max": 0.0}  # fmt: skip
    return {
        "flashsale_report": REPORT_VERSION,
        "mode": "simulate",
        "partial": False,
        "complete": True,
        "exit_code": 0 if oversell == 0 else 1,
        "scenario": {
            "name": sc.name,
            "file": sc.source,
            "scale": sc.scale,
            "seed": sc.seed,
            "duration_s": result.schedule.duration_s,
        },
        "model": {**cfg.describe(), "window_s": result.window_ns / _NS, "method": METHOD},
        "run": {
            "wall_s": round(elapsed, 3),
            "orders_per_s": round(st.rows / elapsed) if elapsed > 0 else None,
            "connections": None,
            "timeout_s": cfg.timeout_s,
        },
        "orders": {
            "scheduled": st.rows,
            "attempts": st.attempts,
            "retries": st.retries,
            "sent": st.attempts,
            "replays": st.replays,
            "outcomes": {n: int(st.outcomes[i]) for i, n in enumerate(OUTCOME_NAMES)},
            "attempt_outcomes": {
                n: int(st.attempt_outcomes[i]) for i, n in enumerate(OUTCOME_NAMES)
            },
            "confirmed_units": int(sold.sum()),
        },
        "latency_ms": {
            "intended": _distribution(
                st.latency, st.latency_sum_ns, st.latency_max_ns, st.latency_min_ns
            ),
            "service": _distribution(
                st.service, st.service_sum_ns, st.service_max_ns, st.service_min_ns
            ),
            "order": _distribution(
                st.order_latency,
                st.order_latency_sum_ns,
                st.order_latency_max_ns,
                st.order_latency_min_ns,
            ),
        },
        "latency_relative_error": hist.RELATIVE_ERROR,
        "dispatch_lag_ms": zero_lag,
        "queue_wait_ms": zero_lag,
        "timeline": _timeline(result),
        "stock_units": int(initial.sum()),
        "false_sold_out": int(st.false_sold_out.sum()),
        "overload": result.overload.describe(),
        "skus": skus,
        "audit": {
            "available": True,
            "source": "model",
            "skus": audit_skus,
            "oversell_units": oversell,
            "problems": [],
            "ok": oversell == 0,
        },
    }
