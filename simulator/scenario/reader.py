"""The TOML reader of scenario files: each broken rule is one ScenarioError naming file and key,

e.g. ``durian.toml: products[0].stock: must be ≥ 0, got -5``; unknown keys are rejected with the
nearest valid name suggested; every number is checked against its range
(:mod:`simulator.scenario.limits`) here, where it is parsed. See ``scenarios/*.toml`` for
commented examples.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.demand import Baseline, Bursts, Component, Countdown, Curve, Spike, Waves
from simulator.errors import ScenarioError
from simulator.files import read_regular_file
from simulator.jsonpath import JsonPathError, parse_path
from simulator.outcomes import ANSWER_OUTCOMES, DEFAULT_STATUS, merged_status, value_key
from simulator.retry import Retry
from simulator.scenario import limits as L
from simulator.scenario.buyerdata import BuyerData, load_buyer_data
from simulator.scenario.journey import (
    EXTRACT_KINDS,
    STEP_METHODS,
    Extract,
    Journey,
    Poll,
    Step,
    Stream,
)
from simulator.scenario.model import (
    AUDIT_SOURCES,
    BODY_FIELDS,
    DEFAULT_BODY,
    PLACEHOLDER,
    SQL_SCHEMES,
    AuditSource,
    BodyOutcome,
    Buyers,
    HttpAudit,
    NoAudit,
    Product,
    RedisAudit,
    RunSettings,
    Scenario,
    SqlAudit,
    StorefrontConfig,
    Target,
    Think,
    check_buyers_data,
    check_total_stock,
    sku_problem,
)
from simulator.scenario.shape import (
    check_content_type,
    check_header_name,
    check_journey,
    check_streams,
    check_templates,
    literal_problem,
    path_problem,
)
from simulator.storefront.admission import ROOM_ORDERS
from simulator.storefront.backends import BACKEND_NAMES

#: the largest scenario file read (the shipped ones are a few kB; catalogs are generated)
MAX_SCENARIO_BYTES = 1 << 20


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
        self, name: str, default: int | None, rng: L.Range, *, required: bool = False
    ) -> int:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if (problem := rng.problem(value)) is not None:
            raise self.fail(name, problem)
        return value

    def number(
        self, name: str, default: float | None, rng: L.Range, *, required: bool = False
    ) -> float:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {value!r}")
        if (problem := rng.problem(float(value))) is not None:
            raise self.fail(name, problem)
        return float(value)

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
    "audit",
    "thresholds",
    "journey",
    "streams",
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
        parts.append(Baseline(t.number("baseline_per_s", None, L.RATE_PER_S)))
    if (c := t.table("countdown")) is not None:
        parts.append(
            _component(
                c,
                Countdown,
                "countdown",
                start_s=c.number("start_s", 0.0, L.TIME_S),
                end_s=c.number("end_s", None, L.TIME_S, required=True),
                from_per_s=c.number("from_per_s", 0.0, L.RATE_PER_S),
                to_per_s=c.number("to_per_s", None, L.RATE_PER_S, required=True),
            )
        )
    if (s := t.table("spike")) is not None:
        parts.append(
            _component(
                s,
                Spike,
                "spike",
                at_s=s.number("at_s", 0.0, L.TIME_S),
                peak_per_s=s.number("peak_per_s", None, L.RATE_PER_S, required=True),
                half_life_s=s.number("half_life_s", None, L.SPAN_S, required=True),
            )
        )
    for w in t.tables("waves"):
        parts.append(
            _component(
                w,
                Waves,
                "waves",
                first_s=w.number("first_s", None, L.TIME_S, required=True),
                period_s=w.number("period_s", None, L.SPAN_S, required=True),
                count=w.integer("count", None, L.WAVES_COUNT, required=True),
                peak_per_s=w.number("peak_per_s", None, L.RATE_PER_S, required=True),
                half_life_s=w.number("half_life_s", None, L.SPAN_S, required=True),
            )
        )
    bursts = None
    if (b := t.table("bursts")) is not None:
        bursts = _component(
            b,
            Bursts,
            "bursts",
            branching_ratio=b.number("branching_ratio", None, L.BRANCHING, required=True),
            decay_s=b.number("decay_s", None, L.SPAN_S, required=True),
        )
    t.finish()
    return Curve(tuple(parts), bursts)


def _sku(t: _Table, name: str) -> str:
    value = t.text(name, required=True)
    if (problem := sku_problem(value)) is not None:
        raise t.fail(name, problem)
    return value


def _parse_product(t: _Table) -> Product:
    curve_t = t.table("demand")
    product = Product(
        id=_sku(t, "id"),
        name=t.text("name", ""),
        stock=t.integer("stock", None, L.STOCK, required=True),
        price=t.number("price", 0.0, L.PRICE),
        per_buyer_limit=t.integer("per_buyer_limit", 0, L.PER_BUYER_LIMIT),
        weight=t.number("weight", 1.0, L.WEIGHT),
        curve=_parse_curve(curve_t) if curve_t is not None else None,
        vars=_parse_vars(t),
    )
    t.finish()
    return product


def _parse_vars(t: _Table) -> tuple[tuple[str, str], ...]:
    """A product's own template variables (``vars = { goods_id = 1 }``): name → text."""
    v = t.table("vars")
    if v is None:
        return ()
    out = []
    for name, value in v.data.items():
        v.seen.add(name)
        if not _VAR_NAME.fullmatch(name):
            raise v.fail(name, "must be a variable name (letters, digits, '_')")
        if name in BODY_FIELDS:
            raise v.fail(name, f"{{{name}}} is built in (the order's own); pick another name")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise v.fail(name, f"must be a string or an integer, got {value!r}")
        text = str(value)
        if (problem := literal_problem(text)) is not None:
            raise v.fail(name, problem)
        out.append((name, text))
    return tuple(out)


_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_catalog(t: _Table, room: int) -> list[Product]:
    """A generated range of SKUs with Zipf popularity: weight ∝ 1/rankˢ, stock ∝ weight.

    ``room`` is how many more SKUs the scenario may have (limits.MAX_SKUS in all).
    """
    count = t.integer("count", None, L.CATALOG_COUNT, required=True)
    if count > room:
        raise t.fail(
            "count",
            f"{count} SKUs would make more than {L.MAX_SKUS:,} in the scenario "
            f"(room left: {room:,})",
        )
    prefix = t.text("id_prefix", "sku-")
    name = t.text("name", "item")
    stock_total = t.integer("stock_total", None, L.STOCK, required=True)
    price = t.number("price", 0.0, L.PRICE)
    limit = t.integer("per_buyer_limit", 0, L.PER_BUYER_LIMIT)
    zipf_s = t.number("zipf_s", 1.0, L.ZIPF_S)
    weight_total = t.number("weight_total", 1.0, L.WEIGHT)
    t.finish()
    width = len(str(count))
    if (problem := sku_problem(f"{prefix}{count}")) is not None:
        raise t.fail("id_prefix", f"makes ids like {prefix}{count:0{width}d}, which {problem}")
    raw = [1.0 / (rank**zipf_s) for rank in range(1, count + 1)]
    norm = sum(raw)
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


def _numbers(t: _Table, name: str, value: Any, rng: L.Range, integer: bool) -> list[Any]:
    kind = int if integer else int | float
    if not isinstance(value, list) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    ):
        what = "integers" if integer else "numbers"
        raise t.fail(name, f"must be a list of {what}, got {value!r}")
    for v in value:
        if (problem := rng.problem(v if integer else float(v))) is not None:
            raise t.fail(name, f"every entry {problem}")
    return value


def _parse_retry(r: _Table) -> Retry:
    retry = Retry(
        share=r.number("share", 0.0, L.SHARE),
        max_attempts=r.integer("max_attempts", 3, L.MAX_ATTEMPTS),
        backoff_s=r.number("backoff_s", 0.2, L.BACKOFF_S),
        backoff_factor=r.number("backoff_factor", 2.0, L.BACKOFF_FACTOR),
        jitter=r.number("jitter", 0.5, L.SHARE),
    )
    r.finish()
    if retry.max_attempts >= 2:
        last_s = retry.backoff_s * retry.backoff_factor ** (retry.max_attempts - 2)
        if last_s * (1 + retry.jitter) > L.MAX_DURATION_S:
            raise r.fail(
                "max_attempts",
                f"the last of {retry.max_attempts} attempts would wait {last_s:.3g} s "
                f"(backoff_s·backoff_factor^(max_attempts − 2)); at most "
                f"{L.MAX_DURATION_S:,.0f} s (one day) — lower max_attempts, backoff_s or "
                "backoff_factor",
            )
    return retry


def _parse_buyers(t: _Table | None, base_dir: Path) -> Buyers:
    if t is None:
        return Buyers()
    qty_values = t.raw("qty_values", [1])
    if (
        not isinstance(qty_values, list)
        or not qty_values
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in qty_values)
    ):
        raise t.fail("qty_values", f"must be a non-empty list of integers ≥ 1, got {qty_values!r}")
    if (problem := L.QTY_VALUES.problem(len(qty_values))) is not None:
        raise t.fail("qty_values", f"its length {problem}")
    _numbers(t, "qty_values", qty_values, L.QTY, integer=True)
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
    _numbers(t, "qty_weights", weights, L.WEIGHT, integer=False)
    delay = _interval(t, "duplicate_delay_s", [0.05, 0.5], L.DELAY_S)
    pay_delay = _parse_pay_delay(t)
    r = t.table("retry")
    buyers = Buyers(
        qty_values=tuple(qty_values),
        qty_weights=tuple(float(w) for w in weights),
        duplicate_share=t.number("duplicate_share", 0.0, L.SHARE),
        duplicate_delay_s=delay,
        repeat_share=t.number("repeat_share", 0.0, L.SHARE),
        retry=_parse_retry(r) if r is not None else Retry(),
        data=_parse_buyer_data(t, base_dir),
        pay_share=t.number("pay_share", 1.0, L.SHARE),
        pay_delay_s=pay_delay,
        abandon_share=t.number("abandon_share", 1.0, L.SHARE),
    )
    t.finish()
    return buyers


def _interval(t: _Table, name: str, default: list[float], rng: L.Range) -> tuple[float, float]:
    """A uniform distribution written ``[low, high]`` (seconds), both ends in ``rng``."""
    value = t.raw(name, default)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(d, int | float) and not isinstance(d, bool) for d in value)
        or not value[0] <= value[1]
    ):
        raise t.fail(name, f"must be [low, high] with low ≤ high, got {value!r}")
    _numbers(t, name, value, rng, integer=False)
    return float(value[0]), float(value[1])


def _parse_buyer_data(t: _Table, base_dir: Path) -> BuyerData | None:
    wrap = t.flag("wrap", False)
    name = t.opt_str("data")
    if name is None:
        if wrap:
            raise t.fail("wrap", 'is only for a data file (give data = "buyers.csv")')
        return None
    if not name.strip():
        raise t.fail("data", "must name a file (CSV or JSON lines)")
    path = Path(name)
    if not path.is_absolute():
        path = base_dir / path
    return load_buyer_data(path, f"{t.file}: {t.key('data')}", wrap)


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
        if (problem := path_problem(value, query=key == "orders_path")) is not None:
            raise t.fail(key, problem)
        if key != "orders_path" and PLACEHOLDER.search(value):
            raise t.fail(key, "is not a template: only orders_path takes {variables}")
        paths[key] = value
    method = t.text("method", "POST").upper()
    if method not in ("POST", "PUT"):
        raise t.fail("method", f"must be POST or PUT, got {method!r}")
    body = t.text("body", DEFAULT_BODY)
    content_type = t.text("content_type", "application/json")
    if (problem := check_content_type(content_type)) is not None:
        raise t.fail("content_type", problem)
    target = Target(
        url=url,
        method=method,
        body=body,
        content_type=content_type,
        status=_parse_status(t),
        headers=_parse_headers(t),
        outcome=_parse_outcome(t.table("outcome")),
        **paths,
    )
    t.finish()
    return target


def _parse_status(t: _Table) -> tuple[tuple[int, str], ...]:
    """``status``: HTTP status → outcome name, extending the defaults."""
    s = t.table("status")
    if s is None:
        return DEFAULT_STATUS
    pairs = []
    for code_text, outcome in s.data.items():
        s.seen.add(code_text)
        if not code_text.isdigit() or not 100 <= int(code_text) <= 599:
            raise s.fail(code_text, "must be an HTTP status code (100–599)")
        if outcome not in ANSWER_OUTCOMES:
            raise s.fail(code_text, f"must be one of {', '.join(ANSWER_OUTCOMES)}, got {outcome!r}")
        pairs.append((int(code_text), outcome))
    return merged_status(tuple(pairs))


def _parse_headers(t: _Table) -> tuple[tuple[str, str], ...]:
    h = t.table("headers")
    if h is None:
        return ()
    out: list[tuple[str, str]] = []
    for name, value in h.data.items():
        h.seen.add(name)
        if (problem := check_header_name(name)) is not None:
            raise h.fail(name, problem)
        if any(n.lower() == name.lower() for n, _ in out):
            raise h.fail(name, "given twice (header names are case-insensitive)")
        if not isinstance(value, str):
            raise h.fail(name, f"must be a string, got {value!r}")
        if (problem := literal_problem(value, header=True)) is not None:
            raise h.fail(name, problem)
        out.append((name, value))
    return tuple(out)


def _parse_outcome(t: _Table | None) -> BodyOutcome | None:
    """``[target.outcome]``: path, values (value → outcome), statuses, other."""
    if t is None:
        return None
    try:
        path = parse_path(t.text("path", required=True))
    except JsonPathError as exc:
        raise t.fail("path", str(exc)) from None
    statuses = t.raw("statuses", [200])
    if (
        not isinstance(statuses, list)
        or not statuses
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in statuses)
        or not all(100 <= c <= 599 for c in statuses)
    ):
        raise t.fail("statuses", f"must be a non-empty list of HTTP statuses, got {statuses!r}")
    other = t.text("other", "error")
    if other not in ANSWER_OUTCOMES:
        raise t.fail("other", f"must be one of {', '.join(ANSWER_OUTCOMES)}, got {other!r}")
    v = t.table("values")
    if v is None or not v.data:
        raise t.fail(
            "values",
            'is required: the body values and their outcomes, e.g. { "0" = "confirmed", '
            '"1001" = "sold_out" }',
        )
    values = []
    for key, name in v.data.items():
        v.seen.add(key)
        if name not in ANSWER_OUTCOMES:
            raise v.fail(key, f"must be one of {', '.join(ANSWER_OUTCOMES)}, got {name!r}")
        values.append((key, name))
    t.finish()
    return BodyOutcome(path, tuple(values), tuple(dict.fromkeys(statuses)), other)


def _parse_run(t: _Table | None) -> RunSettings:
    if t is None:
        return RunSettings()
    run = RunSettings(
        connections=t.integer("connections", 256, L.CONNECTIONS),
        timeout_s=t.number("timeout_s", 5.0, L.TIMEOUT_S),
        connect_timeout_s=t.number("connect_timeout_s", 2.0, L.TIMEOUT_S),
        drain_s=t.number("drain_s", 5.0, L.DRAIN_S),
        workers=t.integer("workers", 1, L.WORKERS),
    )
    t.finish()
    return run


def _parse_storefront(t: _Table | None) -> StorefrontConfig:
    if t is None:
        return StorefrontConfig()
    backend = t.text("backend", "memory")
    if backend not in BACKEND_NAMES:
        near = difflib.get_close_matches(backend, BACKEND_NAMES, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise t.fail(
            "backend", f"unknown backend {backend!r}{hint} (one of {', '.join(BACKEND_NAMES)})"
        )
    cfg = StorefrontConfig(
        backend=backend,
        service_time_median_ms=t.number("service_time_median_ms", 0.0, L.SERVICE_TIME_MS),
        service_time_sigma=t.number("service_time_sigma", 0.0, L.SIGMA),
        max_concurrency=t.integer("max_concurrency", 0, L.MAX_CONCURRENCY),
        hot_row=t.flag("hot_row", False),
        racy_delay_ms=t.number("racy_delay_ms", 1.0, L.SERVICE_TIME_MS),
        reservation_ttl_s=(
            t.number("reservation_ttl_s", None, L.RESERVATION_TTL_S)
            if t.has("reservation_ttl_s")
            else None
        ),
        require_token=t.flag("require_token", False),
        admit_per_s=t.number("admit_per_s", 0.0, L.RATE_PER_S),
        burst=t.integer("burst", 0, L.ADMITTED),
        max_active=t.integer("max_active", 0, L.ADMITTED),
        session_s=t.number("session_s", 60.0, L.SESSION_S),
        room_order=t.text("room_order", "fifo"),
        sale_start_s=t.number("sale_start_s", 0.0, L.TIME_S),
    )
    if cfg.room_order not in ROOM_ORDERS:
        raise t.fail(
            "room_order", f"must be one of {', '.join(ROOM_ORDERS)}, got {cfg.room_order!r}"
        )
    t.finish()
    return cfg


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _secret(t: _Table, name: str, env: str, check: Any) -> tuple[str | None, str | None]:
    """A URL given in the scenario (``name``) or by an environment variable's name (``env``)."""
    value, var = t.opt_str(name), t.opt_str(env)
    if (value is None) == (var is None):
        raise t.fail(name, f"give {name} or {env} (the name of an environment variable holding it)")
    if var is not None and not _ENV_NAME.fullmatch(var):
        raise t.fail(env, f"must be an environment variable's name, got {var!r}")
    if value is not None and (problem := check(value)) is not None:
        raise t.fail(name, problem)
    return value, var


def dsn_problem(dsn: str) -> str | None:
    """None when ``dsn`` is a database URL the ``sql`` audit can use, else what is wrong.

    The message never repeats the DSN (it may hold a password); it names the scheme.
    """
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        return f"not a database URL ({exc})"
    if parts.scheme not in SQL_SCHEMES:
        got = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return f"must start with {' or '.join(s + '://' for s in SQL_SCHEMES)}, got {got}"
    if not parts.hostname and parts.scheme.startswith(("mysql", "mariadb")):
        return f"{parts.scheme}:// needs a host, e.g. mysql://user@127.0.0.1:3306/shop"
    return None


def redis_url_problem(url: str) -> str | None:
    """None when ``url`` is a Redis URL (redis://, rediss://, unix://), else what is wrong."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        return f"not a Redis URL ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"must start with redis://, rediss:// or unix://, got {parts.scheme or 'no scheme'}"
    return None


def _http_url_problem(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https://, got {url!r}"
    return None


def _parse_audit(t: _Table | None) -> AuditSource:
    if t is None:
        return HttpAudit()
    source = t.text("source", "http")
    if source not in AUDIT_SOURCES:
        near = difflib.get_close_matches(source, AUDIT_SOURCES, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise t.fail("source", f"unknown {source!r}{hint} (one of {', '.join(AUDIT_SOURCES)})")
    audit: AuditSource
    if source == "none":
        audit = NoAudit()
    elif source == "http":
        audit = _parse_http_audit(t)
    elif source == "sql":
        dsn, dsn_env = _secret(t, "dsn", "dsn_env", dsn_problem)
        query = t.text("query", required=True)
        ledger = t.opt_str("ledger_query")
        for key, q in (("query", query), ("ledger_query", ledger)):
            if q is not None and not q.strip():
                raise t.fail(key, "must not be empty")
        audit = SqlAudit(dsn, dsn_env, query, ledger, t.number("timeout_s", 10.0, L.TIMEOUT_S))
    else:
        url, url_env = _secret(t, "url", "url_env", redis_url_problem)
        key = t.text("key", "stock:{sku}")
        fields = PLACEHOLDER.findall(key)
        if fields != ["sku"] or key.count("{") != 1 or key.count("}") != 1:
            raise t.fail("key", f"must hold {{sku}} once and no other placeholder, got {key!r}")
        holds = t.text("holds", "remaining")
        if holds not in ("remaining", "sold"):
            raise t.fail("holds", f"must be 'remaining' or 'sold', got {holds!r}")
        audit = RedisAudit(url, url_env, key, holds, t.number("timeout_s", 10.0, L.TIMEOUT_S))
    t.finish()
    return audit


def _parse_http_audit(t: _Table) -> HttpAudit:
    url, path = t.opt_str("url"), t.opt_str("path")
    if url is not None and path is not None:
        raise t.fail("url", "give url (absolute) or path (under the target), not both")
    if url is not None and (problem := _http_url_problem(url)) is not None:
        raise t.fail("url", problem)
    if path is not None and not path.startswith("/"):
        raise t.fail("path", f"must start with '/', got {path!r}")
    timeout_s = t.number("timeout_s", 10.0, L.TIMEOUT_S)
    items_text = t.opt_str("items")
    fields = {k: t.opt_str(k) for k in ("sku", "sold", "remaining")}
    if items_text is None:
        given = [k for k, v in (("url", url), ("path", path), *fields.items()) if v is not None]
        if given:
            raise t.fail(
                "items",
                f"is required with {given[0]}: a JSON path to the SKU records in the document, "
                "e.g. 'data.items' ('$' for the document itself)",
            )
        return HttpAudit(timeout_s=timeout_s)
    try:
        items = parse_path(items_text)
    except JsonPathError as exc:
        raise t.fail("items", str(exc)) from None
    if fields["sold"] is None and fields["remaining"] is None:
        raise t.fail("sold", "give sold or remaining (or both): the field names in each record")
    for key, value in fields.items():
        if value is not None and not value:
            raise t.fail(key, "must not be empty")
    return HttpAudit(
        url, path, items, fields["sku"], fields["sold"], fields["remaining"], timeout_s
    )


_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")


#: what a step's ``probability`` may name instead of a number: the buyers' own shares
_SHARE_REFS = {
    "buyers.pay_share": lambda b: b.pay_share,
    "buyers.abandon_share": lambda b: b.abandon_share,
    "1 - buyers.pay_share": lambda b: 1.0 - b.pay_share,
    "1 - buyers.abandon_share": lambda b: 1.0 - b.abandon_share,
}


def _parse_probability(t: _Table, buyers: Buyers) -> float:
    """``probability``: a share, or one of the buyers' (``"buyers.pay_share"``,
    ``"1 - buyers.abandon_share"``): the model (``simulate``) and the live journey then read
    the same fact from one place."""
    value = t.raw("probability", 1.0)
    if isinstance(value, str):
        ref = " ".join(value.split())
        if ref not in _SHARE_REFS:
            raise t.fail("probability", f"a share or one of {', '.join(map(repr, _SHARE_REFS))}")
        return float(_SHARE_REFS[ref](buyers))
    return t.number("probability", 1.0, L.SHARE)


def _parse_think(
    t: _Table,
    name: str,
    buyers: Buyers | None = None,
    rng: L.Range = L.THINK_S,
    default: Any = 0.0,
) -> Think:
    """``think_s``: a number (constant), [a, b] (uniform), {median, sigma} (lognormal),
    {mean} (exponential), in seconds, a table with an optional ``min`` (draws below it are
    raised to it); or ``"buyers.pay_delay_s"`` (the buyers' pay delay, where ``buyers`` is
    given). Every number in ``rng``."""
    forms = "seconds, [a, b], {median, sigma, min} or {mean, min}"
    value = t.raw(name, default)
    if isinstance(value, str):
        if buyers is None:
            raise t.fail(name, f"must be {forms}, got {value!r}")
        if value.strip() != "buyers.pay_delay_s":
            raise t.fail(name, f"the only name it takes is 'buyers.pay_delay_s', got {value!r}")
        return buyers.pay_delay_s
    if isinstance(value, bool):
        raise t.fail(name, f"must be {forms}, got {value!r}")
    if isinstance(value, int | float):
        a = t.number(name, 0.0, rng)
        return Think("constant", a)
    if isinstance(value, list):
        if len(value) != 2:
            raise t.fail(name, f"a uniform range is [a, b], got {value!r}")
        lo, hi = _numbers(t, name, value, rng, integer=False)
        if hi < lo:
            raise t.fail(name, f"[a, b] needs a ≤ b, got {value!r}")
        return Think("uniform", float(lo), float(hi))
    if not isinstance(value, dict):
        raise t.fail(name, f"must be {forms}, got {value!r}")
    d = t.table(name)
    assert d is not None
    if d.has("mean"):
        kind, a, b = "exponential", d.number("mean", None, rng, required=True), 0.0
    elif d.has("median"):
        kind, a = "lognormal", d.number("median", None, rng, required=True)
        b = d.number("sigma", 0.5, L.SIGMA)
    else:
        raise t.fail(name, "a table needs mean (exponential) or median and sigma (lognormal)")
    floor = d.number("min", 0.0, rng) if d.has("min") else 0.0
    d.finish()
    if floor > a:
        what = "mean" if kind == "exponential" else "median"
        raise t.fail(name, f"min must be ≤ the {what}, got min = {floor:g} > {a:g}")
    return Think(kind, a, b, floor)


def _parse_pay_delay(t: _Table) -> Think:
    """``pay_delay_s``: a distribution as a step's ``think_s`` ([low, high] uniform, the
    default [5, 60]), every value ≥ 1 ms; a lognormal or exponential needs its ``min``: the
    model's windows are no longer than the shortest delay (:mod:`simulator.model.flow`)."""
    think = _parse_think(t, "pay_delay_s", None, L.PAY_DELAY_S, [5.0, 60.0])
    if think.lowest < L.PAY_DELAY_S.lo:
        raise t.fail(
            "pay_delay_s",
            f"{'an' if think.kind == 'exponential' else 'a'} {think.kind} delay needs min "
            f"(its shortest delay, seconds ≥ {L.PAY_DELAY_S.lo:g}): the model's windows are "
            "no longer than it",
        )
    return think


def _parse_rule(t: _Table, var: str) -> Extract:
    """One extract rule: exactly one of json, header, cookie, regex."""
    kinds = [k for k in EXTRACT_KINDS if t.has(k)]
    if len(kinds) != 1:
        got = ", ".join(kinds) or "none"
        raise ScenarioError(
            f"{t.file}: {t.path}: give exactly one of {', '.join(EXTRACT_KINDS)} (got {got})"
        )
    kind = kinds[0]
    expr = t.text(kind, required=True)
    path: tuple[str | int, ...] = ()
    if kind == "json":
        try:
            path = parse_path(expr)
        except JsonPathError as exc:
            raise t.fail(kind, str(exc)) from None
    elif kind == "regex":
        try:
            compiled = re.compile(expr)
        except re.error as exc:
            raise t.fail(kind, f"not a regular expression: {exc}") from None
        if compiled.groups > 1:
            raise t.fail(kind, "at most one group (the value); the whole match without one")
    elif kind == "header":
        if (problem := check_header_name(expr)) is not None and "written by" not in problem:
            raise t.fail(kind, problem)
    elif not expr or any(ch in expr for ch in "=; ,\t"):
        raise t.fail(kind, f"not a cookie name: {expr!r}")
    return Extract(var, kind, expr, path)


def _parse_extract(t: _Table, reserved: set[str]) -> tuple[Extract, ...]:
    e = t.table("extract")
    if e is None:
        return ()
    out = []
    for var in e.data:
        sub = e.table(var)
        if sub is None:
            continue
        if not PLACEHOLDER.fullmatch("{" + var + "}"):
            raise e.fail(var, "a variable name is letters, digits and _ (not first a digit)")
        if var in reserved:
            raise e.fail(var, f"{{{var}}} is a built-in, product or data variable; pick another")
        out.append(_parse_rule(sub, var))
        sub.finish()
    e.finish()
    return tuple(out)


def _parse_poll(t: _Table) -> Poll | None:
    p = t.table("poll")
    if p is None:
        return None
    until = p.raw("until", required=True)
    if not isinstance(until, list) or not until:
        raise p.fail("until", f"must be a non-empty list of values, got {until!r}")
    if not all(isinstance(v, str | int | float | bool) for v in until):
        raise p.fail("until", f"values must be strings, numbers or booleans, got {until!r}")
    every_s = p.number("every_s", 0.5, L.POLL_EVERY_S)
    most = p.integer("max", 20, L.POLL_MAX)
    rule = _parse_rule(
        _Table(p.file, p.path, {k: v for k, v in p.data.items() if k in EXTRACT_KINDS}), ""
    )
    for k in EXTRACT_KINDS:
        if p.has(k):
            p.seen.add(k)
    p.finish()
    return Poll(rule, tuple(value_key(v) for v in until), every_s, most)


def _parse_streams(top: _Table, buyers: Buyers) -> tuple[Stream, ...]:
    """``[[streams]]``: name, a request (as a step's, without think/extract/poll), demand."""
    out: list[Stream] = []
    for t in top.tables("streams"):
        for key in ("think_s", "probability", "extract", "poll"):
            if t.has(key):
                raise t.fail(key, "a stream is one request on its own curve: no " + key)
        demand_t = t.table("demand")
        if demand_t is None:
            raise t.fail("demand", "is required: the stream's own curve (as [demand])")
        demand = _parse_curve(demand_t)
        if demand.is_empty:
            raise t.fail("demand", "no demand: give the stream at least one component")
        request = _parse_step(t, set(), buyers)
        if any(s.name == request.name for s in out):
            raise t.fail("name", f"{request.name!r} is the name of an earlier stream too")
        out.append(Stream(request.name, request, demand))
    if len(out) > L.STREAMS.hi:
        raise top.fail("streams", L.STREAMS.problem(len(out)) or "too many")
    return tuple(out)


def _parse_step(t: _Table, reserved: set[str], buyers: Buyers) -> Step:
    name = t.text("name", required=True)
    if not _STEP_NAME.fullmatch(name):
        raise t.fail("name", f"must be 1–32 letters, digits, '_' or '-', got {name!r}")
    path = t.text("path", required=True)
    if not path.startswith("/"):
        raise t.fail("path", f"must start with '/', got {path!r}")
    if (problem := path_problem(path, query=True)) is not None:
        raise t.fail("path", problem)
    method = t.text("method", "POST").upper()
    if method not in STEP_METHODS:
        raise t.fail("method", f"must be one of {', '.join(STEP_METHODS)}, got {method!r}")
    content_type = t.text("content_type", "application/json")
    if (problem := check_content_type(content_type)) is not None:
        raise t.fail("content_type", problem)
    step = Step(
        name=name,
        path=path,
        method=method,
        body=t.text("body", ""),
        content_type=content_type,
        headers=_parse_headers(t),
        status=_parse_status(t),
        outcome=_parse_outcome(t.table("outcome")),
        think=_parse_think(t, "think_s", buyers),
        probability=_parse_probability(t, buyers),
        unless=t.opt_str("unless"),
        extract=_parse_extract(t, reserved),
        poll=_parse_poll(t),
    )
    t.finish()
    return step


def _reserved(products: list[Product], columns: tuple[str, ...]) -> set[str]:
    """Variable names a journey may not extract into: built-ins, product vars, data columns."""
    return {*BODY_FIELDS, *columns, *(name for p in products for name, _ in p.vars)}


def _parse_journey(t: _Table | None, reserved: set[str], buyers: Buyers) -> Journey | None:
    """``[journey]``: ``order_step`` and ``[[journey.steps]]`` (see scenario.journey)."""
    if t is None:
        return None
    raw_steps = t.raw("steps", required=True)
    n = len(raw_steps) if isinstance(raw_steps, list) else 1
    if (problem := L.JOURNEY_STEPS.problem(n)) is not None:
        raise t.fail("steps", problem)
    steps = [_parse_step(s, reserved, buyers) for s in t.tables("steps")]
    names = [s.name for s in steps]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise t.fail(f"steps[{i}].name", f"{name!r} is the name of an earlier step too")
    for i, step in enumerate(steps):
        if step.unless is not None and step.unless not in names[:i]:
            raise t.fail(
                f"steps[{i}].unless",
                f"names no earlier step: {step.unless!r} (steps before it: "
                f"{', '.join(names[:i]) or 'none'})",
            )
    order = t.text("order_step", required=True)
    if order not in names:
        raise t.fail("order_step", f"no step is named {order!r}; steps: {', '.join(names)}")
    k = names.index(order)
    if steps[k].probability < 1.0 or steps[k].unless is not None:
        key = "probability" if steps[k].probability < 1.0 else "unless"
        raise t.fail(f"steps[{k}].{key}", "the order step is taken by every buyer")
    if steps[k].poll is not None:
        raise t.fail(f"steps[{k}].poll", "the order step is not a polling step")
    if not steps[k].body and steps[k].method != "GET":
        steps[k] = dataclasses.replace(steps[k], body=DEFAULT_BODY)
    t.finish()
    return Journey(tuple(steps), k)


def _parse_products(top: _Table) -> list[Product]:
    products = [_parse_product(p) for p in top.tables("products")]
    if len(products) > L.MAX_SKUS:
        raise top.fail("products", f"{len(products):,} SKUs; at most {L.MAX_SKUS:,}")
    curved = sum(1 for p in products if p.curve is not None)
    if curved > L.MAX_CURVED_PRODUCTS:
        raise top.fail(
            "products",
            f"{curved:,} products have a demand curve of their own; at most "
            f"{L.MAX_CURVED_PRODUCTS:,} (give the others a weight on the sale's [demand])",
        )
    for c in top.tables("catalog"):
        products.extend(_parse_catalog(c, L.MAX_SKUS - len(products)))
    if not products:
        raise top.fail("products", "at least one product (or a [[catalog]]) is required")
    seen: dict[str, int] = {}
    for i, p in enumerate(products):
        if p.id in seen:
            raise top.fail(f"products[{i}].id", f"duplicate SKU {p.id!r}")
        seen[p.id] = i
    return products


def parse_scenario(
    data: Mapping[str, Any], source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Build a :class:`Scenario` from parsed TOML; ``source`` names the file in errors.

    ``base_dir`` is where files the scenario names (``[buyers] data``) are looked for: the
    scenario file's directory (the current directory when None).
    """
    top = _Table(source, "", data)
    name = top.text("name", required=True)
    seed = top.integer("seed", None, L.SEED, required=True)
    duration_s = top.number("duration_s", None, L.DURATION_S, required=True)
    scale = top.number("scale", 1.0, L.SCALE)
    products = _parse_products(top)
    demand_t = top.table("demand")
    demand = _parse_curve(demand_t) if demand_t is not None else Curve()
    if demand.is_empty and all(p.curve is None or p.curve.is_empty for p in products):
        raise top.fail("demand", "no demand: give the sale or a product at least one component")
    if sum(p.weight for p in products) <= 0 and not demand.is_empty:
        raise top.fail("products", "weights must not all be 0 when [demand] is set")
    thresholds = top.raw("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(x, str) for x in thresholds):
        raise top.fail("thresholds", f"must be a list of strings, got {thresholds!r}")
    buyers = _parse_buyers(top.table("buyers"), base_dir or Path.cwd())
    columns = buyers.data.columns if buyers.data is not None else ()
    scenario = Scenario(
        name=name,
        description=top.text("description", ""),
        seed=seed,
        duration_s=duration_s,
        scale=scale,
        products=tuple(products),
        demand=demand,
        buyers=buyers,
        target=_parse_target(top.table("target")),
        run=_parse_run(top.table("run")),
        storefront=_parse_storefront(top.table("storefront")),
        audit=_parse_audit(top.table("audit")),
        journey=_parse_journey(top.table("journey"), _reserved(products, columns), buyers),
        streams=_parse_streams(top, buyers),
        thresholds=tuple(thresholds),
        source=source,
    )
    top.finish()
    assert top.seen <= _TOP_KEYS
    check_total_stock(scenario)
    check_templates(scenario)
    check_journey(scenario)
    check_streams(scenario)
    check_buyers_data(scenario)
    return scenario


def load_scenario(path: str | Path, scale: float | None = None) -> Scenario:
    """Read and validate a scenario file; ``scale`` overrides the file's own.

    Only a regular file of at most :data:`MAX_SCENARIO_BYTES` is read (a FIFO or a device is
    refused before reading); every problem is a ScenarioError naming the file.
    """
    p = Path(path)
    label = p.name
    raw = read_regular_file(
        p,
        MAX_SCENARIO_BYTES,
        "a scenario file (TOML)",
        missing="scenario file",
        error=ScenarioError,
    )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: cannot read: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label}: not valid TOML: {exc}") from None
    scenario = parse_scenario(data, label, p.parent)
    scenario = dataclasses.replace(scenario, source=str(p))
    if scale is not None:
        scenario = scenario.with_scale(scale)
    return scenario
