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

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.recorder import CONFIRMED, NOT_SENT, OUTCOME_NAMES, Recorder

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
            if 0 <= grp < n:
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
    return out


def summarize(rows: npt.NDArray[np.void], rec: Recorder, duration_s: float) -> dict[str, Any]:
    """Outcome counts, latency distributions and timelines of a run (JSON-ready)."""
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
        "timeline": timeline(rec, duration_s),
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.json`` into ``out_dir`` atomically (temporary file, then rename)."""
    import orjson

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".json", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.write(b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
