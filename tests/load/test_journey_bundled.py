"""scenarios/seckill-journey.toml end to end: login → reserve → poll → pay on the bundled
storefront's flash-sale flow (tokens, a 2 s payment window), with its background streams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, dict, str]:
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "scenarios/seckill-journey.toml", "--json",
         "--duration", "6", *args],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_seckill_journey_adds_up(workers: str) -> None:
    code, report, stderr = run("--workers", workers)
    orders, j = report["orders"], report["journey"]
    steps = {s["name"]: s for s in j["steps"]}
    rows = orders["scheduled"]
    assert rows > 200 and j["started"] == j["ended"] == rows
    assert sum(orders["outcomes"].values()) == rows
    # every buyer logged in with the token it was given: the reservation never said 401
    assert steps["login"]["outcomes"]["confirmed"] == rows
    held = steps["reserve"]["outcomes"]["confirmed"]
    assert orders["outcomes"]["confirmed"] == held > 0
    assert "status 401" not in json.dumps(steps["reserve"]["reasons"])
    # every hold shows when polled, 70 % of holders pay (drawn per row)
    assert steps["poll"]["requests"] == steps["poll"]["outcomes"]["confirmed"] == held
    assert 0.6 * held < steps["pay"]["requests"] < 0.8 * held
    assert 0.08 * held < steps["cancel"]["requests"] < 0.22 * held  # half of the others
    # the reads of the two streams went beside the buyers
    streams = {s["name"]: s for s in j["streams"]}
    assert set(streams) == {"product_page", "countdown"}
    assert all(s["outcomes"]["confirmed"] == s["requests"] > 0 for s in streams.values())
    assert report["complete"]
    # the audit: every hold the clients saw is one the storefront reserved; nothing oversold,
    # nothing stranded, every unit of stock paid, held, or back on sale
    audit = report["audit"]
    assert audit["ok"] and audit["oversell_units"] == audit["undersell_units"] == 0
    for sku, s in audit["skus"].items():
        assert s["conserved"], sku
        assert s["initial"] == s["paid"] + s["held"] + s["free"]
        assert s["reserved"] == s["paid"] + s["held"] + s["returned"]
        assert s["client_units"] == s["reserved"]  # each hold seen exactly once
    assert sum(s["returned"] for s in audit["skus"].values()) > 0  # expired or cancelled
    assert code == 0, stderr


def test_the_model_reads_the_same_flow_and_agrees_with_the_run() -> None:
    """The journey's pay/cancel steps and `simulate` read the same [buyers] keys: the units the
    run saw paid and cancelled are what the model predicts, within sampling and timing."""
    _, live, _ = run()
    steps = {s["name"]: s for s in live["journey"]["steps"]}
    sim = subprocess.run(
        [sys.executable, "-m", "simulator", "simulate", "scenarios/seckill-journey.toml",
         "--duration", "6", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    flow = json.loads(sim.stdout)["flow"]
    assert flow["pay_share"] == 0.7 and flow["abandon_share"] == 0.5
    paid_live = steps["pay"]["outcomes"]["confirmed"]
    assert flow["paid_units"] == pytest.approx(paid_live, rel=0.2)
    cancelled_live = steps["cancel"]["outcomes"]["confirmed"]
    assert flow["cancelled_units"] == pytest.approx(cancelled_live, rel=0.35)


def test_a_racy_store_breaks_the_lifecycle_and_says_so_in_the_exit_line() -> None:
    code, report, stderr = run("--backend", "memory-racy")
    assert not report["audit"]["ok"]
    assert code == 1
    (line,) = [x for x in stderr.splitlines() if x.startswith("flashsale run: exit 1:")]
    assert "reservations BROKEN:" in line or "oversold by" in line
