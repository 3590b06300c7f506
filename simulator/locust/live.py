"""The live view of a Locust run (the Flash sale page and tab): pure functions, no locust import.

A node's counters come from its recorder (:func:`slice_counters`); the master adds up the
workers' (:func:`merge_counters`); :func:`view` turns them, the storefront's inventory and a
:class:`Snapshot` of the node into the JSON the page polls. Tested as plain functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.audit import ClientView, ServerState, audit_view
from simulator.load.recorder import Recorder
from simulator.locust.plan import RunPlan, demand_rate
from simulator.outcomes import OUTCOME_NAMES
from simulator.results import confirmations
from simulator.scenario import Scenario
from simulator.schedule import Orders, build_schedule


def confirmed_units(rows: Orders, rec: Recorder, skus: Sequence[str]) -> dict[str, int]:
    """Units confirmed so far per SKU, each order id once (:func:`simulator.results.confirmations`,
    the one count the summary, the audit and the engine's progress use too)."""
    units = confirmations(rows, rec).units_per_product(len(skus))
    return {sku: int(units[i]) for i, sku in enumerate(skus)}


def slice_counters(rows: Orders, rec: Recorder, skus: Sequence[str]) -> dict[str, Any]:
    """Requests sent, rows by outcome so far and client-confirmed units of one slice.

    Vectorised over the arrays; a few ms for a million orders (the web UI asks once a second,
    Locust's worker report every few seconds). A row in flight still counts as not sent.
    """
    m = rec.n_attempts
    counts = np.bincount(rec.row_outcomes(), minlength=len(OUTCOME_NAMES))
    return {
        "sends": int(np.count_nonzero(rec.sent_ns[:m] >= 0)),
        "outcomes": {name: int(counts[i]) for i, name in enumerate(OUTCOME_NAMES)},
        "confirmed_units": confirmed_units(rows, rec, skus),
    }


def merge_counters(parts: Iterable[Mapping[str, Any]], skus: Sequence[str]) -> dict[str, Any]:
    """The counters of several slices added up (all zero without any)."""
    out: dict[str, Any] = {
        "sends": 0,
        "outcomes": dict.fromkeys(OUTCOME_NAMES, 0),
        "confirmed_units": dict.fromkeys(skus, 0),
    }
    for p in parts:
        out["sends"] += p["sends"]
        for k, v in p["outcomes"].items():
            out["outcomes"][k] += v
        for k, v in p["confirmed_units"].items():
            out["confirmed_units"][k] = out["confirmed_units"].get(k, 0) + v
    return out


def all_answered(parts: Sequence[Mapping[str, Any]], slices: int) -> bool:
    """Whether every slice has reported and none has a row left unanswered."""
    return len(parts) >= slices and all(p["outcomes"]["not_sent"] == 0 for p in parts)


def scheduled_per_s(scenario: Scenario, plan: RunPlan) -> list[int]:
    """Orders scheduled in each second of the sale (the whole schedule, all workers)."""
    schedule = build_schedule(scenario.with_scale(plan.scale), plan.duration_s)
    seconds = int(np.ceil(schedule.duration_s))
    counts = np.zeros(seconds, dtype=np.int64)
    for chunk in schedule.chunks():
        counts += np.bincount(chunk["t_ns"] // 1_000_000_000, minlength=seconds)[:seconds]
    return [int(c) for c in counts]


def live_audit(
    scenario: Scenario, counters: Mapping[str, Any], inventory: dict[str, Any] | None
) -> dict[str, Any]:
    """The audit during a run: units and counters only, no ledger.

    The clients' count and the server's are a moment apart: order by order they would look like
    disagreements, so the ledger checks wait for the finished run's report.
    """
    state = ServerState(inventory, None, () if inventory else ("no /inventory",))
    return audit_view(
        ClientView.of_units(dict(counters["confirmed_units"])),
        tuple(p.id for p in scenario.products),
        scenario.stocks(),
        scenario.per_buyer_limits(),
        state,
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a node knows right now, for :func:`view`."""

    host: str | None
    state: str  # Locust's runner state
    users: int
    sale_s: float
    workers: int | None
    started_unix: float | None  # wall time of the sale's t = 0
    now_unix: float
    achieved_per_s: Mapping[int, int]  # Locust's requests per wall-clock second (intended)
    counters: Mapping[str, Any]
    inventory: dict[str, Any] | None
    scheduled_per_s: list[int]
    running: bool  # a slice of this node is sending, or a run is being collected
    errors: tuple[str, ...] = ()
    report: Mapping[str, Any] | None = None


def view(scenario: Scenario, snap: Snapshot) -> dict[str, Any]:
    """Everything the Flash sale page shows, as one JSON-able dict."""
    sale_s = snap.sale_s
    grid = np.linspace(0.0, sale_s, min(601, max(2, round(sale_s / 0.05) + 1)))
    achieved_t: list[float] = []
    achieved: list[int] = []
    if snap.started_unix is not None:
        for sec, count in sorted(snap.achieved_per_s.items()):
            achieved_t.append(round(sec - snap.started_unix, 3))
            achieved.append(count)
    if snap.report is not None and snap.report.get("audit") and not snap.running:
        audit = snap.report["audit"]  # the finished run's full three-way audit
    else:
        audit = live_audit(scenario, snap.counters, snap.inventory)
    elapsed = None if snap.started_unix is None else snap.now_unix - snap.started_unix
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "scale": scenario.scale,
        "host": snap.host,
        "state": snap.state,
        "elapsed_s": elapsed,
        "sale_s": sale_s,
        "workers": snap.workers,
        "users": snap.users,
        "demand": {"t": grid.tolist(), "rate": demand_rate(scenario, grid).tolist()},
        "scheduled_per_s": snap.scheduled_per_s,
        "achieved": {"t": achieved_t, "rate": achieved},
        "counters": dict(snap.counters),
        "audit": audit,
        "errors": list(snap.errors),
        "report": snap.report,
    }
