"""Threshold expressions: the parser (good and bad, table-driven) and evaluation on reports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from simulator.report.document import Report
from simulator.report.metrics import METRICS, metric_values
from simulator.report.thresholds import (
    ThresholdError,
    evaluate,
    parse_threshold,
    render_results,
)

from .synth import Synthetic


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("p99_ms < 250", "p99_ms", "<", 250.0),
        ("p99_ms<250", "p99_ms", "<", 250.0),
        ("  oversell_units == 0 ", "oversell_units", "==", 0.0),
        ("error_rate < 0.01", "error_rate", "<", 0.01),
        ("error_rate <= 1e-3", "error_rate", "<=", 0.001),
        ("achieved_rate_ratio > 0.95", "achieved_rate_ratio", ">", 0.95),
        ("p99.9_ms >= 1", "p999_ms", ">=", 1.0),
        ("p999_ms != 3", "p999_ms", "!=", 3.0),
        ("service_p99.9_ms < 5", "service_p999_ms", "<", 5.0),
        ("service_p99_ms < 5", "service_p99_ms", "<", 5.0),
        ("confirmed > -1", "confirmed", ">", -1.0),
        ("sold_out >= +10", "sold_out", ">=", 10.0),
        ("max_ms<=1_000", "max_ms", "<=", 1000.0),
    ],
)
def test_good_expressions(text: str, metric: str, op: str, bound: float) -> None:
    t = parse_threshold(text)
    assert (t.metric, t.op, t.bound) == (metric, op, bound)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty threshold"),
        ("   ", "empty threshold"),
        ("p99_ms", "no comparison operator"),
        ("p99_ms 250", "no comparison operator"),
        ("< 250", "no metric before '<'"),
        ("p99_ms = 250", "did you mean '=='"),
        ("p99_ms => 250", "did you mean '>='"),
        ("p99_ms =< 250", "did you mean '<='"),
        ("p99_ms <> 250", "did you mean '!='"),
        ("p99_ms <", "no number after '<'"),
        ("p99_ms < abc", "'abc' is not a number"),
        ("p99_ms < 250ms", "the unit is in the metric's name"),
        ("p99_ms < nan", "finite"),
        ("p99_ms < inf", "finite"),
        ("p99_ms < 250 and error_rate < 1", "one comparison per threshold"),
        ("p99 < 250", "did you mean 'p99_ms'"),
        ("p99_msec < 250", "did you mean 'p99_ms'"),
        ("oversell == 0", "did you mean 'oversell_units'"),
        ("eror_rate < 0.1", "did you mean 'error_rate'"),
        ("250 > p99_ms", "'250' is not a metric name"),
        ("__import__('os') < 1", "is not a metric name"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ThresholdError) as exc:
        parse_threshold(text)
    assert message in str(exc.value)
    if text.strip():
        assert repr(text) in str(exc.value)  # the message quotes the expression


def test_unknown_metric_names_it_and_the_nearest() -> None:
    with pytest.raises(ThresholdError, match=r"unknown metric 'p98_ms'; did you mean 'p99_ms'"):
        parse_threshold("p98_ms < 5")


def test_evaluate_on_a_run(oversold_run: Synthetic) -> None:
    r = oversold_run.report
    p99 = r["latency_ms"]["intended"]["p99"]
    results = evaluate(
        r,
        [
            f"p99_ms <= {p99}",
            f"p99_ms < {p99}",
            "oversell_units == 0",
            "oversell_units == 7",
            "achieved_rate_ratio > 0.95",
        ],
    )
    assert [x.passed for x in results] == [True, False, False, True, True]
    assert results[0].value == p99
    text = render_results(results)
    assert "FAIL  oversell_units == 0  (oversell_units = 7)" in text
    assert text.endswith("thresholds: 3 passed, 2 failed")


def test_error_rate_is_error_plus_timeout_over_scheduled(clean_run: Synthetic) -> None:
    r = copy.deepcopy(clean_run.report)
    o = r["orders"]
    o["outcomes"].update(error=3, timeout=2)
    v = metric_values(Report.from_json(r))
    assert v["error_rate"] == pytest.approx(5 / o["scheduled"])
    assert v["errors"] == 5


def test_achieved_rate_ratio_counts_only_attempts_sent_in_their_second(
    clean_run: Synthetic,
) -> None:
    r = copy.deepcopy(clean_run.report)
    t = r["timeline"]
    t["intended_per_s"] = [100, 100, 0, 0]
    t["sent_per_s"] = [50, 100, 50, 0]  # 50 late, caught up a second later
    t["second"] = [0, 1, 2, 3]
    assert metric_values(Report.from_json(r))["achieved_rate_ratio"] == pytest.approx(150 / 200)


def test_a_metric_the_report_lacks_fails(clean_run: Synthetic) -> None:
    r: dict[str, Any] = copy.deepcopy(clean_run.report)
    del r["audit"]
    (result,) = evaluate(r, ["oversell_units == 0"])
    assert not result.passed and result.value is None
    assert "not in this report" in result.line()


def test_every_metric_has_a_value_in_a_full_run_report(clean_run: Synthetic) -> None:
    values = metric_values(Report.from_json(clean_run.report))
    assert set(values) == set(METRICS)
    assert [k for k, v in values.items() if v is None] == []


def test_model_report_metrics(model_report: dict[str, Any]) -> None:
    values = metric_values(Report.from_json(model_report))
    assert values["p99_ms"] == model_report["latency_ms"]["intended"]["p99"]
    assert values["oversell_units"] == model_report["audit"]["oversell_units"]
    assert values["confirmed"] == model_report["orders"]["outcomes"]["confirmed"]
    (ok,) = evaluate(model_report, ["oversell_units == 0"])
    assert ok.passed


def test_lifecycle_thresholds(clean_run: Synthetic, oversold_run: Synthetic) -> None:
    gates = ["undersell_units == 0", "double_returns == 0", "paid_after_expiry == 0"]
    assert all(r.passed for r in evaluate(clean_run.report, gates))
    results = evaluate(oversold_run.report, gates)  # two holds returned twice
    assert [(r.passed, r.value) for r in results] == [(True, 0.0), (False, 2.0), (True, 0.0)]
    # without a reservation TTL: n/a, with the reason, never a PASS
    r: dict[str, Any] = copy.deepcopy(clean_run.report)
    for key in ("undersell_units", "double_returns", "paid_after_expiry", "excess_units"):
        del r["audit"][key]
    for s in r["audit"]["skus"].values():
        del s["paid"]
    doc = Report.from_json(r)
    (result,) = evaluate(doc, ["undersell_units == 0"])
    assert not result.passed and result.value is None
    assert "no reservation TTL" in render_results([result], doc)
