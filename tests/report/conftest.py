"""Reports to render: synthetic runs (clean and oversold, with orders.npz) and a model run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator.records import save_orders

from .synth import ROOT, Synthetic, synthetic_run


def write(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY))
    return path


@pytest.fixture(scope="session")
def clean_run() -> Synthetic:
    """A synthetic run with every report section (spectrum, per-SKU series, the reservation
    lifecycle and the stock over time) and no oversell."""
    return synthetic_run(reservations=True)


@pytest.fixture(scope="session")
def oversold_run() -> Synthetic:
    """The same run against a racy toy backend that confirms 7 units past one SKU's stock (and
    returns two holds twice)."""
    return synthetic_run(oversell=7, reservations=True)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, oversold_run: Synthetic) -> Path:
    """A run directory as ``flashsale run --out`` would leave it: report.json + orders.npz."""
    out = tmp_path_factory.mktemp("run")
    write(oversold_run.report, out / "report.json")
    save_orders(out, oversold_run.rows, oversold_run.rec, oversold_run.skus)
    return out


@pytest.fixture(scope="session")
def model_report() -> dict[str, Any]:
    """The offline model's report of the durian scenario (small scale, 30 s)."""
    from simulator.model import Model, build_report, config_for
    from simulator.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / "durian-1111.toml", scale=0.05)
    report: dict[str, Any] = build_report(Model(sc, config_for(sc), 30.0).run())
    return report
