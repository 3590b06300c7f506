"""The numbers of a finished run, computed once, vectorised, from the recorder's arrays.

Every reporter (terminal table, report.json, the HTML report) renders the dict
:func:`summarize` returns and computes nothing of its own. Latency kinds, all in ms:

- ``intended``: done − intended send time (coordinated-omission free, what a buyer waits);
- ``service``: done − actual send (what the target took once it had the request);
- ``dispatch_lag``: dispatcher's take − intended (how late the generator itself was);
- ``queue_wait``: actual send − dispatcher's take (waiting for a free connection);
- ``order``: a buyer's whole wait, from the first attempt's intended time to the final answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from simulator.files import atomic_write
from simulator.load.recorder import Recorder
from simulator.outcomes import CONFIRMED, NOT_SENT, OUTCOME_NAMES

#: the percentiles every latency distribution reports, and their keys
PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"))
NS_PER_S = 1_000_000_000

REPORT_VERSION = 1


def distribution_ms(values_ns: npt.NDArray[np.int64]) -> dict[str, float | int | None]:
    """Count, mean, p50/p90/p99/p99.9 and max of durations given in ns, in ms."""
    out: dict[str, float | int | None] = {"count": len(values_ns)}
    if len(values_ns) == 0:
        out.update({k: None for _, k in PERCENTILES})
        out.update(mean=None, max=None)
        return out
    qs = np.percentile(values_ns, [q for q, _ in PERCENTILES]) / 1e6
    for (_, key), v in zip(PERCENTILES, qs, strict=True):
        out[key] = round(float(v), 4)
    out["mean"] = round(float(values_ns.mean()) / 1e6, 4)
    out["max"] = round(float(values_ns.max()) / 1e6, 4)
    return out


def _per_second(seconds: npt.NDArray[np.int64], n: int) -> list[int]:
    if len(seconds) == 0:
        return [0] * n
    counts: npt.NDArray[np.int64] = np.bincount(seconds, minlength=n)[:n]
    return [int(x) for x in counts]


def grouped_quantiles(
    groups: npt.NDArray[np.int64], values: npt.NDArray[np.int64], n: int, qs: tuple[float, ...]
) -> list[list[float | None]]:
    """Per group 0…n−1, the lower-nearest-rank quantiles of its values (None when empty)."""
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


def timeline(rec: Recorder, duration_s: float) -> dict[str, Any]:
    """Per-second series over the run: rates, outcomes by second done, latency by second due."""
    m = rec.n_attempts
    intended, sent, done = rec.intended_ns[:m], rec.sent_ns[:m], rec.done_ns[:m]
    last = max(int(done.max(initial=0)), int(intended.max(initial=0)), round(duration_s * 1e9))
    n = max(1, -(-last // NS_PER_S))
    answered = done >= 0
    out: dict[str, Any] = {
        "second": list(range(n)),
        "intended_per_s": _per_second(intended[intended >= 0] // NS_PER_S, n),
        "sent_per_s": _per_second(sent[sent >= 0] // NS_PER_S, n),
        "done_per_s": _per_second(done[answered] // NS_PER_S, n),
    }
    outcome = rec.outcome[:m]
    done_s = done // NS_PER_S
    out["outcomes_per_s"] = {
        name: _per_second(done_s[answered & (outcome == code)], n)
        for code, name in enumerate(OUTCOME_NAMES)
        if code != NOT_SENT
    }
    lat = done[answered] - intended[answered]
    p50, p99, mx = grouped_quantiles(intended[answered] // NS_PER_S, lat, n, (0.5, 0.99, 1.0))
    out.update(p50_ms=p50, p99_ms=p99, max_ms=mx)
    served = answered & (sent >= 0)
    s50, s99, smx = grouped_quantiles(
        sent[served] // NS_PER_S, done[served] - sent[served], n, (0.5, 0.99, 1.0)
    )
    out.update(service_p50_ms=s50, service_p99_ms=s99, service_max_ms=smx)
    return out


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


def sku_units_per_s(
    rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str], n_seconds: int
) -> dict[str, list[int]]:
    """Units confirmed per second answered, per SKU (``skus[i]`` names product index i).

    An order id confirmed more than once (a double click the server did not deduplicate)
    counts once, at its first confirmation — as the audit's ``client_units`` does — so the
    curve ends at the audit's number. Confirmations after ``n_seconds`` land in the last second.
    """
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


def summarize(
    rows: npt.NDArray[np.void], rec: Recorder, duration_s: float, skus: Sequence[str] = ()
) -> dict[str, Any]:
    """Outcome counts, latency distributions, spectra and timelines of a run (JSON-ready).

    With ``skus`` (product ids by index) the timeline also has ``confirmed_units_per_s``.
    """
    m = rec.n_attempts
    intended, dispatched = rec.intended_ns[:m], rec.dispatched_ns[:m]
    sent, done = rec.sent_ns[:m], rec.done_ns[:m]
    final = rec.final_attempt()
    row_outcome = rec.outcome[final]
    attempt_counts = np.bincount(rec.outcome[:m], minlength=len(OUTCOME_NAMES))
    row_counts = np.bincount(row_outcome, minlength=len(OUTCOME_NAMES))
    answered = done >= 0
    was_sent = sent >= 0
    row_done = done[final]
    order_wait = row_done[row_done >= 0] - intended[: rec.n_rows][row_done >= 0]
    confirmed = row_outcome == CONFIRMED
    tl = timeline(rec, duration_s)
    if skus:
        tl["confirmed_units_per_s"] = sku_units_per_s(rows, rec, skus, len(tl["second"]))
    return {
        "orders": {
            "scheduled": rec.n_rows,
            "attempts": m,
            "retries": m - rec.n_rows,
            "sent": int(np.count_nonzero(was_sent)),
            "outcomes": {name: int(row_counts[i]) for i, name in enumerate(OUTCOME_NAMES)},
            "attempt_outcomes": {
                name: int(attempt_counts[i]) for i, name in enumerate(OUTCOME_NAMES)
            },
            "confirmed_units": int(rows["qty"][confirmed].sum()) if len(rows) else 0,
        },
        "latency_ms": {
            "intended": distribution_ms(done[answered] - intended[answered]),
            "service": distribution_ms(done[answered & was_sent] - sent[answered & was_sent]),
            "order": distribution_ms(order_wait),
        },
        "dispatch_lag_ms": distribution_ms(dispatched[dispatched >= 0] - intended[dispatched >= 0]),
        "queue_wait_ms": distribution_ms(sent[was_sent] - dispatched[was_sent]),
        "latency_spectrum": spectra(rec),
        "timeline": tl,
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.json`` into ``out_dir`` atomically (temporary file, then rename)."""
    import orjson

    data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)

    def write(f: IO[bytes]) -> None:
        f.write(data + b"\n")

    return atomic_write(out_dir / "report.json", write)
