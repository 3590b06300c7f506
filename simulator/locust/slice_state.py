"""This process's part of a run: its slice of the schedule, who sends which order next, results.

A node (:mod:`simulator.locust.node`) starts a :class:`SliceState` when a run begins and drops it
when the run ends; the Locust users (:mod:`simulator.locust.users`) find it with
:func:`current` and work through it. It lives on Locust's environment under :data:`NODE_ATTR`
(the node holds it), the one object Locust hands to every user of the process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from simulator.errors import UsageError
from simulator.load.journey import merged_rows, stream_schedules
from simulator.load.transport import outcome_rule
from simulator.load.transport.template import RequestTemplate, StepTemplate
from simulator.locust.engine_mode import EngineSlice
from simulator.locust.feed import SliceFeed
from simulator.locust.journey_feed import JourneyFeed
from simulator.locust.live import SliceCounts
from simulator.locust.plan import RunPlan, SliceDigest, digesting, slice_chunks
from simulator.locust.stats import Failures
from simulator.outcomes import OutcomeRule
from simulator.records import OrderStream, stream_part
from simulator.retry import Retry
from simulator.scenario import Scenario
from simulator.scenario.journey import order_journey, requests_of
from simulator.schedule import Orders

#: the attribute of Locust's environment that holds this process's node
NODE_ATTR = "flashsale_node"


@dataclass(slots=True)
class SliceState:
    """This process's part of a run: how its orders are sent, and what it has counted."""

    plan: RunPlan
    worker: int
    t0_ns: int  # perf_counter_ns() at the sale's t = 0 on this process
    method: str
    template: RequestTemplate  # the requests flashsale run sends (path under Locust's host)
    rule: OutcomeRule  # how an answer becomes an outcome, as in flashsale run
    failure: Failures
    retry: Retry
    seed: int  # the scenario's: retry delays are drawn from it
    digest: SliceDigest  # the rows taken from the schedule so far
    counts: SliceCounts = field(default_factory=SliceCounts)
    feed: SliceFeed | JourneyFeed | None = None  # users mode: the users send from it
    engine: EngineSlice | None = None  # engine mode: the engine's thread does the sending
    stream: OrderStream | None = None  # the per-attempt records, when asked for

    def now_ns(self) -> int:
        """ns since the slice's sale start (negative before it)."""
        return time.perf_counter_ns() - self.t0_ns

    @property
    def settled(self) -> bool:
        """Every row of the slice taken and decided."""
        if self.engine is not None:
            return self.engine.done
        return self.feed is not None and self.feed.settled

    def live_counters(self, skus: list[str]) -> dict[str, Any]:
        """The live view's counters of this slice."""
        if self.feed is not None:
            self.feed.fold(self.now_ns())
        elif self.engine is not None:
            self.engine.drain()
        return self.counts.counters(skus, self.settled)


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

    The slice is taken from the schedule block by block as it is sent (never held whole). In
    engine mode the engine is built here (started by the caller); a UsageError if it has no
    host to send to. With ``plan.orders`` the per-attempt records of the slice are streamed
    to its part of that file.
    """
    sc = scenario
    target = sc.target
    digest = SliceDigest()
    source = digesting(slice_chunks(sc, plan, worker), digest)
    stream = None
    if plan.orders:
        path = stream_part(Path(plan.orders), worker, plan.slices)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = OrderStream(path, [p.id for p in sc.products])
        except OSError as exc:
            raise UsageError(f"--flashsale-orders: cannot write {path}: {exc}") from None
    rule = outcome_rule(target)
    counts = SliceCounts()
    st = SliceState(
        plan=plan,
        worker=worker,
        t0_ns=time.perf_counter_ns() + round(lead_s * 1e9),
        method=target.method,
        # Locust's client puts the path under its host (and the host's own path prefix)
        template=RequestTemplate(target, sc.products, "locust", target.orders_path, sc.buyers.data),
        rule=rule,
        failure=Failures(rule.labels),
        retry=sc.buyers.retry,
        seed=sc.seed,
        digest=digest,
        counts=counts,
        stream=stream,
    )
    if plan.engine:
        host = plan.host or host
        if not host:
            if stream is not None:
                stream.close(complete=False)
            raise UsageError("--flashsale-engine: no host to send to (pass --host)")
        connections = max(1, math.ceil(sc.run.connections / plan.slices))
        start_at = time.time() + lead_s
        st.engine = EngineSlice(
            sc, source, host, connections, worker, plan.slices, start_at, counts, stream,
            duration_s=plan.duration_s,
        )  # fmt: skip
    elif sc.journey is not None or sc.streams:
        st.feed = journey_feed(sc, plan, worker, source, counts, stream)
        st.feed.tally.reason_labels.update(rule.labels)
        st.failure = Failures(st.feed.tally.reason_labels)
    else:
        st.feed = SliceFeed(source, worker, plan.slices, counts, stream)
        st.feed.tally.reason_labels.update(rule.labels)
    return st


def journey_feed(
    scenario: Scenario,
    plan: RunPlan,
    worker: int,
    buyers: Iterator[Orders],
    counts: SliceCounts,
    stream: OrderStream | None,
) -> JourneyFeed:
    """Users mode of a scenario with a journey or streams: the slice's buyer rows merged with
    its share of the streams' rows (as the engine merges them,
    :func:`~simulator.load.journey.merged_rows`), the steps' and streams' templates with paths
    under Locust's host (the target's order as a one-step journey when there is none)."""
    sc = scenario
    journey = sc.journey if sc.journey is not None else order_journey(sc.target)
    rows: Iterator[Orders] = buyers
    if sc.streams:
        rows = merged_rows(
            [buyers, *stream_schedules(sc.with_scale(plan.scale), plan.duration_s, worker,
                                       plan.slices)]
        )  # fmt: skip
    variables = journey.variables()
    templates = [
        StepTemplate(s, sc.products, "locust", "", variables, sc.buyers.data)
        for s in requests_of(journey, sc.streams)
    ]
    return JourneyFeed(
        rows, journey, sc.streams, templates, sc.seed, sc.buyers.retry, worker, plan.slices,
        counts, stream,
    )  # fmt: skip
