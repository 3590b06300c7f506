"""The Locust adapter's pure parts: pool size as a function of time, slices, results, audit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main as cli_main
from simulator.errors import ScenarioError, UsageError
from simulator.locust import results as res
from simulator.locust.plan import (
    Dispatcher,
    OrderBook,
    PoolSizing,
    RunPlan,
    demand_rate,
    duplicate_check,
    users_at,
    worker_rows,
)
from simulator.scenario import load_scenario
from simulator.schedule import FLAG_DUPLICATE, ORDER_DTYPE, build_schedule

ROOT = Path(__file__).resolve().parent.parent
DURIAN = ROOT / "scenarios" / "durian-1111.toml"

MINI = """
name = "mini"
seed = 7
duration_s = 4.0
[[products]]
id = "durian"
stock = 60
weight = 3.0
[[products]]
id = "manggis"
stock = 400
weight = 1.0
[demand]
baseline_per_s = 60.0
[demand.spike]
at_s = 1.0
peak_per_s = 200.0
half_life_s = 1.0
[buyers]
duplicate_share = 0.05
duplicate_delay_s = [0.05, 0.3]
"""


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    return path


# -- pool sizing ------------------------------------------------------------------------------

SIZING = PoolSizing(busy_s=0.05, headroom=2.0, min_users=4, max_users=500, hold_s=0.0)


@pytest.mark.parametrize(
    ("t_s", "sizing", "expected"),
    [
        # durian at scale 0.1: baseline 15/s, countdown 5→150/s over 0–10 s, spike 560/s at
        # 10 s halving every 8 s; ×1.03 double clicks; users = ⌈2·0.05·λ⌉ + 4
        (0.0, dataclasses.replace(SIZING, lookahead_s=0.0), 4 + 3),  # λ = 20·1.03
        (20.0, dataclasses.replace(SIZING, lookahead_s=0.0), 4 + 26),  # λ = (15+235.4)·1.03
        # from 9 s the lookahead sees the spike coming: λ = (15+560)·1.03
        (9.0, SIZING, 4 + 60),
        (9.0, dataclasses.replace(SIZING, lookahead_s=0.5), 4 + 17),  # λ(9.5) = 157.75·1.03
        # clamped
        (10.0, dataclasses.replace(SIZING, max_users=30), 30),
        (500.0, SIZING, 4),  # after the sale: no demand, the minimum pool
    ],
)
def test_users_at_follows_the_curve(t_s: float, sizing: PoolSizing, expected: int) -> None:
    scenario = load_scenario(DURIAN, scale=0.1)
    assert users_at(scenario, t_s, sizing) == expected


def test_users_at_holds_the_pool_after_a_peak() -> None:
    scenario = load_scenario(DURIAN, scale=0.1)
    held = dataclasses.replace(SIZING, hold_s=10.0, lookahead_s=0.0)
    assert users_at(scenario, 15.0, held) == users_at(scenario, 10.0, held)
    assert users_at(scenario, 15.0, held) > users_at(scenario, 15.0, SIZING)


def test_demand_rate_includes_double_clicks_and_is_zero_outside_the_sale() -> None:
    scenario = load_scenario(DURIAN, scale=1.0)
    rate = demand_rate(scenario, [-1.0, 10.0, 120.0, 1000.0])
    assert rate[0] == 0 and rate[2] == 0 and rate[3] == 0
    assert rate[1] == pytest.approx((150 + 5600) * 1.03)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"busy_s": 0.0},
        {"headroom": 0.5},
        {"min_users": 0},
        {"min_users": 10, "max_users": 5},
        {"step_s": 0.0},
        {"hold_s": -1.0},
    ],
)
def test_bad_sizing_is_a_usage_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        PoolSizing(**kwargs)  # type: ignore[arg-type]


# -- slices, order book, dispatcher -----------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_worker_slices_are_the_schedule(mini: Path, workers: int) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, workers, scenario.scale, None, "x")
    whole = build_schedule(scenario).materialize()
    parts = [worker_rows(scenario, plan, k) for k in range(workers)]
    assert sum(len(p) for p in parts) == len(whole)
    for k, part in enumerate(parts):
        assert np.array_equal(part["order"], whole["order"][k::workers])
        assert np.all(np.diff(part["t_ns"]) >= 0)


def test_worker_index_outside_the_slices_is_refused(mini: Path) -> None:
    scenario = load_scenario(mini)
    with pytest.raises(UsageError, match="outside the 2 slices"):
        worker_rows(scenario, RunPlan(1, 2, 1.0, None, "x"), 2)


def test_plan_round_trips_as_a_message() -> None:
    plan = RunPlan(3, 2, 0.5, 10.0, "abc")
    assert RunPlan.from_message(plan.to_message()) == plan
    assert RunPlan.from_message(RunPlan(1, 1, 1.0, None, "d").to_message()).duration_s is None


def test_order_book_renders_the_scenario_template(mini: Path) -> None:
    scenario = load_scenario(mini)
    rows = build_schedule(scenario).materialize()[:5]
    book = OrderBook(scenario, rows)
    body = json.loads(book.body(3))
    assert body == {
        "order_id": str(rows["order"][3]),
        "sku": scenario.products[rows["product"][3]].id,
        "qty": int(rows["qty"][3]),
        "user_id": str(rows["buyer"][3]),
    }
    custom = dataclasses.replace(
        scenario,
        target=dataclasses.replace(scenario.target, body="id={order_id}&n={qty}"),
    )
    assert OrderBook(custom, rows).body(0) == f"id={rows['order'][0]}&n={rows['qty'][0]}".encode()


def test_dispatcher_hands_out_each_row_once_given_back_first() -> None:
    d = Dispatcher(3)
    assert [d.claim(), d.claim()] == [0, 1]
    d.give_back(0)
    assert d.remaining == 2
    assert [d.claim(), d.claim(), d.claim()] == [0, 2, -1]
    assert d.remaining == 0


def _rows(orders: list[int], flags: list[int]) -> np.ndarray:
    rows = np.zeros(len(orders), dtype=ORDER_DTYPE)
    rows["order"] = orders
    rows["flags"] = flags
    return rows


D = FLAG_DUPLICATE


@pytest.mark.parametrize(
    ("orders", "flags", "sent", "expected"),
    [
        ([0, 1, 2], [0, 0, 0], [1, 1, 1], (0, 0, 0)),
        ([0, 1, 0], [0, 0, D], [1, 1, 1], (1, 1, 0)),  # a double click: intended
        ([0, 1, 0], [0, 0, D], [0, 1, 1], (0, 1, 0)),  # its original not sent
        ([0, 1, 0], [0, 0, 0], [1, 1, 1], (1, 0, 1)),  # the same original twice: a bug
    ],
)
def test_duplicate_check(
    orders: list[int], flags: list[int], sent: list[int], expected: tuple[int, int, int]
) -> None:
    got = duplicate_check(_rows(orders, flags), np.array(sent, dtype=bool))
    assert (got["repeated_ids"], got["double_clicks_sent"], got["unintended_repeats"]) == expected


# -- results ----------------------------------------------------------------------------------


def test_histogram_percentiles_are_within_a_bin() -> None:
    values = np.arange(1, 10_001, dtype=np.int64) * 1_000_000  # 1 … 10,000 ms
    p = res.percentiles_ms(res.merge_histograms([res.histogram(values)]), int(values.max()))
    assert p["count"] == 10_000
    assert p["p50"] == pytest.approx(5000, rel=0.03)
    assert p["p99"] == pytest.approx(9900, rel=0.03)
    assert p["max"] == 10_000
    assert res.percentiles_ms(np.zeros(900, dtype=np.int64), 0) == {"count": 0}


def _result(rec: res.Recorder, t_ns: list[int], worker: int, plan: RunPlan) -> dict:
    return res.worker_result(rec, t_ns, worker, plan)


def test_merge_report_adds_up_workers_and_finds_problems(mini: Path) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, 1.0, None, "x")
    rows = build_schedule(scenario).materialize()
    results = {}
    for k in range(2):
        mine = rows[k::2]
        rec = res.Recorder(len(mine), 2)
        for i in range(len(mine) - (1 if k == 1 else 0)):  # worker 1 leaves its last row
            rec.sends += 1
            rec.record(i, int(mine["t_ns"][i]) + 100, int(mine["t_ns"][i]) + 2_000_000, 409, 2, 1)
        results[k] = _result(rec, mine["t_ns"].tolist(), k, plan)
    report = res.merge_report(scenario, plan, rows, results, None)
    o, c = report["orders"], report["checks"]
    assert o["scheduled"] == len(rows)
    assert o["sent"] == len(rows) - 1 and o["not_sent"] == 1
    assert sum(w["slice_orders"] for w in o["per_worker"]) == len(rows)
    assert o["outcomes"]["sold_out"] == len(rows) - 1
    assert c["ok"] and c["rows_sent_twice"] == 0 and c["unintended_repeats"] == 0
    assert report["latency_ms"]["intended"]["p50"] == pytest.approx(2.0, rel=0.03)
    assert "not sent 1" in res.render(report)

    missing = res.merge_report(scenario, plan, rows, {0: results[0]}, None)
    assert missing["missing_workers"] == [1] and not missing["checks"]["ok"]


def test_client_confirmations_count_an_order_once_across_workers() -> None:
    results = {
        0: {"confirmed": [[5, 0, 2], [7, 1, 1]]},
        1: {"confirmed": [[5, 0, 2]]},  # the double click of order 5, on the other worker
    }
    units, ids = res.client_confirmations(results, ["durian", "manggis"])
    assert units == {"durian": 2, "manggis": 1}
    assert ids == {"5", "7"}


def _inventory(sold: int, ledger: int, initial: int = 10) -> dict:
    return {
        "skus": {
            "a": {
                "initial": initial,
                "sold": sold,
                "ledger_units": ledger,
                "ledger_orders": ledger,
                "remaining": max(0, initial - sold),
            }
        }
    }


@pytest.mark.parametrize(
    ("inventory", "ledger_ids", "client_units", "client_ids", "oversell", "ok", "problem"),
    [
        (_inventory(10, 10), {"1"}, 10, {"1"}, 0, True, None),
        (_inventory(12, 12), {"1"}, 12, {"1"}, 2, False, "oversold by 2"),
        (_inventory(9, 8), {"1"}, 8, {"1"}, 0, False, "ledger has 8"),
        (_inventory(5, 5), {"1"}, 6, {"1", "2"}, 0, False, "missing from the ledger"),
        (_inventory(5, 5, initial=7), {"1"}, 5, {"1"}, 0, False, "started with 7"),
        (None, None, 3, set(), 0, False, None),
    ],
)
def test_audit(
    inventory: dict | None,
    ledger_ids: set[str] | None,
    client_units: int,
    client_ids: set[str],
    oversell: int,
    ok: bool,
    problem: str | None,
) -> None:
    ledger = None if ledger_ids is None else {"orders": [[i, "a", 1, "u"] for i in ledger_ids]}
    a = res.audit({"a": 10}, inventory, ledger, {"a": client_units}, client_ids)
    assert a["oversell_units"] == oversell
    assert a["ok"] is ok
    if problem is not None:
        assert any(problem in p for p in a["disagreements"]), a["disagreements"]


# -- the command's checks (before any process starts) -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["locust", "/nonexistent/sale.toml", "--headless"], "no such scenario file"),
        (["locust", "{mini}", "--scale", "-1"], "--scale: must be > 0"),
        (["locust", "{mini}", "--duration", "x"], "--duration: not a number"),
        (
            ["locust", "{mini}", "--master", "--expect-workers", "2", "--flashsale-workers", "3"],
            "--flashsale-workers 3 but --expect-workers 2",
        ),
        (["locust", "{mini}", "--host", "http://127.0.0.1:9"], "cannot reach the storefront"),
        (["locust", "{mini}", "--host", "ftp://x"], "not an http:// or https:// URL"),
    ],
)
def test_locust_command_bad_input_is_one_line_and_exit_2(
    mini: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main([a.replace("{mini}", str(mini)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("flashsale: error: ")


def test_scenario_errors_are_scenario_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nseed = 1\nduration_s = -1\n')
    from simulator.commands.locust import build_command

    with pytest.raises(ScenarioError, match="duration_s"):
        build_command(str(bad), [])
