"""A run's report without a network: a real schedule, a toy inventory, the real summary + audit.

Orders are answered in time order by a single FIFO server (service times lognormal around
``service_ms``, so latency builds at the spike); stock is taken per SKU until it runs out;
a share of the spike is throttled; ``oversell`` extra units of the first SKU are confirmed past
its stock (a racy backend). The report goes through :func:`simulator.results.summarize`,
:func:`simulator.audit.audit`, as a run's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.audit import ServerState, audit
from simulator.load.recorder import Recorder
from simulator.outcomes import CONFIRMED, ERROR, SOLD_OUT, THROTTLED
from simulator.results import summarize
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Synthetic:
    report: dict[str, Any]
    rows: npt.NDArray[np.void]
    rec: Recorder
    skus: tuple[str, ...]


def synthetic_run(
    scale: float = 0.02,
    duration_s: float = 20.0,
    service_ms: float = 2.0,
    oversell: int = 0,
    seed: int = 3,
    series: bool = True,
    reservations: bool = False,
) -> Synthetic:
    """A run against a toy backend; ``reservations``: with a TTL's lifecycle and stock history
    (each SKU had a few holds expire and go back on sale; a second's sales are first held)."""
    sc = load_scenario(ROOT / "scenarios" / "durian-1111.toml", scale=scale)
    rows = build_schedule(sc, duration_s).materialize()
    rng = np.random.default_rng(seed)
    n = len(rows)
    rec = Recorder.allocate(rows["t_ns"].astype(np.int64), 0)
    intended = rec.intended_ns[:n]
    lag = rng.integers(0, 200_000, n)
    rec.dispatched_ns[:n] = intended + lag
    rec.sent_ns[:n] = intended + lag + rng.integers(0, 50_000, n)
    service = (rng.lognormal(np.log(service_ms * 1e6), 0.4, n)).astype(np.int64)
    free = 0
    skus = tuple(p.id for p in sc.products)
    left = [sc.stocks()[s] for s in skus]
    left[0] += oversell
    sold = [0] * len(skus)
    outcome = np.empty(n, dtype=np.uint8)
    done = np.empty(n, dtype=np.int64)
    confirmed: set[int] = set()  # the toy server is idempotent by order id
    throttle = rng.random(n) < 0.03
    errors = rng.random(n) < 0.002
    for i, (sent, s, prod, qty, oid) in enumerate(
        zip(
            rec.sent_ns[:n].tolist(),
            service.tolist(),
            rows["product"].tolist(),
            rows["qty"].tolist(),
            rows["order"].tolist(),
            strict=True,
        )
    ):
        free = max(free, sent) + s // 4  # a queue: latency rises when orders bunch up
        done[i] = free + s
        if errors[i]:
            outcome[i] = ERROR
        elif throttle[i]:
            outcome[i] = THROTTLED
        elif oid in confirmed:
            outcome[i] = CONFIRMED
        elif left[prod] >= qty:
            confirmed.add(oid)
            left[prod] -= qty
            sold[prod] += qty
            outcome[i] = CONFIRMED
        else:
            outcome[i] = SOLD_OUT
    rec.done_ns[:n] = done
    rec.outcome[:n] = outcome
    rec.status[:n] = np.select(
        [outcome == CONFIRMED, outcome == SOLD_OUT, outcome == THROTTLED], [201, 409, 429], 500
    )
    summary = summarize(rows, rec, duration_s, skus if series else ())
    if not series:  # a report from before the spectrum and per-SKU sections existed
        del summary["latency_spectrum"]
    stocks = sc.stocks()
    inventory = {
        "backend": "memory-racy" if oversell else "memory",
        "skus": {
            s: {"initial": stocks[s], "sold": sold[i], "remaining": stocks[s] - sold[i]}
            for i, s in enumerate(skus)
        },
    }
    history = None
    if reservations:
        for i, sku in enumerate(skus):
            returned, doubles = 3 + i, 0
            free = stocks[sku] - sold[i]
            if oversell and i == 0:  # the racy toy also returned two 1-unit holds twice
                free, returned, doubles = max(0, free), returned + 2, 2
            inventory["skus"][sku].update(
                paid=sold[i], held=0, free=free,
                reserved=sold[i] + 3 + i, returned=returned,
                double_returns=doubles, paid_after_expiry=0,
                overdue_units=0, overdue_holds=0, overdue_max_s=0.0,
            )  # fmt: skip
        inventory["holds"] = {"now": 0.0, "reservation_ttl_s": 2.0, "sweep_interval_s": 0.2,
                              "grace_s": 0.4}  # fmt: skip
        history = stock_history(summary, stocks, skus)
    audit_result = audit(
        rows,
        rec,
        skus,
        stocks,
        sc.per_buyer_limits(),
        ServerState(inventory, None, history=history),
    )
    report = {
        "flashsale_report": 1,
        "partial": False,
        "complete": True,
        "exit_code": 0 if audit_result["oversell_units"] == 0 else 1,
        "scenario": {
            "name": sc.name,
            "file": sc.source,
            "scale": sc.scale,
            "seed": sc.seed,
            "duration_s": duration_s,
        },
        "target": {"url": "synthetic://", "embedded": True, "backend": inventory["backend"]},
        **summary,
        "audit": audit_result,
    }
    if "stock_history" in audit_result:  # where run_report puts it
        report["stock_history"] = audit_result.pop("stock_history")
    return Synthetic(report, rows, rec, skus)


def stock_history(
    summary: dict[str, Any], stocks: dict[str, int], skus: tuple[str, ...]
) -> dict[str, Any]:
    """What the storefront's sampler would have served: units sold by the end of each second,
    each second's sales held during that second, the rest free."""
    units = summary["timeline"]["confirmed_units_per_s"]
    n = len(summary["timeline"]["second"])
    series: dict[str, dict[str, list[int]]] = {}
    for sku in skus:
        per_s = units.get(sku, [0] * n)
        sold = np.cumsum(per_s).tolist()
        held = [int(u) for u in per_s]
        free = [max(0, stocks[sku] - s - h) for s, h in zip(sold, held, strict=True)]
        series[sku] = {"free": free, "held": held, "sold": sold}
    series["total"] = {
        k: [sum(series[s][k][i] for s in skus) for i in range(n)] for k in ("free", "held", "sold")
    }
    return {
        "started_at": 0.0,
        "interval_s": 1.0,
        "capacity": 3600,
        "dropped": 0,
        "initial_total": sum(stocks.values()),
        "skus": list(skus),
        "t_s": [float(i + 1) for i in range(n)],
        "series": series,
    }
