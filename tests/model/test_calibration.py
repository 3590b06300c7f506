"""Calibration: fit on a report at low load, predict a higher load.

The "measured" runs here are synthetic (simulator.model.selfcheck): the model itself with known
service times (another seed for the measurement noise), shaped as a run report. That checks the
fitting and the extrapolation in well under a second, against a known truth;
tests/model/test_calibration_live.py holds the calibration against real runs of the bundled
storefront (``flashsale run``'s report.json).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.errors import UsageError
from simulator.model import Model, build_report, calibrate, config_for, load_report
from simulator.model.calibrate import lognormal_fit, net_service
from simulator.model.selfcheck import SYNTHETIC_TRUTH as TRUTH
from simulator.model.selfcheck import synthetic_run, synthetic_scenario
from simulator.outcomes import OUTCOME_NAMES


def test_calibrate_on_low_load_predicts_the_higher_load(tmp_path):
    low, high = synthetic_run(0.5), synthetic_run(1.0)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(low))
    cal = calibrate(load_report(path), str(path))
    assert cal.servers == TRUTH.servers and cal.max_in_flight == TRUTH.max_in_flight
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


def _fifo_records(rng, n, rate_per_ms, median_ms, sigma, overhead_ms):
    """Per-order records of one FIFO row with a known service and a fixed overhead around it."""
    sent = np.cumsum(rng.exponential(1.0 / rate_per_ms, n))
    service = median_ms * np.exp(sigma * rng.standard_normal(n))
    done, free = np.empty(n), -np.inf
    for i in range(n):
        free = max(sent[i] + overhead_ms / 2, free) + service[i]
        done[i] = free + overhead_ms / 2
    return {
        "sent_ns": (sent * 1e6).astype(np.int64),
        "done_ns": (done * 1e6).astype(np.int64),
        "sku": np.zeros(n, np.int32),
        "outcome": np.full(n, OUTCOME_NAMES.index("confirmed"), np.uint8),
        "outcome_names": np.array(OUTCOME_NAMES),
    }, service


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
def test_records_give_the_service_net_of_queueing_and_overhead(rho):
    rng = np.random.default_rng(int(rho * 10))
    records, _ = _fifo_records(rng, 4000, rho / 4.2, 4.0, 0.3, 0.8)
    got = net_service(records)
    assert got is not None
    s_ms, overhead_ms = got
    assert overhead_ms == pytest.approx(0.8, abs=0.15)
    median, sigma = lognormal_fit(s_ms)
    assert median == pytest.approx(4.0, rel=0.04)
    assert sigma == pytest.approx(0.3, rel=0.12)
    # latencies as measured would have been far off at high load: queueing is not service
    if rho == 0.9:
        assert np.median(records["done_ns"] - records["sent_ns"]) / 1e6 > 2 * median


def test_calibration_uses_the_storefronts_settings_and_records():
    rng = np.random.default_rng(1)
    records, _ = _fifo_records(rng, 2000, 0.12, 4.0, 0.3, 0.5)
    report = {
        "latency_ms": {"service": {"p50": 9.0, "p99": 30.0}},
        "run": {"connections": 64},
        "target": {
            "storefront": {
                "service_time_median_ms": 4.0,
                "service_time_sigma": 0.3,
                "max_concurrency": 40,
                "hot_row": True,
            }
        },
    }
    cal = calibrate(report, "run", records)
    assert (cal.servers, cal.hot_row, cal.max_in_flight) == (1, True, 40)  # the row serialises
    assert cal.service_median_ms == pytest.approx(4.0, rel=0.05)
    assert cal.service_orders > 1900 and "records" in cal.fitted_from
    without = calibrate(report, "run")  # no records: the configured service time
    assert (without.service_median_ms, without.service_sigma) == (4.0, 0.3)
    report["target"]["storefront"]["hot_row"] = False
    assert calibrate(report, "run", records).servers == 64  # the connections queue
