"""Scenario files: one flash sale described in TOML, parsed into frozen dataclasses.

Values in a file are at real 11.11 scale (``scale = 1.0``); ``scale`` multiplies every demand
rate and every product's stock together, so a live run on one machine can use e.g. 0.001.
Every rule broken in a file raises :class:`ScenarioError` naming the file and the key, e.g.
``durian.toml: products[0].stock: must be ≥ 0, got -5``; unknown keys are rejected with the
nearest valid name suggested. See ``scenarios/*.toml`` for commented examples.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.demand import Baseline, Bursts, Component, Countdown, Curve, Spike, Waves
from simulator.errors import ScenarioError
from simulator.outcomes import ANSWER_OUTCOMES, DEFAULT_STATUS
from simulator.retry import Retry

#: placeholders a request body template may use; everything else in it is literal text
BODY_FIELDS = ("order_id", "sku", "qty", "user_id")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_BODY = '{"order_id":"{order_id}","sku":"{sku}","qty":{qty},"user_id":"{user_id}"}'
BACKENDS = ("memory", "memory-racy", "redis", "redis-racy", "postgres", "postgres-racy")


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


@dataclass(frozen=True, slots=True)
class Buyers:
    """Buyer behaviour: quantities, impatience, double clicks and repeat buyers."""

    qty_values: tuple[int, ...] = (1,)
    qty_weights: tuple[float, ...] = (1.0,)
    duplicate_share: float = 0.0  # share of orders clicked twice (same order id sent again)
    duplicate_delay_s: tuple[float, float] = (0.05, 0.5)
    repeat_share: float = 0.0  # share of orders placed by a buyer who ordered earlier
    retry: Retry = field(default_factory=Retry)


@dataclass(frozen=True, slots=True)
class Target:
    """Where orders go and how the storefront speaks (DESIGN.md, storefront contract).

    ``url`` None means the bundled mock storefront, started for the run. ``body`` is a template
    with the fields {order_id}, {sku}, {qty}, {user_id}; ``status`` maps HTTP status codes to
    outcomes, anything unmapped is an error.
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

    def body_parts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The body template split for pre-encoding: literals (one more than fields) and fields.

        ``literals[0] + value(fields[0]) + literals[1] + …`` renders a body.
        """
        pieces = _PLACEHOLDER.split(self.body)
        return tuple(pieces[0::2]), tuple(pieces[1::2])

    def outcome_of(self, status: int) -> str:
        """The outcome a status code means for this target."""
        for code, outcome in self.status:
            if code == status:
                return outcome
        return "error"


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
    thresholds: tuple[str, ...] = ()
    source: str = ""  # the file it came from, for messages

    def stock_of(self, product: Product) -> int:
        """The product's stock at this scenario's scale (at least 1 unit if it has any)."""
        if product.stock <= 0:
            return 0
        return max(1, round(product.stock * self.scale))

    def stocks(self) -> dict[str, int]:
        """SKU → initial stock at this scale: what the storefront is loaded with."""
        return {p.id: self.stock_of(p) for p in self.products}

    def per_buyer_limits(self) -> dict[str, int]:
        """SKU → per-buyer limit (0 = none)."""
        return {p.id: p.per_buyer_limit for p in self.products}

    def with_scale(self, scale: float) -> Scenario:
        """The same scenario at another scale (rates and stock together)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ScenarioError(f"{self.source or self.name}: scale: must be > 0, got {scale}")
        return dataclasses.replace(self, scale=scale)


# ---------------------------------------------------------------------------------------------
# Parsing: a small reader that tracks the key path for messages and rejects unknown keys.


class _Table:
    """A TOML table being read: typed getters that name ``file: path.key`` in every error."""

    def __init__(self, file: str, path: str, data: Mapping[str, Any]) -> None:
        self.file, self.path, self.data = file, path, data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.file}: {self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = None, required: bool = False) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "is required")
            return default
        return self.data[name]

    def text(self, name: str, default: str | None = None, required: bool = False) -> str:
        value = self.raw(name, default, required)
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {value!r}")
        return value

    def opt_str(self, name: str) -> str | None:
        return self.text(name) if self.has(name) else (self.raw(name) or None)

    def integer(
        self,
        name: str,
        default: int | None = None,
        *,
        lo: int | None = None,
        required: bool = False,
    ) -> int:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if lo is not None and value < lo:
            raise self.fail(name, f"must be ≥ {lo}, got {value}")
        return value

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        strict_lo: bool = False,
        required: bool = False,
    ) -> float:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(name, f"must be finite, got {value}")
        if lo is not None and strict_lo and value <= lo:
            raise self.fail(name, f"must be > {lo:g}, got {value:g}")
        if lo is not None and not strict_lo and value < lo:
            raise self.fail(name, f"must be ≥ {lo:g}, got {value:g}")
        if hi is not None and value > hi:
            raise self.fail(name, f"must be ≤ {hi:g}, got {value:g}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def table(self, name: str) -> _Table | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {value!r}")
        return _Table(self.file, self.key(name), value)

    def tables(self, name: str) -> Iterator[_Table]:
        value = self.raw(name, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(name, f"must be an array of tables, got {value!r}")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{name}[{i}]", f"must be a table, got {item!r}")
            yield _Table(self.file, f"{self.key(name)}[{i}]", item)

    def finish(self) -> None:
        """Reject keys nobody read, suggesting the nearest valid one."""
        for name in self.data:
            if name not in self.seen:
                near = difflib.get_close_matches(name, sorted(self.seen), n=1, cutoff=0.5)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                valid = ", ".join(sorted(self.seen)) or "none"
                raise self.fail(name, f"unknown key{hint} (valid keys here: {valid})")


_TOP_KEYS = {
    "name",
    "description",
    "seed",
    "duration_s",
    "scale",
    "products",
    "catalog",
    "demand",
    "buyers",
    "target",
    "run",
    "storefront",
    "thresholds",
}


def _component(t: _Table, build: Any, message_key: str, **kwargs: Any) -> Any:
    try:
        value = build(**kwargs)
    except ValueError as exc:
        msg = str(exc)
        # component errors say "<param> must …"; name the key when they do
        head, _, rest = msg.partition(" must ")
        if rest and head in kwargs:
            raise t.fail(head, "must " + rest) from None
        raise t.fail(message_key, msg) from None
    t.finish()
    return value


def _parse_curve(t: _Table) -> Curve:
    parts: list[Component] = []
    if t.has("baseline_per_s"):
        rate = t.number("baseline_per_s", lo=0)
        parts.append(Baseline(rate))
    if (c := t.table("countdown")) is not None:
        parts.append(
            _component(
                c,
                Countdown,
                "countdown",
                start_s=c.number("start_s", 0.0),
                end_s=c.number("end_s", required=True),
                from_per_s=c.number("from_per_s", 0.0),
                to_per_s=c.number("to_per_s", required=True),
            )
        )
    if (s := t.table("spike")) is not None:
        parts.append(
            _component(
                s,
                Spike,
                "spike",
                at_s=s.number("at_s", 0.0),
                peak_per_s=s.number("peak_per_s", required=True),
                half_life_s=s.number("half_life_s", required=True),
            )
        )
    for w in t.tables("waves"):
        parts.append(
            _component(
                w,
                Waves,
                "waves",
                first_s=w.number("first_s", required=True),
                period_s=w.number("period_s", required=True),
                count=w.integer("count", required=True),
                peak_per_s=w.number("peak_per_s", required=True),
                half_life_s=w.number("half_life_s", required=True),
            )
        )
    bursts = None
    if (b := t.table("bursts")) is not None:
        bursts = _component(
            b,
            Bursts,
            "bursts",
            branching_ratio=b.number("branching_ratio", required=True),
            decay_s=b.number("decay_s", required=True),
        )
    t.finish()
    return Curve(tuple(parts), bursts)


def _parse_product(t: _Table) -> Product:
    curve_t = t.table("demand")
    product = Product(
        id=_sku(t, "id"),
        name=t.text("name", ""),
        stock=t.integer("stock", required=True, lo=0),
        price=t.number("price", 0.0, lo=0),
        per_buyer_limit=t.integer("per_buyer_limit", 0, lo=0),
        weight=t.number("weight", 1.0, lo=0),
        curve=_parse_curve(curve_t) if curve_t is not None else None,
    )
    t.finish()
    return product


def _sku(t: _Table, name: str) -> str:
    value = t.text(name, required=True)
    if not value or len(value) > 64 or not all(ch.isalnum() or ch in "-_." for ch in value):
        raise t.fail(name, f"must be 1–64 letters, digits, '-', '_' or '.', got {value!r}")
    return value


def _parse_catalog(t: _Table) -> list[Product]:
    """A generated range of SKUs with Zipf popularity: weight ∝ 1/rankˢ, stock ∝ weight."""
    count = t.integer("count", required=True, lo=1)
    prefix = t.text("id_prefix", "sku-")
    name = t.text("name", "item")
    stock_total = t.integer("stock_total", required=True, lo=0)
    price = t.number("price", 0.0, lo=0)
    limit = t.integer("per_buyer_limit", 0, lo=0)
    zipf_s = t.number("zipf_s", 1.0, lo=0)
    weight_total = t.number("weight_total", 1.0, lo=0)
    t.finish()
    raw = [1.0 / (rank**zipf_s) for rank in range(1, count + 1)]
    norm = sum(raw)
    width = len(str(count))
    return [
        Product(
            id=f"{prefix}{i + 1:0{width}d}",
            name=f"{name} #{i + 1}",
            stock=round(stock_total * w / norm),
            price=price,
            per_buyer_limit=limit,
            weight=weight_total * w / norm,
        )
        for i, w in enumerate(raw)
    ]


def _parse_buyers(t: _Table | None) -> Buyers:
    if t is None:
        return Buyers()
    qty_values = t.raw("qty_values", [1])
    if (
        not isinstance(qty_values, list)
        or not qty_values
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in qty_values)
    ):
        raise t.fail("qty_values", f"must be a non-empty list of integers ≥ 1, got {qty_values!r}")
    weights = t.raw("qty_weights", [1.0] * len(qty_values))
    if (
        not isinstance(weights, list)
        or len(weights) != len(qty_values)
        or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
        or any(w < 0 for w in weights)
        or sum(weights) <= 0
    ):
        raise t.fail(
            "qty_weights",
            f"must be {len(qty_values)} non-negative numbers with a positive sum "
            f"(one per qty_values entry), got {weights!r}",
        )
    delay = t.raw("duplicate_delay_s", [0.05, 0.5])
    if (
        not isinstance(delay, list)
        or len(delay) != 2
        or not all(isinstance(d, int | float) and not isinstance(d, bool) for d in delay)
        or not 0 <= delay[0] <= delay[1]
    ):
        raise t.fail("duplicate_delay_s", f"must be [low, high] with 0 ≤ low ≤ high, got {delay!r}")
    retry = Retry()
    if (r := t.table("retry")) is not None:
        retry = Retry(
            share=r.number("share", 0.0, lo=0, hi=1),
            max_attempts=r.integer("max_attempts", 3, lo=1),
            backoff_s=r.number("backoff_s", 0.2, lo=0),
            backoff_factor=r.number("backoff_factor", 2.0, lo=1),
            jitter=r.number("jitter", 0.5, lo=0, hi=1),
        )
        r.finish()
    buyers = Buyers(
        qty_values=tuple(qty_values),
        qty_weights=tuple(float(w) for w in weights),
        duplicate_share=t.number("duplicate_share", 0.0, lo=0, hi=1),
        duplicate_delay_s=(float(delay[0]), float(delay[1])),
        repeat_share=t.number("repeat_share", 0.0, lo=0, hi=1),
        retry=retry,
    )
    t.finish()
    return buyers


def _parse_target(t: _Table | None) -> Target:
    if t is None:
        return Target()
    url = t.opt_str("url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise t.fail("url", f"must start with http:// or https://, got {url!r}")
    paths = {}
    for key in ("orders_path", "inventory_path", "ledger_path", "reset_path"):
        value = t.text(key, getattr(Target(), key))
        if not value.startswith("/"):
            raise t.fail(key, f"must start with '/', got {value!r}")
        paths[key] = value
    method = t.text("method", "POST").upper()
    if method not in ("POST", "PUT"):
        raise t.fail("method", f"must be POST or PUT, got {method!r}")
    body = t.text("body", DEFAULT_BODY)
    unknown = [m for m in _PLACEHOLDER.findall(body) if m not in BODY_FIELDS]
    if unknown:
        raise t.fail(
            "body",
            f"bad template: unknown field {{{unknown[0]}}}; "
            f"fields: {' '.join('{' + f + '}' for f in BODY_FIELDS)}",
        )
    status = DEFAULT_STATUS
    if (s := t.table("status")) is not None:
        pairs = []
        for code_text, outcome in s.data.items():
            s.seen.add(code_text)
            if not code_text.isdigit() or not 100 <= int(code_text) <= 599:
                raise s.fail(code_text, "must be an HTTP status code (100–599)")
            if outcome not in ANSWER_OUTCOMES:
                raise s.fail(
                    code_text, f"must be one of {', '.join(ANSWER_OUTCOMES)}, got {outcome!r}"
                )
            pairs.append((int(code_text), outcome))
        status = tuple(pairs)
    target = Target(
        url=url,
        method=method,
        body=body,
        content_type=t.text("content_type", "application/json"),
        status=status,
        **paths,
    )
    t.finish()
    return target


def _parse_run(t: _Table | None) -> RunSettings:
    if t is None:
        return RunSettings()
    run = RunSettings(
        connections=t.integer("connections", 256, lo=1),
        timeout_s=t.number("timeout_s", 5.0, lo=0, strict_lo=True),
        connect_timeout_s=t.number("connect_timeout_s", 2.0, lo=0, strict_lo=True),
        drain_s=t.number("drain_s", 5.0, lo=0),
        workers=t.integer("workers", 1, lo=1),
    )
    t.finish()
    return run


def _parse_storefront(t: _Table | None) -> StorefrontConfig:
    if t is None:
        return StorefrontConfig()
    backend = t.text("backend", "memory")
    if backend not in BACKENDS:
        near = difflib.get_close_matches(backend, BACKENDS, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise t.fail("backend", f"unknown backend {backend!r}{hint} (one of {', '.join(BACKENDS)})")
    cfg = StorefrontConfig(
        backend=backend,
        service_time_median_ms=t.number("service_time_median_ms", 0.0, lo=0),
        service_time_sigma=t.number("service_time_sigma", 0.0, lo=0),
        max_concurrency=t.integer("max_concurrency", 0, lo=0),
        hot_row=t.flag("hot_row", False),
        racy_delay_ms=t.number("racy_delay_ms", 1.0, lo=0),
    )
    t.finish()
    return cfg


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from parsed TOML; ``source`` names the file in errors."""
    top = _Table(source, "", data)
    name = top.text("name", required=True)
    seed = top.integer("seed", required=True, lo=0)
    duration_s = top.number("duration_s", required=True, lo=0, strict_lo=True)
    scale = top.number("scale", 1.0, lo=0, strict_lo=True)
    products = [_parse_product(p) for p in top.tables("products")]
    for c in top.tables("catalog"):
        products.extend(_parse_catalog(c))
    if not products:
        raise top.fail("products", "at least one product (or a [[catalog]]) is required")
    seen: dict[str, int] = {}
    for i, p in enumerate(products):
        if p.id in seen:
            raise top.fail(f"products[{i}].id", f"duplicate SKU {p.id!r}")
        seen[p.id] = i
    demand_t = top.table("demand")
    demand = _parse_curve(demand_t) if demand_t is not None else Curve()
    if demand.is_empty and all(p.curve is None or p.curve.is_empty for p in products):
        raise top.fail("demand", "no demand: give the sale or a product at least one component")
    if sum(p.weight for p in products) <= 0 and not demand.is_empty:
        raise top.fail("products", "weights must not all be 0 when [demand] is set")
    thresholds = top.raw("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(x, str) for x in thresholds):
        raise top.fail("thresholds", f"must be a list of strings, got {thresholds!r}")
    scenario = Scenario(
        name=name,
        description=top.text("description", ""),
        seed=seed,
        duration_s=duration_s,
        scale=scale,
        products=tuple(products),
        demand=demand,
        buyers=_parse_buyers(top.table("buyers")),
        target=_parse_target(top.table("target")),
        run=_parse_run(top.table("run")),
        storefront=_parse_storefront(top.table("storefront")),
        thresholds=tuple(thresholds),
        source=source,
    )
    top.finish()
    assert top.seen <= _TOP_KEYS
    return scenario


def load_scenario(path: str | Path, scale: float | None = None) -> Scenario:
    """Read and validate a scenario file; ``scale`` overrides the file's own."""
    p = Path(path)
    label = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label}: not valid TOML: {exc}") from None
    scenario = parse_scenario(data, label)
    scenario = dataclasses.replace(scenario, source=str(p))
    if scale is not None:
        scenario = scenario.with_scale(scale)
    return scenario
