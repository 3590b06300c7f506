"""Running the engine: in this process (one worker) or in N spawned processes, merged exactly.

Worker k of N generates the scenario's schedule itself, chunk by chunk as its engine consumes it,
and takes its slice (rows ≡ k mod N), so only a small spec travels to it and no worker holds the
whole sale; it sends back its :class:`~simulator.load.tally.Tally` (histograms and
counters, a size independent of its orders), which the parent merges by adding counts before any
percentile is computed: exact, and no per-order array crosses the process boundary: when the run
keeps per-order records (``WorkerSpec.orders_path``) each worker streams its own part to disk
(:class:`~simulator.records.OrderStream`). SIGINT to the parent is passed to the
workers, which stop dispatching, drain briefly and report as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from simulator.load.engine import (
    CHUNK_ROWS,
    EngineConfig,
    Progress,
    RunResult,
    TargetUnreachableError,
)
from simulator.load.journey import make_run
from simulator.load.tally import Tally
from simulator.load.transport import Endpoint, Transport
from simulator.records import OrderStream, stream_part
from simulator.scenario import Scenario
from simulator.schedule import build_schedule

PROGRESS_EVERY_S = 0.5
START_MARGIN_S = 0.5  # workers start together this long after the last one is ready


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one worker needs (picklable, no argparse anywhere)."""

    scenario: Scenario
    duration_s: float | None
    endpoint: Endpoint
    transport: str
    connections: int
    engine: EngineConfig
    workers: int = 1
    orders_path: str | None = None  # stream the per-attempt records here (a part per worker)
    skus: tuple[str, ...] = ()


@dataclass(slots=True)
class Totals:
    """What a run (one worker or all merged) hands back: its tally, not its per-order arrays."""

    tally: Tally
    partial: bool
    wall_s: float
    recorder_bytes: int  # the largest worker's recording memory (its attempts' slots)


def totals(result: RunResult) -> Totals:
    """A finished run's :class:`Totals`."""
    return Totals(result.tally, result.partial, result.wall_s, result.slot_bytes)


def open_stream(spec: WorkerSpec) -> OrderStream | None:
    """This worker's orders stream (its own part with several workers), when one is asked for."""
    if spec.orders_path is None:
        return None
    path = stream_part(Path(spec.orders_path), spec.engine.worker, spec.workers)
    return OrderStream(path, spec.skus)


def _run_streaming(
    spec: WorkerSpec, report: Callable[[Progress], None] | None, start_at: float | None
) -> Totals:
    stream = open_stream(spec)
    if stream is None:
        return totals(_uvloop_run(_drive(spec, report, start_at, None)))
    with stream:
        return totals(_uvloop_run(_drive(spec, report, start_at, stream)))


def make_transport(spec: WorkerSpec) -> Transport:
    """The transport the spec names, for this worker's share of the connections."""
    sc = spec.scenario
    args = (
        spec.endpoint,
        sc.target,
        sc.products,
        spec.connections,
        spec.engine.timeout_s,
        sc.run.connect_timeout_s,
        sc.buyers.data,
    )
    if spec.transport == "aiohttp":
        from simulator.load.transport.aio import AiohttpTransport

        return AiohttpTransport(*args)
    from simulator.load.transport.lean import LeanTransport

    return LeanTransport(*args, retry_after=spec.engine.retry.retries() > 0)


def schedule_slice(spec: WorkerSpec) -> Iterator[np.ndarray[Any, Any]]:
    """Worker k of N's slice of the schedule, generated chunk by chunk as it is consumed."""
    schedule = build_schedule(spec.scenario, spec.duration_s)
    return schedule.chunks(CHUNK_ROWS, spec.engine.worker, spec.workers)


async def _drive(
    spec: WorkerSpec,
    report: Callable[[Progress], None] | None,
    start_at_wall_s: float | None,
    records: OrderStream | None,
) -> RunResult:
    loop = asyncio.get_running_loop()
    sc = spec.scenario
    run = make_run(
        schedule_slice(spec),
        make_transport(spec),
        spec.engine,
        records,
        sc,
        spec.endpoint,
        spec.duration_s,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, run.stop)
    ticker: asyncio.Task[None] | None = None
    if report is not None:

        async def tick() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                report(run.progress())

        ticker = loop.create_task(tick())
    try:
        return await run.execute(start_at_wall_s)
    finally:
        if ticker is not None:
            ticker.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _uvloop_run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


def run_local(spec: WorkerSpec, report: Callable[[Progress], None] | None = None) -> Totals:
    """The whole schedule on one event loop in this process."""
    return _run_streaming(spec, report, None)


def _worker_main(spec: WorkerSpec, k: int, out: Any, start: Any, progress: bool) -> None:
    """Entry point of worker process k: wait for the start, run its slice, send back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop's own handler is installed
    # its own retry jitter stream and record numbers
    spec = replace(spec, engine=replace(spec.engine, worker=k, workers=spec.workers))
    try:
        out.put(("ready", k, None))
        start_at = start.get()
        report = (lambda p: out.put(("progress", k, p))) if progress else None
        out.put(("result", k, _run_streaming(spec, report, start_at)))
    except TargetUnreachableError as exc:
        out.put(("error", k, str(exc)))
    except BaseException as exc:
        out.put(("error", k, f"{type(exc).__name__}: {exc}"))


def run_workers(
    spec: WorkerSpec, report: Callable[[Progress], None] | None = None
) -> tuple[Totals, list[str]]:
    """N worker processes, each its slice; returns the merged result and worker errors."""
    build_schedule(spec.scenario, spec.duration_s)  # TooLargeError now, not in N workers
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    starts = [ctx.Queue() for _ in range(spec.workers)]
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(spec, k, out, starts[k], report is not None),
            daemon=True,
        )
        for k in range(spec.workers)
    ]
    interrupted = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, forward)
    results: dict[int, Totals] = {}
    errors: list[str] = []
    latest: dict[int, Progress] = {}
    try:
        for p in procs:
            p.start()
        ready = 0
        started = False
        while len(results) + len(errors) < spec.workers:
            try:
                kind, k, payload = out.get(timeout=0.25)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead and out.empty():
                    errors.extend(f"worker died (exit {p.exitcode})" for p in dead)
                    break
                continue
            if kind == "ready":
                ready += 1
                if ready == spec.workers and not started:
                    started = True
                    at = time.time() + START_MARGIN_S
                    for q in starts:
                        q.put(at)
            elif kind == "progress" and report is not None:
                latest[k] = payload
                report(_combine(list(latest.values())))
            elif kind == "result":
                results[k] = payload
            elif kind == "error":
                errors.append(f"worker {k}: {payload}")
                if not started:  # no point waiting for the start: release the others
                    for q in starts:
                        q.put(time.time())
                    started = True
        for p in procs:
            p.join(timeout=5.0)
    finally:
        signal.signal(signal.SIGINT, previous)
        for p in procs:
            if p.is_alive():
                p.kill()
    parts = [results[k] for k in sorted(results)]
    if not parts:
        raise TargetUnreachableError("; ".join(errors) or "no worker finished")
    tally = Tally()
    for part in parts:
        tally.merge(part.tally)
    merged = Totals(
        tally=tally,
        partial=interrupted or any(part.partial for part in parts) or len(parts) < spec.workers,
        wall_s=max(part.wall_s for part in parts),
        recorder_bytes=max(part.recorder_bytes for part in parts),
    )
    return merged, errors


def _combine(parts: list[Progress]) -> Progress:
    """One progress view from the workers' latest ones (sums; p99 is the workers' worst)."""
    outcomes: dict[str, int] = {}
    for p in parts:
        for name, n in p.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + n
    p99s = [p.p99_ms for p in parts if p.p99_ms == p.p99_ms]
    return Progress(
        elapsed_s=max(p.elapsed_s for p in parts),
        scheduled=sum(p.scheduled for p in parts),
        sent=sum(p.sent for p in parts),
        done=sum(p.done for p in parts),
        in_flight=sum(p.in_flight for p in parts),
        queued=sum(p.queued for p in parts),
        target_rate_per_s=sum(p.target_rate_per_s for p in parts),
        achieved_rate_per_s=sum(p.achieved_rate_per_s for p in parts),
        p99_ms=max(p99s) if p99s else float("nan"),
        outcomes=outcomes,
        confirmed_units=sum(p.confirmed_units for p in parts),
    )
