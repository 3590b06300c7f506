"""What a worker records, what it sends to the master, and the master's merged report.

A worker writes each order's times and outcome into preallocated arrays (:class:`Recorder`);
at the end it turns them into one plain dict (:func:`worker_result`: counts, a bitmap of the
rows it sent, latency histograms, the orders it saw confirmed) that travels as a Locust message.
The master merges the dicts of all workers with the schedule into the report
(:func:`merge_report`), including the oversell audit (:func:`audit`). No locust import here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.locust.plan import RunPlan, duplicate_check
from simulator.scenario import Scenario
from simulator.schedule import Orders

#: outcome codes stored per order; index = code
OUTCOMES = (
    "not_sent",
    "confirmed",
    "sold_out",
    "throttled",
    "rejected",
    "error",
    "timeout",
    "cancelled",  # the user was stopped while the order was in flight
)
NOT_SENT, CONFIRMED, SOLD_OUT, THROTTLED, REJECTED, ERROR, TIMEOUT, CANCELLED = range(8)
#: outcome name (as in a scenario's status map) → code
CODE_OF = {name: code for code, name in enumerate(OUTCOMES)}

# latency histograms: 100 log bins a decade from 1 µs to 1000 s (≤ 2.3 % relative error)
_BINS_PER_DECADE = 100
_FIRST_DECADE = 3  # 10³ ns
_N_BINS = 9 * _BINS_PER_DECADE
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Recorder:
    """One worker's results, indexed by its slice's row number; no per-order objects.

    ``sent_ns``/``done_ns`` are nanoseconds from the worker's sale start (−1 = not yet);
    ``status`` is the last HTTP status (0 = none); ``outcome`` a code from :data:`OUTCOMES`.
    The counters (``sends``, ``counts``, confirmed orders) are live: the web UI reads them.
    """

    __slots__ = (
        "attempts",
        "confirmed",
        "confirmed_units",
        "counts",
        "done_ns",
        "n",
        "outcome",
        "sends",
        "sent_ns",
        "status",
    )

    def __init__(self, n: int, n_products: int) -> None:
        self.n = n
        self.sent_ns = np.full(n, -1, dtype=np.int64)
        self.done_ns = np.full(n, -1, dtype=np.int64)
        self.status = np.zeros(n, dtype=np.int16)
        self.outcome = np.zeros(n, dtype=np.uint8)
        self.attempts = np.zeros(n, dtype=np.uint8)
        self.sends = 0  # HTTP requests sent, retries included
        self.counts = [0] * len(OUTCOMES)
        self.counts[NOT_SENT] = n
        self.confirmed: dict[int, tuple[int, int]] = {}  # order number → (product, qty)
        self.confirmed_units = [0] * n_products

    def record(
        self, i: int, sent_ns: int, done_ns: int, status: int, code: int, attempts: int
    ) -> None:
        """Row ``i``'s final outcome (called once per row)."""
        self.sent_ns[i] = sent_ns
        self.done_ns[i] = done_ns
        self.status[i] = status
        self.outcome[i] = code
        self.attempts[i] = min(attempts, 255)
        counts = self.counts
        counts[NOT_SENT] -= 1
        counts[code] += 1

    def confirm(self, order: int, product: int, qty: int) -> None:
        """An order the storefront confirmed (a double click's replay counts once)."""
        if order not in self.confirmed:
            self.confirmed[order] = (product, qty)
            self.confirmed_units[product] += qty

    def live(self, skus: Sequence[str]) -> dict[str, Any]:
        """Counters so far, as a small plain dict (sent to the master every few seconds)."""
        return {
            "sends": self.sends,
            "outcomes": dict(zip(OUTCOMES, self.counts, strict=True)),
            "confirmed_units": dict(zip(skus, self.confirmed_units, strict=True)),
        }


# ---------------------------------------------------------------------------------------------
# Histograms


def histogram(values_ns: npt.NDArray[np.int64]) -> dict[str, list[int]]:
    """A sparse log histogram of durations (ns): {"bins": [...], "counts": [...]}."""
    v = np.maximum(values_ns.astype(np.float64), 1.0)
    idx = np.floor(np.log10(v) * _BINS_PER_DECADE).astype(np.int64) - _FIRST_DECADE * 100
    idx = np.clip(idx, 0, _N_BINS - 1)
    counts = np.bincount(idx, minlength=_N_BINS)
    nz = np.flatnonzero(counts)
    return {"bins": nz.tolist(), "counts": counts[nz].tolist()}


def merge_histograms(parts: Sequence[Mapping[str, Sequence[int]]]) -> npt.NDArray[np.int64]:
    """Dense sum of sparse histograms."""
    total = np.zeros(_N_BINS, dtype=np.int64)
    for h in parts:
        np.add.at(total, np.asarray(h["bins"], dtype=np.int64), np.asarray(h["counts"]))
    return total


def percentiles_ms(dense: npt.NDArray[np.int64], max_ns: int) -> dict[str, float | int]:
    """p50/p90/p99/p99.9 (upper bin edges, ms) and the exact max of a dense histogram."""
    n = int(dense.sum())
    out: dict[str, float | int] = {"count": n}
    if n == 0:
        return out
    cum = np.cumsum(dense)
    for p in PERCENTILES:
        k = int(np.searchsorted(cum, math.ceil(p / 100 * n)))
        edge_ns = 10 ** ((k + 1 + _FIRST_DECADE * 100) / _BINS_PER_DECADE)
        out[f"p{p:g}"] = round(min(edge_ns, max_ns) / 1e6, 3)
    out["max"] = round(max_ns / 1e6, 3)
    return out


# ---------------------------------------------------------------------------------------------
# Worker → master


def worker_result(
    rec: Recorder, intended_ns: Sequence[int], worker: int, plan: RunPlan
) -> dict[str, Any]:
    """Everything the master needs from one worker, as a plain dict (a Locust message)."""
    t = np.asarray(intended_ns, dtype=np.int64)
    sent = rec.sent_ns >= 0
    done = rec.done_ns >= 0
    intended = rec.done_ns[done] - t[done]
    service = rec.done_ns[done] - rec.sent_ns[done]
    lag = rec.sent_ns[sent] - t[sent]
    items = sorted(rec.confirmed.items())
    return {
        "run_id": plan.run_id,
        "worker": worker,
        "slices": plan.slices,
        "slice_orders": rec.n,
        "sends": rec.sends,
        "sent": int(np.count_nonzero(sent)),
        "outcomes": dict(zip(OUTCOMES, rec.counts, strict=True)),
        "sent_bitmap": np.packbits(sent).tobytes(),
        "hist": {
            "intended": histogram(intended),
            "service": histogram(service),
            "send_lag": histogram(np.maximum(lag, 0)),
        },
        "max_ns": {
            "intended": int(intended.max()) if intended.size else 0,
            "service": int(service.max()) if service.size else 0,
            "send_lag": int(lag.max()) if lag.size else 0,
        },
        "confirmed": [[o, p, q] for o, (p, q) in items],
    }


# ---------------------------------------------------------------------------------------------
# The audit


def audit(
    stocks: Mapping[str, int],
    inventory: Mapping[str, Any] | None,
    ledger: Mapping[str, Any] | None,
    client_units: Mapping[str, int],
    client_ids: set[str],
) -> dict[str, Any]:
    """Oversell three ways: initial stock, the server's counters and ledger, client confirmations.

    oversell_units(sku) = max(0, max(server sold, ledger units, client-confirmed units) −
    initial stock). Every disagreement between the three is listed, never hidden: a confirmation
    the ledger lacks is a phantom sale; a ledger entry no client saw confirmed is an answer lost
    (a timeout or a stopped run).
    """
    skus_server: Mapping[str, Any] = (inventory or {}).get("skus", {})
    per_sku: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    oversell = 0
    for sku, initial in stocks.items():
        srv = skus_server.get(sku, {})
        sold = int(srv.get("sold", 0))
        ledger_units = int(srv.get("ledger_units", sold))
        client = int(client_units.get(sku, 0))
        over = max(0, max(sold, ledger_units, client) - initial)
        oversell += over
        per_sku[sku] = {
            "initial": initial,
            "server_initial": srv.get("initial"),
            "sold": sold,
            "ledger_units": ledger_units,
            "ledger_orders": srv.get("ledger_orders"),
            "remaining": srv.get("remaining"),
            "client_confirmed_units": client,
            "oversell_units": over,
        }
        if inventory is not None and srv.get("initial") not in (None, initial):
            problems.append(f"{sku}: server started with {srv.get('initial')} units, not {initial}")
        if sold != ledger_units:
            problems.append(f"{sku}: server counts {sold} sold but its ledger has {ledger_units}")
        if client > ledger_units:
            problems.append(
                f"{sku}: clients saw {client} units confirmed, ledger has {ledger_units}"
            )
        if over:
            problems.append(f"{sku}: oversold by {over} units")
    out: dict[str, Any] = {
        "oversell_units": oversell,
        "per_sku": per_sku,
        "server_reachable": inventory is not None,
    }
    if ledger is not None:
        ids = {str(entry[0]) for entry in ledger.get("orders", [])}
        phantom = len(client_ids - ids)
        out["confirmed_not_in_ledger"] = phantom
        out["in_ledger_not_confirmed"] = len(ids - client_ids)
        if phantom:
            problems.append(f"{phantom} orders confirmed to clients are missing from the ledger")
    out["disagreements"] = problems
    out["ok"] = inventory is not None and not problems
    return out


# ---------------------------------------------------------------------------------------------
# Master: the merged report


def merge_report(
    scenario: Scenario,
    plan: RunPlan,
    rows: Orders,
    results: Mapping[int, Mapping[str, Any]],
    audit_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The run's report: orders per worker and in all, integrity checks, latency, the audit.

    ``rows`` is the whole schedule of the plan; ``results`` maps worker index → its
    :func:`worker_result`. A worker that never reported is listed under ``missing_workers``.
    """
    n = len(rows)
    sent_global = np.zeros(n, dtype=np.bool_)
    overlap = 0
    per_worker = []
    outcomes = dict.fromkeys(OUTCOMES, 0)
    sends = 0
    slice_total = 0
    for k in sorted(results):
        r = results[k]
        bits = np.unpackbits(np.frombuffer(r["sent_bitmap"], dtype=np.uint8))[: r["slice_orders"]]
        mine = np.arange(k, n, plan.slices)[: len(bits)]
        overlap += int(np.count_nonzero(sent_global[mine] & bits.astype(bool)))
        sent_global[mine] |= bits.astype(bool)
        slice_total += r["slice_orders"]
        sends += r["sends"]
        for name, c in r["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + c
        per_worker.append(
            {
                "worker": k,
                "slice_orders": r["slice_orders"],
                "expected_slice_orders": len(mine),
                "sent": r["sent"],
                "sends": r["sends"],
                "outcomes": r["outcomes"],
            }
        )
    missing = [k for k in range(plan.slices) if k not in results]
    sent = int(np.count_nonzero(sent_global))
    latency = {}
    for kind in ("intended", "service", "send_lag"):
        dense = merge_histograms([r["hist"][kind] for r in results.values()])
        max_ns = max((r["max_ns"][kind] for r in results.values()), default=0)
        latency[kind] = percentiles_ms(dense, max_ns)
    checks: dict[str, Any] = {
        "all_workers_reported": not missing,
        "slices_add_up": not missing and slice_total == n,
        "slices_match_schedule": all(
            w["slice_orders"] == w["expected_slice_orders"] for w in per_worker
        ),
        "rows_sent_twice": overlap,
        "outcomes_add_up": sum(outcomes.values()) == slice_total,
        **duplicate_check(rows, sent_global),
    }
    checks["ok"] = bool(
        checks["all_workers_reported"]
        and checks["slices_add_up"]
        and checks["slices_match_schedule"]
        and overlap == 0
        and checks["outcomes_add_up"]
        and checks["unintended_repeats"] == 0
    )
    return {
        "tool": "flashsale locust",
        "scenario": scenario.name,
        "scale": plan.scale,
        "duration_s": plan.duration_s or scenario.duration_s,
        "run_id": plan.run_id,
        "workers": plan.slices,
        "missing_workers": missing,
        "orders": {
            "scheduled": n,
            "sent": sent,
            "not_sent": n - sent,
            "requests": sends,
            "outcomes": outcomes,
            "per_worker": per_worker,
        },
        "checks": checks,
        "latency_ms": latency,
        "audit": dict(audit_result) if audit_result is not None else None,
    }


def client_confirmations(
    results: Mapping[int, Mapping[str, Any]], skus: Sequence[str]
) -> tuple[dict[str, int], set[str]]:
    """Units per SKU and order ids the clients saw confirmed, each order counted once.

    An order and its double click may fall to different workers, so both may report it.
    """
    seen: dict[int, tuple[int, int]] = {}
    for r in results.values():
        for order, product, qty in r["confirmed"]:
            seen.setdefault(int(order), (int(product), int(qty)))
    units = dict.fromkeys(skus, 0)
    for product, qty in seen.values():
        units[skus[product]] += qty
    return units, {str(o) for o in seen}


def render(report: Mapping[str, Any]) -> str:
    """The report as a few lines of text for the terminal."""
    o = report["orders"]
    c = report["checks"]
    lat = report["latency_ms"]
    lines = [
        f"flashsale locust: {report['scenario']} (scale {report['scale']:g}, "
        f"{report['workers']} worker{'s' if report['workers'] != 1 else ''})",
        f"  orders     scheduled {o['scheduled']:,}  sent {o['sent']:,}  "
        f"not sent {o['not_sent']:,}  requests {o['requests']:,}",
        "  outcomes   " + "  ".join(f"{k} {v:,}" for k, v in o["outcomes"].items() if v),
    ]
    for w in o["per_worker"]:
        lines.append(
            f"  worker {w['worker']}   slice {w['slice_orders']:,}  sent {w['sent']:,}  "
            f"requests {w['sends']:,}"
        )
    for kind in ("intended", "service"):
        p = lat[kind]
        if p.get("count"):
            lines.append(
                f"  latency {kind:<9} p50 {p['p50']:.1f} ms  p99 {p['p99']:.1f} ms  "
                f"max {p['max']:.1f} ms"
            )
    lines.append(
        f"  checks     {'ok' if c['ok'] else 'FAILED'}  (rows sent twice {c['rows_sent_twice']}, "
        f"double clicks {c['double_clicks_sent']}, unintended repeats {c['unintended_repeats']}"
        + (f", missing workers {report['missing_workers']}" if report["missing_workers"] else "")
        + ")"
    )
    a = report.get("audit")
    if a is None:
        lines.append("  audit      not available")
    else:
        verdict = "ok" if a["ok"] else "PROBLEMS"
        lines.append(f"  audit      {verdict}: oversell {a['oversell_units']} units")
        lines.extend(f"             {p}" for p in a["disagreements"])
    return "\n".join(lines)
