"""The embedded default target: the bundled storefront of a scenario, for one run.

The run describes what to start (:class:`StorefrontSpec`); the storefront package starts it in
a child process of its own and hands back its URL (:mod:`simulator.storefront.process`), and
stops it when the run is over. The child dies with the run, even a run killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from simulator.errors import FlashsaleError
from simulator.storefront.process import (
    DEFAULT_START_TIMEOUT_S,
    StorefrontStartError,
    storefront_process,
)

__all__ = ["StorefrontSpec", "StorefrontStartError", "embedded_storefront"]


@dataclass(frozen=True, slots=True)
class StorefrontSpec:
    """What to start: a scenario file at a scale, with an inventory backend."""

    scenario_path: str
    scale: float
    backend: str
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S


@contextlib.contextmanager
def embedded_storefront(spec: StorefrontSpec) -> Iterator[str]:
    """Start the scenario's storefront on a free loopback port, yield its URL, stop it after.

    Every reason it cannot start (bad settings, a store that cannot be reached) is one
    :class:`StorefrontStartError`.
    """
    from simulator.scenario import load_scenario
    from simulator.storefront.config import StorefrontSettings

    try:
        scenario = load_scenario(spec.scenario_path, spec.scale)
        settings = StorefrontSettings.from_scenario(scenario, backend=spec.backend)
    except FlashsaleError as exc:
        raise StorefrontStartError(f"the bundled storefront did not start: {exc}") from None
    with storefront_process(settings, start_timeout_s=spec.start_timeout_s) as url:
        yield url
