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

import numpy as np
import numpy.typing as npt

from simulator.audit import ServerState
from simulator.audit_sources import read_records
from simulator.load.target import Target
from simulator.locust import results as res
from simulator.locust.plan import RunPlan, scan_slices
from simulator.results import write_report
from simulator.scenario import HttpAudit, Scenario

log = logging.getLogger("flashsale")


def ledger_ids(server: ServerState) -> npt.NDArray[np.int64]:
    """The order ids of the storefront's ledger that are schedule order numbers (the ids the
    master must tell apart for a worker that never reported); bounded by what was sold."""
    if not server.ledger:
        return np.zeros(0, dtype=np.int64)
    ids = [int(e[0]) for e in server.ledger if str(e[0]).isdigit() and len(str(e[0])) < 19]
    return np.unique(np.array(ids, dtype=np.int64))


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
    """Check the workers' results against their slices (one streamed pass over the schedule),
    merge their tallies, build the report, print it, save it.

    ``out_dir`` "" saves nothing; a directory that cannot be written is logged, not raised (the
    report is printed already). Per-attempt records are not here: with ``--flashsale-orders``
    each worker streamed its own part as it went.
    """
    scans = scan_slices(scenario, plan, ledger_ids(server))
    merged = res.merge_workers(scans, plan, results)
    report = res.build_report(scenario, plan, merged, server, facts)
    print(res.render(report), flush=True)
    if plan.orders:
        print(f"flashsale: per-attempt records streamed by the workers to {plan.orders} "
              f"(a part per worker: {plan.orders}.w0, … with several)", flush=True)  # fmt: skip
    if out_dir:
        try:
            path = write_report(report, Path(out_dir))
            print(f"flashsale: report saved to {path}", flush=True)
        except OSError as exc:
            log.error("flashsale: cannot save the report in %s: %s", out_dir, exc)
    return report
