"""The model's results in the report shape of a live run, and the metrics SLOs are checked on.

Percentiles come from the mergeable histograms of :mod:`simulator.histogram`
(relative error ≤ 0.39 %, stated in the report); the maximum is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator import histogram as hist
from simulator.model.flow import END_NAMES
from simulator.model.sim import ModelResult
from simulator.model.stock import INF
from simulator.outcomes import OUTCOME_NAMES
from simulator.report.document import Report
from simulator.report.sections import (
    Audit,
    Distribution,
    Orders,
    RunInfo,
    ScenarioInfo,
    SkuStock,
    Timeline,
)

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_NS = 1e9

METHOD = (
    "vectorised queue model: K shards (stock split by buyer hash), c FIFO servers per shard "
    "fed round-robin, closed-form departures D = cumsum(S) + max.accumulate(A − cumsum(S) + S), "
    "exact admission limit, stock taken in completion order, retries as waves"
)


def _distribution(
    counts: np.ndarray[Any, Any], sum_ns: int, max_ns: int, min_ns: int = 0
) -> Distribution:
    """count, p50 … p99.9 (histogram, ±0.39 %), exact mean and max, in ms (a run's shape)."""
    total = int(counts.sum())
    if total == 0:
        return Distribution(count=0)
    values = hist.percentiles(counts, PERCENTILES, min_ns, max_ns)
    p50, p90, p99, p999 = (round(float(v) / 1e6, 4) for v in values)
    mean, mx = round(sum_ns / total / 1e6, 4), round(max_ns / 1e6, 4)
    return Distribution(total, p50, p90, p99, p999, mx, mean)


def _seconds(ns: int) -> float | None:
    return None if ns >= INF else round(ns / _NS, 4)


def _ms_list(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [None if math.isnan(v) else round(float(v), 4) for v in values]


def _timeline(result: ModelResult) -> Timeline:
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
    return Timeline(
        second=list(range(n_s)),
        intended=series(st.sent_s),
        sent=series(st.sent_s),
        done=series(st.completed_s),
        demand=series(st.demand_s),
        outcomes={
            name: series(st.outcomes_s[:, i])
            for i, name in enumerate(OUTCOME_NAMES)
            if name != "not_sent"
        },
        latency={
            "p50": _ms_list(per_s[:, 0]),
            "p99": _ms_list(per_s[:, 1]),
            "max": _ms_list(per_s[:, 2]),
        },
    )


def build_document(result: ModelResult) -> Report:
    """The :class:`Report` of one model run, in the shape of a live run's.

    The same sections as a live run (``orders``, ``latency_ms`` intended/service/order,
    ``timeline``, ``audit``), with the model's own kept as extra sections: ``model`` (its
    settings), ``skus`` (sell-out times per SKU and shard), ``false_sold_out``.
    The model sends every request at its intended time: no dispatch lag, no client queue.
    """
    sc, st, book, cfg = result.scenario, result.stats, result.stock, result.config
    k = cfg.shards
    zero = book.zero_ns.reshape(-1, k)
    first_so = book.first_sold_out_ns.reshape(-1, k)
    sold = (book.initial - book.left).reshape(-1, k).sum(axis=1)
    initial = book.initial.reshape(-1, k).sum(axis=1)
    skus: dict[str, Any] = {}
    stock_rows: list[SkuStock] = []
    for i, p in enumerate(sc.products):
        all_zero = bool((zero[i] < INF).all())
        sell_out = _seconds(int(zero[i].max())) if all_zero else None
        skus[p.id] = {
            "stock": int(initial[i]),
            "sold_units": int(sold[i]),
            "confirmed_orders": int(st.confirmed_orders[i]),
            "sold_out_answers": int(st.sold_out_answers[i]),
            "false_sold_out": int(st.false_sold_out[i]),
            "first_sold_out_s": _seconds(int(first_so[i].min())),
            "sell_out_s": sell_out,
            "shard_sell_out_s": [_seconds(int(z)) for z in zero[i]] if k > 1 else None,
        }
        if result.holds is not None:
            skus[p.id].update(_flow_sku(result, i))
        stock_rows.append(
            SkuStock(
                sku=p.id,
                initial=int(initial[i]),
                client_units=None,
                sold=int(sold[i]),
                remaining=int(initial[i] - sold[i]),
                oversell_units=int(max(0, sold[i] - initial[i])),
                sell_out_s=sell_out,
                scenario_stock=sc.stock_of(p),
                client_orders=int(st.confirmed_orders[i]),
            )
        )
    oversell = sum(s.oversell_units for s in stock_rows)
    elapsed = result.elapsed_s
    zero_lag = Distribution(st.attempts, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return Report(
        kind="simulate",
        exit_code=0 if oversell == 0 else 1,
        scenario=ScenarioInfo(sc.name, sc.source, sc.scale, sc.seed, result.schedule.duration_s),
        run=RunInfo(
            wall_s=round(elapsed, 3),
            orders_per_s=round(st.rows / elapsed) if elapsed > 0 else None,
            timeout_s=cfg.timeout_s,
        ),
        orders=Orders(
            scheduled=st.rows,
            attempts=st.attempts,
            retries=st.retries,
            sent=st.attempts,
            replays=st.replays,
            outcomes={n: int(st.outcomes[i]) for i, n in enumerate(OUTCOME_NAMES)},
            attempt_outcomes={n: int(st.attempt_outcomes[i]) for i, n in enumerate(OUTCOME_NAMES)},
            confirmed_units=int(sold.sum()),
        ),
        latency={
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
            "dispatch_lag": zero_lag,
            "queue_wait": zero_lag,
        },
        timeline=_timeline(result),
        audit=Audit(
            available=True,
            source="model",
            skus=tuple(stock_rows),
            oversell_units=oversell,
            ok=oversell == 0,
        ),
        extra={
            "model": {**cfg.describe(), "window_s": result.window_ns / _NS, "method": METHOD},
            "latency_relative_error": hist.RELATIVE_ERROR,
            "stock_units": int(initial.sum()),
            "false_sold_out": int(st.false_sold_out.sum()),
            "overload": result.overload.describe(),
            "skus": skus,
            **({"flow": _flow(result)} if result.holds is not None or cfg.admit_per_s else {}),
        },
    )


def _flow(result: ModelResult) -> dict[str, Any]:
    """The flow's settings and totals: units reserved and how the holds ended."""
    cfg, b = result.config, result.scenario.buyers
    out: dict[str, Any] = {
        "reservation_ttl_s": cfg.reservation_ttl_s,
        "pay_share": b.pay_share,
        "pay_delay_s": b.pay_delay_s.as_toml(),
        "abandon_share": b.abandon_share,
        "admit_per_s": cfg.admit_per_s,
        "burst": cfg.burst,
        "admission_throttled": result.admission_throttled,
    }
    if result.holds is not None:
        units = result.holds.sum(axis=0)
        out["reserved_units"] = int(units.sum())
        out.update({f"{name}_units": int(u) for name, u in zip(END_NAMES, units, strict=True)})
        out["skus_available_again"] = int((result.stock.skus.first_back_ns < INF).sum())
    return out


def _flow_sku(result: ModelResult, i: int) -> dict[str, Any]:
    """One SKU with the flow: its holds' ends and when it was sold out, then available again.

    A SKU is sold out while every shard of it is: ``sold_out_intervals`` counts the times it
    ran out, ``sold_out_spans`` lists the first few as [start, end] seconds (end None: still
    out at the end), ``sold_out_total_s`` adds up their lengths. With several shards,
    ``shard_sold_out_intervals`` and ``shard_first_available_again_s`` give each shard's own
    (a buyer sees only their shard).
    """
    assert result.holds is not None
    book, k = result.stock, result.config.shards
    g = slice(i * k, (i + 1) * k)
    h = result.holds[i]
    end_s = result.schedule.duration_s
    out = book.skus

    def spans(j: int) -> list[list[float | None]]:
        n = min(int(out.outages[j]), out.spans.shape[1])
        return [[_seconds(int(a)), _seconds(int(z))] for a, z in out.spans[j, :n]]

    def total(j: int) -> float:
        open_ns = 0 if out.out_since[j] >= INF else max(0, round(end_s * _NS) - out.out_since[j])
        return round((int(out.out_ns[j]) + int(open_ns)) / _NS, 4)

    sku: dict[str, Any] = {
        "reserved_units": int(h.sum()),
        **{f"{name}_units": int(u) for name, u in zip(END_NAMES, h, strict=True)},
        "free_units": int(book.left[g].sum()),
        "sold_out_intervals": int(out.outages[i]),
        "first_available_again_s": _seconds(int(out.first_back_ns[i])),
        "sold_out_spans": spans(i),
        "sold_out_total_s": total(i),
    }
    if k > 1:
        sku["shard_sold_out_intervals"] = book.groups.outages[g].tolist()
        sku["shard_first_available_again_s"] = [
            _seconds(int(x)) for x in book.groups.first_back_ns[g]
        ]
    return sku


def build_report(result: ModelResult) -> dict[str, Any]:
    """A JSON-ready report of one model run (:func:`build_document`'s ``to_json``)."""
    return build_document(result).to_json()
