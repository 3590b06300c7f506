"""A journey in Locust: ``--flashsale-engine`` workers drive scenarios/seckill-journey.toml (login
→ reserve → poll → pay, with its background streams) against the bundled storefront's flow; the
master's report has the journey section merged from both workers, and the audit holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_distributed import _serve, run_master_and_workers

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = ROOT / "scenarios" / "seckill-journey.toml"


@pytest.fixture
def flow_storefront() -> Iterator[str]:
    """The bundled storefront with the scenario's flow (tokens, a 2 s payment window)."""
    yield from _serve(SCENARIO)


def test_engine_workers_drive_the_journey(tmp_path: Path, flow_storefront: str) -> None:
    code, log, path = run_master_and_workers(
        tmp_path, SCENARIO, flow_storefront, "--flashsale-engine"
    )
    report = json.loads(path.read_text())
    orders, j = report["orders"], report["journey"]
    rows = orders["scheduled"]
    assert rows > 500 and j["started"] == j["ended"] == rows, log[-2000:]
    steps = {s["name"]: s for s in j["steps"]}
    assert steps["login"]["requests"] == rows
    held = steps["reserve"]["outcomes"]["confirmed"]
    assert orders["outcomes"]["confirmed"] == held > 0
    assert steps["poll"]["outcomes"]["confirmed"] == held
    assert 0.6 * held < steps["pay"]["requests"] < 0.8 * held
    assert {s["name"] for s in j["streams"]} == {"product_page", "countdown"}
    audit = report["audit"]
    assert audit["ok"] and all(s["conserved"] for s in audit["skus"].values())
    assert code == 0, log[-2000:]
