"""The Locust adapter's pure parts: pool size as a function of time, slices, results, audit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from simulator.audit import ServerState
from simulator.cli import main as cli_main
from simulator.errors import ScenarioError, UsageError
from simulator.load.recorder import Recorder
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
from simulator.outcomes import CONFIRMED, SOLD_OUT, THROTTLED
from simulator.results import write_report
from simulator.scenario import load_scenario
from simulator.schedule import FLAG_DUPLICATE, ORDER_DTYPE, build_schedule

ROOT = Path(__file__).resolve().parents[2]
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
    engine = RunPlan(3, 2, 0.5, 10.0, "abc", host="http://127.0.0.1:8080", engine=True)
    assert RunPlan.from_message(engine.to_message()) == engine
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


# -- results: the engine's recorder, merged over workers, in report.json's shape ---------------


def _worker_recorder(mine: np.ndarray, leave: int = 0, outcome: int = SOLD_OUT) -> Recorder:
    """A worker's recorder with every row but the last ``leave`` answered 2 ms after it was due."""
    rec = Recorder.allocate(mine["t_ns"].astype(np.int64), 0)
    k = len(mine) - leave
    rec.dispatched_ns[:k] = rec.sent_ns[:k] = mine["t_ns"][:k] + 100
    rec.done_ns[:k] = mine["t_ns"][:k] + 2_000_000
    rec.status[:k] = 409
    rec.outcome[:k] = outcome
    return rec


def test_recorder_message_round_trips_with_retries() -> None:
    rec = Recorder.allocate(np.array([0, 10, 20], dtype=np.int64), 4)
    rec.outcome[:3] = [CONFIRMED, THROTTLED, SOLD_OUT]
    retry = rec.add_retry(1, 50)
    rec.outcome[retry] = CONFIRMED
    back = res.recorder_from_message(res.recorder_to_message(rec))
    assert back.n_rows == 3 and back.n_attempts == 4
    assert back.row_outcomes().tolist() == [CONFIRMED, CONFIRMED, SOLD_OUT]
    assert back.row_of_attempt().tolist() == [0, 1, 2, 1]
    assert back.tries.tolist() == [1, 1, 1, 2] and back.intended_ns[3] == 50
    bad = res.recorder_to_message(rec) | {"status": b"\x00\x00"}
    with pytest.raises(ValueError, match="status has 1 values, expected 4"):
        res.recorder_from_message(bad)


def _results(rows: np.ndarray, plan: RunPlan, **kw: int) -> dict[int, dict]:
    return {
        k: res.worker_result(_worker_recorder(rows[k :: plan.slices], **kw), k, plan)
        for k in range(plan.slices)
    }


def test_merge_workers_adds_up_to_the_schedule(mini: Path) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, 1.0, None, "x")
    whole = build_schedule(scenario).materialize()
    results = _results(whole, plan)
    results[1] = res.worker_result(_worker_recorder(whole[1::2], leave=1), 1, plan)
    merged = res.merge_workers(whole, plan, results)
    assert merged.recorder.n_rows == len(merged.rows) == len(whole)
    assert sorted(merged.rows["order"].tolist()) == sorted(whole["order"].tolist())
    c, per = merged.section["checks"], merged.section["per_worker"]
    assert c["ok"] and c["rows_sent_twice"] == 0 and c["unintended_repeats"] == 0
    assert [w["slice_orders"] for w in per] == [len(whole[0::2]), len(whole[1::2])]
    assert per[1]["sent"] == len(whole[1::2]) - 1

    report = res.build_report(scenario, plan, merged, ServerState(None, None, ("down",)), _facts())
    o = report["orders"]
    assert o["scheduled"] == len(whole) and o["outcomes"]["not_sent"] == 1
    assert sum(o["outcomes"].values()) == len(whole)
    assert report["latency_ms"]["intended"]["p50"] == pytest.approx(2.0, rel=0.01)
    assert report["partial"] and not report["complete"] and report["exit_code"] == 1
    text = res.render(report)
    assert "not sent 1" in text and "users mode · 2 workers" in text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("missing", None),  # worker 1 never reported
        ("wrong slice", "are not slice 1 of 2"),  # it sent the results of another slice
        ("garbled", "unreadable results"),
    ],
)
def test_merge_workers_reports_a_worker_it_cannot_use(
    mini: Path, change: str, problem: str | None
) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, 1.0, None, "x")
    whole = build_schedule(scenario).materialize()
    results = _results(whole, plan)
    if change == "missing":
        del results[1]
    elif change == "wrong slice":
        results[1] = res.worker_result(_worker_recorder(whole[0::2]), 1, plan)
    else:
        results[1]["recorder"]["sent_ns"] = b"\x00"
    merged = res.merge_workers(whole, plan, results)
    s = merged.section
    assert s["missing_workers"] == [1] and not s["checks"]["ok"]
    if problem is not None:
        assert any(problem in p for p in s["problems"]), s["problems"]
    outcomes = res.build_report(scenario, plan, merged, ServerState(None, None), _facts())[
        "orders"
    ]["outcomes"]
    assert outcomes["not_sent"] == len(whole[1::2])  # its rows count, as not sent
    assert sum(outcomes.values()) == len(whole)


def _facts() -> res.RunFacts:
    return res.RunFacts(host="http://127.0.0.1:9", mode="users", started_at=0.0, wall_s=1.0)


def test_the_report_has_the_engine_shape_and_flashsale_report_renders_it(
    mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, 1.0, None, "x")
    whole = build_schedule(scenario).materialize()
    merged = res.merge_workers(whole, plan, _results(whole, plan, outcome=CONFIRMED))
    skus = {
        p.id: {"initial": scenario.stocks()[p.id], "sold": 0, "ledger_units": 0}
        for p in scenario.products
    }
    server = ServerState({"backend": "memory", "skus": skus}, [])
    report = res.build_report(scenario, plan, merged, server, _facts())
    engine_keys = {
        "flashsale_report",
        "partial",
        "complete",
        "exit_code",
        "scenario",
        "target",
        "run",
        "orders",
        "latency_ms",
        "dispatch_lag_ms",
        "queue_wait_ms",
        "timeline",
        "audit",
    }
    assert engine_keys <= set(report) and "locust" in report
    assert set(report["audit"]) >= {"skus", "oversell_units", "problems", "available", "ok"}
    # every order confirmed but the server sold nothing: the audit says so
    assert report["audit"]["oversell_units"] > 0 and report["exit_code"] == 1
    path = write_report(report, tmp_path / "out")
    assert cli_main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mini" in out and "OVERSOLD" in out and "latency ms" in out


# -- the command's checks (before any process starts) -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["locust", "/nonexistent/sale.toml", "--headless"], "no such scenario file"),
        (["locust", "{mini}", "--scale", "-1"], "--scale: must be > 0"),
        (["locust", "{mini}", "--duration", "x"], "--duration: not a number"),
        (["locust", "{mini}", "--duration", "inf"], "--duration: must be a finite number"),
        (["locust", "{mini}", "--duration", "1e12"], "--duration: must be ≤ 86400"),
        (
            ["locust", "{mini}", "--master", "--expect-workers", "2", "--flashsale-workers", "3"],
            "--flashsale-workers 3 but --expect-workers 2",
        ),
        (
            ["locust", "{mini}", "--host", "http://127.0.0.1:9"],
            "cannot reach the target http://127.0.0.1:9",
        ),
        (["locust", "{mini}", "--host", "ftp://x"], "--host 'ftp://x': bad URL"),
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


@pytest.mark.parametrize(
    ("duration", "scale", "message"),
    [
        (float("inf"), None, "--flashsale-duration: must be a finite number"),
        (-1.0, None, "--flashsale-duration: must be > 0"),
        (None, 1e9, "--flashsale-scale: must be ≤"),
    ],
)
def test_locustfile_options_are_range_checked(
    duration: float | None, scale: float | None, message: str
) -> None:
    from types import SimpleNamespace

    from simulator.locust.plan import Options

    parsed = SimpleNamespace(
        flashsale_scenario="x.toml", flashsale_duration=duration, flashsale_scale=scale,
        flashsale_workers=0, flashsale_busy=0.0, flashsale_max_users=0,
    )  # fmt: skip
    with pytest.raises(UsageError, match=message):
        Options.from_parsed(parsed)
