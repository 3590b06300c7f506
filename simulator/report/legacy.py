"""The model's first report shape (counts at the top level), as the oldest model reports have it.

Read-only: nothing writes this shape any more; :meth:`Report.from_json` hands such a document
here so that old files still render.
"""

from __future__ import annotations

from typing import Any

from simulator.report.document import Report
from simulator.report.sections import (
    Audit,
    Distribution,
    Orders,
    ScenarioInfo,
    SkuStock,
    Timeline,
    _counts,
    _dict,
    _float,
    _int,
    _outcomes,
    _values,
)


def _timeline(t: dict[str, Any]) -> Timeline | None:
    second = t.get("second")
    n = len(second) if isinstance(second, list) else 0
    if n == 0:
        return None
    return Timeline(
        second=list(range(n)),
        intended=_counts(t.get("demand"), n),
        sent=_counts(t.get("sent"), n),
        done=_counts(t.get("completed"), n),
        outcomes={
            str(name): c
            for name, series in _dict(t.get("outcomes")).items()
            if (c := _counts(series, n)) is not None
        },
        latency={k: v for k in ("p50", "p99", "max") if (v := _values(t.get(f"{k}_ms"), n))},
    )


def read_first_model_shape(data: dict[str, Any], source: str) -> Report:
    """A report of the model's first shape, as a :class:`Report` (kind "simulate")."""
    notes: list[str] = []
    timeline = _timeline(_dict(data.get("timeline")))
    if timeline is None:
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
                remaining=None if stock is None or sold is None else stock - sold,
                oversell_units=over,
                sell_out_s=_float(s.get("sell_out_s")),
            )
        )
    oversell = _int(data.get("oversell_units"))
    audit = Audit(available=True, skus=tuple(skus), oversell_units=oversell, source="model")
    sent = sum(timeline.sent) if timeline is not None and timeline.sent is not None else None
    name = data.get("scenario")
    return Report(
        kind="simulate",
        orders=Orders(
            outcomes=_outcomes(data.get("outcomes"), source),
            scheduled=_int(data.get("orders")),
            attempts=_int(data.get("attempts")),
            retries=_int(data.get("retries")),
            sent=sent,
            confirmed_units=_int(data.get("sold_units")),
        ),
        scenario=ScenarioInfo(
            name=name if isinstance(name, str) else "?",
            scale=_float(data.get("scale")),
            duration_s=_float(data.get("duration_s")),
        ),
        latency={
            kind: Distribution.from_json(data[key])
            for key, kind in (
                ("latency_ms", "intended"),
                ("service_ms", "service"),
                ("order_latency_ms", "order"),
            )
            if key in data
        },
        timeline=timeline,
        audit=audit if skus or oversell is not None else None,
        notes=tuple(notes),
        version=0,
    )
