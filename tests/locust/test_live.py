"""The Flash sale page's live view as plain functions: counters of a slice, their sum over
workers, the audit during a run and after it (no Locust process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.locust import live
from simulator.locust.plan import RunPlan
from simulator.outcomes import CONFIRMED, SOLD_OUT, THROTTLED
from simulator.scenario import load_scenario
from simulator.schedule import FLAG_DUPLICATE, build_schedule

from .test_plan import MINI

SKUS = ["durian", "manggis"]


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    return path


def test_slice_counts_count_each_order_once_and_decided_orders_by_outcome() -> None:
    batch = {
        "sent_ns": np.array([1, 1, 1, 1, 1, -1]),
        "try": np.array([1, 1, 1, 1, 2, 1], dtype=np.uint8),
        "flags": np.array([0, 0, 0, FLAG_DUPLICATE, 0, 0], dtype=np.uint8),
        "outcome": np.array([CONFIRMED, CONFIRMED, SOLD_OUT, CONFIRMED, THROTTLED, 0]),
        # row 4's throttled attempt is retried: it does not decide its order
        "final": np.array([True, True, True, True, False, True]),
        # row 3 is a double click of row 0, also confirmed: its units count once
        "order": np.array([7, 8, 9, 7, 10, 11]),
        "sku": np.array([0, 1, 0, 0, 1, 1]),
        "qty": np.array([2, 2, 2, 2, 2, 2]),
        "done_ns": np.array([10, 20, 30, 40, 50, -1]),
    }
    c = live.SliceCounts()
    c.fold(batch)
    assert (c.sends, c.rows_sent, c.double_clicks_sent) == (5, 4, 1)
    counters = c.counters(SKUS, settled=False)
    assert counters["outcomes"]["confirmed"] == 3 and counters["outcomes"]["not_sent"] == 1
    assert counters["outcomes"]["throttled"] == 0
    assert counters["confirmed_units"] == {"durian": 2, "manggis": 2}
    assert not counters["settled"]
    c.add_dropped_retry(THROTTLED)  # the retry of row 4 was dropped: it ends throttled
    assert c.counters(SKUS, settled=True)["outcomes"]["throttled"] == 1


def _counters(
    sends: int, confirmed: int, not_sent: int, units: dict[str, int], settled: bool = False
) -> dict:
    merged = live.merge_counters([], SKUS)
    merged["outcomes"].update(confirmed=confirmed, not_sent=not_sent)
    return {
        "sends": sends,
        "outcomes": merged["outcomes"],
        "confirmed_units": units,
        "settled": settled,
    }


def test_merge_counters_adds_up_the_workers() -> None:
    empty = live.merge_counters([], SKUS)
    assert empty["sends"] == 0 and empty["confirmed_units"] == {"durian": 0, "manggis": 0}
    assert set(empty["outcomes"].values()) == {0}
    a = _counters(10, 4, 1, {"durian": 3, "manggis": 1})
    b = _counters(7, 2, 0, {"durian": 0, "manggis": 5})
    total = live.merge_counters([a, b], SKUS)
    assert total["sends"] == 17 and total["outcomes"]["confirmed"] == 6
    assert total["outcomes"]["not_sent"] == 1
    assert total["confirmed_units"] == {"durian": 3, "manggis": 6}


@pytest.mark.parametrize(
    ("settled", "slices", "expected"),
    [
        ([True, True], 2, True),
        ([True, False], 2, False),  # worker 1 still has rows to take or answers to wait for
        ([True], 2, False),  # worker 1 has not reported yet
        ([], 1, False),
    ],
)
def test_all_answered(settled: list[bool], slices: int, expected: bool) -> None:
    parts = [_counters(1, 0, 0, {}, s) for s in settled]
    assert live.all_answered(parts, slices) is expected


def test_scheduled_per_s_is_the_whole_schedule(mini: Path) -> None:
    scenario = load_scenario(mini)
    per_s = live.scheduled_per_s(scenario, RunPlan(1, 2, scenario.scale, None, "x"))
    assert len(per_s) == 4 and sum(per_s) == len(build_schedule(scenario).materialize())
    cut = live.scheduled_per_s(scenario, RunPlan(1, 2, scenario.scale, 2.0, "x"))
    assert cut == per_s[:2]


def _snapshot(**kw: object) -> live.Snapshot:
    base: dict = {
        "host": "http://127.0.0.1:9",
        "state": "running",
        "users": 3,
        "sale_s": 4.0,
        "workers": 2,
        "started_unix": 1000.0,
        "now_unix": 1002.5,
        "achieved_per_s": {1001: 40, 1000: 30},
        "counters": _counters(70, 20, 5, {"durian": 61, "manggis": 5}),
        "inventory": {
            "backend": "memory",
            "skus": {
                "durian": {"initial": 60, "sold": 60, "ledger_units": 60, "remaining": 0},
                "manggis": {"initial": 400, "sold": 5, "ledger_units": 5, "remaining": 395},
            },
        },
        "scheduled_per_s": [10, 20, 30, 40],
        "running": True,
    }
    base.update(kw)
    return live.Snapshot(**base)


def test_view_during_a_run_audits_units_against_the_inventory(mini: Path) -> None:
    scenario = load_scenario(mini)
    v = live.view(scenario, _snapshot())
    assert v["elapsed_s"] == pytest.approx(2.5) and v["workers"] == 2
    assert v["achieved"] == {"t": [0.0, 1.0], "rate": [30, 40]}  # in order of time
    assert v["demand"]["t"][0] == 0.0 and v["demand"]["t"][-1] == 4.0
    assert len(v["demand"]["rate"]) == len(v["demand"]["t"])
    # the clients saw 61 durian units confirmed against a stock of 60: an oversell, live
    audit = v["audit"]
    assert audit["skus"]["durian"]["oversell_units"] == 1 and not audit["ok"]
    assert audit["ledger"] is None  # no ledger checks during a run
    no_inventory = live.view(scenario, _snapshot(inventory=None))["audit"]
    assert not no_inventory["available"] and "no /inventory" in no_inventory["problems"]


def test_view_after_a_run_shows_the_reports_audit(mini: Path) -> None:
    scenario = load_scenario(mini)
    report = {"audit": {"ok": True, "skus": {}, "problems": [], "oversell_units": 0}}
    after = live.view(scenario, _snapshot(running=False, report=report))
    assert after["audit"] is report["audit"] and after["report"] is report
    during = live.view(scenario, _snapshot(running=True, report=report))
    assert during["audit"] is not report["audit"]  # a new run: the live audit again
