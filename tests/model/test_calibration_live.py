"""Calibration against the real thing: the bundled storefront at two loads (issue 7).

``flashsale run scenarios/calibration-live.toml`` at scale 0.3 and at 1.0 (≈ 4.5 s each, on
127.0.0.1), ``flashsale simulate --scale 1.0 --calibrate LOW/report.json`` fitted on the first,
and its prediction held against the second: intended-latency p50 within 15 %, p99 within 25 %,
sell-out time within 10 % — issue 7's goals. The sell-out time is computed the same way from
both reports (bench/model_calibration.py, ``sell_out_s``: the second the cumulative confirmed
units reach the stock, interpolated over that second's answers).

Measured on the 2-core development VM (5 runs, two of them with one or both cores kept busy by
other processes): p50 1-6 %, p99 9-14 %, sell-out < 0.1 %, about 11 s for the test. Most of
the p99 error is the low run's sample: the storefront's service times are seeded, and the
≈ 1,200 of the low run put their p99 at ≈ 67 ms against the lognormal's 64 (the fit's σ comes
from it); the model's own queueing adds ≈ 4 % more (it feeds its 64 servers round-robin where
the run's connection pool is one shared queue). Run with ``-s`` to see the table.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "calibration-live.toml"
LOW, HIGH = 0.3, 1.0


def _bench() -> ModuleType:
    """bench/model_calibration.py: the comparison the bench prints, so both check one thing."""
    spec = importlib.util.spec_from_file_location(
        "model_calibration_bench", ROOT / "bench" / "model_calibration.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _simulate(low_report: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "simulator", "simulate", str(SCENARIO), "--scale", str(HIGH)]
    cmd += ["--calibrate", str(low_report), "--json", "--no-progress"]
    out = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=60)
    report: dict[str, Any] = json.loads(out.stdout)
    return report


@pytest.mark.slow
def test_calibrated_on_a_low_load_run_the_model_predicts_a_higher_load_run(tmp_path: Path) -> None:
    bench = _bench()
    low = bench.live_run(SCENARIO, LOW, tmp_path / "low", quiet=True)
    high = bench.live_run(SCENARIO, HIGH, tmp_path / "high", quiet=True)
    for run in (low, high):  # the runs themselves went as the scenario says
        outcomes = run["orders"]["outcomes"]
        assert run["audit"]["ok"] and outcomes["error"] == outcomes["timeout"] == 0, outcomes
        assert outcomes["sold_out"] > 0, "the stock should run out before the end"
    predicted = _simulate(tmp_path / "low" / "report.json")
    assert predicted["calibration"]["service_median_ms"] == low["latency_ms"]["service"]["p50"]
    assert predicted["model"]["servers"] == low["run"]["connections"]
    rows = bench.compare(predicted, high)
    figures = bench.table(rows)
    print(f"\ncalibrated at scale {LOW}, predicting scale {HIGH}\n{figures}")
    assert [r.name for r in rows] == ["p50 ms", "p99 ms", "sell-out s"]
    assert all(r.ok for r in rows), figures
