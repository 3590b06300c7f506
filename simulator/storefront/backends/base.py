"""The inventory protocol every storefront backend implements, and the values it returns.

A backend is the stock of a flash sale: it takes units for an order (or refuses), keeps a ledger
of confirmed orders, remembers each order id's first outcome (idempotency) and each buyer's
purchases per SKU (per-buyer limits). The HTTP layer (``simulator.storefront.app``) only
validates input and renders these values; backends never import aiohttp, so they can be tested
and benchmarked on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from simulator.errors import FlashsaleError

#: ``Reservation.outcome``: the units were taken and the order is in the ledger
TAKEN = 0
#: ``Reservation.outcome``: fewer units left than the order asked for; nothing taken
OUT_OF_STOCK = 1
#: ``Reservation.outcome``: the buyer's purchases of the SKU would exceed its per-buyer limit
OVER_LIMIT = 2

#: names of the reservation codes above, by code (the HTTP layer renders them as 201, 409, 422)
RESERVATION_NAMES = ("taken", "out_of_stock", "over_limit")

#: one confirmed ledger entry: (order_id, sku, qty, user_id)
LedgerEntry = tuple[str, str, int, str]


class StoreUnavailableError(FlashsaleError):
    """Redis or PostgreSQL cannot be reached (or set up) when the storefront starts."""


class Reservation(NamedTuple):
    """The outcome of one order, as first decided for its order id.

    ``remaining`` is the SKU's stock left as the backend saw it when deciding; ``replayed`` is
    True when the order id had been decided before and this is that first outcome again.
    """

    outcome: int
    sku: str
    qty: int
    remaining: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class SkuSnapshot:
    """One SKU's numbers, counted three ways so that an audit can cross-check them.

    ``sold`` is the backend's own counter, ``ledger_units``/``ledger_orders`` are summed from
    the ledger of confirmed orders, ``remaining`` is the stock left. A correct backend keeps
    ``sold == ledger_units == initial - remaining``; a racy one need not.
    """

    initial: int
    sold: int
    ledger_units: int
    ledger_orders: int
    remaining: int


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Store connection and racing settings that only some backends use.

    ``namespace`` is the Redis key prefix and the PostgreSQL schema the backend owns (it
    recreates its tables there at start); ``racy_delay_s`` is the simulated store round trip the
    racy backends await between reading and writing stock.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    namespace: str = "flashsale"
    racy_delay_s: float = 0.001
    pool_size: int = 32
    connect_timeout_s: float = 3.0


class Backend(Protocol):
    """Stock, ledger, idempotency records and per-buyer purchases of one flash sale."""

    @property
    def name(self) -> str:
        """The backend's name, as given to ``create_backend``."""
        ...

    @property
    def limits(self) -> Mapping[str, int]:
        """SKU → per-buyer limit (0 = none) of every SKU on sale now.

        The HTTP layer reads it to reject unknown SKUs and oversized quantities before calling
        :meth:`reserve`.
        """
        ...

    async def start(self) -> None:
        """Connect to the store, create what the backend needs, load the initial stock."""

    async def close(self) -> None:
        """Release connections; the stored data stays (for inspection) until the next start."""

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Take ``qty`` units of a known ``sku`` for an order, or say why not.

        A repeated ``order_id`` returns its first reservation (with ``replayed=True``) and takes
        nothing; correct backends guarantee this under concurrency, racy ones only try.
        """
        ...

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Put exactly these SKUs on sale with this stock; clear ledger, counters and records."""

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Every SKU's initial, sold, ledger and remaining numbers."""
        ...

    async def ledger(self) -> list[LedgerEntry]:
        """Every confirmed ledger entry, in the order it was recorded."""
        ...


def next_limits(current: Mapping[str, int], stocks: Mapping[str, int]) -> dict[str, int]:
    """Per-buyer limits after a reset to ``stocks``: known SKUs keep theirs, new ones get none."""
    return {sku: current.get(sku, 0) for sku in stocks}
