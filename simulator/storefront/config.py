"""Settings of one mock storefront: its stock, its backend and its realism knobs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from simulator.errors import UsageError
from simulator.storefront.admission import ROOM_ORDERS
from simulator.storefront.backends import BACKEND_NAMES, BackendOptions

if TYPE_CHECKING:
    from simulator.scenario import Scenario

#: request bodies above this many bytes are refused with 413 (an order is ~100 bytes)
DEFAULT_CLIENT_MAX_SIZE = 16 * 1024
#: a request's headers must arrive within this many seconds of its first byte, its body within
#: as many of its headers; else 408 and the connection closes (a slow-drip client holds nothing)
DEFAULT_READ_TIMEOUT_S = 10.0
#: an idle keep-alive connection (no request started) is closed after this many seconds
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0
#: longest accepted read or keep-alive timeout (a day: the event loop's timers stay exact)
MAX_TIMEOUT_S = 86_400.0
#: the largest admission rate (buyers/s): the scenario's largest demand rate
MAX_ADMIT_PER_S = 1e7


@dataclass(frozen=True, slots=True)
class StorefrontSettings:
    """Everything a storefront app needs, built by the CLI, a scenario or a test.

    ``stocks`` (SKU → initial units) and ``limits`` (SKU → per-buyer limit, 0 = none) are the
    catalogue; ``service_time_median_ms``/``service_time_sigma`` a lognormal delay per order;
    ``max_concurrency`` sheds orders beyond that many in flight with 429 (0 = no limit);
    ``hot_row`` serialises orders per SKU (service time included) as one database row would;
    ``racy_delay_ms`` is the racy backends' round trip between read and write. ``namespace`` is
    the Redis key prefix / PostgreSQL schema the backend owns. ``seed`` fixes the service-time
    random stream. ``read_timeout_s`` bounds the wait for a request's headers (from its first
    byte) and then for its body; ``keepalive_timeout_s`` closes a connection idle that long.

    The flash-sale flow (all off by default: today's one-step order contract):
    ``reservation_ttl_s`` makes ``POST /orders`` a reservation held that long until paid
    (None = confirm on order); ``require_token`` makes the order routes ask for a bearer token
    from ``POST /login``; ``admit_per_s``/``burst`` is a token bucket in front of new orders
    (0 = none; burst 0 = one second's worth), ``max_active``/``session_s``/``room_order`` a
    waiting room (0 = none); ``sale_start_s`` opens the sale that many seconds after the
    storefront starts; ``prices`` (SKU → price) is what the product page shows.
    """

    stocks: Mapping[str, int]
    limits: Mapping[str, int] = field(default_factory=dict)
    backend: str = "memory"
    service_time_median_ms: float = 0.0
    service_time_sigma: float = 0.0
    max_concurrency: int = 0
    hot_row: bool = False
    racy_delay_ms: float = 1.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    namespace: str = "flashsale"
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE
    seed: int | None = None
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    reservation_ttl_s: float | None = None
    require_token: bool = False
    admit_per_s: float = 0.0
    burst: int = 0
    max_active: int = 0
    session_s: float = 60.0
    room_order: str = "fifo"
    sale_start_s: float = 0.0
    prices: Mapping[str, float] = field(default_factory=dict)

    @property
    def flow(self) -> bool:
        """Whether anything beyond the one-step order is on (the order route's slower path)."""
        return bool(
            self.reservation_ttl_s is not None
            or self.require_token
            or self.admit_per_s
            or self.max_active
            or self.sale_start_s
        )

    def __post_init__(self) -> None:
        for name, mapping in (("stock", self.stocks), ("limit", self.limits)):
            for sku, units in mapping.items():
                if not isinstance(sku, str) or not sku:
                    raise UsageError(f"{name}: SKU must be a non-empty string, got {sku!r}")
                if isinstance(units, bool) or not isinstance(units, int) or units < 0:
                    raise UsageError(f"{name} {sku}: must be an integer ≥ 0, got {units!r}")
        if self.backend not in BACKEND_NAMES:
            raise UsageError(
                f"unknown backend {self.backend!r} (one of {', '.join(BACKEND_NAMES)})"
            )
        for name in ("service_time_median_ms", "service_time_sigma", "racy_delay_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{name}: must be a finite number ≥ 0, got {value}")
        for name in ("read_timeout_s", "keepalive_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
                raise UsageError(
                    f"{name}: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {value}"
                )
        ttl = self.reservation_ttl_s
        if ttl is not None and not (math.isfinite(ttl) and 0 < ttl <= MAX_TIMEOUT_S):
            raise UsageError(
                f"reservation_ttl_s: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                f"got {ttl}"
            )
        for name, top in (("admit_per_s", MAX_ADMIT_PER_S), ("sale_start_s", MAX_TIMEOUT_S)):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= top):
                raise UsageError(f"{name}: must be a number in [0, {top:g}], got {value}")
        if not (math.isfinite(self.session_s) and 0 < self.session_s <= MAX_TIMEOUT_S):
            raise UsageError(
                f"session_s: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                f"got {self.session_s}"
            )
        for name in ("burst", "max_active"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{name}: must be an integer ≥ 0, got {value!r}")
        if self.room_order not in ROOM_ORDERS:
            raise UsageError(
                f"room_order: must be one of {', '.join(ROOM_ORDERS)}, got {self.room_order!r}"
            )
        for sku, price in self.prices.items():
            if isinstance(price, bool) or not isinstance(price, (int, float)):
                raise UsageError(f"price {sku}: must be a number ≥ 0, got {price!r}")
            if not (math.isfinite(price) and price >= 0):
                raise UsageError(f"price {sku}: must be a number ≥ 0, got {price!r}")
        if self.max_concurrency < 0:
            raise UsageError(f"max_concurrency: must be ≥ 0, got {self.max_concurrency}")
        if self.client_max_size < 1:
            raise UsageError(f"client_max_size: must be ≥ 1, got {self.client_max_size}")
        # freeze the catalogue so that a shared settings object cannot change under an app
        object.__setattr__(self, "stocks", MappingProxyType(dict(self.stocks)))
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))

    @classmethod
    def from_scenario(cls, scenario: Scenario, **overrides: Any) -> StorefrontSettings:
        """The storefront a scenario describes: its stock at scale, limits and knobs.

        ``overrides`` replace any field, e.g. ``backend="redis"`` or ``namespace="run42"``.
        """
        knobs = scenario.storefront
        settings = cls(
            stocks=scenario.stocks(),
            limits=scenario.per_buyer_limits(),
            backend=knobs.backend,
            service_time_median_ms=knobs.service_time_median_ms,
            service_time_sigma=knobs.service_time_sigma,
            max_concurrency=knobs.max_concurrency,
            hot_row=knobs.hot_row,
            racy_delay_ms=knobs.racy_delay_ms,
            reservation_ttl_s=knobs.reservation_ttl_s,
            require_token=knobs.require_token,
            admit_per_s=knobs.admit_per_s,
            burst=knobs.burst,
            max_active=knobs.max_active,
            session_s=knobs.session_s,
            room_order=knobs.room_order,
            sale_start_s=knobs.sale_start_s,
            seed=scenario.seed,
            prices={p.id: p.price for p in scenario.products},
        )
        return replace(settings, **overrides) if overrides else settings

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (for a storefront started in another process)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stocks"] = dict(self.stocks)
        out["limits"] = dict(self.limits)
        out["prices"] = dict(self.prices)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StorefrontSettings:
        """The settings :meth:`to_json` wrote; an unknown or badly typed field is a UsageError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UsageError(f"storefront settings: unknown field {unknown[0]!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise UsageError(f"storefront settings: {exc}") from None

    def backend_options(self) -> BackendOptions:
        """The store connection settings the backend factory takes."""
        return BackendOptions(
            redis_url=self.redis_url,
            postgres_dsn=self.postgres_dsn,
            namespace=self.namespace,
            racy_delay_s=self.racy_delay_ms / 1000.0,
            reservation_ttl_s=self.reservation_ttl_s,
        )
