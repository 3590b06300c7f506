"""Calibration: fit on a report at low load, predict a higher load.

The "measured" runs here are synthetic: the model itself with known service times (another seed
for the measurement noise), shaped as a run report (service-time percentiles, the storefront's
max_concurrency, the connections). That checks the fitting and the extrapolation in well under
a second, against a known truth; tests/test_model_calibration_live.py holds the calibration
against real runs of the bundled storefront (``flashsale run``'s report.json).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulator.errors import UsageError
from simulator.model import Model, ModelConfig, build_report, calibrate, config_for, load_report
from simulator.scenario import Scenario, parse_scenario

TRUTH = ModelConfig(servers=16, service_median_ms=8.0, service_sigma=0.6, queue_limit=64, seed=99)


def scenario(scale: float) -> Scenario:
    data: dict[str, Any] = {
        "name": "calib",
        "seed": 5,
        "duration_s": 6.0,
        "scale": scale,
        "products": [{"id": "x", "stock": 4000}],
        "demand": {
            "baseline_per_s": 1000.0,
            "spike": {"at_s": 2.0, "peak_per_s": 1500.0, "half_life_s": 2.0},
        },
        "storefront": {"max_concurrency": 64},
    }
    return parse_scenario(data, "calib.toml")


def measured(scale: float) -> dict[str, Any]:
    report = build_report(Model(scenario(scale), TRUTH).run())
    report["storefront"] = {"max_concurrency": TRUTH.queue_limit}
    report["run"]["connections"] = TRUTH.servers
    return report


def test_calibrate_on_low_load_predicts_the_higher_load(tmp_path):
    low, high = measured(0.5), measured(1.0)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(low))
    cal = calibrate(load_report(path), str(path))
    assert cal.servers == TRUTH.servers and cal.queue_limit == TRUTH.queue_limit
    assert cal.service_median_ms == pytest.approx(TRUTH.service_median_ms, rel=0.03)
    assert cal.service_sigma == pytest.approx(TRUTH.service_sigma, rel=0.08)
    sc = scenario(1.0)
    predicted = build_report(Model(sc, config_for(sc, **cal.overrides())).run())
    for key, tolerance in (("p50", 0.15), ("p99", 0.25)):
        want = high["latency_ms"]["intended"][key]
        assert predicted["latency_ms"]["intended"][key] == pytest.approx(want, rel=tolerance)
    want_s = high["skus"]["x"]["sell_out_s"]
    assert want_s is not None
    assert predicted["skus"]["x"]["sell_out_s"] == pytest.approx(want_s, rel=0.10)


def test_calibrate_from_percentiles_and_from_samples():
    p90 = 2.0 * 2.718281828 ** (0.5 * 1.28155)
    cal = calibrate({"latency_ms": {"service": {"p50": 2.0, "p90": p90}}})
    assert cal.service_median_ms == 2.0
    assert cal.service_sigma == pytest.approx(0.5, rel=1e-4)
    cal = calibrate({"service_samples_ms": [1.0, 2.0, 3.0, 4.0]})
    assert cal.service_samples_ms == (1.0, 2.0, 3.0, 4.0)
    assert "empirical" in cal.fitted_from


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "not JSON"), ("[1, 2]", "expected a JSON object"), ("{}", "no service times")],
)
def test_bad_run_reports_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        calibrate(load_report(path), str(path))
