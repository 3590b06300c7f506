"""The calibration self-check: "measured" runs made by the model itself, from a known truth.

A one-SKU sale whose spike saturates :data:`SYNTHETIC_TRUTH` (16 servers, lognormal service of
median 8 ms and σ 0.6, at most 64 orders in flight), run by the model at a low and a high scale
and shaped as ``flashsale run`` writes its report (the storefront's ``max_concurrency``, the run's
connections): :func:`~simulator.model.calibrate.calibrate` on the low run must recover the
truth, and the model calibrated so must predict the high run. That checks the fitting and the
extrapolation against an exact answer in well under a second (tests/model/test_calibration.py,
``bench/model_calibration.py --synthetic``); the model's realism is checked against the bundled
storefront instead (scenarios/calibration-live.toml).
"""

from __future__ import annotations

from typing import Any

from simulator.model.config import ModelConfig
from simulator.model.report import build_report
from simulator.model.sim import Model
from simulator.scenario import Scenario, parse_scenario

#: what serves the "measured" runs (with a seed of its own, not the prediction's)
SYNTHETIC_TRUTH = ModelConfig(
    servers=16, service_median_ms=8.0, service_sigma=0.6, max_in_flight=64, seed=99
)


def synthetic_scenario(scale: float) -> Scenario:
    """The self-check's sale at ``scale``: 1,000/s plus a spike of 1,500/s at 2 s, 4,000 units.

    At scale 1.0 the spike asks for up to 2,500 orders/s of servers that serve ~1,700/s (mean
    service 9.6 ms): a queue builds, the in-flight limit throttles, the stock sells out at ~3.2 s.
    """
    data: dict[str, Any] = {
        "name": "calibration-synthetic",
        "seed": 5,
        "duration_s": 6.0,
        "scale": scale,
        "products": [{"id": "x", "stock": 4000}],
        "demand": {
            "baseline_per_s": 1000.0,
            "spike": {"at_s": 2.0, "peak_per_s": 1500.0, "half_life_s": 2.0},
        },
        "storefront": {"max_concurrency": SYNTHETIC_TRUTH.max_in_flight},
    }
    return parse_scenario(data, "calibration-synthetic")


def synthetic_run(scale: float) -> dict[str, Any]:
    """The report of a "measured" run at ``scale``: the model with the truth, as a run states it."""
    report = build_report(Model(synthetic_scenario(scale), SYNTHETIC_TRUTH).run())
    report["target"]["storefront"] = {"max_concurrency": SYNTHETIC_TRUTH.max_in_flight}
    report["run"]["connections"] = SYNTHETIC_TRUTH.servers
    return report
