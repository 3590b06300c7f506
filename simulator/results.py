"""The numbers of a finished run, computed once, vectorised, from the recorder's arrays.

:func:`measure` turns a run's schedule rows and recorder into the typed sections of its report
(:mod:`simulator.report.document`); every reporter renders those and computes nothing of its
own. :func:`confirmations` is the one definition of "confirmed units" (each order id once, at
its first confirmation): the summary, the audit's client view, the live progress and the
per-SKU series all count through it. Latency kinds, all in ms:

- ``intended``: done − intended send time (coordinated-omission free, what a buyer waits);
- ``service``: done − actual send (what the target took once it had the request);
- ``dispatch_lag``: dispatcher's take − intended (how late the generator itself was);
- ``queue_wait``: actual send − dispatcher's take (waiting for a free connection);
- ``order``: a buyer's whole wait, from the first attempt's intended time to the final answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from simulator.histogram import Histogram
from simulator.load.recorder import Recorder
from simulator.load.tally import Confirmed, first_confirmed
from simulator.outcomes import CONFIRMED, NOT_SENT, OUTCOME_NAMES
from simulator.report.document import Report
from simulator.report.journeys import JourneyReport, StepReport
from simulator.report.sections import (
    Audit,
    Distribution,
    Orders,
    RunInfo,
    ScenarioInfo,
    StockHistory,
    TargetInfo,
    Timeline,
    sell_out_s,
)

if TYPE_CHECKING:
    from simulator.load.tally import Tally

#: the percentiles every latency distribution reports, and their keys
PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"))
NS_PER_S = 1_000_000_000
I64 = npt.NDArray[np.int64]


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


def confirmations(rows: npt.NDArray[np.void], rec: Recorder) -> Confirmed:
    """The confirmed orders in a recorder's arrays (a run so far), each order id once.

    The recorder's form of :func:`confirmed` (the tally's): both pick the confirmed attempts and
    leave the one rule to :func:`first_confirmed`. Vectorised; the dedupe runs over the
    confirmed attempts only (bounded by the stock), so a live display can call it often.
    """
    n, m = rec.n_rows, rec.n_attempts
    attempt = np.flatnonzero(rec.outcome[:m] == CONFIRMED)
    row = attempt.astype(np.int64)
    retry = attempt >= n
    row[retry] = rec.row_of_retry[attempt[retry] - n]
    return first_confirmed(
        rows["order"][row].astype(np.int64),
        rows["product"][row].astype(np.int64),
        rows["qty"][row].astype(np.int64),
        rec.done_ns[attempt].astype(np.int64),
    )


def sku_units_per_s(
    rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str], n_seconds: int
) -> dict[str, list[int]]:
    """Units confirmed per second answered, per SKU (``skus[i]`` names product index i).

    Each order id counts once, at its first confirmation, so the curve ends at the audit's
    number. Confirmations after ``n_seconds`` land in the last second.
    """
    return confirmations(rows, rec).units_per_s(skus, n_seconds)


def distribution(values_ns: npt.NDArray[np.int64]) -> Distribution:
    """:func:`distribution_ms` as a typed :class:`Distribution`."""
    return Distribution.from_json(distribution_ms(values_ns))


@dataclass(frozen=True, slots=True)
class Summary:
    """What the recorder says about a run: counts, latencies, spectra, timeline (typed)."""

    orders: Orders
    latency: dict[str, Distribution]
    spectrum: dict[str, list[tuple[float, float]]]
    timeline: Timeline
    journey: JourneyReport | None = None  # a scenario with a [journey]: steps and journeys

    def to_json(self) -> dict[str, Any]:
        """The sections as report.json has them (``orders``, ``latency_ms``, …)."""
        return {
            "orders": self.orders.to_json(),
            "latency_ms": {k: self.latency[k].to_json() for k in ("intended", "service", "order")},
            "dispatch_lag_ms": self.latency["dispatch_lag"].to_json(),
            "queue_wait_ms": self.latency["queue_wait"].to_json(),
            "latency_spectrum": {k: [list(p) for p in v] for k, v in self.spectrum.items()},
            "timeline": self.timeline.to_json(),
        }


def measure(
    rows: npt.NDArray[np.void], rec: Recorder, duration_s: float, skus: Sequence[str] = ()
) -> Summary:
    """:func:`measure_tally` of a whole recorder (the Locust adapter, tests)."""
    from simulator.load.tally import tally_of_recorder

    return measure_tally(tally_of_recorder(rows, rec), duration_s, skus)


def distribution_of(h: Histogram) -> Distribution:
    """Count, p50/p90/p99/p99.9 (within the histogram's resolution), exact max and mean, in ms."""
    if h.total == 0:
        return Distribution(count=0)
    qs = h.percentiles(tuple(q for q, _ in PERCENTILES)) / 1e6
    r = [round(float(v), 4) for v in qs]
    return Distribution(
        h.total, r[0], r[1], r[2], r[3], round(h.max_ns / 1e6, 4), round(h.mean_ns() / 1e6, 4)
    )


def spectrum_of(h: Histogram, ticks_per_half: int = TICKS_PER_HALF) -> list[tuple[float, float]]:
    """:func:`latency_spectrum` from a histogram (nearest rank, within its resolution)."""
    n = h.total
    if n == 0:
        return []
    k = np.arange(math.floor(ticks_per_half * math.log2(n)) + 1)
    p = 1.0 - np.exp2(-k / ticks_per_half)
    values = h.percentiles(tuple((p * 100).tolist()))
    out = [
        (round(float(q) * 100, 6), round(float(v) / 1e6, 4)) for q, v in zip(p, values, strict=True)
    ]
    out.append((100.0, round(h.max_ns / 1e6, 4)))
    return out


def confirmed(tally: Tally) -> Confirmed:
    """The orders a tally saw confirmed, each order id once (:func:`first_confirmed`)."""
    return first_confirmed(*tally.confirmed())


def timeline_of(tally: Tally, duration_s: float) -> dict[str, Any]:
    """Per-second series of a tally (as :func:`timeline`; latencies from the histograms)."""
    last = max(tally.last_ns, round(duration_s * 1e9))
    n = max(1, -(-last // NS_PER_S))

    def series(a: I64) -> list[int]:
        out = np.zeros(n, dtype=np.int64)
        k = min(n, a.shape[-1])
        out[:k] = a[:k]
        return [int(x) for x in out]

    out: dict[str, Any] = {
        "second": list(range(n)),
        "intended_per_s": series(tally.intended_per_s),
        "sent_per_s": series(tally.sent_per_s),
        "done_per_s": series(tally.done_per_s),
        "outcomes_per_s": {
            name: series(tally.outcomes_per_s[code])
            for code, name in enumerate(OUTCOME_NAMES)
            if code != NOT_SENT
        },
    }
    p50, p99, mx = tally.latency_s.quantiles(n, (0.5, 0.99, 1.0))
    out.update(p50_ms=p50, p99_ms=p99, max_ms=mx)
    s50, s99, smx = tally.service_s.quantiles(n, (0.5, 0.99, 1.0))
    out.update(service_p50_ms=s50, service_p99_ms=s99, service_max_ms=smx)
    return out


def measure_tally(tally: Tally, duration_s: float, skus: Sequence[str] = ()) -> Summary:
    """Outcome counts, latency distributions, spectra and timeline of a run's tally.

    ``orders.outcomes`` counts orders by their final outcome, ``attempt_outcomes`` attempts;
    ``confirmed_units`` counts each order id once. With ``skus`` (product ids by index) the
    timeline also has the units confirmed per SKU and second. Percentiles come from the
    histograms (within 0.1 %, clamped to the exact min and max); counts and maxima are exact.
    """
    tl = timeline_of(tally, duration_s)
    c = confirmed(tally)
    if skus:
        tl["confirmed_units_per_s"] = c.units_per_s(skus, len(tl["second"]))
    parsed = Timeline.from_json(tl)
    assert parsed is not None  # a timeline has at least one second
    hists = {kind: tally.combined(kind) for kind in ("intended", "service", "order",
                                                     "dispatch_lag", "queue_wait")}  # fmt: skip
    spectrum = {k: spectrum_of(hists[k]) for k in ("intended", "service")}
    names = enumerate(OUTCOME_NAMES)
    return Summary(
        orders=Orders(
            outcomes={name: int(tally.row_outcomes[i]) for i, name in names},
            scheduled=tally.scheduled,
            attempts=tally.attempts,
            retries=tally.retries,
            sent=tally.sent,
            attempt_outcomes={
                name: int(tally.attempt_outcomes[i]) for i, name in enumerate(OUTCOME_NAMES)
            },
            confirmed_units=c.units(),
            reasons=tally.reason_counts(),
        ),
        latency={k: distribution_of(h) for k, h in hists.items()},
        spectrum={k: v for k, v in spectrum.items() if v},
        timeline=parsed,
        journey=journey_report(tally.journey) if tally.journey is not None else None,
    )


def journey_report(jt: Any) -> JourneyReport:
    """The journey section of a run's :class:`~simulator.load.journey.JourneyTally`."""
    from simulator.scenario.journey import TERMINALS

    def step(name: str, t: Any, order: bool) -> StepReport:
        return StepReport(
            name=name,
            order=order,
            requests=int(t.attempts),
            outcomes={n: int(t.attempt_outcomes[i]) for i, n in enumerate(OUTCOME_NAMES) if i},
            reasons=t.reason_counts(),
            latency=distribution_of(t.combined("intended")),
            service=distribution_of(t.combined("service")),
        )

    steps = [
        step(name, t, k == jt.order_step)
        for k, (name, t) in enumerate(zip(jt.names, jt.steps, strict=True))
    ]
    streams = [step(n, t, False) for n, t in zip(jt.stream_names, jt.streams, strict=True)]
    ended_at = {
        name: {TERMINALS[i]: int(n) for i, n in enumerate(jt.ends[k]) if n}
        for k, name in enumerate(jt.names)
        if jt.ends[k].any()
    }
    return JourneyReport(
        started=int(jt.started),
        terminals=jt.terminals(),
        ended_at=ended_at,
        time_completed=distribution_of(jt.times["completed"]),
        time_ended=distribution_of(jt.times["ended"]),
        steps=tuple(steps),
        streams=tuple(streams),
        implicit=bool(jt.implicit),
    )


def summarize(
    rows: npt.NDArray[np.void], rec: Recorder, duration_s: float, skus: Sequence[str] = ()
) -> dict[str, Any]:
    """:func:`measure` as the JSON sections of report.json (for scripts and tests)."""
    return measure(rows, rec, duration_s, skus).to_json()


def write_report(report: Any, out_dir: Path) -> Path:
    """Write ``report.json`` into ``out_dir`` atomically (see :mod:`simulator.report.store`)."""
    from simulator.report.store import write_report as write

    return write(report, out_dir)


def run_report(
    summary: Summary,
    audit_result: dict[str, Any],
    *,
    scenario: ScenarioInfo,
    target: TargetInfo,
    run: RunInfo,
    partial: bool,
    complete: bool,
    extra: dict[str, Any] | None = None,
) -> Report:
    """A live run's :class:`Report` from its summary and audit (``flashsale run``, Locust).

    The exit code is 0 for a complete run without oversell or a broken reservation lifecycle
    (:attr:`Audit.breakages`), else 1 (thresholds come later: :meth:`Report.with_thresholds`).
    Each SKU's sell-out second is read off its confirmed units; the storefront's stock over
    time, when the audit fetched it, becomes the report's ``stock_history``.
    """
    units = summary.timeline.sku_units
    initial = {str(k): v.get("initial") for k, v in audit_result.get("skus", {}).items()}
    sell_out = {sku: sell_out_s(u, initial.get(sku)) for sku, u in units.items()}
    audit_doc = Audit.from_dict(audit_result, sell_out)
    exit_code = 0 if complete and audit_doc.oversell_units == 0 == audit_doc.breakages else 1
    if target.backend is None and audit_doc.backend is not None:
        target = replace(target, backend=audit_doc.backend)
    return Report(
        kind="run",
        orders=summary.orders,
        scenario=scenario,
        target=target,
        run=run,
        latency=summary.latency,
        spectrum=summary.spectrum,
        timeline=summary.timeline,
        journey=summary.journey,
        audit=audit_doc,
        stock_history=StockHistory.from_json(audit_result.get("stock_history")),
        exit_code=exit_code,
        complete=complete,
        partial=partial,
        extra=dict(extra or {}),
    )
