"""Calibration: fit the model's service-time distribution and admission from a run report.

A run report (``report.json`` of ``flashsale run``, or of ``flashsale simulate``) carries the
service times it measured — as percentiles (``latency_ms.service``: p50 and p99 or p90; the
run's done − sent, so at a load where the target does not queue it is the service time), or
as raw samples (``service_samples_ms``). A lognormal with median m and shape σ has
p_q = m·exp(σ·z_q), so m = p50 and σ = ln(p99/p50)/z₀.₉₉ (z₀.₉₉ = 2.3263; with p90 only,
z₀.₉₀ = 1.2816). Samples give an empirical distribution instead. Admission comes from the run's
own settings when the report states them: the storefront's ``max_concurrency`` is the queue
limit, the run's connections are the servers (a client queue in front of c connections is a
c-server FIFO queue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import FlashsaleError, UsageError
from simulator.files import read_json_object

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


def _number(d: Any, *keys: str) -> float | None:
    for key in keys:
        v = d.get(key) if isinstance(d, dict) else None
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            return float(v)
    return None


def _int_setting(report: dict[str, Any], *paths: tuple[str, ...]) -> int | None:
    for path in paths:
        node: Any = report
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int) and not isinstance(node, bool) and node > 0:
            return node
    return None


def calibrate(report: dict[str, Any], source: str = "") -> Calibration:
    """Fit service time and admission from a report; UsageError if it has no service times."""
    queue_limit = _int_setting(
        report, ("storefront", "max_concurrency"), ("settings", "storefront", "max_concurrency")
    )
    servers = _int_setting(report, ("run", "connections"), ("settings", "connections"))
    lat = report.get("latency_ms")
    candidates: list[tuple[str, Any]] = []
    if isinstance(lat, dict):
        candidates.append(("latency_ms.service", lat.get("service")))
    candidates += [(key, report.get(key)) for key in ("service_ms", "service_time_ms")]
    samples = report.get("service_samples_ms")
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
    for key, d in candidates:
        median = _number(d, "p50")
        if median is None:
            continue
        p99, p90 = _number(d, "p99"), _number(d, "p90")
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
            fitted_from=f"{key} ({basis}), lognormal",
        )
    raise UsageError(
        f"--calibrate: {source or 'report'}: no service times in it "
        "(expected 'latency_ms.service' percentiles or 'service_samples_ms')"
    )
