"""This process's part of a run: its slice of the schedule, who sends which order next, results.

A node (:mod:`simulator.locust.node`) starts a :class:`SliceState` when a run begins and drops it
when the run ends; the Locust users (:mod:`simulator.locust.users`) find it with
:func:`current` and work through it. It lives on Locust's environment under :data:`NODE_ATTR`
(the node holds it), the one object Locust hands to every user of the process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simulator.errors import UsageError
from simulator.load.engine import retry_capacity
from simulator.load.recorder import Recorder
from simulator.locust.engine_mode import EngineSlice
from simulator.locust.plan import Dispatcher, OrderBook, RunPlan, worker_rows
from simulator.outcomes import status_table
from simulator.retry import Retry
from simulator.scenario import Scenario
from simulator.schedule import Orders

#: the attribute of Locust's environment that holds this process's node
NODE_ATTR = "flashsale_node"


@dataclass(slots=True)
class SliceState:
    """This process's part of a run: its orders, who sends which next, and the results."""

    plan: RunPlan
    worker: int
    rows: Orders
    book: OrderBook
    dispatcher: Dispatcher
    recorder: Recorder  # the engine's arrays (in engine mode, the engine's own recorder)
    t0_ns: int  # perf_counter_ns() at the sale's t = 0 on this process
    method: str
    path: str
    headers: dict[str, str]
    table: list[int]  # HTTP status → outcome code
    retry: Retry
    seed: int  # the scenario's: retry delays are drawn from it
    engine: EngineSlice | None = None  # engine mode: the engine's thread does the sending
    rows_sent_twice: int = 0  # rows the users sent a second time (an integrity failure)


class SliceHolder(Protocol):
    """What holds the running slice (a node)."""

    slice: SliceState | None


def current(environment: Any) -> SliceState | None:
    """The running slice of this process, if a run is on."""
    holder: SliceHolder | None = getattr(environment, NODE_ATTR, None)
    return holder.slice if holder is not None else None


def start_slice(
    scenario: Scenario, plan: RunPlan, worker: int, host: str | None, lead_s: float
) -> SliceState:
    """Worker ``worker``'s slice of ``plan``, its sale starting ``lead_s`` from now.

    In engine mode the engine is built here (started by the caller); a UsageError if it has no
    host to send to.
    """
    sc = scenario
    rows = worker_rows(sc, plan, worker)
    target = sc.target
    engine = None
    if plan.engine:
        host = plan.host or host
        if not host:
            raise UsageError("--flashsale-engine: no host to send to (pass --host)")
        connections = max(1, math.ceil(sc.run.connections / plan.slices))
        engine = EngineSlice(sc, rows, host, connections, worker, time.time() + lead_s)
        recorder = engine.recorder
    else:
        recorder = Recorder.allocate(
            rows["t_ns"].astype(np.int64), retry_capacity(rows, sc.buyers.retry)
        )
    return SliceState(
        plan=plan,
        worker=worker,
        rows=rows,
        book=OrderBook(sc, rows),
        dispatcher=Dispatcher(0 if engine is not None else len(rows)),
        recorder=recorder,
        t0_ns=time.perf_counter_ns() + round(lead_s * 1e9),
        method=target.method,
        path=target.orders_path,
        headers={"Content-Type": target.content_type},
        table=status_table(target.status),
        retry=sc.buyers.retry,
        seed=sc.seed,
        engine=engine,
    )
