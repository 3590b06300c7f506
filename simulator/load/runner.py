"""One ``flashsale run`` from start to report: target, preflight, engine, audit, report dict.

The command module builds a :class:`RunConfig` from its arguments and calls :func:`execute`;
rendering (terminal, JSON) is the caller's business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.audit import ServerState, audit
from simulator.errors import UsageError
from simulator.load.engine import EngineConfig, Progress, TargetUnreachableError
from simulator.load.target import Target, TargetError
from simulator.load.transport import parse_endpoint
from simulator.load.workers import WorkerSpec, run_local, run_workers
from simulator.records import save_orders
from simulator.results import REPORT_VERSION, summarize, write_report
from simulator.scenario import Scenario

log = logging.getLogger("flashsale")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The choices of one run (command-line values; None = the scenario's own)."""

    scenario: Scenario
    duration_s: float | None = None
    target_url: str | None = None
    backend: str | None = None
    workers: int | None = None
    connections: int | None = None
    transport: str = "lean"
    out_dir: Path | None = None
    audit: bool = True
    reset: bool = True  # POST the target's reset path first (off: a user's live storefront)
    busy_wait: bool = False  # spin before each order instead of sleeping on a timerfd
    ca_file: str | None = None  # https target: trust the CAs in this PEM file
    insecure: bool = False  # https target: do not check its certificate


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """The report of a run, where it was written, and the exit code it earns."""

    report: dict[str, Any]
    path: Path | None
    exit_code: int


def prepare_target(target: Target, reset_path: str, reset: bool) -> list[str]:
    """Check that the target answers HTTP, then reset it; the run's notes.

    A :class:`~simulator.load.target.TargetError` stops the run before it starts. A target that
    does not answer, or a reset that fails, is a note and a warning on stderr (the run goes on:
    a frozen target shows in the latencies); a silent target is not asked to reset.
    """
    notes: list[str] = []
    silent = target.check_reachable()
    if silent is not None:
        notes.append(silent)
        log.warning("flashsale: warning: %s", silent)
    if not reset:
        notes.append("reset: skipped on request; the audit compares against the inventory as found")
    elif silent is not None:
        notes.append(
            "reset: not asked (the target did not answer); the audit compares against "
            "the inventory as found"
        )
    else:
        done = target.reset(reset_path)
        notes.append(done.note)
        if not done.ok:
            log.warning("flashsale: warning: %s", done.note)
    return notes


@contextlib.contextmanager
def _target(config: RunConfig) -> Iterator[tuple[str, bool, str | None]]:
    """The target URL, whether it is the embedded storefront, and its backend."""
    sc = config.scenario
    url = config.target_url or sc.target.url
    if url is not None:
        if config.backend is not None:
            raise UsageError("--backend: only for the bundled storefront (no --target)")
        yield url, False, None
        return
    from simulator.load.launcher import StorefrontSpec, embedded_storefront

    backend = config.backend or sc.storefront.backend
    spec = StorefrontSpec(sc.source, sc.scale, backend)
    with embedded_storefront(spec) as base:
        yield base, True, backend


def execute(config: RunConfig, report: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Run the scenario at its target, audit it and build (and write) the report."""
    sc = config.scenario
    workers = config.workers or sc.run.workers
    connections = config.connections or sc.run.connections
    if config.transport not in ("lean", "aiohttp"):
        raise UsageError(f"--transport: unknown {config.transport!r} (lean or aiohttp)")
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with _target(config) as (url, embedded, backend):
        endpoint = parse_endpoint(url, ca_file=config.ca_file, verify=not config.insecure)
        target = Target(endpoint, sc.run.connect_timeout_s)
        notes = prepare_target(target, sc.target.reset_path, config.reset or embedded)
        engine = EngineConfig(
            timeout_s=sc.run.timeout_s,
            drain_s=sc.run.drain_s,
            retry=sc.buyers.retry,
            seed=sc.seed,
            status=sc.target.status,
            fine_timer=not config.busy_wait,
        )
        spec = WorkerSpec(
            scenario=sc,
            duration_s=config.duration_s,
            endpoint=endpoint,
            transport=config.transport,
            connections=max(1, math.ceil(connections / workers)),
            engine=engine,
            workers=workers,
        )
        errors: list[str] = []
        try:
            if workers == 1:
                result = run_local(spec, report)
            else:
                result, errors = run_workers(spec, report)
        except TargetUnreachableError as exc:
            raise TargetError(url, str(exc)) from None
        state = (
            target.server_state(sc.target.inventory_path, sc.target.ledger_path)
            if config.audit
            else ServerState(None, None, ("audit skipped",))
        )
    duration_s = config.duration_s or sc.duration_s
    skus = tuple(p.id for p in sc.products)
    summary = summarize(result.rows, result.recorder, duration_s, skus)
    audit_result = audit(
        result.rows, result.recorder, skus, sc.stocks(), sc.per_buyer_limits(), state
    )
    complete = not result.partial and not errors and audit_result["available"]
    exit_code = 0 if complete and audit_result["oversell_units"] == 0 else 1
    doc: dict[str, Any] = {
        "flashsale_report": REPORT_VERSION,
        "partial": result.partial,
        "complete": complete,
        "exit_code": exit_code,
        "scenario": {
            "name": sc.name,
            "file": sc.source,
            "scale": sc.scale,
            "seed": sc.seed,
            "duration_s": duration_s,
        },
        "target": {
            "url": url,
            "embedded": embedded,
            "backend": backend or audit_result.get("backend"),
            "transport": config.transport,
        },
        "run": {
            "started_at": started_at,
            "wall_s": round(result.wall_s, 3),
            "workers": workers,
            "connections": connections,
            "busy_wait": config.busy_wait,
            "timeout_s": sc.run.timeout_s,
            "drain_s": sc.run.drain_s,
            "recorder_bytes": result.recorder.nbytes(),
            "notes": notes,
            "worker_errors": errors,
        },
        **summary,
        "audit": audit_result,
    }
    path = None
    if config.out_dir is not None:
        path = write_report(doc, config.out_dir)
        save_orders(config.out_dir, result.rows, result.recorder, skus)
    return RunOutcome(doc, path, exit_code)
