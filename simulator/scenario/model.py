"""The scenario model: one flash sale as frozen dataclasses, whatever file or code built it.

Values are at real 11.11 scale (``scale = 1.0``); ``scale`` multiplies every demand rate and
every product's stock together, so a live run on one machine can use e.g. 0.001. The TOML reader
(:mod:`simulator.scenario.reader`) builds these; the ranges every number may take are in
:mod:`simulator.scenario.limits`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from simulator.demand import Curve
from simulator.errors import ScenarioError
from simulator.outcomes import DEFAULT_STATUS
from simulator.retry import Retry
from simulator.scenario.buyerdata import BuyerData, check_buyer_rows
from simulator.scenario.limits import MAX_INT64, SCALE

if TYPE_CHECKING:
    from simulator.scenario.journey import Journey, Stream

#: variables every request template may use (per order); a product's ``vars`` and the columns
#: of the buyers data file add more. Everything else in a template is literal text
BODY_FIELDS = ("order_id", "sku", "qty", "user_id")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_BODY = '{"order_id":"{order_id}","sku":"{sku}","qty":{qty},"user_id":"{user_id}"}'
#: the longest SKU id
MAX_SKU_LEN = 64


def sku_problem(sku: str) -> str | None:
    """None when ``sku`` is a valid SKU id, else what is wrong with it.

    The one rule for ids, wherever they come from (a scenario, ``serve --stock``): 1–64 letters,
    digits, '-', '_' or '.', so that an id is safe in a URL, a Redis key and a report column.
    """
    if not sku or len(sku) > MAX_SKU_LEN or not all(ch.isalnum() or ch in "-_." for ch in sku):
        return f"must be 1–{MAX_SKU_LEN} letters, digits, '-', '_' or '.', got {sku!r}"
    return None


@dataclass(frozen=True, slots=True)
class Product:
    """One SKU on sale. ``stock`` is at scale 1.0; see :meth:`Scenario.stock_of`."""

    id: str
    name: str
    stock: int
    price: float
    per_buyer_limit: int = 0  # 0 = no limit
    weight: float = 1.0  # popularity: share of the whole-sale curve, relative to the others
    curve: Curve | None = None  # demand of this product alone, added to its share
    # the storefront's own ids and the like, as template variables ({goods_id}): name → text
    vars: tuple[tuple[str, str], ...] = ()


#: the kinds of :class:`Think` (a think time or the buyers' pay delay)
THINK_KINDS = ("constant", "uniform", "lognormal", "exponential")


@dataclass(frozen=True, slots=True)
class Think:
    """A delay distribution in seconds: ``constant`` (a), ``uniform`` [a, b], ``lognormal``
    (median a, sigma b) or ``exponential`` (mean a); draws below ``floor`` (TOML ``min``) are
    raised to it. A journey step's think time, and the buyers' pay delay (``pay_delay_s``)."""

    kind: str = "constant"
    a: float = 0.0
    b: float = 0.0
    floor: float = 0.0

    def draw(self, u1: npt.NDArray[np.float64], u2: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """Draws in seconds from two arrays of uniforms in (0, 1) (inverse CDF; a lognormal
        takes its normal from both by Box–Muller)."""
        if self.kind == "lognormal":
            z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
            out = self.a * np.exp(self.b * z)
        else:
            out = self.quantile(u1)
        return np.maximum(out, self.floor) if self.floor > 0.0 else out

    def quantile(self, u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The inverse CDF at ``u`` in (0, 1), in seconds, ``floor`` applied: a non-decreasing
        function of one uniform (the model draws pay delays from 21 hashed bits with it)."""
        if self.kind == "constant":
            out = np.full(len(u), self.a)
        elif self.kind == "uniform":
            out = self.a + (self.b - self.a) * u
        elif self.kind == "exponential":
            out = -self.a * np.log1p(-u)
        else:
            out = self.a * np.exp(self.b * normal_quantile(u))
        return np.maximum(out, self.floor) if self.floor > 0.0 else out

    @property
    def lowest(self) -> float:
        """The smallest value a draw can take (seconds)."""
        if self.kind in ("constant", "uniform"):
            return max(self.a, self.floor)
        return self.floor

    @property
    def is_zero(self) -> bool:
        """Whether every draw is 0 (no draw needed)."""
        return self.kind == "constant" and self.a == 0.0 and self.floor == 0.0

    def as_toml(self) -> float | list[float] | dict[str, float]:
        """The value as a scenario writes it (seconds; reports echo it)."""
        if self.kind == "constant":
            return self.a
        if self.kind == "uniform":
            return [self.a, self.b]
        out = {"median": self.a, "sigma": self.b} if self.kind == "lognormal" else {"mean": self.a}
        return {**out, "min": self.floor} if self.floor > 0.0 else out


# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9)
_NA = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
       1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_NB = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
       6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
_NC = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
       -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_ND = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
       3.754408661907416e00)  # fmt: skip
_P_LOW = 0.02425


def normal_quantile(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The standard normal's inverse CDF at ``u`` in (0, 1), vectorised (Acklam)."""
    u = np.asarray(u, dtype=np.float64)
    q = u - 0.5
    r = q * q
    num = ((((_NA[0] * r + _NA[1]) * r + _NA[2]) * r + _NA[3]) * r + _NA[4]) * r + _NA[5]
    den = ((((_NB[0] * r + _NB[1]) * r + _NB[2]) * r + _NB[3]) * r + _NB[4]) * r + 1.0
    z = num * q / den
    tail = np.flatnonzero((u < _P_LOW) | (u > 1.0 - _P_LOW))
    if len(tail):
        ut = u[tail]
        s = np.sqrt(-2.0 * np.log(np.minimum(ut, 1.0 - ut)))
        num = ((((_NC[0] * s + _NC[1]) * s + _NC[2]) * s + _NC[3]) * s + _NC[4]) * s + _NC[5]
        den = (((_ND[0] * s + _ND[1]) * s + _ND[2]) * s + _ND[3]) * s + 1.0
        z[tail] = np.where(ut < 0.5, num / den, -num / den)
    return z


@dataclass(frozen=True, slots=True)
class Buyers:
    """Buyer behaviour: quantities, impatience, double clicks, repeat buyers and paying.

    The pay keys matter where orders reserve stock for a payment window (``[storefront]
    reservation_ttl_s``): of the orders that get a reservation (a hold), ``pay_share`` are paid
    by their buyer, ``pay_delay_s`` (a :class:`Think`: [low, high] uniform, a constant, a
    lognormal or an exponential with a ``min``) after the reservation's answer; a
    payment after the hold's TTL finds it expired. Of the holders who do not pay,
    ``abandon_share`` leave silently (the hold expires at the TTL and its stock comes back
    then); the others cancel it at their delay (stock back at once; at the TTL if the delay
    is longer). Without a TTL an order is final and these keys change nothing.
    """

    qty_values: tuple[int, ...] = (1,)
    qty_weights: tuple[float, ...] = (1.0,)
    duplicate_share: float = 0.0  # share of orders clicked twice (same order id sent again)
    duplicate_delay_s: tuple[float, float] = (0.05, 0.5)
    repeat_share: float = 0.0  # share of orders placed by a buyer who ordered earlier
    retry: Retry = field(default_factory=Retry)
    data: BuyerData | None = None  # per-buyer rows from a file; buyer k takes row k
    pay_share: float = 1.0  # of reservations, the share whose buyer pays
    # reservation answer → pay (or cancel); never below 1 ms (the model's windows need a bound)
    pay_delay_s: Think = Think("uniform", 5.0, 60.0)
    abandon_share: float = 1.0  # of holders who do not pay, the share who just leave


@dataclass(frozen=True, slots=True)
class BodyOutcome:
    """Outcomes read from the answer's body (``[target.outcome]``).

    For answers whose status is in ``statuses``, the value at ``path`` (a parsed JSON path) is
    looked up in ``values`` (the value as text → outcome name); a value not listed is
    ``other``. Other statuses go by the status map.
    """

    path: tuple[str | int, ...]
    values: tuple[tuple[str, str], ...]
    statuses: tuple[int, ...] = (200,)
    other: str = "error"


@dataclass(frozen=True, slots=True)
class Target:
    """Where orders go and how the storefront speaks (DESIGN.md, storefront contract).

    ``url`` None means the bundled mock storefront, started for the run. ``orders_path``
    (with its query), the values of ``headers`` and ``body`` are templates over the fields
    {order_id}, {sku}, {qty}, {user_id}, the products' ``vars`` and the buyers data columns;
    ``status`` maps HTTP status codes to outcomes (the defaults extended by the scenario's own:
    :func:`simulator.outcomes.merged_status`), anything unmapped is an error; ``outcome``
    reads outcomes from the body for some statuses.
    """

    url: str | None = None
    orders_path: str = "/orders"
    inventory_path: str = "/inventory"
    ledger_path: str = "/ledger"  # confirmed orders, for the audit; a target without one says so
    reset_path: str = "/reset"
    method: str = "POST"
    body: str = DEFAULT_BODY
    content_type: str = "application/json"
    status: tuple[tuple[int, str], ...] = DEFAULT_STATUS
    headers: tuple[tuple[str, str], ...] = ()  # name → value template, sent with every order
    outcome: BodyOutcome | None = None

    def templates(self) -> tuple[tuple[str, str], ...]:
        """Every template of a request with the scenario key it comes from (for messages)."""
        out = [("orders_path", self.orders_path), ("body", self.body)]
        out += [(f"headers.{name}", value) for name, value in self.headers]
        return tuple(out)

    def body_parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The body template split for pre-encoding: literals (one more than fields) and fields.

        ``literals[0] + value(fields[0]) + literals[1] + …`` renders a body.
        """
        pieces = PLACEHOLDER.split(self.body)
        return tuple(pieces[0::2]), tuple(pieces[1::2])


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How the load engine drives the target."""

    connections: int = 256
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    drain_s: float = 5.0  # after the last intended send, how long to wait for answers
    workers: int = 1


@dataclass(frozen=True, slots=True)
class StorefrontConfig:
    """Realism knobs of the bundled mock storefront (simulator.storefront)."""

    backend: str = "memory"
    service_time_median_ms: float = 0.0  # lognormal service time; 0 = none
    service_time_sigma: float = 0.0
    max_concurrency: int = 0  # in-flight orders beyond this are shed with 429; 0 = no limit
    hot_row: bool = False  # orders for one SKU serialise, as on one database row
    racy_delay_ms: float = 1.0  # the racy backends' simulated round trip between read and write
    # the flash-sale flow (off by default: one request confirms an order, as the contract says)
    reservation_ttl_s: float | None = None  # POST /orders holds stock this long; pay or it expires
    require_token: bool = False  # orders need a token from POST /login
    admit_per_s: float = 0.0  # token bucket: buyers admitted per second (0 = no bucket)
    burst: int = 0  # the bucket's depth
    max_active: int = 0  # waiting room: buyers inside at once (0 = no room)
    session_s: float = 60.0  # how long an admitted buyer stays inside
    room_order: str = "fifo"  # who gets in first at the drop: "fifo" or "shuffle"
    sale_start_s: float = 0.0  # orders before this second are refused (403); the room queues


#: where the audit's truth may come from (``[audit] source``)
AUDIT_SOURCES = ("http", "sql", "redis", "none")
#: DSN schemes of the ``sql`` source: PostgreSQL through asyncpg, MySQL/MariaDB through aiomysql
SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb")


@dataclass(frozen=True, slots=True)
class HttpAudit:
    """The storefront's own JSON endpoint lists stock per SKU (``[audit] source = "http"``).

    With no ``items`` path the document is the bundled storefront's ``/inventory`` (with its
    ``/ledger`` for the order-level checks), read at the target's ``inventory_path``. Otherwise
    ``url`` (absolute) or ``path`` (under the target) is fetched, ``items`` points to a list of
    records (``sku`` names the field holding the SKU id) or to an object keyed by SKU id, and
    ``sold`` / ``remaining`` name the fields per record (at least one).
    """

    url: str | None = None
    path: str | None = None
    items: tuple[str | int, ...] | None = None  # a parsed JSON path; None: the bundled format
    sku: str | None = None
    sold: str | None = None
    remaining: str | None = None
    timeout_s: float = 10.0

    @property
    def bundled(self) -> bool:
        """Whether the documents are the bundled storefront's ``/inventory`` + ``/ledger``."""
        return self.items is None


@dataclass(frozen=True, slots=True)
class SqlAudit:
    """The storefront's database says what it sold (``[audit] source = "sql"``).

    ``dsn`` (or the environment variable ``dsn_env`` holding it, so that a password is not
    written in the scenario) is a ``postgresql://`` or ``mysql://`` URL; ``query`` returns one
    row per SKU: the SKU id and the units sold. ``ledger_query``, if given, returns one row per
    order (order id as the client sent it, SKU, quantity, user id) for the order-level checks.
    """

    dsn: str | None = None
    dsn_env: str | None = None
    query: str = ""
    ledger_query: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class RedisAudit:
    """The storefront keeps stock in Redis keys (``[audit] source = "redis"``).

    ``key`` is a template with ``{sku}`` (e.g. ``stock:{sku}``); each key holds the units
    ``remaining`` (default) or ``sold``. ``url`` or ``url_env`` says where Redis is.
    """

    url: str | None = None
    url_env: str | None = None
    key: str = "stock:{sku}"
    holds: str = "remaining"
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class NoAudit:
    """No audit (``[audit] source = "none"``): the exit code is completion and thresholds."""


#: one of the audit sources a scenario may name
AuditSource = HttpAudit | SqlAudit | RedisAudit | NoAudit


def audit_source_name(source: AuditSource) -> str:
    """The source's name as a scenario writes it (``http``, ``sql``, ``redis``, ``none``)."""
    names = {HttpAudit: "http", SqlAudit: "sql", RedisAudit: "redis", NoAudit: "none"}
    return names[type(source)]


def scaled_stock(stock: int, scale: float) -> int:
    """``stock`` units at ``scale``, rounded to the nearest unit, at least 1 if there are any.

    Integers stay integers: scale 1.0 keeps the stock as it is, and a stock beyond 2**53 (the
    largest a float holds exactly) is scaled in exact rational arithmetic.
    """
    if stock <= 0:
        return 0
    if scale == 1.0:
        return stock
    if stock < 2**53:
        return max(1, round(stock * scale))
    return max(1, round(Fraction(stock) * Fraction(scale)))


@dataclass(frozen=True, slots=True)
class Scenario:
    """One flash sale: what is sold, who buys when, where orders go and how the run goes."""

    name: str
    seed: int
    duration_s: float
    products: tuple[Product, ...]
    demand: Curve
    description: str = ""
    scale: float = 1.0
    buyers: Buyers = field(default_factory=Buyers)
    target: Target = field(default_factory=Target)
    run: RunSettings = field(default_factory=RunSettings)
    storefront: StorefrontConfig = field(default_factory=StorefrontConfig)
    audit: AuditSource = field(default_factory=HttpAudit)
    journey: Journey | None = None  # the buyer's steps; None: one order request per row
    streams: tuple[Stream, ...] = ()  # background traffic on curves of its own
    thresholds: tuple[str, ...] = ()
    source: str = ""  # the file it came from, for messages

    def stock_of(self, product: Product) -> int:
        """The product's stock at this scenario's scale (at least 1 unit if it has any)."""
        return scaled_stock(product.stock, self.scale)

    def stocks(self) -> dict[str, int]:
        """SKU → initial stock at this scale: what the storefront is loaded with."""
        return {p.id: self.stock_of(p) for p in self.products}

    def per_buyer_limits(self) -> dict[str, int]:
        """SKU → per-buyer limit (0 = none)."""
        return {p.id: p.per_buyer_limit for p in self.products}

    def with_scale(self, scale: float) -> Scenario:
        """The same scenario at another scale (rates and stock together).

        ScenarioError when ``scale`` is out of range or the scaled stock would not fit a store.
        """
        label = self.source or self.name
        if (problem := SCALE.problem(scale)) is not None:
            raise ScenarioError(f"{label}: scale: {problem}")
        scaled = dataclasses.replace(self, scale=scale)
        check_total_stock(scaled)
        check_buyers_data(scaled)
        return scaled


def check_total_stock(scenario: Scenario) -> None:
    """ScenarioError when the stock at the scenario's scale, summed over SKUs, exceeds 2**63 − 1
    (what a store's counters and the reports' int64 arrays hold)."""
    total = sum(scenario.stocks().values())
    if total > MAX_INT64:
        raise ScenarioError(
            f"{scenario.source or scenario.name}: stock at scale {scenario.scale:g} totals "
            f"{total} units; at most 2**63 - 1 ({MAX_INT64}) — lower the stock or the scale"
        )


def check_buyers_data(scenario: Scenario) -> None:
    """ScenarioError when the buyers data file has fewer rows than the sale's expected buyers
    (and does not wrap); see :func:`simulator.scenario.buyerdata.check_buyer_rows`."""
    data = scenario.buyers.data
    if data is None or data.wrap:
        return
    from simulator.schedule import build_schedule  # the schedule is built from a scenario

    orders = build_schedule(scenario).size().orders
    label = f"{scenario.source or scenario.name}: buyers.data"
    check_buyer_rows(data, orders, label)
