"""Calibration: fit the model's service-time distribution and admission from a run report.

A run report (``report.json`` of ``flashsale run``, or of ``flashsale simulate``) carries the
service times it measured — as percentiles (``latency_ms.service``: p50 and p99 or p90; the
run's done − sent, so at a load where the target does not queue it is the service time), or
as raw samples (``service_samples_ms``). A lognormal with median m and shape σ has
p_q = m·exp(σ·z_q), so m = p50 and σ = ln(p99/p50)/z₀.₉₉ (z₀.₉₉ = 2.3263; with p90 only,
z₀.₉₀ = 1.2816). Samples give an empirical distribution instead. Admission comes from the run's
own settings as the report states them (:class:`simulator.report.document.Report`): the bundled
storefront's ``target.storefront.max_concurrency`` is the queue limit, the run's
``run.connections`` are the servers (a client queue in front of c connections is a c-server
FIFO queue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import FlashsaleError, UsageError
from simulator.files import read_json_object
from simulator.report.document import Report

Z99 = 2.3263478740408408
Z90 = 1.2815515655446004


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a run report says about the service: the model settings it implies."""

    service_median_ms: float
    service_sigma: float
    service_samples_ms: tuple[float, ...] = ()
    queue_limit: int | None = None
    servers: int | None = None
    source: str = ""
    fitted_from: str = ""

    def overrides(self) -> dict[str, Any]:
        """The ModelConfig fields to set (None = keep the scenario's)."""
        return {
            "service_median_ms": self.service_median_ms,
            "service_sigma": self.service_sigma,
            "service_samples_ms": self.service_samples_ms,
            "queue_limit": self.queue_limit,
            "servers": self.servers,
        }


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a run report; UsageError naming the file if it is missing or not a JSON object."""
    try:
        return read_json_object(path, "a run report")
    except FlashsaleError as exc:
        raise UsageError(f"--calibrate: {exc}") from None


def calibrate(report: dict[str, Any] | Report, source: str = "") -> Calibration:
    """Fit service time and admission from a report; UsageError if it has no service times."""
    if not isinstance(report, Report):
        try:
            report = Report.from_json(report, source or "report", require_outcomes=False)
        except FlashsaleError as exc:
            raise UsageError(f"--calibrate: {exc}") from None
    sf = report.target.storefront
    queue_limit = sf.max_concurrency if sf is not None and sf.max_concurrency else None
    connections = report.run.connections
    servers = connections if connections is not None and connections > 0 else None
    service = report.latency.get("service")
    samples = report.extra.get("service_samples_ms")
    if isinstance(samples, list) and len(samples) >= 2:
        xs = tuple(float(x) for x in samples if isinstance(x, int | float) and x > 0)
        if len(xs) >= 2:
            xs_sorted = sorted(xs)
            mid = xs_sorted[len(xs) // 2]
            top = xs_sorted[min(len(xs) - 1, int(0.99 * len(xs)))]
            return Calibration(
                service_median_ms=mid,
                service_sigma=max(0.0, math.log(top / mid) / Z99),
                service_samples_ms=xs,
                queue_limit=queue_limit,
                servers=servers,
                source=source,
                fitted_from="service_samples_ms (empirical)",
            )
    median = _positive(service.p50) if service is not None else None
    if service is not None and median is not None:
        p99, p90 = _positive(service.p99), _positive(service.p90)
        if p99 is not None:
            sigma, basis = math.log(p99 / median) / Z99, "p50, p99"
        elif p90 is not None:
            sigma, basis = math.log(p90 / median) / Z90, "p50, p90"
        else:
            sigma, basis = 0.0, "p50"
        return Calibration(
            service_median_ms=median,
            service_sigma=max(0.0, sigma),
            queue_limit=queue_limit,
            servers=servers,
            source=source,
            fitted_from=f"latency_ms.service ({basis}), lognormal",
        )
    raise UsageError(
        f"--calibrate: {source or 'report'}: no service times in it "
        "(expected 'latency_ms.service' percentiles or 'service_samples_ms')"
    )


def _positive(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and x > 0 else None
