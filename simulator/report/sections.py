"""The sections of a report: typed, each with ``to_json``/``from_json`` (tolerant readers).

:mod:`simulator.report.document` assembles them into a :class:`~simulator.report.document.Report`
and owns the schema's version; this module owns each section's fields and JSON shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.errors import FlashsaleError
from simulator.outcomes import OUTCOME_NAMES

#: latency distribution keys (ms), in table order
DIST_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")

Series = list[float | None]


class ReportError(FlashsaleError):
    """A file is not a readable report; the message names the file and what is wrong."""


# -- small tolerant readers: a value of the expected type or None ------------------------------


def _int(x: Any) -> int | None:
    if isinstance(x, str) and x.lstrip("-").isdigit():  # a wide integer written as a string
        return int(x)
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return int(x)


def _float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) else None


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _counts(x: Any, n: int) -> list[int] | None:
    if not isinstance(x, list):
        return None
    out = [_int(v) or 0 for v in x[:n]]
    return out + [0] * (n - len(out))


def _values(x: Any, n: int) -> Series | None:
    if not isinstance(x, list):
        return None
    out = [_float(v) for v in x[:n]]
    return out + [None] * (n - len(out))


def _strings(x: Any) -> tuple[str, ...]:
    return tuple(str(s) for s in x if isinstance(s, str)) if isinstance(x, list) else ()


def json_int(n: int | None) -> int | str | None:
    """``n`` as JSON: a string when it does not fit in 64 bits (orjson and most readers fail)."""
    if n is None or -(2**63) <= n < 2**64:
        return n
    return str(n)


# -- sections --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """Count, percentiles, max and mean of a latency, in ms (None: not measured)."""

    count: int | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    mean: float | None = None

    def get(self, key: str) -> float | None:
        """The value under a report key (``p50`` … ``p99.9``, ``max``, ``mean``)."""
        return dict(self.items()).get(key)

    def items(self) -> list[tuple[str, float | None]]:
        """(key, value) for every key of :data:`DIST_KEYS`, in table order."""
        values = (self.p50, self.p90, self.p99, self.p999, self.max, self.mean)
        return list(zip(DIST_KEYS, values, strict=True))

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``count`` first, then the keys of :data:`DIST_KEYS`)."""
        return {"count": self.count, **dict(self.items())}

    @classmethod
    def from_json(cls, x: Any) -> Distribution:
        """Read a distribution; missing or malformed values are None."""
        d = _dict(x)
        f = {k: _float(d.get(k)) for k in DIST_KEYS}
        return cls(_int(d.get("count")), f["p50"], f["p90"], f["p99"], f["p99.9"], f["max"],
                   f["mean"])  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    """Which scenario ran, at which scale and seed, for how long."""

    name: str = "?"
    file: str | None = None
    scale: float | None = None
    seed: int | None = None
    duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``scenario`` section."""
        return {"name": self.name, "file": self.file, "scale": self.scale,
                "seed": json_int(self.seed), "duration_s": self.duration_s}  # fmt: skip

    @classmethod
    def from_json(cls, x: Any) -> ScenarioInfo:
        """Read the section (version 1 also wrote a bare name)."""
        if isinstance(x, str):
            return cls(name=x)
        d = _dict(x)
        return cls(_str(d.get("name")) or "?", _str(d.get("file")), _float(d.get("scale")),
                   _int(d.get("seed")), _float(d.get("duration_s")))  # fmt: skip


@dataclass(frozen=True, slots=True)
class StorefrontSettings:
    """What the bundled storefront was configured with (the scenario's ``[storefront]``)."""

    backend: str | None = None
    service_time_median_ms: float | None = None
    service_time_sigma: float | None = None
    max_concurrency: int | None = None  # 0: no limit
    hot_row: bool | None = None
    racy_delay_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``target.storefront`` section."""
        return {
            "backend": self.backend,
            "service_time_median_ms": self.service_time_median_ms,
            "service_time_sigma": self.service_time_sigma,
            "max_concurrency": self.max_concurrency,
            "hot_row": self.hot_row,
            "racy_delay_ms": self.racy_delay_ms,
        }

    @classmethod
    def from_json(cls, x: Any) -> StorefrontSettings | None:
        """Read the section; None when there is none."""
        if not isinstance(x, dict):
            return None
        hot = x.get("hot_row")
        return cls(
            _str(x.get("backend")),
            _float(x.get("service_time_median_ms")),
            _float(x.get("service_time_sigma")),
            _int(x.get("max_concurrency")),
            hot if isinstance(hot, bool) else None,
            _float(x.get("racy_delay_ms")),
        )


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Where the load went: URL, bundled or not, backend, transport, storefront settings."""

    url: str | None = None
    embedded: bool | None = None
    backend: str | None = None
    transport: str | None = None
    storefront: StorefrontSettings | None = None  # known for the bundled storefront only

    def describe(self) -> str:
        """``url · backend · transport`` (the parts that are known)."""
        return " · ".join(p for p in (self.url, self.backend, self.transport) if p)

    def to_json(self) -> dict[str, Any]:
        """The ``target`` section."""
        return {
            "url": self.url,
            "embedded": self.embedded,
            "backend": self.backend,
            "transport": self.transport,
            "storefront": None if self.storefront is None else self.storefront.to_json(),
        }

    @classmethod
    def from_json(cls, x: Any) -> TargetInfo:
        """Read the section (missing: nothing known)."""
        d = _dict(x)
        embedded = d.get("embedded")
        return cls(_str(d.get("url")), embedded if isinstance(embedded, bool) else None,
                   _str(d.get("backend")), _str(d.get("transport")),
                   StorefrontSettings.from_json(d.get("storefront")))  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunInfo:
    """How the run went: when, how long, with how many workers and connections, notes."""

    started_at: str | None = None
    wall_s: float | None = None
    workers: int | None = None
    connections: int | None = None
    busy_wait: bool | None = None
    windows: bool | None = None  # due orders sent in windows by the timer, not on answers
    timeout_s: float | None = None
    drain_s: float | None = None
    recorder_bytes: int | None = None
    orders_per_s: float | None = None  # the model's own speed
    notes: tuple[str, ...] = ()
    worker_errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``run`` section."""
        return {
            "started_at": self.started_at,
            "wall_s": self.wall_s,
            "workers": self.workers,
            "connections": self.connections,
            "busy_wait": self.busy_wait,
            "windows": self.windows,
            "timeout_s": self.timeout_s,
            "drain_s": self.drain_s,
            "recorder_bytes": self.recorder_bytes,
            "orders_per_s": self.orders_per_s,
            "notes": list(self.notes),
            "worker_errors": list(self.worker_errors),
        }

    @classmethod
    def from_json(cls, x: Any) -> RunInfo:
        """Read the section (missing: nothing known)."""
        d = _dict(x)
        busy, windows = d.get("busy_wait"), d.get("windows")
        return cls(
            _str(d.get("started_at")),
            _float(d.get("wall_s")),
            _int(d.get("workers")),
            _int(d.get("connections")),
            busy if isinstance(busy, bool) else None,
            windows if isinstance(windows, bool) else None,
            _float(d.get("timeout_s")),
            _float(d.get("drain_s")),
            _int(d.get("recorder_bytes")),
            _float(d.get("orders_per_s")),
            _strings(d.get("notes")),
            _strings(d.get("worker_errors")),
        )


@dataclass(frozen=True, slots=True)
class Orders:
    """Order counts. ``outcomes``: the final outcome of each scheduled order (orders);
    ``attempt_outcomes``: every attempt's outcome (attempts, retries included).
    ``confirmed_units``: units confirmed to clients, each order id once. ``reasons``: attempts
    by outcome, then by what decided it ("status 409", "body code 1001", "connection reset")."""

    outcomes: dict[str, int]
    scheduled: int | None = None
    attempts: int | None = None
    retries: int | None = None
    sent: int | None = None
    attempt_outcomes: dict[str, int] | None = None
    confirmed_units: int | None = None
    replays: int | None = None  # the model's replayed attempts
    reasons: dict[str, dict[str, int]] | None = None

    def counts(self) -> dict[str, int | None]:
        """scheduled, attempts, retries, sent, confirmed_units (the metric names)."""
        return {"scheduled": self.scheduled, "attempts": self.attempts, "retries": self.retries,
                "sent": self.sent, "confirmed_units": self.confirmed_units}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The ``orders`` section."""
        out: dict[str, Any] = {**self.counts(), "outcomes": dict(self.outcomes)}
        out["attempt_outcomes"] = self.attempt_outcomes
        if self.replays is not None:
            out["replays"] = self.replays
        if self.reasons is not None:
            out["reasons"] = {o: dict(by) for o, by in self.reasons.items()}
        return out


def _outcomes(x: Any, source: str) -> dict[str, int]:
    if not isinstance(x, dict) or not x:
        raise ReportError(f"{source}: not a flashsale report (no outcome counts)")
    out: dict[str, int] = {}
    for name in OUTCOME_NAMES:
        v = x.get(name, 0)
        n = _int(v) if not isinstance(v, str) else None
        if n is None or n < 0:
            raise ReportError(f"{source}: outcome {name!r} is not a count: {v!r}")
        out[name] = n
    return out


def _reasons(x: Any) -> dict[str, dict[str, int]] | None:
    """``orders.reasons``: outcome → reason → attempts (what is not a count is left out)."""
    if not isinstance(x, dict):
        return None
    out: dict[str, dict[str, int]] = {}
    for outcome, by in x.items():
        if outcome in OUTCOME_NAMES and isinstance(by, dict):
            counts = {str(r): n for r, v in by.items() if (n := _int(v)) is not None and n >= 0}
            if counts:
                out[outcome] = counts
    return out


def _optional_outcomes(x: Any) -> dict[str, int] | None:
    if not isinstance(x, dict):
        return None
    return {name: max(0, _int(x.get(name)) or 0) for name in OUTCOME_NAMES}


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-second series; ``None``/empty where the report does not have them.

    Rates count attempts: ``intended`` by the second they were due, ``sent`` by the second they
    left (the model: by the second due), ``done`` and ``outcomes`` by the second answered.
    ``latency`` (intended-time) and ``service`` map p50/p99/max to values by second due.
    ``sku_units`` maps a SKU to the units confirmed per second (by second answered, each order
    id once). ``demand`` is the model's demand per second (before admission).
    """

    second: list[int]
    intended: list[int] | None = None
    sent: list[int] | None = None
    done: list[int] | None = None
    outcomes: dict[str, list[int]] = field(default_factory=dict)
    latency: dict[str, Series] = field(default_factory=dict)
    service: dict[str, Series] = field(default_factory=dict)
    sku_units: dict[str, list[int]] = field(default_factory=dict)
    demand: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``timeline`` section."""
        out: dict[str, Any] = {"second": self.second}
        for key, series in (("intended", self.intended), ("sent", self.sent),
                            ("done", self.done), ("demand", self.demand)):  # fmt: skip
            if series is not None:
                out[f"{key}_per_s"] = series
        out["outcomes_per_s"] = self.outcomes
        out.update({f"{k}_ms": v for k, v in self.latency.items()})
        out.update({f"service_{k}_ms": v for k, v in self.service.items()})
        if self.sku_units:
            out["confirmed_units_per_s"] = self.sku_units
        return out

    @classmethod
    def from_json(cls, x: Any) -> Timeline | None:
        """Read the section; None when it has no seconds."""
        t = _dict(x)
        second = t.get("second")
        n = len(second) if isinstance(second, list) else 0
        if n == 0:
            return None

        def table(key: Any) -> dict[str, list[int]]:
            return {str(k): c for k, s in _dict(key).items() if (c := _counts(s, n)) is not None}

        def pct(prefix: str) -> dict[str, Series]:
            return {
                k: v for k in ("p50", "p99", "max") if (v := _values(t.get(f"{prefix}{k}_ms"), n))
            }

        return cls(
            second=list(range(n)),
            intended=_counts(t.get("intended_per_s"), n),
            sent=_counts(t.get("sent_per_s"), n),
            done=_counts(t.get("done_per_s"), n),
            outcomes=table(t.get("outcomes_per_s")),
            latency=pct(""),
            service=pct("service_"),
            sku_units=table(t.get("confirmed_units_per_s")),
            demand=_counts(t.get("demand_per_s"), n),
        )


def sell_out_s(units: Sequence[int] | None, initial: int | None) -> float | None:
    """End of the second in which confirmed units reached the initial stock (None: never)."""
    if units is None or initial is None:
        return None
    total = 0
    for s, u in enumerate(units):
        total += u
        if total >= initial:
            return float(s + 1)
    return None


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One SKU's reservation lifecycle as the audit checked it (bundled storefront, a TTL).

    ``paid``/``held``/``free``/``reserved``/``returned`` are the storefront's numbers;
    ``stock_gap_units`` = paid + held + free − initial and ``hold_gap_units`` = paid + held +
    returned − reserved (both 0 when conserved); the breakages: ``undersell_units`` (overdue
    held units + units never returned), ``double_returns``, ``paid_after_expiry`` and
    ``excess_units`` (units on the books beyond the stock). See :mod:`simulator.audit`.
    """

    paid: int
    held: int
    free: int
    reserved: int
    returned: int
    stock_gap_units: int = 0
    hold_gap_units: int = 0
    overdue_units: int = 0
    overdue_holds: int | None = None
    overdue_max_s: float | None = None
    never_returned_units: int = 0
    undersell_units: int = 0
    double_returns: int = 0
    paid_after_expiry: int = 0
    excess_units: int = 0

    @property
    def conserved(self) -> bool:
        """Both identities hold."""
        return self.stock_gap_units == 0 and self.hold_gap_units == 0

    @property
    def broken(self) -> bool:
        """Any breakage the audit fails on."""
        return bool(
            self.undersell_units or self.double_returns or self.paid_after_expiry
            or self.excess_units
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The lifecycle fields of one ``audit.skus`` entry."""
        out: dict[str, Any] = {name: getattr(self, name) for name in LIFECYCLE_KEYS}
        out["conserved"] = self.conserved
        return out

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> Lifecycle | None:
        """Read the fields from an ``audit.skus`` entry; None when it has none (no TTL)."""
        base = [_int(s.get(k)) for k in ("paid", "held", "free", "reserved", "returned")]
        if any(v is None for v in base):
            return None
        paid, held, free, reserved, returned = (v or 0 for v in base)
        return cls(
            paid, held, free, reserved, returned,
            stock_gap_units=_int(s.get("stock_gap_units")) or 0,
            hold_gap_units=_int(s.get("hold_gap_units")) or 0,
            overdue_units=_int(s.get("overdue_units")) or 0,
            overdue_holds=_int(s.get("overdue_holds")),
            overdue_max_s=_float(s.get("overdue_max_s")),
            never_returned_units=_int(s.get("never_returned_units")) or 0,
            undersell_units=_int(s.get("undersell_units")) or 0,
            double_returns=_int(s.get("double_returns")) or 0,
            paid_after_expiry=_int(s.get("paid_after_expiry")) or 0,
            excess_units=_int(s.get("excess_units")) or 0,
        )  # fmt: skip


#: a lifecycle's JSON fields in ``audit.skus`` entries, in order
LIFECYCLE_KEYS = (
    "paid", "held", "free", "reserved", "returned", "stock_gap_units", "hold_gap_units",
    "overdue_units", "overdue_holds", "overdue_max_s", "never_returned_units",
    "undersell_units", "double_returns", "paid_after_expiry", "excess_units",
)  # fmt: skip
#: the audit's lifecycle totals over SKUs (each non-zero one fails the audit)
LIFECYCLE_TOTALS = ("undersell_units", "double_returns", "paid_after_expiry", "excess_units")


@dataclass(frozen=True, slots=True)
class SkuStock:
    """One product's stock and what was sold of it (None where the report does not say)."""

    sku: str
    initial: int | None
    client_units: int | None  # units the clients saw confirmed, each order id once
    sold: int | None  # the server's sold counter
    ledger_units: int | None = None
    remaining: int | None = None
    oversell_units: int = 0
    sell_out_s: float | None = None  # when its stock reached zero (None: never, or unknown)
    scenario_stock: int | None = None
    ledger_orders: int | None = None
    client_orders: int | None = None
    #: the reservation lifecycle (:func:`simulator.audit.lifecycle`), None without a TTL
    cycle: Lifecycle | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of ``audit.skus``."""
        out = {
            "initial": self.initial,
            "scenario_stock": self.scenario_stock,
            "sold": self.sold,
            "ledger_units": self.ledger_units,
            "ledger_orders": self.ledger_orders,
            "remaining": self.remaining,
            "client_units": self.client_units,
            "client_orders": self.client_orders,
            "oversell_units": self.oversell_units,
            "sell_out_s": self.sell_out_s,
        }
        if self.cycle is not None:
            out.update(self.cycle.to_json())
        return out

    @classmethod
    def from_json(cls, sku: str, x: Any, sell_out: float | None) -> SkuStock:
        """Read one entry (``sell_out``: the time stated elsewhere, for version 1 files)."""
        s = _dict(x)
        stated = _float(s.get("sell_out_s"))
        return cls(
            sku=sku,
            initial=_int(s.get("initial")),
            client_units=_int(s.get("client_units")),
            sold=_int(s.get("sold")),
            ledger_units=_int(s.get("ledger_units")),
            remaining=_int(s.get("remaining")),
            oversell_units=_int(s.get("oversell_units")) or 0,
            sell_out_s=stated if "sell_out_s" in s else sell_out,
            scenario_stock=_int(s.get("scenario_stock")),
            ledger_orders=_int(s.get("ledger_orders")),
            client_orders=_int(s.get("client_orders")),
            cycle=Lifecycle.from_json(s),
        )


@dataclass(frozen=True, slots=True)
class Audit:
    """The oversell audit: per SKU stock vs client/server/ledger units, and every problem.

    ``checks`` holds the ledger checks (lost confirmations, phantom sales, …) as the audit
    states them: ``{name: {"count": n, "examples": [...]}}`` or ``None``.
    """

    available: bool
    skus: tuple[SkuStock, ...] = ()
    oversell_units: int | None = None
    problems: tuple[str, ...] = ()
    ok: bool | None = None
    backend: str | None = None
    source: str | None = None  # "model" for the offline model's
    checks: dict[str, Any] = field(default_factory=dict)
    #: the lifecycle breakages summed over SKUs (:data:`LIFECYCLE_TOTALS`); empty without a TTL
    lifecycle: dict[str, int] = field(default_factory=dict)
    #: the storefront's clock, sweep interval and grace the overdue holds were judged by
    holds: dict[str, Any] | None = None

    def lifecycle_verdict(self) -> tuple[str, bool] | None:
        """The reservation lifecycle's verdict line and whether it is sound (None: no TTL)."""
        life = self.lifecycle
        if not life:
            return None
        named = [
            (life.get("undersell_units", 0), "units undersold"),
            (life.get("double_returns", 0), "double returns"),
            (life.get("paid_after_expiry", 0), "payments after expiry"),
            (life.get("excess_units", 0), "units beyond the stock"),
        ]
        broken = [f"{n:,} {what}" for n, what in named if n]
        if not broken:
            return "conserved (initial = paid + held + free), nothing undersold", True
        return "BROKEN: " + ", ".join(broken), False

    @property
    def breakages(self) -> int:
        """Oversold units plus every lifecycle breakage: 0 for a sound sale (None counts 0)."""
        return (self.oversell_units or 0) + sum(self.lifecycle.values())

    def to_json(self) -> dict[str, Any]:
        """The ``audit`` section."""
        out: dict[str, Any] = {"available": self.available}
        if self.source is not None:
            out["source"] = self.source
        out.update(self.checks)
        out["skus"] = {s.sku: s.to_json() for s in self.skus}
        out["oversell_units"] = self.oversell_units
        if self.lifecycle:
            out.update(self.lifecycle)
            out["holds"] = self.holds
        out["backend"] = self.backend
        out["problems"] = list(self.problems)
        out["ok"] = self.ok
        return out

    @classmethod
    def from_dict(cls, a: Mapping[str, Any], sell_out: Mapping[str, float | None]) -> Audit:
        """Read an audit (``sell_out``: per SKU, when a writer knows it and the audit does not)."""
        skus = tuple(
            SkuStock.from_json(str(sku), s, sell_out.get(str(sku)))
            for sku, s in _dict(a.get("skus")).items()
        )
        oversell = _int(a.get("oversell_units"))
        if oversell is None and skus:
            oversell = sum(s.oversell_units for s in skus)
        plain = {"available", "source", "skus", "oversell_units", "backend", "problems", "ok"}
        plain |= {"holds", "stock_history", *LIFECYCLE_TOTALS}
        ok = a.get("ok")
        totals = {k: _int(a.get(k)) for k in LIFECYCLE_TOTALS}
        cycles = [s.cycle for s in skus if s.cycle is not None]
        lifecycle = (
            {k: v if v is not None else sum(getattr(c, k) for c in cycles)
             for k, v in totals.items()}
            if cycles or any(v is not None for v in totals.values())
            else {}
        )  # fmt: skip
        holds = a.get("holds")
        return cls(
            available=bool(a.get("available", True)),
            skus=skus,
            oversell_units=oversell,
            problems=_strings(a.get("problems")),
            ok=ok if isinstance(ok, bool) else None,
            backend=_str(a.get("backend")),
            source=_str(a.get("source")),
            checks={k: v for k, v in a.items() if k not in plain},
            lifecycle=lifecycle,
            holds=holds if isinstance(holds, dict) else None,
        )


STOCK_KINDS = ("free", "held", "sold")


@dataclass(frozen=True, slots=True)
class StockHistory:
    """The storefront's stock over time (``stock_history``; optional, since report version 2).

    ``t_s``: when each sample was taken, seconds after the storefront's start or reset (the
    run's reset, so about the run's clock); ``series``: ``"total"`` and up to a few SKUs, each
    ``{"free": [...], "held": [...], "sold": [...]}`` with one value per sample. ``dropped``:
    samples the storefront's bounded ring no longer had (a run longer than its capacity).
    """

    t_s: list[float]
    series: dict[str, dict[str, list[int]]]
    skus: tuple[str, ...] = ()
    dropped: int = 0
    interval_s: float | None = None
    initial_total: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``stock_history`` section."""
        return {
            "t_s": self.t_s,
            "series": self.series,
            "skus": list(self.skus),
            "dropped": self.dropped,
            "interval_s": self.interval_s,
            "initial_total": self.initial_total,
        }

    @classmethod
    def from_json(cls, x: Any) -> StockHistory | None:
        """Read the section (or the storefront's answer); None when it has no samples."""
        h = _dict(x)
        t = h.get("t_s")
        if not isinstance(t, list) or not t:
            return None
        times = [v for v in (_float(v) for v in t) if v is not None]
        if len(times) != len(t):
            return None
        n = len(times)
        series: dict[str, dict[str, list[int]]] = {}
        for name, kinds in _dict(h.get("series")).items():
            cols = {k: _counts(_dict(kinds).get(k), n) for k in STOCK_KINDS}
            if all(c is not None for c in cols.values()):
                series[str(name)] = {k: c for k, c in cols.items() if c is not None}
        if "total" not in series:
            return None
        return cls(
            t_s=times,
            series=series,
            skus=tuple(s for s in _strings(h.get("skus")) if s in series),
            dropped=_int(h.get("dropped")) or 0,
            interval_s=_float(h.get("interval_s")),
            initial_total=_int(h.get("initial_total")),
        )


@dataclass(frozen=True, slots=True)
class CheckedThreshold:
    """A threshold checked against the finished report: its text, the value, the verdict."""

    expr: str
    value: float | None  # None: the metric is not in this report (the threshold fails)
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """One entry of ``thresholds``."""
        return {"expr": self.expr, "value": self.value, "passed": self.passed}


# -- the document ------------------------------------------------------------------------------
