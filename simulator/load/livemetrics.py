"""Live Prometheus metrics of a run (``flashsale run --metrics-port N``), served while it goes.

A worker's loop takes a :class:`Figures` snapshot a couple of times a second (from
:meth:`Run.progress` and the run's :class:`~simulator.load.tally.Tally`, vectorised, never per
order); with ``--workers N`` each worker sends its snapshot to the parent, which adds them up
(counts and histogram buckets add exactly). When the run is over the figures are those of the
merged tally, i.e. the report's. :class:`MetricsServer` serves the latest figures in the
Prometheus text exposition format from its own thread, so a scrape never runs on an engine's
event loop and works the same whether the parent drives the engine or waits for workers.

Latencies are real Prometheus histograms (cumulative ``_bucket{le}``, ``_sum``, ``_count``), not
quantiles, so that ``histogram_quantile`` works across workers and machines. Their ``le``
bounds are the edges of a coarse log-linear histogram, four buckets per octave from 8.192 µs
to 68.7 s: every edge is also an edge of the live runs' fine scale (0.098 %,
:data:`simulator.histogram.LIVE`), so the coarse counts are exact sums of the fine ones, and a
quantile read from them is within one coarse bucket (≤ 25 % wide) of the truth.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from simulator.errors import UsageError
from simulator.histogram import LIVE, Histogram, Scale
from simulator.load.tally import Tally, first_confirmed
from simulator.outcomes import OUTCOME_NAMES
from simulator.scenario.limits import Range

if TYPE_CHECKING:
    from simulator.load.engine import Progress, Run

I64 = npt.NDArray[np.int64]

#: the latency kinds served, by metric name (the tally's kinds)
HISTOGRAMS = (
    ("intended_latency_seconds", "intended", "latency from each attempt's intended send time"),
    ("service_time_seconds", "service", "latency from the actual send (service time)"),
    ("dispatch_lag_seconds", "dispatch_lag", "how late the dispatcher took each attempt"),
)
#: coarse buckets per octave (2 bits: bounds 2^e · 1, 1.25, 1.5, 1.75)
EDGE_SUB_BITS = 2
#: octaves of the bounds: 2^13 ns (8.192 µs) … 2^36 ns (68.7 s)
EDGE_EXP = (13, 36)
#: SKUs served by name; the rest are summed into one series ``sku="_other"``
MAX_SKU_SERIES = 100
OTHER_SKUS = "_other"
#: ``--metrics-port``, ``--metrics-linger``
PORT = Range(1, 65535)
LINGER_S = Range(0.0, 3600.0, why="one hour")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def edges_ns(scale: Scale = LIVE) -> I64:
    """The ``le`` bounds (ns) of the served histograms: edges of ``scale`` too (see the module)."""
    lo, hi = EDGE_EXP
    if scale.sub_bits < EDGE_SUB_BITS or not scale.lo_exp <= lo < hi <= scale.hi_exp:
        raise ValueError(f"the coarse bounds are not edges of the scale {scale}")
    steps = 1 << EDGE_SUB_BITS
    out = [(steps + s) << e >> EDGE_SUB_BITS for e in range(lo, hi) for s in range(steps)]
    return np.array([*out, 1 << hi], dtype=np.int64)


EDGES_NS = edges_ns()
_EDGE_INDEX = LIVE.index(EDGES_NS)  # the fine bucket that starts at each edge


@dataclass(frozen=True, slots=True)
class Coarse:
    """One latency histogram as served: counts below each of :data:`EDGES_NS` (cumulative),
    the count and the sum (ns) of all values."""

    below: I64
    count: int = 0
    sum_ns: int = 0

    @classmethod
    def of(cls, h: Histogram) -> Coarse:
        """The coarse view of a fine histogram of the live scale (exact at the edges)."""
        cum = np.concatenate([[0], np.cumsum(h.counts)])
        return cls(cum[_EDGE_INDEX].astype(np.int64), h.total, h.sum_ns)

    @classmethod
    def empty(cls) -> Coarse:
        return cls(np.zeros(len(EDGES_NS), dtype=np.int64))

    def __add__(self, other: Coarse) -> Coarse:
        n, total_ns = self.count + other.count, self.sum_ns + other.sum_ns
        return Coarse(self.below + other.below, n, total_ns)


def _zeros(n: int) -> I64:
    return np.zeros(n, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Figures:
    """What the metrics show of a run (or a worker's share): small, picklable, additive."""

    due: int = 0  # schedule rows whose intended time has come
    sent: int = 0  # attempts sent (first attempts and retries)
    attempts: I64 = field(default_factory=lambda: _zeros(len(OUTCOME_NAMES)))  # by outcome
    hists: Mapping[str, Coarse] = field(default_factory=dict)  # by tally kind
    units: I64 = field(default_factory=lambda: _zeros(0))  # units confirmed, by product index
    in_flight: int = 0
    queued: int = 0
    elapsed_s: float = 0.0
    finished: bool = False

    def __add__(self, other: Figures) -> Figures:
        n = max(len(self.units), len(other.units))
        units = _zeros(n)
        units[: len(self.units)] += self.units
        units[: len(other.units)] += other.units
        kinds = {*self.hists, *other.hists}
        empty = Coarse.empty()
        return Figures(
            due=self.due + other.due,
            sent=self.sent + other.sent,
            attempts=self.attempts + other.attempts,
            hists={k: self.hists.get(k, empty) + other.hists.get(k, empty) for k in kinds},
            units=units,
            in_flight=self.in_flight + other.in_flight,
            queued=self.queued + other.queued,
            elapsed_s=max(self.elapsed_s, other.elapsed_s),
            finished=self.finished and other.finished,
        )


def total(parts: Sequence[Figures]) -> Figures:
    """The sum of several workers' figures."""
    out = Figures()
    for p in parts:
        out = out + p
    return out


def _hists(tally: Tally) -> dict[str, Coarse]:
    return {kind: Coarse.of(tally.combined(kind)) for _, kind, _ in HISTOGRAMS}


class UnitsSeen:
    """Units confirmed per product, each order id once (:func:`first_confirmed`'s rule), kept
    up to date from a growing tally: each call looks only at the confirmations added since the
    last one (and copies the sorted ids seen once), not at all of them again."""

    def __init__(self, n_products: int) -> None:
        self.units = _zeros(n_products)
        self._seen = _zeros(0)  # sorted order ids counted so far
        self._done = 0  # confirmations of the tally looked at

    def update(self, tally: Tally) -> I64:
        """The units now (a copy)."""
        order, product, qty, _ = tally.confirmed()
        if len(order) > self._done:
            o, p, q = order[self._done :], product[self._done :], qty[self._done :]
            self._done = len(order)
            ids, first = np.unique(o, return_index=True)
            at = np.searchsorted(self._seen, ids)
            known = np.zeros(len(ids), dtype=np.bool_)
            inside = at < len(self._seen)
            known[inside] = self._seen[at[inside]] == ids[inside]
            # an order id is one product and quantity: which of its confirmations counts is moot
            new = first[~known]
            n = len(self.units)
            keep = new[(p[new] >= 0) & (p[new] < n)]
            self.units += np.bincount(p[keep], weights=q[keep], minlength=n)[:n].astype(np.int64)
            self._seen = np.insert(self._seen, at[~known], ids[~known])
        return self.units.copy()


class RunFigures:
    """A running engine's :class:`Figures`, one snapshot per call: its progress (counts with
    the attempts not folded yet) and its tally's histograms and confirmed units (the attempts
    folded: up to a second behind). About a millisecond a snapshot, vectorised."""

    def __init__(self, n_products: int) -> None:
        self._units = UnitsSeen(n_products)

    def __call__(self, run: Run, progress: Progress) -> Figures:
        attempts = _zeros(len(OUTCOME_NAMES))
        for i, name in enumerate(OUTCOME_NAMES):
            attempts[i] = progress.outcomes.get(name, 0)
        return Figures(
            due=progress.scheduled,
            sent=progress.sent,
            attempts=attempts,
            hists=_hists(run.tally),
            units=self._units.update(run.tally),
            in_flight=progress.in_flight,
            queued=progress.queued,
            elapsed_s=progress.elapsed_s,
        )


def figures_of_tally(tally: Tally, n_products: int, due: int, elapsed_s: float) -> Figures:
    """A finished run's figures from its (merged) tally: the report's counts."""
    return Figures(
        due=due,
        sent=tally.sent,
        attempts=tally.attempt_outcomes.astype(np.int64).copy(),
        hists=_hists(tally),
        units=first_confirmed(*tally.confirmed()).units_per_product(n_products),
        elapsed_s=elapsed_s,
        finished=True,
    )


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _le(ns: int) -> str:
    return repr(ns / 1e9)


def render(f: Figures, skus: Sequence[str], stocks: Sequence[int]) -> str:
    """The figures in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP flashsale_{name} {help_text}")
        lines.append(f"# TYPE flashsale_{name} {kind}")

    metric("orders_due_total", "counter", "schedule rows whose intended send time has come")
    lines.append(f"flashsale_orders_due_total {f.due}")
    metric("requests_sent_total", "counter", "attempts sent (first attempts and retries)")
    lines.append(f"flashsale_requests_sent_total {f.sent}")
    metric(
        "attempts_total",
        "counter",
        "attempts over, by outcome (not_sent: rows never sent, counted at the end)",
    )
    for i, name in enumerate(OUTCOME_NAMES):
        lines.append(f'flashsale_attempts_total{{outcome="{name}"}} {int(f.attempts[i])}')
    for name, kind, help_text in HISTOGRAMS:
        h = f.hists.get(kind, Coarse.empty())
        metric(name, "histogram", f"{help_text} (answered attempts, folded; seconds)")
        for ns, n in zip(EDGES_NS.tolist(), h.below.tolist(), strict=True):
            lines.append(f'flashsale_{name}_bucket{{le="{_le(ns)}"}} {n}')
        lines.append(f'flashsale_{name}_bucket{{le="+Inf"}} {h.count}')
        lines.append(f"flashsale_{name}_sum {h.sum_ns / 1e9!r}")
        lines.append(f"flashsale_{name}_count {h.count}")
    units = np.zeros(len(skus), dtype=np.int64)
    units[: min(len(skus), len(f.units))] = f.units[: len(skus)]
    shown = min(len(skus), MAX_SKU_SERIES)
    rows = [(skus[i], int(units[i]), int(stocks[i])) for i in range(shown)]
    if len(skus) > shown:
        rows.append((OTHER_SKUS, int(units[shown:].sum()), int(sum(stocks[shown:]))))
    metric("units_confirmed_total", "counter", "units confirmed, each order id once (client view)")
    lines.extend(f'flashsale_units_confirmed_total{{sku="{_label(s)}"}} {u}' for s, u, _ in rows)
    metric("stock_left", "gauge", "initial stock minus units confirmed (client view)")
    lines.extend(f'flashsale_stock_left{{sku="{_label(s)}"}} {st - u}' for s, u, st in rows)
    metric("in_flight", "gauge", "attempts sent and not answered yet")
    lines.append(f"flashsale_in_flight {f.in_flight}")
    metric("queued", "gauge", "attempts due, waiting for a free connection")
    lines.append(f"flashsale_queued {f.queued}")
    metric("run_elapsed_seconds", "gauge", "time since the run's start")
    lines.append(f"flashsale_run_elapsed_seconds {f.elapsed_s!r}")
    metric("run_finished", "gauge", "1 once the figures are the finished run's (the report's)")
    lines.append(f"flashsale_run_finished {int(f.finished)}")
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        body = self.server.owner.text().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a scrape a second must not fill the terminal."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: MetricsServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` on ``host:port``, from its own thread, of the latest :meth:`publish`ed
    figures. The socket is bound in the constructor: a port in use is a usage error before the
    run starts."""

    def __init__(self, host: str, port: int, skus: Sequence[str], stocks: Sequence[int]) -> None:
        self.host = host
        self.skus = tuple(skus)
        self.stocks = tuple(int(s) for s in stocks)
        self._figures = Figures(units=_zeros(len(self.skus)))
        try:
            server = _Server6 if ":" in host else _Server
            self._httpd = server((host, port), _Handler)
        except (socket.gaierror, UnicodeError) as exc:
            why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            message = f"{host!r}: not an address to serve on ({why})"
            raise UsageError(message, "metrics_host") from None
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise UsageError(
                f"{host}:{port}: cannot serve metrics there ({why})", "metrics_port"
            ) from None
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        # signals are the main thread's business (a run's Ctrl-C), never this one's
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        self._httpd.serve_forever(poll_interval=0.1)

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._httpd.server_port}/metrics"

    def publish(self, figures: Figures) -> None:
        """Serve these figures from now on (a reference swap: no lock on the engine's side)."""
        self._figures = figures

    @property
    def figures(self) -> Figures:
        """The figures served now."""
        return self._figures

    def text(self) -> str:
        """The served page now."""
        return render(self._figures, self.skus, self.stocks)

    def close(self) -> None:
        """Stop serving (waits for the server thread)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where to serve a run's live metrics and how long to keep serving after its report."""

    port: int
    host: str = "127.0.0.1"
    linger_s: float = 0.0


@contextlib.contextmanager
def serving(
    config: MetricsConfig | None, skus: Sequence[str], stocks: Sequence[int]
) -> Iterator[MetricsServer | None]:
    """A :class:`MetricsServer` for the block (None without a config); on the way out it keeps
    serving ``linger_s`` seconds, so that a scraper can take the last figures, then stops."""
    if config is None:
        yield None
        return
    server = MetricsServer(config.host, config.port, skus, stocks)
    try:
        yield server
        if config.linger_s > 0:
            with contextlib.suppress(KeyboardInterrupt):  # the report is written: just stop
                time.sleep(config.linger_s)
    finally:
        server.close()
