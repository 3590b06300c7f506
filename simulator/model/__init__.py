"""The offline full-scale model behind ``flashsale simulate``.

A scenario's schedule streams through K shards of c FIFO servers each, with an admission
limit, stock taken in completion order and throttled buyers retrying; results come out in the
report shape of a live run. Modules: ``kernels`` (closed-form queues), ``service`` (per-order
random draws), ``stock`` (stock, idempotency, sold-out), ``stats``/``histogram`` (accumulation),
``sim`` (the driver), ``report``, ``search`` (capacity), ``calibrate``, ``selfcheck`` (the
calibration's check against a known truth).
"""

from __future__ import annotations

from simulator.model.calibrate import Calibration, calibrate, load_report
from simulator.model.config import ModelConfig, config_for
from simulator.model.report import build_report
from simulator.model.search import find_capacity, parse_vary
from simulator.model.sim import Model, ModelResult

__all__ = [
    "Calibration",
    "Model",
    "ModelConfig",
    "ModelResult",
    "build_report",
    "calibrate",
    "config_for",
    "find_capacity",
    "load_report",
    "parse_vary",
]
