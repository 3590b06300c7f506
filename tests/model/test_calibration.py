"""Calibration: fit on a report at low load, predict a higher load.

The "measured" runs here are synthetic (simulator.model.selfcheck): the model itself with known
service times (another seed for the measurement noise), shaped as a run report. That checks the
fitting and the extrapolation in well under a second, against a known truth;
tests/model/test_calibration_live.py holds the calibration against real runs of the bundled
storefront (``flashsale run``'s report.json).
"""

from __future__ import annotations

import json

import pytest

from simulator.errors import UsageError
from simulator.model import Model, build_report, calibrate, config_for, load_report
from simulator.model.selfcheck import SYNTHETIC_TRUTH as TRUTH
from simulator.model.selfcheck import synthetic_run, synthetic_scenario


def test_calibrate_on_low_load_predicts_the_higher_load(tmp_path):
    low, high = synthetic_run(0.5), synthetic_run(1.0)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(low))
    cal = calibrate(load_report(path), str(path))
    assert cal.servers == TRUTH.servers and cal.queue_limit == TRUTH.queue_limit
    assert cal.service_median_ms == pytest.approx(TRUTH.service_median_ms, rel=0.03)
    assert cal.service_sigma == pytest.approx(TRUTH.service_sigma, rel=0.08)
    sc = synthetic_scenario(1.0)
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
