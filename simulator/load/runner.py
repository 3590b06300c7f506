"""One ``flashsale run`` from start to report: target, preflight, engine, audit, report dict.

The command module builds a :class:`RunConfig` from its arguments and calls :func:`execute`;
rendering (terminal, JSON) is the caller's business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from simulator.audit import ServerState, audit_settled, audit_view, client_view_of
from simulator.audit_sources import check_secrets, read_records
from simulator.errors import UsageError
from simulator.load.engine import EngineConfig, Progress, TargetUnreachableError
from simulator.load.livemetrics import MetricsConfig, MetricsServer, figures_of_tally, serving
from simulator.load.target import Target, TargetError
from simulator.load.transport import parse_endpoint
from simulator.load.workers import Totals, Watch, WorkerSpec, run_local, run_workers
from simulator.records import ORDERS_FILE, clear_stream, save_order_arrays
from simulator.report.document import Report
from simulator.report.sections import RunInfo, ScenarioInfo, StorefrontSettings, TargetInfo
from simulator.report.store import REPORT_FILE, report_bytes, write_bytes
from simulator.report.thresholds import Threshold, check, missing_reason
from simulator.results import measure_tally, run_report
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
    out_dir: Path | None = None  # report.json there
    orders_path: Path | None = None  # stream the per-attempt records there (records module)
    audit: bool = True
    reset: bool = True  # POST the target's reset path first (off: a user's live storefront)
    busy_wait: bool = False  # spin before each order instead of sleeping on a timerfd
    windows: bool = False  # answers never send due orders: the timer sends a window's together
    ca_file: str | None = None  # https target: trust the CAs in this PEM file
    insecure: bool = False  # https target: do not check its certificate
    thresholds: tuple[Threshold, ...] = ()  # parsed before the run; checked on its report
    metrics: MetricsConfig | None = None  # serve live Prometheus metrics (livemetrics)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """The report of a run, where it was written, the exit code it earns, and what could not
    be written (each problem names the file and where its content was kept, if anywhere)."""

    report: Report
    path: Path | None
    exit_code: int
    write_problems: tuple[str, ...] = ()


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
            raise UsageError(
                f"backend {config.backend!r}: only for the bundled storefront, and this run "
                f"goes to the target {url}",
                "backend",
            )
        yield url, False, None
        return
    from simulator.load.launcher import StorefrontSpec, embedded_storefront

    backend = config.backend or sc.storefront.backend
    spec = StorefrontSpec(sc.source, sc.scale, backend)
    with embedded_storefront(spec) as base:
        yield base, True, backend


def execute(config: RunConfig, report: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Run the scenario at its target, audit it and build (and write) the report.

    With ``config.metrics`` the live metrics are served from before the target is prepared
    (a port in use stops the run before it starts) until the report is written, plus the
    linger; their last figures are the report's.
    """
    sc = config.scenario
    skus = tuple(p.id for p in sc.products)
    stocks = sc.stocks()
    with serving(config.metrics, skus, [stocks[s] for s in skus]) as live:
        return _execute(config, report, live)


def _final_figures(live: MetricsServer, result: Totals, skus: tuple[str, ...]) -> None:
    """Serve the finished run's figures (its tally's: the report's). A stopped run's due count
    stays the last live one (the rows never reached were not due), so counters never go back."""
    t = result.tally
    due = t.scheduled
    if result.partial:
        due = min(t.scheduled, max(live.figures.due, t.sent - t.retries))
    live.publish(figures_of_tally(t, len(skus), due, result.wall_s))


def _execute(
    config: RunConfig, report: Callable[[Progress], None] | None, live: MetricsServer | None
) -> RunOutcome:
    sc = config.scenario
    workers = config.workers or sc.run.workers
    connections = config.connections or sc.run.connections
    if config.transport not in ("lean", "aiohttp"):
        raise UsageError(f"transport {config.transport!r}: unknown (lean or aiohttp)", "transport")
    if config.windows and config.busy_wait:
        raise UsageError(
            "windows are sent by the timerfd's wake-ups, and busy waiting uses none: "
            "choose one", "windows"
        )  # fmt: skip
    if config.orders_path is not None:
        if config.out_dir is not None and config.orders_path.parent == config.out_dir:
            with contextlib.suppress(OSError):  # the report's own write says why, if it fails
                config.out_dir.mkdir(parents=True, exist_ok=True)  # DIR/orders.npys
        try:
            clear_stream(config.orders_path)
        except (ValueError, OSError) as exc:
            raise UsageError(f"orders stream: {exc}", "orders_path") from None
    if config.audit:
        check_secrets(sc)  # an unset SHOP_DSN is found now, not after the sale
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
            fine_timer=not config.busy_wait,
            answers_send=not config.windows,
        )
        spec = WorkerSpec(
            scenario=sc,
            duration_s=config.duration_s,
            endpoint=endpoint,
            transport=config.transport,
            connections=max(1, math.ceil(connections / workers)),
            engine=engine,
            workers=workers,
            orders_path=None if config.orders_path is None else str(config.orders_path),
            skus=tuple(p.id for p in sc.products),
        )
        errors: list[str] = []
        watch = Watch(report, None if live is None else live.publish)
        try:
            if workers == 1:
                result = run_local(spec, watch)
            else:
                result, errors = run_workers(spec, watch)
        except TargetUnreachableError as exc:
            raise TargetError(url, str(exc)) from None
        if live is not None:
            _final_figures(live, result, spec.skus)
        state = read_records(sc, target) if config.audit else ServerState(None, None, (), "none")
    duration_s = config.duration_s or sc.duration_s
    skus = tuple(p.id for p in sc.products)
    summary = measure_tally(result.tally, duration_s, skus)
    audit_result = audit_view(
        client_view_of(result.tally, skus), skus, sc.stocks(), sc.per_buyer_limits(), state
    )
    storefront = None
    if embedded:
        s = sc.storefront
        storefront = StorefrontSettings(
            backend, s.service_time_median_ms, s.service_time_sigma, s.max_concurrency,
            s.hot_row, s.racy_delay_ms,
        )  # fmt: skip
    doc = run_report(
        summary,
        audit_result,
        scenario=ScenarioInfo(sc.name, sc.source, sc.scale, sc.seed, duration_s),
        target=TargetInfo(url, embedded, backend, config.transport, storefront),
        run=RunInfo(
            started_at=started_at,
            wall_s=round(result.wall_s, 3),
            workers=workers,
            connections=connections,
            busy_wait=config.busy_wait,
            windows=config.windows,
            timeout_s=sc.run.timeout_s,
            drain_s=sc.run.drain_s,
            recorder_bytes=result.recorder_bytes,
            notes=tuple(notes),
            worker_errors=tuple(errors),
        ),
        partial=result.partial,
        complete=not result.partial and not errors and audit_settled(audit_result),
    )
    if config.thresholds:
        doc = doc.with_thresholds(check(doc, config.thresholds))
    if config.out_dir is None:
        return RunOutcome(doc, None, doc.exit_code)
    path, problems = save_run(doc, config.out_dir, None)
    return RunOutcome(doc, path, doc.exit_code, problems)


def exit_reasons(doc: Report) -> list[str]:
    """Why a run's report earns exit 1, each reason a short clause (empty: it earns 0).

    The command prints them on one line: a CI log must say why a gate closed.
    """
    reasons: list[str] = []
    if doc.partial:
        lost = "; ".join(doc.run.worker_errors) or "stopped before the end of the schedule"
        reasons.append(f"the run did not complete: {lost}")
    elif doc.run.worker_errors:
        reasons.append(f"the run did not complete: {'; '.join(doc.run.worker_errors)}")
    audit_doc = doc.audit
    if audit_doc is not None and not audit_doc.available and audit_doc.source != "none":
        why = audit_doc.checks.get("unavailable_reason") or "; ".join(audit_doc.problems)
        reasons.append(f"the audit could not read the storefront's records: {why}")
    if doc.oversell_units:
        reasons.append(f"oversold by {doc.oversell_units:,} units")
    verdict = audit_doc.lifecycle_verdict() if audit_doc is not None else None
    if verdict is not None and not verdict[1]:
        reasons.append(f"reservations {verdict[0]}")
    failed = [t for t in doc.thresholds if not t.passed]
    for t in failed:
        metric = t.expr.split()[0]
        shown = (
            f"{metric} n/a: {missing_reason(metric, doc)}"
            if t.value is None
            else f"{metric} = {t.value:.6g}"
        )
        reasons.append(f"threshold failed: {t.expr} ({shown})")
    if doc.exit_code and not reasons:
        reasons.append("the run is incomplete")
    return reasons


def save_run(
    doc: Report, out_dir: Path, orders: dict[str, npt.NDArray[np.generic]] | None
) -> tuple[Path | None, tuple[str, ...]]:
    """Write report.json (once, atomically) and orders.npz (with ``orders``) into ``out_dir``.

    ``flashsale run`` passes no ``orders``: its records are streamed during the run instead.

    The report is serialised to bytes before any file is touched. A write that fails does not
    lose the run: the report goes to a file in the temporary directory instead, and each
    problem names the file it could not write and where the content was kept.
    Returns the report's path (None if it could not be written anywhere) and the problems.
    """
    data = report_bytes(doc)
    problems: list[str] = []
    path: Path | None = None
    try:
        path = write_bytes(data, out_dir / REPORT_FILE)
    except OSError as exc:
        where = out_dir / REPORT_FILE
        try:
            fd, kept = tempfile.mkstemp(prefix="flashsale-report-", suffix=".json")
            with open(fd, "wb") as f:
                f.write(data)
            path = Path(kept)
            problems.append(f"{where}: cannot write ({exc.strerror or exc}); report kept at {kept}")
        except OSError as again:
            problems.append(
                f"{where}: cannot write ({exc.strerror or exc}), nor a copy in the temporary "
                f"directory ({again.strerror or again}): the report is only in this output"
            )
    try:
        if orders is not None:
            save_order_arrays(out_dir, orders)
    except OSError as exc:
        problems.append(
            f"{out_dir / ORDERS_FILE}: cannot write ({exc.strerror or exc}); "
            "per-attempt records not saved"
        )
    return path, tuple(problems)
