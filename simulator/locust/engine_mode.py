"""``--flashsale-engine``: a worker drives its slice with flashsale's own engine, not Locust users.

The engine (:class:`simulator.load.engine.Run`, the lean HTTP/1.1 transport on a uvloop event loop)
runs in a real OS thread of the Locust process: Locust's gevent patches ``threading``, so the
thread is started with gevent's saved original ``start_new_thread``. The engine folds finished
attempts in batches; its sink copies them into a :class:`~simulator.load.recorder.Recorder` of the
slice (what the Locust worker reports to its master); a greenlet of Locust's loop reads the
answers that came in since its last look (every ``POLL_S``, vectorised over a window of rows) and
reports them into Locust's statistics under the same two names as the users do.

The engine runs with ``spin_s = SPIN_S`` (−1 ms): its wake-up for the next due order is then
always ≥ 1 ms after that order's time, so orders leave in 1 ms batches, up to 2 ms after their
time (the report's dispatch lag shows it), for much less CPU per request than the engine's own
default (a timerfd sleep and a short spin before each order, simulator/load/finetimer.py), which
sends each order on time: a Locust worker is there to add capacity per core. The figures are in
the README; bench/locust_engine_vs_fasthttp.py measures them (FLASHSALE_BENCH_SPIN_S=0.00005).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import numpy as np
from gevent import monkey

from simulator.load.engine import EngineConfig, Run, retry_capacity
from simulator.load.recorder import Recorder
from simulator.load.transport import parse_endpoint
from simulator.locust.stats import INTENDED, SERVICE, OrderFailed
from simulator.outcomes import CONFIRMED, OUTCOME_NAMES, SOLD_OUT
from simulator.scenario import Scenario
from simulator.schedule import Orders

POLL_S = 0.2  # how often answers are taken into Locust's statistics
SPIN_S = -0.001  # wake ≥ 1 ms after each due order: ~1 ms batches, no spinning
# Locust's thread reporting a batch holds the GIL; the engine's thread gets it back after at
# most this long (Python's default, 5 ms, showed as dispatch lag)
SWITCH_INTERVAL_S = 0.0005
_MARGIN_NS = 1_000_000_000  # rows due this much after our clock's "now" cannot be answered yet

Fire = Callable[..., None]  # ``environment.events.request.fire``


class EngineSlice:
    """One worker's slice run by the engine in its own thread, reported into Locust's stats."""

    def __init__(
        self,
        scenario: Scenario,
        rows: Orders,
        host: str,
        connections: int,
        worker: int,
        start_at_wall_s: float,
    ) -> None:
        from simulator.load.transport.lean import LeanTransport

        sc = scenario
        transport = LeanTransport(
            parse_endpoint(host).unverified(),  # as Locust's own users: not checked
            sc.target,
            tuple(p.id for p in sc.products),
            connections,
            sc.run.timeout_s,
            sc.run.connect_timeout_s,
        )
        config = EngineConfig(
            timeout_s=sc.run.timeout_s,
            drain_s=sc.run.drain_s,
            retry=sc.buyers.retry,
            seed=sc.seed,
            worker=worker,
            spin_s=SPIN_S,
        )
        self._rec = Recorder.allocate(
            rows["t_ns"].astype(np.int64), retry_capacity(rows, config.retry)
        )
        self._rec.reason_labels = dict(transport.reason_labels)
        self.run = Run(rows, transport, config, self._record)
        self.start_at_wall_s = start_at_wall_s
        self.method = sc.target.method
        self.path = sc.target.orders_path
        self.error: str | None = None
        self.done = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reported = np.zeros(self._rec.capacity, dtype=np.bool_)
        self._lo = 0  # every row before it has been reported
        self._failures: dict[tuple[int, int], OrderFailed] = {}

    @property
    def recorder(self) -> Recorder:
        """The slice's recorder (filled batch by batch while the run goes on)."""
        return self._rec

    def _record(self, batch: dict[str, np.ndarray[Any, Any]]) -> None:
        """The engine's sink (its thread): a batch of finished attempts into the recorder.

        First attempts go to their row; a retry gets the next attempt number, linked to the
        attempt before it (tries of one order arrive in order). ``done_ns`` is written last:
        the reporting greenlet takes an attempt once its done time and outcome are there.
        """
        rec = self._rec
        local = batch["row"].astype(np.int64) - self.run.config.worker
        tries = batch["try"].astype(np.int64)
        at = local.copy()
        for j in np.flatnonzero(tries > 1).tolist():
            prev = int(local[j])
            for _ in range(int(tries[j]) - 2):
                prev = int(rec.next_attempt[prev])
            at[j] = rec.add_retry(prev, int(batch["intended_ns"][j]))
        for name in ("dispatched_ns", "sent_ns", "status", "outcome", "reason"):
            getattr(rec, name)[at] = batch[name]
        rec.done_ns[at] = batch["done_ns"]

    # -- the engine's thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine's thread (a real OS thread, whatever gevent has patched)."""
        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        start_new_thread(self._main, ())

    def _main(self) -> None:
        import uvloop

        try:
            uvloop.run(self._execute())
        except BaseException as exc:  # reported to the master; the thread must not die silently
            self.error = f"engine: {type(exc).__name__}: {exc}"
        finally:
            self.done = True

    async def _execute(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.run.execute(self.start_at_wall_s)

    def stop(self) -> None:
        """Stop dispatching (thread-safe); answers drain for the engine's ``stop_drain_s``."""
        loop = self._loop
        if loop is not None and not self.done:
            loop.call_soon_threadsafe(self.run.stop)

    def wait(self, timeout_s: float) -> bool:
        """Wait (cooperatively, in Locust's loop) for the engine's thread to end."""
        deadline = time.monotonic() + timeout_s
        while not self.done and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return self.done

    # -- into Locust's statistics ------------------------------------------------------------

    def report_loop(self, fire: Fire) -> None:
        """Greenlet: every ``POLL_S`` report the new answers; once more at the end."""
        while not self.done:
            gevent.sleep(POLL_S)
            self.report(fire)
        self.report(fire)

    def newly_done(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Attempts answered (or failed) since the last call, each once."""
        rec = self._rec
        n, m = rec.n_rows, rec.n_attempts
        elapsed_ns = round((time.time() - self.start_at_wall_s) * 1e9) + _MARGIN_NS
        lo = self._lo
        hi = lo + int(np.searchsorted(rec.intended_ns[lo:n], elapsed_ns, side="right"))
        # an outcome is written after done_ns: a row with done but no outcome is not done yet
        window = (rec.done_ns[lo:hi] >= 0) & (rec.outcome[lo:hi] != 0) & ~self._reported[lo:hi]
        rows = lo + np.flatnonzero(window)
        retry = (rec.done_ns[n:m] >= 0) & (rec.outcome[n:m] != 0) & ~self._reported[n:m]
        new = np.concatenate([rows, n + np.flatnonzero(retry)]).astype(np.int64)
        self._reported[new] = True
        pending = np.flatnonzero(~self._reported[lo:hi])
        self._lo = lo + int(pending[0]) if len(pending) else hi
        return new

    def report(self, fire: Fire) -> int:
        """Fire Locust's request event for each new answer (service and intended entries)."""
        new = self.newly_done()
        if not len(new):
            return 0
        rec = self._rec
        done = rec.done_ns[new]
        sent = rec.sent_ns[new]
        intended_ms = ((done - rec.intended_ns[new]) / 1e6).tolist()
        service_ms = ((done - sent) / 1e6).tolist()
        was_sent = (sent >= 0).tolist()
        outcomes = rec.outcome[new].tolist()
        statuses = rec.status[new].tolist()
        method, path = self.method, self.path
        for lat, svc, went, code, status in zip(
            intended_ms, service_ms, was_sent, outcomes, statuses, strict=True
        ):
            exc = None if code in (CONFIRMED, SOLD_OUT) else self._failure(code, status)
            if went:
                fire(
                    request_type=method,
                    name=SERVICE,
                    response_time=svc,
                    response_length=0,
                    response=None,
                    context={},
                    exception=exc,
                    url=path,
                )
            fire(
                request_type=method,
                name=INTENDED,
                response_time=lat,
                response_length=0,
                response=None,
                context={},
                exception=exc,
                url=path,
            )
        return len(new)

    def _failure(self, code: int, status: int) -> OrderFailed:
        key = (code, status)
        exc = self._failures.get(key)
        if exc is None:
            exc = self._failures[key] = OrderFailed(f"{OUTCOME_NAMES[code]} ({status})")
        return exc
