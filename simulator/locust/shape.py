"""The load shape: Locust's user pool follows the scenario's demand curve.

Locust asks a shape for ``(users, spawn_rate)`` once a second. This one only reads the elapsed
run time Locust gives it and hands it to the node's
:meth:`~simulator.locust.node.Node.shape_tick`, which applies the pure
:func:`simulator.locust.plan.users_at` (tested as a function of time) and ends the run once the
sale and its drain are over.
"""

from __future__ import annotations

from locust import LoadTestShape

from simulator.locust.node import node_of


class DemandShape(LoadTestShape):
    """Size the user pool from the demand curve; stop after the sale (and drain) is over."""

    use_common_options = False

    def tick(self) -> tuple[int, float] | None:
        """(users, spawn rate) now; None before the flashsale state exists (no run)."""
        node = node_of(getattr(self.runner, "environment", None))
        if node is None:
            return None
        elapsed_s: float = self.get_run_time()  # type: ignore[no-untyped-call]
        return node.shape_tick(elapsed_s)
