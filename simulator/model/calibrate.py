"""Calibration: the model's service (time, servers, overhead) recovered from a run.

A run's latencies are queueing plus service plus the storefront's own handling around it, so
fitting them as the service time would make the model replay the calibration run at any load.
Instead, in three steps:

1. **Settings**: the report says what the bundled storefront was configured with
   (``target.storefront``, :class:`simulator.report.document.StorefrontSettings`): with
   ``hot_row`` every SKU is one FIFO server (orders serialise on its row), otherwise the
   run's ``connections`` are the servers (a client queue in front of c connections);
   ``max_concurrency`` is the limit on orders in flight across all SKUs (``max_in_flight``).
2. **Service times net of queueing**, from the run's per-order records (``orders.npz`` or the
   ``orders.npys`` stream beside the report, :mod:`simulator.records`), where one FIFO server
   per SKU makes it exact: with a fixed overhead o around the service (request and answer
   handling, not holding the row),
   S_i = done_i − max(sent_i + o, done_{i−1}). o is the value at which orders that found the
   row idle and orders that queued behind another have the same median service time (the
   second are o-free: inter-departure times). Without records (or with c > 1 servers) the
   service time the storefront was configured with is the start, else the report's measured
   ``latency_ms.service`` percentiles as a lognormal (p50, and p99 or p90 for σ).
3. **Search**: given the calibration run's scenario, a small coordinate search over (median,
   σ, overhead) around that start makes the model reproduce the run's intended-latency p50,
   p90 and p99; the residual is the largest |log(model / run)| of the three.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.errors import FlashsaleError, UsageError
from simulator.files import read_json_object
from simulator.report.document import Report
from simulator.scenario import Scenario

Z99 = 2.3263478740408408
Z90 = 1.2815515655446004
Z84 = 0.9944578832097535  # Φ⁻¹(0.84): (q84 − q16)/2 of a normal is ≈ its σ
QUANTILES = ("p50", "p90", "p99")
_WEIGHTS = (1.0, 1.0, 0.6)  # the run's p99 rests on few orders: trust it a little less
Records = Mapping[str, npt.NDArray[np.generic]]


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a run says about the service: the model settings it implies, and how well they fit.

    ``residual``: the largest |log(model / run)| over intended p50, p90, p99 at the
    calibration run's own load (None when no search was made); ``service_orders``: how many
    service times were recovered from per-order records (0: none were used).
    """

    service_median_ms: float
    service_sigma: float
    service_samples_ms: tuple[float, ...] = ()
    max_in_flight: int | None = None
    servers: int | None = None
    hot_row: bool | None = None
    overhead_ms: float = 0.0
    source: str = ""
    fitted_from: str = ""
    residual: float | None = None
    service_orders: int = 0

    def overrides(self) -> dict[str, Any]:
        """The ModelConfig fields to set (None = keep the scenario's)."""
        return {
            "service_median_ms": self.service_median_ms,
            "service_sigma": self.service_sigma,
            "service_samples_ms": self.service_samples_ms,
            "max_in_flight": self.max_in_flight,
            "servers": self.servers,
            "hot_row": self.hot_row,
            "overhead_ms": self.overhead_ms,
        }

    def describe(self) -> dict[str, Any]:
        """The fit as a JSON-ready dict (the model report's ``calibration`` section)."""
        return {
            "source": self.source,
            "fitted_from": self.fitted_from,
            "service_median_ms": self.service_median_ms,
            "service_sigma": self.service_sigma,
            "overhead_ms": self.overhead_ms,
            "servers": self.servers,
            "hot_row": self.hot_row,
            "max_in_flight": self.max_in_flight,
            "service_orders": self.service_orders,
            "residual": self.residual,
        }

    def line(self) -> str:
        """One line for the terminal: the fitted parameters and the residual."""
        res = "-" if self.residual is None else f"{self.residual:.1%}"
        return (
            f"calibrated service median {self.service_median_ms:.3f} ms σ "
            f"{self.service_sigma:.3f}, overhead {self.overhead_ms:.3f} ms, servers "
            f"{self.servers or '-'}{' per SKU (hot row)' if self.hot_row else ''}, in-flight "
            f"limit {self.max_in_flight or '∞'}; residual {res} ({self.fitted_from})"
        )


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a run report; UsageError naming the file if it is missing or not a JSON object."""
    try:
        return read_json_object(path, "a run report")
    except FlashsaleError as exc:
        raise UsageError(f"calibration run: {exc}", "calibrate") from None


def find_records(report_path: str | Path) -> Records | None:
    """The per-order records saved beside a run report, if there are readable ones."""
    from simulator.records import find_orders, load_orders

    path = find_orders(Path(report_path).parent)
    if path is None:
        return None
    try:
        return load_orders(path)
    except (OSError, ValueError):
        return None  # not a records file we can use: calibrate from the report alone


def calibrate(
    report: dict[str, Any] | Report,
    source: str = "",
    records: Records | None = None,
    scenario: Scenario | None = None,
) -> Calibration:
    """Fit the service from a run report (and its per-order records, if given).

    ``scenario``: the calibration run's scenario at the run's scale; given, the fit is refined
    by a search that makes the model reproduce the run's latency quantiles.
    UsageError if the report says nothing about service times.
    """
    if not isinstance(report, Report):
        try:
            report = Report.from_json(report, source or "report", require_outcomes=False)
        except FlashsaleError as exc:
            raise UsageError(f"calibration run: {exc}", "calibrate") from None
    start = _start(report, source, records)
    if scenario is None:
        return start
    # service times and overhead recovered from records are measured, not guessed: searching
    # them against one run's quantiles fits that run's noise (live checks: p50 off by 12-18 %
    # at other loads when the overhead was searched, within 5 % when it was not), so with
    # records the model is only run to report the residual
    axes = () if start.service_orders else (0, 1, 2)
    return search(start, scenario, _targets(report), axes)


def _start(report: Report, source: str, records: Records | None) -> Calibration:
    """The fit before the search: settings, and service times from records or the report."""
    sf = report.target.storefront
    max_in_flight = sf.max_concurrency if sf is not None and sf.max_concurrency else None
    hot_row = bool(sf is not None and sf.hot_row)
    connections = report.run.connections
    servers = 1 if hot_row else (connections if connections and connections > 0 else None)
    base = Calibration(
        service_median_ms=1.0,
        service_sigma=0.0,
        max_in_flight=max_in_flight,
        servers=servers,
        hot_row=hot_row if sf is not None and sf.hot_row is not None else None,
        source=source,
    )
    if records is not None and hot_row:
        net = net_service(records)
        if net is not None:
            s_ms, overhead_ms = net
            median, sigma = lognormal_fit(s_ms)
            return replace(
                base,
                service_median_ms=median,
                service_sigma=sigma,
                overhead_ms=overhead_ms,
                service_orders=len(s_ms),
                fitted_from="per-order records (FIFO departures net of queueing), lognormal",
            )
    if sf is not None and sf.service_time_median_ms:
        return replace(
            base,
            service_median_ms=sf.service_time_median_ms,
            service_sigma=sf.service_time_sigma or 0.0,
            fitted_from="the storefront's configured service time",
        )
    samples = report.extra.get("service_samples_ms")
    if isinstance(samples, list):
        xs = tuple(float(x) for x in samples if isinstance(x, int | float) and x > 0)
        if len(xs) >= 2:
            median, sigma = lognormal_fit(np.array(xs))
            return replace(
                base,
                service_median_ms=median,
                service_sigma=sigma,
                service_samples_ms=xs,
                fitted_from="service_samples_ms (empirical)",
            )
    service = report.latency.get("service")
    median_ms = _positive(service.p50) if service is not None else None
    if service is not None and median_ms is not None:
        p99, p90 = _positive(service.p99), _positive(service.p90)
        if p99 is not None:
            sigma, basis = math.log(p99 / median_ms) / Z99, "p50, p99"
        elif p90 is not None:
            sigma, basis = math.log(p90 / median_ms) / Z90, "p50, p90"
        else:
            sigma, basis = 0.0, "p50"
        return replace(
            base,
            service_median_ms=median_ms,
            service_sigma=max(0.0, sigma),
            fitted_from=f"latency_ms.service ({basis}), lognormal",
        )
    raise UsageError(
        f"calibration run {source or 'report'}: no service times in it (expected per-order "
        "records, 'target.storefront' settings, 'latency_ms.service' or 'service_samples_ms')",
        "calibrate",
    )


def net_service(records: Records, rounds: int = 6) -> tuple[npt.NDArray[np.float64], float] | None:
    """Service times (ms) net of queueing and the fixed overhead (ms), one FIFO server per SKU.

    Served attempts only (confirmed or sold out), per SKU in order of sending:
    S_i = done_i − max(sent_i + o, D_{i−1}) with D the running maximum of done. o starts at 0
    and moves by the difference of the median S of orders that found the row idle and of
    those that queued, until they agree. None with fewer than 20 served orders.
    """
    names = [str(x) for x in records["outcome_names"]]
    served_codes = [names.index(n) for n in ("confirmed", "sold_out") if n in names]
    sent = np.asarray(records["sent_ns"], dtype=np.int64)
    done = np.asarray(records["done_ns"], dtype=np.int64)
    ok = np.isin(records["outcome"], served_codes) & (sent >= 0) & (done >= sent)
    if int(ok.sum()) < 20:
        return None
    sku = np.asarray(records["sku"], dtype=np.int64)[ok]
    sent, done = sent[ok], done[ok]
    order = np.lexsort((sent, sku))
    sku, sent, done = sku[order], sent[order], done[order]
    first = np.concatenate(([True], sku[1:] != sku[:-1]))
    # the previous departure of the row: running max of done within the SKU
    off = sku * (int(done.max()) - int(done.min()) + 1)
    prev = np.maximum.accumulate(done - done.min() + off)
    prev = np.concatenate(([0], prev[:-1] - off[:-1] + done.min()))
    prev[first] = np.iinfo(np.int64).min // 2
    overhead = 0
    s = done - sent
    for _ in range(rounds):
        queued = prev > sent + overhead
        s = done - np.maximum(sent + overhead, prev)
        if queued.sum() < 10 or (~queued).sum() < 10:
            break
        step = int(np.median(s[~queued]) - np.median(s[queued]))
        overhead = max(0, overhead + step)
        if abs(step) < 10_000:  # 10 µs
            break
    s = done - np.maximum(sent + overhead, prev)
    s = s[s > 0]
    return s / 1e6, overhead / 1e6


def lognormal_fit(samples_ms: npt.ArrayLike) -> tuple[float, float]:
    """(median, σ) of a lognormal from samples: the median, and σ from log q84 − log q16."""
    x = np.asarray(samples_ms, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) == 0:
        raise ValueError("a lognormal fit needs positive samples")
    q16, q50, q84 = np.quantile(np.log(x), [0.16, 0.5, 0.84])
    return float(np.exp(q50)), float(max(0.0, (q84 - q16) / (2 * Z84)))


def _targets(report: Report) -> tuple[float, ...]:
    lat = report.latency.get("intended")
    values = [getattr(lat, q, None) if lat is not None else None for q in QUANTILES]
    good = tuple(v for v in values if v is not None and math.isfinite(v) and v > 0)
    return good if len(good) == len(QUANTILES) else ()


def model_quantiles(cal: Calibration, scenario: Scenario) -> tuple[float, ...]:
    """The model's intended-latency p50, p90, p99 (ms) of ``scenario`` with ``cal``'s fit."""
    from simulator.model.config import config_for
    from simulator.model.report import build_report
    from simulator.model.sim import Model

    report = build_report(Model(scenario, config_for(scenario, **cal.overrides())).run())
    lat = report["latency_ms"]["intended"]
    return tuple(float(lat[q]) for q in QUANTILES)


def residual(model: tuple[float, ...], run: tuple[float, ...]) -> float:
    """The largest |log(model / run)| over the quantiles (weighted: p99 counts 0.6)."""
    return max(w * abs(math.log(m / r)) for m, r, w in zip(model, run, _WEIGHTS, strict=True))


def search(
    start: Calibration,
    scenario: Scenario,
    targets: tuple[float, ...],
    axes: tuple[int, ...] = (0, 1, 2),
) -> Calibration:
    """Coordinate search over ``axes`` of (median, σ, overhead) to reproduce ``targets``.

    Steps halve each time no move improves: ±8 % of the median, ±0.08 of σ, ±0.4 ms of
    overhead to start; at most 25 model runs of the calibration scenario. Without targets
    (the report has no intended quantiles) the start is returned unchanged.
    """
    if not targets:
        return start

    def cost(c: Calibration) -> float:
        got = model_quantiles(c, scenario)
        return math.inf if min(got) <= 0 else residual(got, targets)

    best = replace(start, service_samples_ms=())
    best_cost = cost(best)
    steps = [0.08, 0.08, 0.4]
    for _ in range(4):
        improved = False
        for axis in axes:
            for sign in (1.0, -1.0):
                cand = _move(best, axis, sign * steps[axis])
                if cand is None:
                    continue
                c = cost(cand)
                if c < best_cost:
                    best, best_cost, improved = cand, c, True
                    break
        if not improved:
            steps = [s / 2 for s in steps]
    if not axes:
        return replace(best, residual=best_cost)
    how = f"{start.fitted_from}; searched to the run's intended p50, p90, p99"
    return replace(best, residual=best_cost, fitted_from=how)


def _move(c: Calibration, axis: int, step: float) -> Calibration | None:
    if axis == 0:
        return replace(c, service_median_ms=c.service_median_ms * (1 + step))
    if axis == 1:
        sigma = c.service_sigma + step
        return replace(c, service_sigma=sigma) if sigma >= 0 else None
    overhead = c.overhead_ms + step
    return replace(c, overhead_ms=overhead) if overhead >= 0 else None


def _positive(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and x > 0 else None
