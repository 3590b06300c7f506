"""Scenario files: one flash sale described in TOML, parsed into frozen dataclasses.

The model (:mod:`simulator.scenario.model`) is apart from the TOML reader
(:mod:`simulator.scenario.reader`); the range of every number is in
:mod:`simulator.scenario.limits`. The public names are re-exported here, so
``from simulator.scenario import Scenario, load_scenario`` is all a caller needs.
"""

from __future__ import annotations

from simulator.retry import Retry
from simulator.scenario.model import (
    AUDIT_SOURCES,
    BODY_FIELDS,
    DEFAULT_BODY,
    AuditSource,
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
    audit_source_name,
    scaled_stock,
    sku_problem,
)
from simulator.scenario.reader import MAX_SCENARIO_BYTES, load_scenario, parse_scenario

__all__ = [
    "AUDIT_SOURCES",
    "BODY_FIELDS",
    "DEFAULT_BODY",
    "MAX_SCENARIO_BYTES",
    "AuditSource",
    "Buyers",
    "HttpAudit",
    "NoAudit",
    "Product",
    "RedisAudit",
    "Retry",
    "RunSettings",
    "Scenario",
    "SqlAudit",
    "StorefrontConfig",
    "Target",
    "audit_source_name",
    "load_scenario",
    "parse_scenario",
    "scaled_stock",
    "sku_problem",
]
