"""Extra report sections computed once from a run's arrays, when the run is summarised.

Pure NumPy functions for :func:`simulator.results.summarize` (or the run command) to call; the
renderers then only read the sections they produce:

- ``report["latency_spectrum"] = {"intended": latency_spectrum(...), "service": ...}``
- ``report["timeline"]["service_p50_ms" | "service_p99_ms" | "service_max_ms"]``
- ``report["timeline"]["confirmed_units_per_s"] = {sku: [units per second], ...}``
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from simulator.recorder import Recorder

NS_PER_S = 1_000_000_000
TICKS_PER_HALF = 5  # spectrum points per halving of the distance to 100 % (HdrHistogram's 5)


def latency_spectrum(
    values_ns: npt.NDArray[np.int64], ticks_per_half: int = TICKS_PER_HALF
) -> list[list[float]]:
    """The latency at percentiles 0, 12.9, 24.2, … → 100, HdrHistogram style, in ms.

    Percentile levels are pₖ = 1 − 2^(−k/ticks) for k = 0, 1, … while 1/(1 − pₖ) ≤ n (beyond
    that a level has less than one sample behind it), then [100, max]. Values are nearest-rank
    (the sample at rank ⌈p·n⌉), so every point is a latency that was actually observed. Plotted
    against 1/(1 − p) on a log axis the tail gets as much room as the median.
    Returns ``[[percentile, ms], ...]``; empty for no values.
    """
    if ticks_per_half < 1:
        raise ValueError(f"ticks_per_half must be ≥ 1, got {ticks_per_half}")
    n = len(values_ns)
    if n == 0:
        return []
    v = np.sort(np.asarray(values_ns, dtype=np.int64))
    k = np.arange(math.floor(ticks_per_half * math.log2(n)) + 1)
    p = 1.0 - np.exp2(-k / ticks_per_half)
    rank = np.clip(np.ceil(p * n).astype(np.int64) - 1, 0, n - 1)
    out = [
        [round(float(q) * 100, 6), round(float(x) / 1e6, 4)]
        for q, x in zip(p.tolist(), v[rank].tolist(), strict=True)
    ]
    out.append([100.0, round(float(v[-1]) / 1e6, 4)])
    return out


def _grouped(
    groups: npt.NDArray[np.int64], values: npt.NDArray[np.int64], n: int, qs: Sequence[float]
) -> list[list[float | None]]:
    """Per group 0…n−1, lower-nearest-rank quantiles of its values in ms (None when empty)."""
    out: list[list[float | None]] = [[None] * n for _ in qs]
    keep = (groups >= 0) & (groups < n)
    groups, values = groups[keep], values[keep]
    if len(values) == 0:
        return out
    order = np.lexsort((values, groups))
    g, v = groups[order], values[order]
    present = np.unique(g)
    starts = np.searchsorted(g, present, side="left")
    counts = np.searchsorted(g, present, side="right") - starts
    for k, q in enumerate(qs):
        picked = v[starts + np.floor(q * (counts - 1)).astype(np.int64)]
        for grp, val in zip(present.tolist(), picked.tolist(), strict=True):
            out[k][grp] = round(val / 1e6, 4)
    return out


def service_per_s(rec: Recorder, n_seconds: int) -> dict[str, list[float | None]]:
    """Service time (done − sent) p50/p99/max per second sent: ``service_{p50,p99,max}_ms``."""
    m = rec.n_attempts
    sent, done = rec.sent_ns[:m], rec.done_ns[:m]
    ok = (sent >= 0) & (done >= 0)
    p50, p99, mx = _grouped(sent[ok] // NS_PER_S, done[ok] - sent[ok], n_seconds, (0.5, 0.99, 1.0))
    return {"service_p50_ms": p50, "service_p99_ms": p99, "service_max_ms": mx}


def sku_units_per_s(
    rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str], n_seconds: int
) -> dict[str, list[int]]:
    """Units confirmed per second answered, per SKU (``skus[i]`` names product index i).

    An order id confirmed more than once (a double click the server did not deduplicate)
    counts once, at its first confirmation — as the audit's ``client_units`` does — so the
    curve ends at the audit's number. Confirmations after ``n_seconds`` land in the last second.
    """
    from simulator.recorder import CONFIRMED

    final = rec.final_attempt()
    done = rec.done_ns[final]
    ok = np.flatnonzero((rec.outcome[final] == CONFIRMED) & (done >= 0))
    ok = ok[np.argsort(done[ok], kind="stable")]
    _, first = np.unique(rows["order"][ok], return_index=True)
    ok = ok[first]
    n = max(1, n_seconds)
    second = np.minimum(done[ok] // NS_PER_S, n - 1)
    product = rows["product"][ok].astype(np.int64)
    inside = (product >= 0) & (product < len(skus))
    flat = product[inside] * n + second[inside]
    units = np.bincount(flat, weights=rows["qty"][ok][inside], minlength=len(skus) * n)
    table = units.reshape(len(skus), n).astype(np.int64)
    return {sku: [int(x) for x in table[i]] for i, sku in enumerate(skus)}


def spectra(rec: Recorder) -> dict[str, list[list[float]]]:
    """The intended-time and service-time spectra of a run's answered attempts."""
    m = rec.n_attempts
    intended, sent, done = rec.intended_ns[:m], rec.sent_ns[:m], rec.done_ns[:m]
    answered = done >= 0
    served = answered & (sent >= 0)
    return {
        "intended": latency_spectrum(done[answered] - intended[answered]),
        "service": latency_spectrum(done[served] - sent[served]),
    }


def add_series(
    summary: dict[str, Any], rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str]
) -> dict[str, Any]:
    """Add this module's sections to a :func:`simulator.results.summarize` dict (in place).

    ``latency_spectrum`` (intended and service), and in ``timeline`` the service-time
    percentiles per second and ``confirmed_units_per_s`` per SKU. Returns ``summary``.
    """
    timeline = summary["timeline"]
    n = len(timeline["second"])
    timeline.update(service_per_s(rec, n))
    timeline["confirmed_units_per_s"] = sku_units_per_s(rows, rec, skus, n)
    summary["latency_spectrum"] = spectra(rec)
    return summary
