"""Running the engine: in this process (one worker) or in N spawned processes, merged exactly.

Worker k of N generates the scenario's schedule itself, chunk by chunk as its engine consumes it,
and takes its slice (rows ≡ k mod N), so only a small spec travels to it and no worker holds the
whole sale; it sends back its :class:`~simulator.load.tally.Tally` (histograms and
counters, a size independent of its orders), which the parent merges by adding counts before any
percentile is computed: exact, and no per-order array crosses the process boundary: when the run
keeps per-order records (``WorkerSpec.orders_path``) each worker streams its own part to disk
(:class:`~simulator.records.OrderStream`). SIGINT to the parent is passed to the
workers, which stop dispatching, drain briefly and report as usual.

While they run, workers send a small snapshot a couple of times a second (:class:`Watch`: the
live progress and, with ``--metrics-port``, the :class:`~simulator.load.livemetrics.Figures`),
which the parent adds up. A worker that dies (killed, crashed) loses its tally; the parent
then accounts for its slice of the schedule (:func:`account_lost`), so that the report still
adds up to the schedule: rows due before the parent saw it die are errors whose fate is
unknown (reason "worker lost"; their ids go to the audit's ledger check), the rest not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
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
from simulator.load.livemetrics import Figures, RunFigures, total
from simulator.load.tally import Tally
from simulator.load.transport import Endpoint, Transport
from simulator.outcomes import ERROR, R_WORKER_LOST
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


@dataclass(frozen=True, slots=True)
class Watch:
    """Who gets a running engine's snapshots (every :data:`PROGRESS_EVERY_S`): the live
    display's :class:`Progress`, the metrics' :class:`Figures`; None = not wanted."""

    progress: Callable[[Progress], None] | None = None
    figures: Callable[[Figures], None] | None = None

    @property
    def wanted(self) -> bool:
        return self.progress is not None or self.figures is not None


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
    spec: WorkerSpec,
    watch: Watch,
    start_at: float | None,
    stop_asked: Callable[[], bool] | None = None,
) -> Totals:
    stream = open_stream(spec)
    if stream is None:
        return totals(_uvloop_run(_drive(spec, watch, start_at, None, stop_asked)))
    with stream:
        return totals(_uvloop_run(_drive(spec, watch, start_at, stream, stop_asked)))


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
    watch: Watch,
    start_at_wall_s: float | None,
    records: OrderStream | None,
    stop_asked: Callable[[], bool] | None = None,
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

    def stop() -> None:
        run.stop()  # at any moment, before its first tick too (it then ends at once)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in handlers:
        loop.add_signal_handler(sig, stop)
    if stop_asked is not None and stop_asked():  # asked before the handlers were there
        stop()
    ticker: asyncio.Task[None] | None = None
    if watch.wanted:
        figures_of = RunFigures(len(spec.scenario.products))

        async def tick() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                p = run.progress()
                if watch.progress is not None:
                    watch.progress(p)
                if watch.figures is not None:
                    watch.figures(figures_of(run, p))

        ticker = loop.create_task(tick())
    try:
        return await run.execute(start_at_wall_s)
    finally:
        if ticker is not None:
            ticker.cancel()
        for sig, previous in handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)  # not asyncio's default: a worker's own stays


def _uvloop_run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


def run_local(spec: WorkerSpec, watch: Watch | None = None) -> Totals:
    """The whole schedule on one event loop in this process."""
    return _run_streaming(spec, watch or Watch(), None)


def _worker_main(
    spec: WorkerSpec, k: int, out: Connection, start: Any, progress: bool, figures: bool
) -> None:
    """Entry point of worker process k: wait for the start, run its slice, send back.

    Each worker has its own pipe to the parent (not a queue shared by all): a worker killed in
    the middle of a message breaks only its own pipe, and the parent sees its end at once.
    The start message is a wall time, or None: the run was stopped before it started. A SIGINT
    (the parent's, or the terminal's to the whole group) is noted until the loop's handler is
    there, which then stops the run; after the run it is ignored until the result is sent.
    """
    asked: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # held back since the start
    # its own retry jitter stream and record numbers
    spec = replace(spec, engine=replace(spec.engine, worker=k, workers=spec.workers))
    try:
        out.send(("ready", None))
        start_at = start.get()
        if start_at is None:
            out.send(("stopped", None))
            return
        watch = Watch(
            (lambda p: out.send(("progress", p))) if progress else None,
            (lambda f: out.send(("figures", f))) if figures else None,
        )
        out.send(("result", _run_streaming(spec, watch, start_at, lambda: bool(asked))))
    except TargetUnreachableError as exc:
        out.send(("unreachable", str(exc)))
    except BaseException as exc:
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


def _receive(conn: Connection) -> tuple[str, Any]:
    """The next message from a worker's pipe; ``("", None)`` at its end (or a broken one)."""
    try:
        kind, payload = conn.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        return "", None
    return str(kind), payload


@dataclass(slots=True)
class _Failure:
    why: str
    at_wall_s: float  # when the parent learnt of it (time.time())
    unreachable: bool = False  # the worker could not open a single connection


def run_workers(spec: WorkerSpec, watch: Watch | None = None) -> tuple[Totals, list[str]]:
    """N worker processes, each its slice; returns the merged result and worker errors.

    A worker that fails (dies, raises, cannot connect) does not stop the others; its slice is
    accounted for by :func:`account_lost` and the run is partial. Only when no worker could
    connect at all is it :class:`TargetUnreachableError`. SIGINT before the start tells the
    workers not to start (their rows are not sent); after it, it is passed on to them.
    """
    watch = watch or Watch()
    build_schedule(spec.scenario, spec.duration_s)  # TooLargeError now, not in N workers
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(spec.workers)]
    starts = [ctx.Queue() for _ in range(spec.workers)]
    wants = (watch.progress is not None, watch.figures is not None)
    procs = [
        ctx.Process(
            target=_worker_main, args=(spec, k, pipes[k][1], starts[k], *wants), daemon=True
        )
        for k in range(spec.workers)
    ]
    interrupted = False
    start_at: float | None = None

    def forward(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if start_at is None:
            if not interrupted:
                for q in starts:
                    q.put(None)  # do not start
            interrupted = True
            return
        interrupted = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, forward)
    results: dict[int, Totals] = {}
    failed: dict[int, _Failure] = {}
    stopped: set[int] = set()  # stopped before the start: their rows were not sent
    latest: dict[int, Progress] = {}
    figures: dict[int, Figures] = {}
    try:
        _start_deaf(procs)
        for _, w in pipes:
            w.close()  # the worker holds the only writing end: its death is our EOF
        readers: dict[Any, int] = {r: k for k, (r, _) in enumerate(pipes)}
        ready: set[int] = set()
        while readers:
            for handle in wait(list(readers), timeout=0.25):
                k = readers[handle]
                kind, payload = _receive(pipes[k][0])
                if kind == "":  # its end: a result or error came first, or it died
                    del readers[handle]
                    if k not in results and k not in failed and k not in stopped:
                        procs[k].join(timeout=1.0)
                        code = procs[k].exitcode
                        if interrupted and k not in ready:  # a Ctrl-C while it was starting
                            stopped.add(k)
                        else:
                            failed[k] = _Failure(f"worker {k} died (exit {code})", time.time())
                elif kind == "ready":
                    ready.add(k)
                elif kind == "stopped":
                    stopped.add(k)
                elif kind == "progress" and watch.progress is not None:
                    latest[k] = payload
                    watch.progress(_combine(list(latest.values())))
                elif kind == "figures" and watch.figures is not None:
                    figures[k] = payload
                    watch.figures(total(list(figures.values())))
                elif kind == "result":
                    results[k] = payload
                elif kind in ("error", "unreachable"):
                    failed[k] = _Failure(f"worker {k}: {payload}", time.time(), kind != "error")
                gone = set(failed) | stopped
                if start_at is None and not interrupted and len(ready | gone) == spec.workers:
                    start_at = time.time() + (START_MARGIN_S if ready - gone else 0.0)
                    for q in starts:
                        q.put(start_at)
        for p in procs:
            p.join(timeout=5.0)
    finally:
        signal.signal(signal.SIGINT, previous)
        for p in procs:
            if p.is_alive():
                p.kill()
        for r, _ in pipes:
            r.close()
    if not results and not stopped and all(f.unreachable for f in failed.values()):
        raise TargetUnreachableError("; ".join(f.why for f in failed.values()) or "no worker")
    tally = Tally()
    for k in sorted(results):
        tally.merge(results[k].tally)
    for k in sorted(failed):
        at = start_at if start_at is not None else failed[k].at_wall_s
        account_lost(tally, spec, k, round((failed[k].at_wall_s - at) * 1e9))
    for k in sorted(stopped):
        account_lost(tally, spec, k, -1)
    parts = list(results.values())
    merged = Totals(
        tally=tally,
        partial=interrupted or bool(failed) or bool(stopped) or any(p.partial for p in parts),
        wall_s=max((part.wall_s for part in parts), default=0.0),
        recorder_bytes=max((part.recorder_bytes for part in parts), default=0),
    )
    return merged, [failed[k].why for k in sorted(failed)]


def _start_deaf(procs: list[Any]) -> None:
    """Start the workers with SIGINT blocked and ignored, which they inherit: a Ctrl-C to the
    process group while one is still importing must not kill it; it stays pending until the
    worker's first lines note it (:func:`_worker_main`). A SIGINT to this process meanwhile is
    held back too (blocked, in every thread of ours) and handled once they are started."""
    mask = {signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, mask)


def account_lost(tally: Tally, spec: WorkerSpec, k: int, lost_after_ns: int) -> None:
    """Count worker k's slice of the schedule into ``tally`` for a worker whose own tally is
    lost: rows due by ``lost_after_ns`` (since the run's start) may have been sent and answered,
    so they end as errors of unknown fate (reason :data:`~simulator.outcomes.R_WORKER_LOST`;
    their ids go to the audit's ledger check); the later rows were never sent."""
    mine = replace(spec, engine=replace(spec.engine, worker=k, workers=spec.workers))
    for chunk in schedule_slice(mine):
        t = chunk["t_ns"].astype(np.int64)
        due = t <= lost_after_ns
        n = int(np.count_nonzero(due))
        if n:
            never = np.full(n, -1, dtype=np.int64)
            tally.fold(
                intended_ns=t[due],
                dispatched_ns=never,
                sent_ns=never,
                done_ns=never,
                outcome=np.full(n, ERROR, dtype=np.uint8),
                final=np.ones(n, dtype=np.bool_),
                first_ns=t[due],
                retry=np.zeros(n, dtype=np.bool_),
                order=chunk["order"][due].astype(np.int64),
                product=chunk["product"][due].astype(np.int64),
                qty=chunk["qty"][due].astype(np.int64),
                reason=np.full(n, R_WORKER_LOST, dtype=np.int32),
            )
        tally.add_unsent_rows(t[~due])


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
