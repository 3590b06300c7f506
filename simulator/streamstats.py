"""Summary of an order stream, accumulated chunk by chunk (memory does not grow with orders)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.schedule import FLAG_DUPLICATE, Schedule


@dataclass
class StreamStats:
    """Counts per product, per second and per 10 ms of one stream, filled by :meth:`add`."""

    n_products: int
    duration_s: float
    total: int = 0
    duplicates: int = 0
    per_product: npt.NDArray[np.int64] = field(init=False)
    per_s: npt.NDArray[np.int64] = field(init=False)
    per_10ms: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.per_product = np.zeros(self.n_products, dtype=np.int64)
        self.per_s = np.zeros(max(1, math.ceil(self.duration_s)), dtype=np.int64)
        self.per_10ms = np.zeros(max(1, math.ceil(self.duration_s * 100)), dtype=np.int64)

    def add(self, rows: npt.NDArray[np.void]) -> None:
        """Account for one chunk of the stream."""
        t_ns = rows["t_ns"]
        self.total += len(rows)
        self.duplicates += int(np.count_nonzero(rows["flags"] & FLAG_DUPLICATE))
        self.per_product += np.bincount(rows["product"], minlength=self.n_products)
        self.per_s += np.bincount(t_ns // 1_000_000_000, minlength=len(self.per_s))[
            : len(self.per_s)
        ]
        self.per_10ms += np.bincount(t_ns // 10_000_000, minlength=len(self.per_10ms))[
            : len(self.per_10ms)
        ]


def summarize(schedule: Schedule, chunk_orders: int = 1 << 20) -> dict[str, Any]:
    """Generate the whole stream once and describe it (the ``flashsale schedule`` summary)."""
    sc = schedule.scenario
    stats = StreamStats(len(sc.products), schedule.duration_s)
    started = time.perf_counter()
    for chunk in schedule.chunks(chunk_orders):
        stats.add(chunk)
    elapsed = time.perf_counter() - started
    return summary_dict(schedule, stats, elapsed)


def summary_dict(schedule: Schedule, stats: StreamStats, elapsed_s: float) -> dict[str, Any]:
    """The summary as a JSON-ready dict."""
    sc = schedule.scenario
    expected = schedule.expected_per_product()
    peak_s = int(stats.per_s.argmax())
    peak_10 = int(stats.per_10ms.argmax())
    return {
        "scenario": sc.name,
        "file": sc.source,
        "seed": sc.seed,
        "scale": sc.scale,
        "duration_s": schedule.duration_s,
        "total_orders": stats.total,
        "expected_orders": float(expected.sum()),
        "duplicate_clicks": stats.duplicates,
        "peak_rate_per_s": int(stats.per_s[peak_s]),
        "peak_second": peak_s,
        "peak_orders_per_10ms": int(stats.per_10ms[peak_10]),
        "peak_rate_per_s_10ms": int(stats.per_10ms[peak_10]) * 100,
        "peak_10ms_at_s": peak_10 / 100,
        "first_minute_orders": int(stats.per_s[:60].sum()),
        "stock_total": sum(sc.stocks().values()),
        "per_sku": {p.id: int(stats.per_product[i]) for i, p in enumerate(sc.products)},
        "expected_per_sku": {p.id: float(expected[i]) for i, p in enumerate(sc.products)},
        "stock_per_sku": sc.stocks(),
        "generation_s": elapsed_s,
        "generation_orders_per_s": stats.total / elapsed_s if elapsed_s > 0 else 0.0,
    }
