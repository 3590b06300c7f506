"""Calibration against the real thing: the bundled storefront at two loads (issues 7, 18).

Two cases of bench/model_calibration.py, live on 127.0.0.1:

- ``connections`` (scenarios/calibration-live.toml, 64 connections, 20 ms service): run at
  scale 0.3 and 1.0, ``flashsale simulate --scale 1.0 --calibrate LOW/report.json`` fitted on
  the first and held against the second;
- ``hot-row`` (scenarios/calibration-hot-row.toml, one SKU whose orders serialise, 4 ms
  service): calibrated at scale 0.4 (ρ ≈ 0.4) from the run's per-order records, predicting
  scale 0.6 (ρ ≈ 0.6), where the queue is half of p99. At ρ ≥ 0.8 an 8 s run's p99 itself
  varies by ±15 % from run to run (27.4 and 31.6 ms in two runs at 0.8; the model's ±12 %
  over service seeds), so the 25 % goal is at the noise level there: the bench's
  ``--case hot-row`` checks ρ 0.9, this test the load it can hold every time;
- ``multi-sku`` (scenarios/calibration-multi-sku.toml, three hot rows behind one global
  ``max_concurrency`` of 12): calibrated at scale 0.4, predicting scale 1.6, where the limit
  sheds a few hundred orders: latencies, per-SKU sell-out and the throttled count.

The hot-row and multi-sku checks are made three times, interleaved (low, high, low, high …),
with the scenario's seed, seed + 1 and seed + 2 (other arrivals and service draws, in the
storefront and the model alike), each high run predicted from its own low run, and the median
prediction is held against the median measurement: one run slowed by the machine's load (the
hot-row check once failed on p99 under load while passing alone) or one unlucky draw of
service times moves neither median, and every figure is still held to its goal (the
throttled count: the three runs' total against the predictions' total). Each
prediction is the model's median over five service seeds (its own p99 spreads by ±8 % over
seeds at ρ ≈ 0.6). A check that misses a goal while the hypervisor steals more than 5 % of the
CPU is made once more (:func:`_checked`); the load and steal it ran under are printed.

Goals: intended-latency p50 within 15 %, p99 within 25 %, sell-out time within 10 %. The
sell-out time is computed the same way from both reports (``sell_out_s`` in the bench). Run
with ``-s`` to see the tables; ``bench/model_calibration.py --case hot-row`` predicts more
loads (0.2, 0.6, 0.9).
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
#: live checks per case (seeds), their medians compared; the model's service seeds per prediction
REPEAT, MODEL_SEEDS = 3, 5
#: the hypervisor's share of the CPU time above which a missed goal is checked once more
STEAL_RETRY = 0.05


def _load(name: str) -> ModuleType:
    """bench/NAME.py as a module (``bench`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _bench() -> ModuleType:
    """bench/model_calibration.py: the comparison the bench prints, so both check one thing."""
    return _load("model_calibration")


def _checked(case: Any, workdir: Path) -> tuple[float, list[Any], Path, str]:
    """``bench.check(case)`` repeated and compared by medians; once more (in a directory of
    its own) when a figure missed its goal while the hypervisor took more than
    :data:`STEAL_RETRY` of the machine's CPU time: the model is calibrated on the storefront's
    service times, which a host that steals a fifth of the CPU stretches at high load and not
    at low (a CI run with 20–33 % steal once put the p50 18.6 % off; on a quiet host 3 %).
    A miss on a quiet host fails at once. Returns the high scale, its rows, the directory of
    the counted check and the host's load and steal over it (printed with the table)."""
    bench, harness = _bench(), _load("harness")
    for attempt in (1, 2):
        where = workdir / f"attempt-{attempt}"
        before = harness.host_sample()
        ((high, rows),) = bench.check(
            case, quiet=True, workdir=where, repeat=REPEAT, model_seeds=MODEL_SEEDS
        )
        host = harness.host_since(before)
        said = f"attempt {attempt}: load {host['load1']:.2f}, steal {host['steal_share']:.1%}"
        if all(r.ok for r in rows) or host["steal_share"] < STEAL_RETRY:
            return high, rows, where, said
        print(f"\n{said}: a figure missed its goal on a host that steals; once more\n"
              f"{bench.table(rows)}")  # fmt: skip
    return high, rows, where, said


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
    # the storefront's settings and the run's connections, not the latencies, make the servers
    assert predicted["model"]["servers"] == low["run"]["connections"]
    assert predicted["calibration"]["residual"] is not None
    rows = bench.compare(predicted, high)
    figures = bench.table(rows)
    print(f"\ncalibrated at scale {LOW}, predicting scale {HIGH}\n{figures}")
    assert [r.name for r in rows] == ["p50 ms", "p99 ms", "sell-out s"]
    assert all(r.ok for r in rows), figures


@pytest.mark.slow
def test_calibrated_on_a_hot_row_at_low_load_the_model_predicts_the_queue(tmp_path: Path) -> None:
    bench = _bench()
    case = bench.Case(ROOT / "scenarios" / "calibration-hot-row.toml", 0.4, (0.6,))
    high, rows, where, host = _checked(case, tmp_path)
    for i in range(REPEAT):
        low = json.loads((where / f"rep-{i + 1}" / "low" / "report.json").read_text())
        assert low["target"]["storefront"]["hot_row"] is True
    figures = bench.table(rows)
    print(f"\nhot row, calibrated at scale {case.low}, predicting scale {high} ({host})\n{figures}")
    assert [r.name for r in rows] == ["p50 ms", "p99 ms", "sell-out s"]
    assert all(r.ok for r in rows), figures


@pytest.mark.slow
def test_behind_one_global_limit_the_model_predicts_what_it_sheds(tmp_path: Path) -> None:
    bench = _bench()
    case = bench.Case(ROOT / "scenarios" / "calibration-multi-sku.toml", 0.4, (1.6,))
    high, rows, where, host = _checked(case, tmp_path)
    for i in range(REPEAT):
        run = json.loads((where / f"rep-{i + 1}" / "high-1.6" / "report.json").read_text())
        assert run["target"]["storefront"]["max_concurrency"] == 12
        assert run["orders"]["outcomes"]["throttled"] > 50, "the limit should bind at 1.6"
    figures = bench.table(rows)
    print(f"\nthree hot rows, one limit, calibrated at {case.low}, predicting {high} ({host})")
    print(figures)
    assert [r.name for r in rows] == ["p50 ms", "p99 ms", "hot-a s", "hot-b s", "hot-c s",
                                      "throttled"]  # fmt: skip
    assert all(r.ok for r in rows), figures
