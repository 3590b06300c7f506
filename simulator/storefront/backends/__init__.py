"""Inventory backends of the mock storefront, one correct and one racy per store.

Use :func:`create_backend` to build one by name; every backend implements
:class:`~simulator.storefront.backends.base.Backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from simulator.errors import UsageError
from simulator.storefront.backends.base import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    OUT_OF_STOCK,
    OVER_LIMIT,
    PAID,
    REFUSED,
    RESERVATION_NAMES,
    TAKEN,
    Backend,
    BackendOptions,
    LedgerEntry,
    OrderState,
    Reservation,
    SkuSnapshot,
    StoreUnavailableError,
)

__all__ = [
    "BACKEND_NAMES",
    "CANCELLED",
    "CONFIRMED",
    "EXPIRED",
    "HELD",
    "OUT_OF_STOCK",
    "OVER_LIMIT",
    "PAID",
    "REFUSED",
    "RESERVATION_NAMES",
    "TAKEN",
    "Backend",
    "BackendOptions",
    "LedgerEntry",
    "OrderState",
    "Reservation",
    "SkuSnapshot",
    "StoreUnavailableError",
    "create_backend",
]

#: every backend name, correct ones first: the one list (scenarios and the CLI check names here;
#: importing this package loads only ``base``, no store client)
BACKEND_NAMES = ("memory", "memory-racy", "redis", "redis-racy", "postgres", "postgres-racy")


def create_backend(
    name: str,
    stocks: Mapping[str, int],
    limits: Mapping[str, int] | None = None,
    options: BackendOptions | None = None,
) -> Backend:
    """A backend by name, loaded with ``stocks`` (SKU → units) and per-buyer ``limits``.

    The backend is not connected yet: ``await backend.start()`` before use and
    ``await backend.close()`` after. Store clients are imported only for their backend.
    """
    limits = limits or {}
    options = options or BackendOptions()
    if name in ("memory", "memory-racy"):
        from simulator.storefront.backends.memory import MemoryBackend, RacyMemoryBackend

        cls: Callable[[Mapping[str, int], Mapping[str, int], BackendOptions], Backend]
        cls = MemoryBackend if name == "memory" else RacyMemoryBackend
    elif name in ("redis", "redis-racy"):
        from simulator.storefront.backends.redis_store import RacyRedisBackend, RedisBackend

        cls = RedisBackend if name == "redis" else RacyRedisBackend
    elif name in ("postgres", "postgres-racy"):
        from simulator.storefront.backends.postgres import PostgresBackend, RacyPostgresBackend

        cls = PostgresBackend if name == "postgres" else RacyPostgresBackend
    else:
        raise UsageError(f"unknown backend {name!r} (one of {', '.join(BACKEND_NAMES)})")
    return cls(stocks, limits, options)
