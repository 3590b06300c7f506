"""The live view of a Locust run (the Flash sale page and tab): pure functions, no locust import.

A node's counters come from its slice's :class:`SliceCounts` (folded from the same batches of
finished attempts as its tally); the master adds up the workers' (:func:`merge_counters`);
:func:`view` turns them, the storefront's inventory and a :class:`Snapshot` of the node into the
JSON the page polls. Tested as plain functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.audit import ClientView, ServerState, audit_view
from simulator.load.tally import first_confirmed
from simulator.locust.plan import RunPlan, demand_rate
from simulator.outcomes import CONFIRMED, OUTCOME_NAMES
from simulator.scenario import Scenario
from simulator.schedule import FLAG_DUPLICATE, build_schedule

I64 = npt.NDArray[np.int64]


class SliceCounts:
    """What one slice has done so far, folded batch by batch from its finished attempts (the
    batches that also go into its tally): sends, orders decided per outcome, rows sent (and
    double clicks among them) and the confirmed orders (bounded by the stock).

    The live view's counters (:meth:`counters`) and the per-worker line of the report come from
    here; percentiles and timelines come from the tally.
    """

    __slots__ = ("_c", "double_clicks_sent", "outcomes", "rows_sent", "sends")

    def __init__(self) -> None:
        self.sends = 0  # attempts written to a connection
        self.rows_sent = 0  # schedule rows whose first attempt was sent
        self.double_clicks_sent = 0  # among them, double clicks (FLAG_DUPLICATE)
        self.outcomes = np.zeros(len(OUTCOME_NAMES), dtype=np.int64)  # orders decided
        self._c: list[tuple[I64, ...]] = []  # confirmed (order, product, qty, done)

    def fold(self, batch: Mapping[str, npt.NDArray[Any]]) -> None:
        """Count a batch of finished attempts (the engine's slot fields)."""
        sent = np.asarray(batch["sent_ns"]) >= 0
        first = sent & (np.asarray(batch["try"]) == 1)
        self.sends += int(np.count_nonzero(sent))
        self.rows_sent += int(np.count_nonzero(first))
        dup = (np.asarray(batch["flags"]) & FLAG_DUPLICATE) != 0
        self.double_clicks_sent += int(np.count_nonzero(first & dup))
        outcome = np.asarray(batch["outcome"])
        final = np.asarray(batch["final"], dtype=np.bool_)
        self.outcomes += np.bincount(outcome[final], minlength=len(OUTCOME_NAMES))[
            : len(OUTCOME_NAMES)
        ]
        ok = outcome == CONFIRMED
        if ok.any():
            self._c.append(
                tuple(
                    np.asarray(batch[k])[ok].astype(np.int64)
                    for k in ("order", "sku", "qty", "done_ns")
                )
            )

    def add_dropped_retry(self, outcome: int) -> None:
        """An order whose retry was dropped (a stop) ends on its previous answer."""
        self.outcomes[outcome] += 1

    def confirmed_units(self, skus: Sequence[str]) -> dict[str, int]:
        """Units confirmed so far per SKU, each order id once (the one rule,
        :func:`simulator.load.tally.first_confirmed`, as the report and the audit count)."""
        if not self._c:
            return dict.fromkeys(skus, 0)
        if len(self._c) > 1:  # keep one array each: cheap to call again
            self._c = [tuple(np.concatenate(p) for p in zip(*self._c, strict=True))]
        units = first_confirmed(*self._c[0]).units_per_product(len(skus))
        return {sku: int(units[i]) for i, sku in enumerate(skus)}

    def counters(self, skus: Sequence[str], settled: bool) -> dict[str, Any]:
        """The slice's live counters (JSON-able): sends, orders decided by outcome, confirmed
        units per SKU, and whether the slice is settled (every row taken and decided)."""
        return {
            "sends": self.sends,
            "outcomes": {name: int(self.outcomes[i]) for i, name in enumerate(OUTCOME_NAMES)},
            "confirmed_units": self.confirmed_units(skus),
            "settled": settled,
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
    """Whether every slice has reported and each has taken and decided all its rows."""
    return len(parts) >= slices and all(p.get("settled", False) for p in parts)


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
