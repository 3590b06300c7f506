"""What the adapter reports into Locust's statistics: two request names and a failure type.

Kept apart from :mod:`simulator.locust.users` so that code without Locust users (the engine
mode, its tests) does not import locust, whose import monkey-patches the whole process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from simulator.outcomes import OUTCOME_NAMES, reason_name
from simulator.scenario import Scenario
from simulator.scenario.journey import Step, order_journey

#: per HTTP attempt, latency from the attempt's intended send time (what a buyer waits)
INTENDED = "order (intended)"
#: per HTTP attempt, latency from the actual send (what the target took)
SERVICE = "order (service)"


def request_names(requests: Sequence[Step], order_step: int) -> list[tuple[str, str]]:
    """Each request's two names in Locust's statistics (intended, service): the order step
    under the orders' names, every other step and stream by its own name."""
    return [
        (INTENDED, SERVICE) if k == order_step else (f"{s.name} (intended)", f"{s.name} (service)")
        for k, s in enumerate(requests)
    ]


def order_request(scenario: Scenario) -> Step:
    """The request the orders go out as (the journey's order step, or the target's order as
    one): its method is the request type of the orders' entries in Locust's statistics."""
    journey = scenario.journey or order_journey(scenario.target)
    return journey.steps[journey.order_step]


class OrderFailed(Exception):
    """An order's outcome that Locust should count as a failure (e.g. "throttled (status 429)")."""


class Failures:
    """One :class:`OrderFailed` per (outcome, reason), named as the reports name them
    ("rejected (body code 401)", "error (connect failed)"): made once, not per request."""

    __slots__ = ("_cache", "_labels")

    def __init__(self, labels: Mapping[int, str] | None = None) -> None:
        self._labels = dict(labels or {})
        self._cache: dict[tuple[int, int], OrderFailed] = {}

    def __call__(self, outcome: int, reason: int) -> OrderFailed:
        """The failure of an answer with this outcome and reason code."""
        key = (outcome, reason)
        exc = self._cache.get(key)
        if exc is None:
            text = f"{OUTCOME_NAMES[outcome]} ({reason_name(reason, self._labels)})"
            exc = self._cache[key] = OrderFailed(text)
        return exc
