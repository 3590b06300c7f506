"""Prometheus metrics of one storefront, kept in plain counters and exported at scrape time.

The order handler only bumps integers in :class:`OrderStats` (a ``prometheus_client`` Counter
takes a lock and a label lookup per increment, too much for the hot path); a custom collector
on a per-app :class:`~prometheus_client.CollectorRegistry` turns them, and the backend's
per-SKU snapshot, into metric families when ``GET /metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from simulator.storefront.backends import SkuSnapshot

#: every status ``POST /orders`` answers with
ORDER_STATUSES = (201, 400, 401, 403, 408, 409, 413, 422, 429, 500, 503)
#: the Content-Type of the text exposition format
CONTENT_TYPE = CONTENT_TYPE_LATEST


class OrderStats:
    """Counters of ``POST /orders`` answers, written by the handler on every order."""

    __slots__ = ("by_status", "in_flight", "replays")

    def __init__(self) -> None:
        self.by_status: dict[int, int] = dict.fromkeys(ORDER_STATUSES, 0)
        self.replays = 0  # answers that repeated an order id's first outcome
        self.in_flight = 0  # orders past validation and not yet answered

    def clear(self) -> None:
        """Zero the counters (on reset); orders in flight stay counted."""
        self.by_status = dict.fromkeys(ORDER_STATUSES, 0)
        self.replays = 0


class StorefrontCollector(Collector):
    """Turns :class:`OrderStats` and the latest inventory snapshot into metric families."""

    def __init__(self, stats: OrderStats, backend: str, lifecycle: bool = False) -> None:
        self.stats = stats
        self.backend = backend
        #: with a reservation TTL: the lifecycle's numbers too (held, paid, returned, …)
        self.lifecycle = lifecycle
        #: set by the /metrics handler just before each scrape (backends are async)
        self.snapshot: Mapping[str, SkuSnapshot] = {}

    def collect(self) -> Iterator[Metric]:
        """Metric families for one scrape."""
        stats = self.stats
        responses = CounterMetricFamily(
            "flashsale_storefront_order_responses",
            "Answers to POST /orders by HTTP status",
            labels=["status"],
        )
        for status, count in stats.by_status.items():
            responses.add_metric([str(status)], count)
        yield responses
        yield CounterMetricFamily(
            "flashsale_storefront_order_replays",
            "Answers that repeated an order id's first outcome (idempotency)",
            value=stats.replays,
        )
        yield GaugeMetricFamily(
            "flashsale_storefront_orders_in_flight",
            "Orders being processed now (the load-shedding limit applies to this)",
            value=stats.in_flight,
        )
        names = [
            ("initial", "Initial stock of the SKU"),
            ("sold", "Units sold by the backend's counter"),
            ("ledger_units", "Units summed from the ledger of confirmed orders"),
            ("ledger_orders", "Confirmed orders in the ledger"),
            ("remaining", "Stock left"),
        ]
        if self.lifecycle:
            names += [
                ("held", "Units held by live reservations"),
                ("reserved", "Units ever reserved"),
                ("returned", "Units given back by expiries and cancels"),
                ("double_returns", "Reservations given back more than once (racy stores)"),
                ("paid_after_expiry", "Reservations both paid and given back (racy stores)"),
            ]
        gauges = {
            name: GaugeMetricFamily(
                f"flashsale_storefront_sku_{name}", help_text, labels=["backend", "sku"]
            )
            for name, help_text in names
        }
        for sku, snap in self.snapshot.items():
            for name, gauge in gauges.items():
                gauge.add_metric([self.backend, sku], getattr(snap, name))
        yield from gauges.values()


def new_registry(
    stats: OrderStats, backend: str, lifecycle: bool = False
) -> tuple[CollectorRegistry, StorefrontCollector]:
    """A registry of its own for one app (never the global one), with its collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StorefrontCollector(stats, backend, lifecycle)
    registry.register(collector)
    return registry, collector


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text exposition format."""
    return generate_latest(registry)
