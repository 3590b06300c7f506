"""What the adapter reports into Locust's statistics: two request names and a failure type.

Kept apart from :mod:`simulator.locust.users` so that code without Locust users (the engine
mode, its tests) does not import locust, whose import monkey-patches the whole process.
"""

from __future__ import annotations

#: per HTTP attempt, latency from the attempt's intended send time (what a buyer waits)
INTENDED = "order (intended)"
#: per HTTP attempt, latency from the actual send (what the target took)
SERVICE = "order (service)"


class OrderFailed(Exception):
    """An order's outcome that Locust should count as a failure (e.g. "throttled (429)")."""
