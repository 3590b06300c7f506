"""The inventory protocol every storefront backend implements, and the values it returns.

A backend is the stock of a flash sale: it takes units for an order (or refuses), keeps a ledger
of confirmed orders, remembers each order id's first outcome (idempotency) and each buyer's
purchases per SKU (per-buyer limits). The HTTP layer (``simulator.storefront.app``) only
validates input and renders these values; backends never import aiohttp, so they can be tested
and benchmarked on their own.

Two modes, chosen by ``BackendOptions.reservation_ttl_s``. Confirm-on-order (None, the default):
:meth:`Backend.reserve` confirms at once (ledger, ``sold``). Reservation mode: ``reserve``
pre-deducts the stock into a hold that lasts the TTL; :meth:`Backend.pay` turns a hold into a
sale (ledger, ``sold``), :meth:`Backend.cancel` and :meth:`Backend.expire_due` give its stock
back, each check-and-change in one atomic step in the correct backends. The racy twins split
those steps and so carry the classic bugs: a payment racing the expiry (paid *and* returned)
and a hold returned twice; their snapshot counts both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from simulator.errors import FlashsaleError

#: ``Reservation.outcome``: the units were taken and the order is in the ledger
TAKEN = 0
#: ``Reservation.outcome``: fewer units left than the order asked for; nothing taken
OUT_OF_STOCK = 1
#: ``Reservation.outcome``: the buyer's purchases of the SKU would exceed its per-buyer limit
OVER_LIMIT = 2

#: names of the reservation codes above, by code (the HTTP layer renders them as 201, 409, 422)
RESERVATION_NAMES = ("taken", "out_of_stock", "over_limit")

#: ``OrderState.status`` of a reservation (reservation mode) or an order (confirm-on-order mode)
HELD, PAID, EXPIRED, CANCELLED, CONFIRMED, REFUSED = (
    "held", "paid", "expired", "cancelled", "confirmed", "refused"
)  # fmt: skip

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
    #: when a reservation's hold ends (clock seconds); 0.0 in confirm-on-order mode
    expires_at: float = 0.0


class OrderState(NamedTuple):
    """Where one order stands: its ``status`` (``HELD``, ``PAID``, …) and what it holds.

    ``changed`` is True when the call that returned it made that status (a payment taken, a
    hold cancelled or expired now), False when it found the order already there (a replay).
    """

    order_id: str
    status: str
    sku: str
    qty: int
    user_id: str
    expires_at: float = 0.0
    changed: bool = False


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
    #: reservation mode only (all 0 otherwise): units paid, held by live reservations, ever
    #: reserved and given back (expired or cancelled); extra returns of an already returned
    #: reservation, and reservations both paid and returned. A correct backend keeps
    #: ``initial == paid + held + remaining`` and ``reserved == paid + held + returned``.
    paid: int = 0
    held: int = 0
    reserved: int = 0
    returned: int = 0
    double_returns: int = 0
    paid_after_expiry: int = 0


class Overdue(NamedTuple):
    """One SKU's holds still held past a moment (``Backend.overdue_holds``).

    ``units``/``holds``: what they hold and how many; ``oldest_expires_at``: the earliest
    expiry among them (clock seconds), so a reader can say how late the sweep is.
    """

    units: int
    holds: int
    oldest_expires_at: float


def overdue_totals(holds: Iterable[tuple[str, int, float]]) -> dict[str, Overdue]:
    """Per SKU totals of held holds given as (sku, qty, expires_at)."""
    out: dict[str, Overdue] = {}
    for sku, qty, expires_at in holds:
        o = out.get(sku)
        out[sku] = (
            Overdue(qty, 1, expires_at)
            if o is None
            else Overdue(o.units + qty, o.holds + 1, min(o.oldest_expires_at, expires_at))
        )
    return out


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
    #: how long a reservation holds its stock; None = confirm-on-order (no reservations)
    reservation_ttl_s: float | None = None
    #: the clock of reservation expiries, in seconds (a test may pass its own)
    clock: Callable[[], float] = time.time


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

    async def pay(self, order_id: str) -> OrderState | None:
        """Pay a held reservation: its units become sold and enter the ledger.

        A reservation past its expiry is expired instead (its stock returned) and says so;
        paying a paid order again changes nothing. None for an unknown order id.
        """
        ...

    async def cancel(self, order_id: str) -> OrderState | None:
        """Cancel a held reservation and return its stock (the same step); None when unknown."""
        ...

    async def expire_due(self) -> int:
        """Expire every held reservation whose time is up, each with its stock return.

        Returns how many it expired. The storefront's sweeper calls it periodically.
        """
        ...

    async def overdue_holds(self, before: float) -> dict[str, Overdue]:
        """Per SKU, the holds still held whose expiry is before ``before`` (clock seconds).

        Stock the sweeper should have given back by then: the audit's undersell. Empty in
        confirm-on-order mode. Costs the holds due by ``before``, not every hold ever made.
        """
        ...

    async def stock_left(self, sku: str) -> int:
        """Units of ``sku`` free to order now (the product page's number), 0 when unknown."""
        ...

    async def order(self, order_id: str) -> OrderState | None:
        """Where an order stands now (a hold past its expiry reads as expired); None: unknown."""
        ...

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Put exactly these SKUs on sale with this stock; clear ledger, records and holds."""

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Every SKU's initial, sold, ledger and remaining numbers."""
        ...

    async def ledger(self) -> list[LedgerEntry]:
        """Every confirmed ledger entry, in the order it was recorded."""
        ...


#: a "now" before every expiry: parse a hold's stored state as it is
NEVER = float("-inf")
HOLD_STATUS = {"h": HELD, "p": PAID, "e": EXPIRED, "c": CANCELLED}


def hold_value(state: str, qty: int, expires_at: str, sku: str, user_id: str) -> str:
    """A hold as the stores keep it: ``state|qty|expiry|len(sku)|sku user_id``."""
    return f"{state}|{qty}|{expires_at}|{len(sku)}|{sku}{user_id}"


def parse_hold(order_id: str, value: str, changed: bool, now: float) -> OrderState:
    """A hold's value as an OrderState (a hold past its expiry reads expired)."""
    state, qty, exp, n, rest = value.split("|", 4)
    expires_at, size = float(exp), int(n)
    status = HOLD_STATUS[state]
    if status == HELD and now >= expires_at:
        status = EXPIRED
    return OrderState(order_id, status, rest[:size], int(qty), rest[size:], expires_at, changed)


def parse_refused(order_id: str, record: str, hold_mode: bool) -> OrderState:
    """An order without a hold from its outcome record: refused, or confirmed (confirm mode)."""
    if hold_mode:
        outcome, _, qty, _, sku = record.split("|", 4)
    else:
        outcome, _, qty, sku = record.split("|", 3)
    status = CONFIRMED if int(outcome) == TAKEN and not hold_mode else REFUSED
    return OrderState(order_id, status, sku, int(qty), "")


def parse_hold_record(record: str, replayed: bool) -> Reservation:
    """A reservation-mode outcome record ``outcome|remaining|qty|expiry|sku``."""
    outcome, remaining, qty, exp, sku = record.split("|", 4)
    return Reservation(int(outcome), sku, int(qty), int(remaining), replayed, float(exp))


def next_limits(current: Mapping[str, int], stocks: Mapping[str, int]) -> dict[str, int]:
    """Per-buyer limits after a reset to ``stocks``: known SKUs keep theirs, new ones get none."""
    return {sku: current.get(sku, 0) for sku in stocks}


#: how long :func:`cancel_until_done` waits before cancelling again
CANCEL_POLL_S = 0.05


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again while it runs.

    A store client can lose a cancellation that arrives in the middle of a command (redis-py
    8.2 sometimes retries the command instead), so one ``cancel()`` does not always end a task:
    closing a backend or stopping a sweeper would then wait forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_POLL_S)
