"""The flat numbers a threshold or a comparison can name, with what each means.

Definitions (all from the report, nothing re-measured):

- ``p50_ms`` … ``max_ms``: intended-time latency (done − the time the order was *meant* to be
  sent: what a buyer waits, coordinated-omission free); ``service_*``: done − actual send;
  ``order_*``: a buyer's whole wait over retries; ``dispatch_lag_*``: how late the generator was.
  ``p999_ms`` is the 99.9th percentile (``p99.9_ms`` is accepted as a spelling of it).
- outcome counts (``confirmed``, ``sold_out``, …) are the final outcome of each scheduled order;
  ``errors`` = ``error`` + ``timeout``.
- ``error_rate`` = (error + timeout) / scheduled orders.
- ``throttle_rate`` = throttled / scheduled orders.
- ``achieved_rate_ratio`` = Σₛ min(sentₛ, intendedₛ) / Σₛ intendedₛ over the per-second
  timeline: the share of attempts that left in the second they were due. 1.0 means sending
  followed demand; a generator that falls behind at the peak scores lower even if it catches up
  later (a whole-run sent/scheduled ratio would hide that).
- ``intended_peak_per_s``, ``sent_peak_per_s``: the busiest second of the schedule and of
  sending; ``throughput_peak_per_s``: the most answers in one second.
- ``oversell_units``: from the audit (units sold beyond the initial stock, summed over SKUs);
  unavailable when the report has no audit.
- ``undersell_units``, ``double_returns``, ``paid_after_expiry``: the reservation lifecycle's
  breakages from the audit (:mod:`simulator.audit`), summed over SKUs: units held past their
  expiry beyond the sweep's grace or never returned; holds given back twice; holds both paid
  and returned. Only a storefront with a reservation TTL states them (n/a otherwise).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from simulator.outcomes import OUTCOME_NAMES
from simulator.report.document import Report

LOWER, HIGHER, NEUTRAL = "lower", "higher", ""
#: the reservation lifecycle's metrics (from the audit, with a TTL only)
LIFECYCLE_METRICS = ("undersell_units", "double_returns", "paid_after_expiry")


@dataclass(frozen=True, slots=True)
class Metric:
    """A named number: what it is, its unit, and whether lower or higher is better."""

    name: str
    description: str
    unit: str = ""
    better: str = NEUTRAL


def _catalogue() -> dict[str, Metric]:
    out: list[Metric] = []
    for prefix, what in (
        ("", "intended-time latency"),
        ("service_", "service time"),
        ("order_", "order latency over retries"),
        ("dispatch_lag_", "dispatcher lag behind schedule"),
    ):
        for key, label in (
            ("p50", "median"),
            ("p90", "90th percentile"),
            ("p99", "99th percentile"),
            ("p999", "99.9th percentile"),
            ("max", "maximum"),
            ("mean", "mean"),
        ):
            out.append(Metric(f"{prefix}{key}_ms", f"{label} {what}", "ms", LOWER))
    for key in ("scheduled", "attempts", "retries", "sent"):
        out.append(Metric(key, f"{key} orders/attempts", "orders"))
    for name in OUTCOME_NAMES:
        better = {"confirmed": NEUTRAL, "sold_out": NEUTRAL}.get(name, LOWER)
        out.append(Metric(name, f"orders whose final outcome was {name}", "orders", better))
    out += [
        Metric("errors", "orders ending in error or timeout", "orders", LOWER),
        Metric("confirmed_units", "units confirmed to buyers", "units"),
        Metric("error_rate", "(error + timeout) / scheduled", "", LOWER),
        Metric("throttle_rate", "throttled / scheduled", "", LOWER),
        Metric("achieved_rate_ratio", "share of attempts sent in the second due", "", HIGHER),
        Metric("intended_peak_per_s", "busiest second of the schedule", "/s"),
        Metric("sent_peak_per_s", "busiest second of sending", "/s", HIGHER),
        Metric("throughput_peak_per_s", "most answers in one second", "/s", HIGHER),
        Metric("oversell_units", "units sold beyond the initial stock", "units", LOWER),
        Metric("audit_problems", "disagreements the audit listed", "", LOWER),
        Metric(
            "undersell_units",
            "units held past expiry (beyond the sweep's grace) or never returned",
            "units",
            LOWER,
        ),
        Metric("double_returns", "reservations whose stock was given back twice", "", LOWER),
        Metric("paid_after_expiry", "reservations both paid and returned", "", LOWER),
    ]
    return {m.name: m for m in out}


#: every metric name, in a stable order
METRICS: dict[str, Metric] = _catalogue()


def canonical(name: str) -> str | None:
    """The metric a name means (``p99.9_ms`` → ``p999_ms``), or None if there is none."""
    key = name.strip().replace("p99.9", "p999")
    return key if key in METRICS else None


def nearest(name: str) -> str:
    """The known metric name closest to an unknown one (for 'did you mean')."""
    key = name.strip().replace("p99.9", "p999")
    close = difflib.get_close_matches(key, list(METRICS), n=1, cutoff=0.0)
    return close[0] if close else "p99_ms"


def metric_values(view: Report) -> dict[str, float | None]:
    """Every metric's value in this report (None where the report does not have it)."""
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    for prefix, kind in (
        ("", "intended"),
        ("service_", "service"),
        ("order_", "order"),
        ("dispatch_lag_", "dispatch_lag"),
    ):
        dist = view.latency.get(kind)
        if dist is None:
            continue
        for key, value in dist.items():
            out[f"{prefix}{key.replace('p99.9', 'p999')}_ms"] = value
    for key, n in view.orders.counts().items():
        out[key] = None if n is None else float(n)
    for name, count in view.outcomes.items():
        out[name] = float(count)
    failed = view.outcomes["error"] + view.outcomes["timeout"]
    out["errors"] = float(failed)
    scheduled = view.orders.scheduled
    if scheduled:
        out["error_rate"] = failed / scheduled
        out["throttle_rate"] = view.outcomes["throttled"] / scheduled
    elif scheduled == 0:
        out["error_rate"] = out["throttle_rate"] = 0.0
    t = view.timeline
    if t is not None:
        if t.intended is not None:
            out["intended_peak_per_s"] = float(max(t.intended, default=0))
            if t.sent is not None:
                due = sum(t.intended)
                kept = sum(min(s, i) for s, i in zip(t.sent, t.intended, strict=True))
                out["achieved_rate_ratio"] = kept / due if due else None
        if t.sent is not None:
            out["sent_peak_per_s"] = float(max(t.sent, default=0))
        if t.done is not None:
            out["throughput_peak_per_s"] = float(max(t.done, default=0))
    if view.oversell_units is not None:
        out["oversell_units"] = float(view.oversell_units)
    if view.audit is not None:
        out["audit_problems"] = float(len(view.audit.problems))
        for name in LIFECYCLE_METRICS:
            if name in view.audit.lifecycle:
                out[name] = float(view.audit.lifecycle[name])
    return out
