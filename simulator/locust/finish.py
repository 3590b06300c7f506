"""The end of a Locust run on the master (or a stand-alone process): merge, audit, print, save.

Beside :mod:`simulator.locust.results`, whose :func:`~simulator.locust.results.build_report`
makes the report; this adds what is not pure: reading the target's state, the terminal and the
files. No locust import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulator.audit import ServerState
from simulator.audit_sources import read_records
from simulator.load.target import Target
from simulator.locust import results as res
from simulator.locust.plan import RunPlan
from simulator.records import save_orders
from simulator.results import write_report
from simulator.scenario import HttpAudit, Scenario
from simulator.schedule import Orders, build_schedule

log = logging.getLogger("flashsale")


def schedule_rows(scenario: Scenario, plan: RunPlan) -> Orders:
    """The whole schedule of ``plan`` (every worker's rows), in order."""
    return build_schedule(scenario.with_scale(plan.scale), plan.duration_s).materialize()


def server_state(scenario: Scenario, target: Target | None) -> ServerState:
    """The storefront's records after the run, from the scenario's ``[audit]`` source (the
    target's inventory and ledger by default; noted as missing without a host)."""
    if target is None and scenario.audit == HttpAudit():
        return ServerState(None, None, ("no host: the server's inventory was not read",))
    return read_records(scenario, target)


def finalize(
    scenario: Scenario,
    plan: RunPlan,
    results: Mapping[int, Mapping[str, Any]],
    server: ServerState,
    facts: res.RunFacts,
    out_dir: str,
) -> dict[str, Any]:
    """Merge the workers' results over the schedule, build the report, print it, save it.

    ``out_dir`` "" saves nothing; a directory that cannot be written is logged, not raised (the
    report is printed already).
    """
    merged = res.merge_workers(schedule_rows(scenario, plan), plan, results)
    report = res.build_report(scenario, plan, merged, server, facts)
    print(res.render(report), flush=True)
    if out_dir:
        try:
            path = write_report(report, Path(out_dir))
            skus = [p.id for p in scenario.products]
            save_orders(Path(out_dir), merged.rows, merged.recorder, skus)
            print(f"flashsale: report saved to {path} (orders.npz beside it)", flush=True)
        except OSError as exc:
            log.error("flashsale: cannot save the report in %s: %s", out_dir, exc)
    return report
