"""Pure parts of the Locust adapter: the user pool as a function of time, and a worker's orders.

Nothing here imports locust or reads a clock: time is an argument, so the pool size is tested as
a table of (t, users) cases, like every demand curve.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.errors import UsageError
from simulator.load.slots import REGION
from simulator.load.tally import Tally
from simulator.scenario import Scenario, limits
from simulator.scenario.journey import Journey
from simulator.schedule import Orders, build_schedule

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PoolSizing:
    """How many Locust users the demand needs (see :func:`users_at` for the formula).

    ``busy_s`` is how long one user is tied up by one order (its expected response time plus a
    little dispatch slack); ``headroom`` multiplies the Little's-law estimate so that a slower
    answer than expected does not starve the schedule; the window ``[t − hold_s, t +
    lookahead_s]`` makes the pool grow before a spike (users take time to spawn) and shrink only
    after demand has stayed low for ``hold_s`` (a shrinking pool stops users mid-order).
    """

    busy_s: float = 0.05
    headroom: float = 2.0
    min_users: int = 4
    max_users: int = 2000
    lookahead_s: float = 2.0
    hold_s: float = 10.0
    step_s: float = 0.05

    def __post_init__(self) -> None:
        if not (self.busy_s > 0 and math.isfinite(self.busy_s)):
            raise UsageError(f"pool: busy_s must be > 0, got {self.busy_s}")
        if not self.headroom >= 1:
            raise UsageError(f"pool: headroom must be ≥ 1, got {self.headroom}")
        if not 1 <= self.min_users <= self.max_users:
            raise UsageError(
                f"pool: need 1 ≤ min_users ≤ max_users, got {self.min_users}, {self.max_users}"
            )
        if self.lookahead_s < 0 or self.hold_s < 0 or not self.step_s > 0:
            raise UsageError("pool: lookahead_s and hold_s must be ≥ 0, step_s > 0")


def demand_rate(scenario: Scenario, t_s: npt.ArrayLike) -> FloatArray:
    """Expected orders a second at times ``t_s`` (at the scenario's scale), everything included.

    λ(t) = (1 + d)·Σ_g μ_g(t)/(1 − η_g): each demand group's immigrant rate μ_g (the sale curve
    and each product's own curve, scaled) inflated by its bursts' stationary factor 1/(1 − η_g)
    (η = branching ratio) and by the double-click share d.
    """
    t = np.asarray(t_s, dtype=np.float64)
    total = np.zeros_like(t)
    curves = [scenario.demand] if not scenario.demand.is_empty else []
    curves += [p.curve for p in scenario.products if p.curve is not None and not p.curve.is_empty]
    for curve in curves:
        eta = curve.bursts.branching_ratio if curve.bursts is not None else 0.0
        total += curve.scaled(scenario.scale).rate(t) / (1.0 - eta)
    inside = (t >= 0) & (t < scenario.duration_s)
    return np.where(inside, total * (1.0 + scenario.buyers.duplicate_share), 0.0)


def requests_per_row(journey: Journey | None) -> float:
    """Requests a buyer's row makes on average: 1 without a journey; with one, a request per
    step it takes (by the steps' probabilities, ``unless`` included), a polling step counted
    twice (its first answer and one more, on average about what a short settle takes)."""
    if journey is None:
        return 1.0
    names = journey.names()
    p: list[float] = []
    for s in journey.steps:
        q = s.probability
        if s.unless is not None:
            q *= 1.0 - p[names.index(s.unless)]
        p.append(q)
    return sum(
        q * (2.0 if s.poll is not None else 1.0) for q, s in zip(p, journey.steps, strict=True)
    )


def request_rate(scenario: Scenario, t_s: npt.ArrayLike) -> FloatArray:
    """Expected requests a second at times ``t_s``: the buyers' rows (:func:`demand_rate`)
    times :func:`requests_per_row`, plus every background stream's own curve."""
    t = np.asarray(t_s, dtype=np.float64)
    total = demand_rate(scenario, t) * requests_per_row(scenario.journey)
    inside = (t >= 0) & (t < scenario.duration_s)
    for stream in scenario.streams:
        curve = stream.demand
        if curve.is_empty:
            continue
        eta = curve.bursts.branching_ratio if curve.bursts is not None else 0.0
        total = total + np.where(inside, curve.scaled(scenario.scale).rate(t) / (1.0 - eta), 0.0)
    return total


def users_at(scenario: Scenario, t_s: float, sizing: PoolSizing) -> int:
    """The user pool at ``t_s`` seconds into the sale (all workers together).

    users(t) = clamp(⌈headroom · busy_s · max λ(s) for s in [t − hold_s, t + lookahead_s]⌉ +
    min_users, min_users, max_users) — Little's law: a user carries one request at a time for
    about ``busy_s``, so λ requests a second (:func:`request_rate`: the orders, or the
    journeys' steps and the streams' requests) keep λ·busy_s users busy on average.
    """
    lo, hi = t_s - sizing.hold_s, t_s + sizing.lookahead_s
    # a grid anchored at multiples of step_s (the same points whatever t is), plus both ends
    k = np.arange(math.ceil(lo / sizing.step_s), math.floor(hi / sizing.step_s) + 1)
    grid = np.concatenate([[lo, t_s, hi], k * sizing.step_s])
    peak = float(request_rate(scenario, grid).max())
    users = math.ceil(sizing.headroom * sizing.busy_s * peak) + sizing.min_users
    return max(sizing.min_users, min(sizing.max_users, users))


# ---------------------------------------------------------------------------------------------
# One worker's orders


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What every node must agree on for one run: which schedule and how it is sliced.

    The master sends it to every worker at the start; ``digest`` identifies the scenario file's
    bytes, so a worker with a different file refuses to run rather than send the wrong orders.
    ``host`` is the target (a worker may not know it yet when the plan comes); ``engine``: the
    workers drive their slices with flashsale's engine instead of Locust users.
    """

    run_id: int
    slices: int
    scale: float
    duration_s: float | None
    digest: str
    host: str | None = None
    engine: bool = False
    orders: str | None = None  # each sending node streams its per-attempt records here (a part
    # per slice: simulator.records.stream_part)

    def to_message(self) -> dict[str, object]:
        """The plan as a plain dict (a Locust message payload)."""
        return {
            "run_id": self.run_id,
            "slices": self.slices,
            "scale": self.scale,
            "duration_s": self.duration_s,
            "digest": self.digest,
            "host": self.host,
            "engine": self.engine,
            "orders": self.orders,
        }

    @classmethod
    def from_message(cls, data: dict[str, object]) -> RunPlan:
        """The inverse of :meth:`to_message`."""
        duration = data["duration_s"]
        return cls(
            run_id=int(data["run_id"]),  # type: ignore[call-overload]
            slices=int(data["slices"]),  # type: ignore[call-overload]
            scale=float(data["scale"]),  # type: ignore[arg-type]
            duration_s=None if duration is None else float(duration),  # type: ignore[arg-type]
            digest=str(data["digest"]),
            host=None if data.get("host") is None else str(data["host"]),
            engine=bool(data.get("engine", False)),
            orders=None if data.get("orders") is None else str(data["orders"]),
        )


def file_digest(path: str | Path) -> str:
    """A short hash of a scenario file's bytes (to check that every node runs the same file)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def slice_chunks(scenario: Scenario, plan: RunPlan, worker: int) -> Iterator[Orders]:
    """Worker ``worker``'s slice of the plan's schedule (rows ≡ worker mod slices), generated
    block by block as it is consumed, in chunks of at most one slot region (never the whole
    slice in memory)."""
    if not 0 <= worker < plan.slices:
        raise UsageError(f"worker index {worker} is outside the {plan.slices} slices of this run")
    schedule = build_schedule(scenario.with_scale(plan.scale), plan.duration_s)
    return schedule.chunks(REGION, worker, plan.slices)


_WRAP = 1 << 64


@dataclass(slots=True)
class SliceDigest:
    """What identifies a slice of the schedule without holding it: its row count and the sums
    (mod 2⁶⁴) of its rows' intended times and order ids.

    A worker digests the rows it takes as it takes them; the master digests every slice in one
    pass over the schedule; equal digests say the worker worked through its own slice.
    """

    rows: int = 0
    t_sum: int = 0
    order_sum: int = 0

    def add(self, chunk: Orders) -> None:
        """Count a chunk of the slice's rows."""
        self.rows += len(chunk)
        if len(chunk):
            t = int(chunk["t_ns"].astype(np.uint64).sum(dtype=np.uint64))
            o = int(chunk["order"].astype(np.uint64).sum(dtype=np.uint64))
            self.t_sum = (self.t_sum + t) % _WRAP
            self.order_sum = (self.order_sum + o) % _WRAP

    def to_message(self) -> list[int]:
        """The digest as a plain list (a Locust message payload)."""
        return [self.rows, self.t_sum, self.order_sum]

    @classmethod
    def from_message(cls, data: Any) -> SliceDigest:
        """The inverse of :meth:`to_message`; ValueError if it is not one."""
        if not isinstance(data, list | tuple) or len(data) != 3:
            raise ValueError(f"slice digest: expected [rows, t_sum, order_sum], got {data!r}")
        rows, t, o = (int(x) for x in data)
        return cls(rows, t, o)


@dataclass(slots=True)
class SliceScan:
    """One slice as the master sees it from the schedule: its digest, its rows as a tally of
    orders never sent (what counts for a worker that never reported) and, of the order ids
    the master watches for (the ledger's), those in the slice."""

    digest: SliceDigest = field(default_factory=SliceDigest)
    unsent: Tally = field(default_factory=Tally)
    watched: list[npt.NDArray[np.int64]] = field(default_factory=list)


def scan_slices(
    scenario: Scenario, plan: RunPlan, watch: npt.NDArray[np.int64] | None = None
) -> list[SliceScan]:
    """Every slice of the plan's schedule, in one pass over it (block by block: bounded
    memory whatever the sale's length)."""
    scans = [SliceScan() for _ in range(plan.slices)]
    schedule = build_schedule(scenario.with_scale(plan.scale), plan.duration_s)
    n = plan.slices
    row0 = 0
    for chunk in schedule.chunks(1 << 20):
        for k, scan in enumerate(scans):
            part = chunk[(k - row0) % n :: n]
            scan.digest.add(part)
            scan.unsent.add_unsent_rows(part["t_ns"].astype(np.int64))
            if watch is not None and len(watch) and len(part):
                orders = part["order"].astype(np.int64)
                scan.watched.append(orders[np.isin(orders, watch)])
        row0 += len(chunk)
    return scans


def digesting(chunks: Iterable[Orders], digest: SliceDigest) -> Iterator[Orders]:
    """The chunks as they are, each added to ``digest`` as it passes."""
    for chunk in chunks:
        digest.add(chunk)
        yield chunk


@dataclass(frozen=True, slots=True)
class Options:
    """The ``--flashsale-*`` options, read once from Locust's parsed options."""

    scenario: str
    scale: float | None = None
    duration_s: float | None = None
    slices: int = 0  # 0 = as many as there are workers at the start
    out_dir: str = "flashsale-locust"  # the master writes OUT_DIR/report.json; "" = not at all
    engine: bool = False  # workers drive their slices with flashsale's engine, not with users
    orders: str = ""  # stream the per-attempt records there (a part per worker); "" = not at all
    reset: bool = True
    lead_s: float = 1.0
    drain_s: float | None = None  # None = the scenario's [run] drain_s
    result_timeout_s: float = 15.0
    sizing: PoolSizing = field(default_factory=PoolSizing)

    @classmethod
    def from_parsed(cls, o: Any) -> Options:
        """From Locust's ``environment.parsed_options`` (validated; UsageError on bad values)."""
        if not o.flashsale_scenario:
            raise UsageError(
                "no scenario: pass --flashsale-scenario FILE or set FLASHSALE_SCENARIO"
            )
        for flag, value, rng in (
            ("--flashsale-duration", o.flashsale_duration, limits.DURATION_S),
            ("--flashsale-scale", o.flashsale_scale, limits.SCALE),
        ):
            if value is not None and (problem := rng.problem(value)) is not None:
                raise UsageError(f"{flag}: {problem}")
        if o.flashsale_workers < 0:
            raise UsageError(f"--flashsale-workers: must be ≥ 0, got {o.flashsale_workers}")
        sizing = PoolSizing(busy_s=o.flashsale_busy, max_users=o.flashsale_max_users)
        return cls(
            scenario=o.flashsale_scenario,
            scale=o.flashsale_scale,
            duration_s=o.flashsale_duration,
            slices=o.flashsale_workers,
            out_dir=o.flashsale_out,
            engine=o.flashsale_engine,
            orders=getattr(o, "flashsale_orders", "") or "",
            reset=not o.flashsale_no_reset,
            lead_s=o.flashsale_lead,
            sizing=sizing,
        )
