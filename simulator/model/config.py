"""What the model simulates: the inventory service's shape, as one frozen value."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from simulator.scenario import Scenario

#: the service time assumed when the scenario's storefront has none: one fast store operation
DEFAULT_SERVICE_MS = 0.05
DEFAULT_SIGMA = 0.5
#: the shortest reservation TTL the model takes
MIN_TTL_S = 0.001


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The modelled inventory service.

    ``shards`` K: a product's stock is split across K shards and a buyer always reaches the
    shard its buyer number hashes to. ``servers`` c: servers per shard sharing one FIFO queue
    (an order goes to the earliest-free server). ``queue_limit`` N: orders a shard holds at
    once (in service + waiting), beyond which an arrival is throttled (429); 0 = no limit.
    ``max_in_flight``: orders the storefront holds at once across *all* its queues (the
    scenario's ``max_concurrency``: counted from arrival to the end of service, waiting
    included), beyond which an arrival is throttled (429) at once; 0 = no limit.
    ``hot_row``: every (product, shard) has its own servers (orders for one SKU serialise, as
    on one database row) instead of all products of a shard sharing them.
    Service times are lognormal (``service_median_ms``, ``service_sigma``) unless
    ``service_samples_ms`` gives an empirical distribution. ``throttle_ms`` is how long a 429
    takes to come back, ``timeout_s`` when the client gives up (the server still decides).
    ``overhead_ms``: a fixed time every answer takes on top of its queueing and service — the
    storefront's and the client's handling around the service (HTTP, parsing, scheduling),
    which does not hold a server; calibration fits it (:mod:`simulator.model.calibrate`).
    ``window_s``: the model steps through time in windows no longer than the shortest retry
    backoff where requests can be throttled (default: that, or about 100,000 schedule rows,
    within [1 ms, 1 s]); results do not depend on it as long as it is ≤ that backoff.
    ``reservation_ttl_s``: orders reserve stock for this long (the flash-sale flow; None: an
    order is final); what buyers do with their holds is the scenario's ``[buyers]`` pay keys
    (:mod:`simulator.model.flow`). ``admit_per_s``/``burst``: the storefront's token bucket
    in front of orders (0: none; burst 0: one second's worth), refusals are throttled (429).
    """

    shards: int = 1
    servers: int = 1
    service_median_ms: float = DEFAULT_SERVICE_MS
    service_sigma: float = DEFAULT_SIGMA
    service_samples_ms: tuple[float, ...] = ()
    queue_limit: int = 0
    max_in_flight: int = 0
    hot_row: bool = False
    throttle_ms: float = 0.0
    overhead_ms: float = 0.0
    timeout_s: float = 5.0
    window_s: float | None = None
    seed: int = 0
    reservation_ttl_s: float | None = None
    admit_per_s: float = 0.0
    burst: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("shards", self.shards >= 1, "must be ≥ 1"),
            ("servers", self.servers >= 1, "must be ≥ 1"),
            ("queue_limit", self.queue_limit >= 0, "must be ≥ 0"),
            ("max_in_flight", self.max_in_flight >= 0, "must be ≥ 0"),
            ("service_median_ms", _pos(self.service_median_ms), "must be > 0"),
            ("service_sigma", _nonneg(self.service_sigma), "must be ≥ 0"),
            ("throttle_ms", _nonneg(self.throttle_ms), "must be ≥ 0"),
            ("overhead_ms", _nonneg(self.overhead_ms), "must be ≥ 0"),
            ("timeout_s", _pos(self.timeout_s), "must be > 0"),
            ("window_s", self.window_s is None or _pos(self.window_s), "must be > 0"),
            (
                "reservation_ttl_s",
                self.reservation_ttl_s is None
                or (_pos(self.reservation_ttl_s) and self.reservation_ttl_s >= MIN_TTL_S),
                f"must be ≥ {MIN_TTL_S} s in the model (it steps in windows of ≥ 1 ms)",
            ),
            ("admit_per_s", _nonneg(self.admit_per_s), "must be ≥ 0"),
            ("burst", self.burst >= 0, "must be ≥ 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)!r}")

    def throttles(self) -> bool:
        """Whether a request can be throttled (429): a queue limit, a limit on orders in
        flight or a token bucket; only a throttled request is retried."""
        return self.queue_limit > 0 or self.max_in_flight > 0 or self.admit_per_s > 0

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["service_samples_ms"] = len(self.service_samples_ms)
        return d


def _pos(x: float) -> bool:
    return x > 0 and math.isfinite(x)


def _nonneg(x: float) -> bool:
    return x >= 0 and math.isfinite(x)


def config_for(scenario: Scenario, **overrides: Any) -> ModelConfig:
    """The model of a scenario's own storefront settings, with overrides (None = keep)."""
    sf = scenario.storefront
    base = ModelConfig(
        service_median_ms=sf.service_time_median_ms or DEFAULT_SERVICE_MS,
        service_sigma=sf.service_time_sigma if sf.service_time_median_ms else DEFAULT_SIGMA,
        max_in_flight=sf.max_concurrency,
        hot_row=sf.hot_row,
        timeout_s=scenario.run.timeout_s,
        seed=scenario.seed,
        reservation_ttl_s=sf.reservation_ttl_s,
        admit_per_s=sf.admit_per_s,
        burst=sf.burst,
    )
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})
