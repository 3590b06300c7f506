"""Scenario files: one flash sale described in TOML, parsed into frozen dataclasses.

The model (:mod:`simulator.scenario.model`) is apart from the TOML reader
(:mod:`simulator.scenario.reader`); the range of every number is in
:mod:`simulator.scenario.limits`. The public names are re-exported here, so
``from simulator.scenario import Scenario, load_scenario`` is all a caller needs.
"""

from __future__ import annotations

from simulator.retry import Retry
from simulator.scenario.model import (
    BODY_FIELDS,
    DEFAULT_BODY,
    Buyers,
    Product,
    RunSettings,
    Scenario,
    StorefrontConfig,
    Target,
    scaled_stock,
    sku_problem,
)
from simulator.scenario.reader import MAX_SCENARIO_BYTES, load_scenario, parse_scenario

__all__ = [
    "BODY_FIELDS",
    "DEFAULT_BODY",
    "MAX_SCENARIO_BYTES",
    "Buyers",
    "Product",
    "Retry",
    "RunSettings",
    "Scenario",
    "StorefrontConfig",
    "Target",
    "load_scenario",
    "parse_scenario",
    "scaled_stock",
    "sku_problem",
]
