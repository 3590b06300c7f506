"""``--flashsale-engine``: a worker drives its slice with flashsale's own engine, not Locust users.

The engine (:class:`simulator.load.engine.Run`, the lean HTTP/1.1 transport on a uvloop event loop)
runs in a real OS thread of the Locust process: Locust's gevent patches ``threading``, so the
thread is started with gevent's saved original ``start_new_thread``. The engine folds finished
attempts in batches into its :class:`~simulator.load.tally.Tally` (what the Locust worker hands
its master) and hands each batch to its sink, which streams it to the orders file (when asked
for) and passes a copy to Locust's side; a greenlet of Locust's loop takes those copies every
``POLL_S`` into the live counts and into Locust's statistics under the same two names as the
users do. A batch is folded once all its attempts are over, so Locust's statistics follow the
answers by about a second. The engine takes the slice from the schedule block by block, so
nothing here grows with the run's length.

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
from collections import deque
from collections.abc import Callable, Iterator

import gevent
import numpy as np
from gevent import monkey

from simulator.load.engine import EngineConfig, RunResult
from simulator.load.journey import make_run
from simulator.load.slots import Batch
from simulator.load.tally import Tally
from simulator.load.transport import parse_endpoint
from simulator.locust.live import SliceCounts
from simulator.locust.stats import INTENDED, SERVICE, Failures, order_request
from simulator.outcomes import CONFIRMED, NOT_SENT, SOLD_OUT
from simulator.scenario import Scenario
from simulator.schedule import Orders

POLL_S = 0.2  # how often answers are taken into Locust's statistics
SPIN_S = -0.001  # wake ≥ 1 ms after each due order: ~1 ms batches, no spinning
# Locust's thread reporting a batch holds the GIL; the engine's thread gets it back after at
# most this long (Python's default, 5 ms, showed as dispatch lag)
SWITCH_INTERVAL_S = 0.0005
#: the fields of a folded batch the Locust side keeps (copied: the engine recycles its slots)
_KEEP = ("intended_ns", "sent_ns", "done_ns", "outcome", "reason", "try", "final", "flags",
         "order", "sku", "qty")  # fmt: skip

Fire = Callable[..., None]  # ``environment.events.request.fire``
Sink = Callable[[Batch], None]


class EngineSlice:
    """One worker's slice run by the engine in its own thread, reported into Locust's stats."""

    def __init__(
        self,
        scenario: Scenario,
        rows: Orders | Iterator[Orders],
        host: str,
        connections: int,
        worker: int,
        slices: int,
        start_at_wall_s: float,
        counts: SliceCounts | None = None,
        stream: Sink | None = None,
        duration_s: float | None = None,
    ) -> None:
        from simulator.load.transport.lean import LeanTransport

        sc = scenario
        transport = LeanTransport(
            parse_endpoint(host).unverified(),  # as Locust's own users: not checked
            sc.target,
            sc.products,
            connections,
            sc.run.timeout_s,
            sc.run.connect_timeout_s,
            sc.buyers.data,
        )
        config = EngineConfig(
            timeout_s=sc.run.timeout_s,
            drain_s=sc.run.drain_s,
            retry=sc.buyers.retry,
            seed=sc.seed,
            worker=worker,
            workers=slices,
            spin_s=SPIN_S,
        )
        endpoint = parse_endpoint(host).unverified()
        # one order per row, or a journey per row (with the scenario's streams): as flashsale run
        self.run = make_run(rows, transport, config, self._on_batch, sc, endpoint, duration_s)
        self.start_at_wall_s = start_at_wall_s
        # the orders' entries in Locust's statistics (the run's sink gets the order rows: a
        # journey's other steps are in the report's journey section), under the method and path
        # they go out with (a journey's order step's), as users mode and the live view name them
        order = order_request(sc)
        self.method, self.path = order.method, order.path
        self.counts = counts if counts is not None else SliceCounts()
        self.stream = stream
        self.failure = Failures(self.run.tally.reason_labels)  # the order step's rule's too
        self.fire: Fire | None = None
        self.error: str | None = None
        self.result: RunResult | None = None
        self.done = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches: deque[Batch] = deque()  # folded in the engine's thread, not yet reported

    @property
    def tally(self) -> Tally:
        """The slice's tally (the engine's: complete once its thread has ended)."""
        return self.run.tally

    def _on_batch(self, batch: Batch) -> None:
        """The engine's sink (its thread): a batch of finished attempts, already in the tally.

        Streamed to the orders file when there is one, and copied for Locust's side (a deque's
        append and popleft are safe between threads).
        """
        if self.stream is not None:
            self.stream(batch)
        self._batches.append({k: np.array(batch[k]) for k in _KEEP})

    # -- the engine's thread -------------------------------------------------------------------

    def start(self, fire: Fire | None = None) -> None:
        """Start the engine's thread (a real OS thread, whatever gevent has patched); its
        answers go to ``fire`` (Locust's request event)."""
        self.fire = fire
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
        self.result = await self.run.execute(self.start_at_wall_s)

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

    def report_loop(self) -> None:
        """Greenlet: every ``POLL_S`` report the new answers; once more at the end."""
        while not self.done:
            gevent.sleep(POLL_S)
            self.drain()
        self.drain()

    def drain(self) -> int:
        """Take the batches the engine folded since the last call: into the live counts, and
        each answered attempt into Locust's statistics (service and intended entries)."""
        n = 0
        while self._batches:
            batch = self._batches.popleft()
            self.counts.fold(batch)
            if self.fire is not None:
                n += self._report(self.fire, batch)
        return n

    def _report(self, fire: Fire, b: Batch) -> int:
        done = b["done_ns"]
        keep = (done >= 0) & (b["outcome"] != NOT_SENT)
        if not keep.any():
            return 0
        done, sent = done[keep], b["sent_ns"][keep]
        intended_ms = ((done - b["intended_ns"][keep]) / 1e6).tolist()
        service_ms = ((done - sent) / 1e6).tolist()
        was_sent = (sent >= 0).tolist()
        outcomes = b["outcome"][keep].tolist()
        reasons = b["reason"][keep].tolist()
        method, path, failure = self.method, self.path, self.failure
        for lat, svc, went, code, reason in zip(
            intended_ms, service_ms, was_sent, outcomes, reasons, strict=True
        ):
            exc = None if code in (CONFIRMED, SOLD_OUT) else failure(code, reason)
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
        return len(outcomes)

    def slot_bytes(self) -> int:
        """Memory the engine's attempt slots hold (the most they held)."""
        return self.result.slot_bytes if self.result is not None else self.run.slots.nbytes()
