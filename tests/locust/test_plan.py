"""The Locust adapter's pure parts: pool size as a function of time, slices and their digests,
the tally a worker sends, the master's merge, report and audit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgpack
import numpy as np
import pytest

from simulator.audit import ServerState
from simulator.cli import main as cli_main
from simulator.errors import ScenarioError, UsageError
from simulator.load.slots import REGION
from simulator.locust import results as res
from simulator.locust.feed import Claim, SliceFeed
from simulator.locust.live import SliceCounts
from simulator.locust.plan import (
    PoolSizing,
    RunPlan,
    SliceDigest,
    demand_rate,
    digesting,
    request_rate,
    requests_per_row,
    scan_slices,
    slice_chunks,
    users_at,
)
from simulator.outcomes import CONFIRMED, SOLD_OUT
from simulator.results import measure_tally, write_report
from simulator.scenario import Scenario, load_scenario
from simulator.schedule import FLAG_DUPLICATE, build_schedule

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


def test_a_journey_sizes_the_pool_by_its_requests_and_its_streams() -> None:
    """login 1 + reserve 1 + poll 2 (counted twice) + pay 0.7 + cancel 0.5 of the other 0.3:
    4.85 requests a buyer; the streams add their own curves (100/s and 50/s after the drop)."""
    sc = load_scenario(ROOT / "scenarios" / "seckill-journey.toml")
    assert sc.journey is not None
    assert requests_per_row(None) == 1.0
    assert requests_per_row(sc.journey) == pytest.approx(4.85)
    t = np.array([-1.0, 5.0, 9.5, 20.0])
    want = demand_rate(sc, t) * 4.85 + np.array([0.0, 150.0, 150.0, 0.0])
    assert request_rate(sc, t) == pytest.approx(want)
    sizing = PoolSizing(busy_s=0.05, hold_s=0.0, lookahead_s=0.0)
    plain = dataclasses.replace(sc, journey=None, streams=())
    assert users_at(sc, 5.0, sizing) > users_at(plain, 5.0, sizing)


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


# -- slices, digests, the tally a worker sends -------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_worker_slices_are_the_schedule_and_their_digests_agree(mini: Path, workers: int) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, workers, scenario.scale, None, "x")
    whole = build_schedule(scenario).materialize()
    scans = scan_slices(scenario, plan)
    for k in range(workers):
        digest = SliceDigest()
        chunks = list(digesting(slice_chunks(scenario, plan, k), digest))
        part = np.concatenate(chunks)
        assert all(len(c) <= REGION for c in chunks)
        assert np.array_equal(part["order"], whole["order"][k::workers])
        assert np.all(np.diff(part["t_ns"]) >= 0)
        assert digest == scans[k].digest and digest.rows == len(part)
        assert scans[k].unsent.scheduled == len(part)
        assert scans[k].unsent.row_outcomes[0] == len(part)  # as never sent
        assert SliceDigest.from_message(digest.to_message()) == digest
    assert sum(s.digest.rows for s in scans) == len(whole)
    if workers > 1:
        assert scans[0].digest != scans[1].digest


def test_scan_slices_finds_watched_order_ids_in_their_slices(mini: Path) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, scenario.scale, None, "x")
    whole = build_schedule(scenario).materialize()
    watch = np.array([whole["order"][0], whole["order"][1], 10**12], dtype=np.int64)
    scans = scan_slices(scenario, plan, watch)
    assert np.concatenate(scans[0].watched).tolist() == [whole["order"][0]]
    assert np.concatenate(scans[1].watched).tolist() == [whole["order"][1]]


def test_worker_index_outside_the_slices_is_refused(mini: Path) -> None:
    scenario = load_scenario(mini)
    with pytest.raises(UsageError, match="outside the 2 slices"):
        slice_chunks(scenario, RunPlan(1, 2, 1.0, None, "x"), 2)


def worker_result(
    scenario: Scenario, plan: RunPlan, k: int, leave: int = 0, outcome: int = SOLD_OUT
) -> dict:
    """Worker k's result after its users answered every row but the last ``leave`` (never sent)
    2 ms after it was due, through the real feed (slots, folding, the tally)."""
    counts, digest = SliceCounts(), SliceDigest()
    feed = SliceFeed(digesting(slice_chunks(scenario, plan, k), digest), k, plan.slices, counts)
    claims: list[Claim] = []
    while (c := feed.claim()) is not None:
        claims.append(c)
    cut = len(claims) - leave
    for c in claims[:cut]:
        ring = feed.ring
        ring.dispatched_ns[c.slot] = ring.sent_ns[c.slot] = c.t_ns + 100
        ring.status[c.slot] = 409 if outcome == SOLD_OUT else 201
        ring.outcome[c.slot] = outcome
        ring.reason[c.slot] = ring.status[c.slot]
        ring.done_ns[c.slot] = c.t_ns + 2_000_000
        feed.release()
    for c in claims[cut:]:
        feed.give_back(c)
    feed.finish(10**12)
    return res.worker_result(feed.tally, counts, digest, k, plan, 0, feed.ring.nbytes())


def _results(scenario: Scenario, plan: RunPlan, **kw: int) -> dict[int, dict]:
    return {k: worker_result(scenario, plan, k, **kw) for k in range(plan.slices)}


def test_a_tally_travels_as_plain_values_and_comes_back_the_same(mini: Path) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 1, 1.0, None, "x")
    msg = worker_result(scenario, plan, 0, leave=2, outcome=CONFIRMED)["tally"]
    # what crosses the master/worker boundary: counts and non-empty buckets, no per-order array
    # except the confirmed orders (bounded by the stock) and the failed ones
    packed = msgpack.packb(msg, use_bin_type=True)
    back = res.tally_from_message(msgpack.unpackb(packed, raw=False))
    again = res.tally_from_message(msg)
    skus = tuple(p.id for p in scenario.products)
    a = measure_tally(again, 4.0, skus).to_json()
    assert measure_tally(back, 4.0, skus).to_json() == a
    assert a["orders"]["outcomes"]["not_sent"] == 2 and a["orders"]["reasons"]
    bad = dict(msg, row_outcomes=["<f8", [7], b"\x00" * 56])
    with pytest.raises(ValueError, match="dtype"):
        res.tally_from_message(bad)
    with pytest.raises(ValueError, match="kind or outcome"):
        res.tally_from_message(dict(msg, hists=[["bogus", 1, msg["hists"][0][2]]]))


def test_merge_workers_adds_up_to_the_schedule(mini: Path) -> None:
    scenario = load_scenario(mini)
    plan = RunPlan(1, 2, 1.0, None, "x")
    whole = build_schedule(scenario).materialize()
    results = _results(scenario, plan)
    results[1] = worker_result(scenario, plan, 1, leave=1)
    merged = res.merge_workers(scan_slices(scenario, plan), plan, results)
    assert merged.tally.scheduled == len(whole)
    c, per = merged.section["checks"], merged.section["per_worker"]
    assert c["ok"] and c["rows_sent_twice"] == 0 and c["unintended_repeats"] == 0
    assert c["double_clicks_sent"] == int(np.count_nonzero(whole["flags"] & FLAG_DUPLICATE))
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
    results = _results(scenario, plan)
    if change == "missing":
        del results[1]
    elif change == "wrong slice":
        results[1] = dict(results[0], worker=1)
    else:
        results[1]["tally"]["row_outcomes"] = ["<i8", [2], b"\x00"]
    watch = whole["order"][1::2][:3].astype(np.int64)
    merged = res.merge_workers(scan_slices(scenario, plan, watch), plan, results)
    s = merged.section
    assert s["missing_workers"] == [1] and not s["checks"]["ok"]
    if problem is not None:
        assert any(problem in p for p in s["problems"]), s["problems"]
    assert sorted(merged.unheard.tolist()) == sorted(watch.tolist())  # its sold orders: unheard
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
    merged = res.merge_workers(
        scan_slices(scenario, plan), plan, _results(scenario, plan, outcome=CONFIRMED)
    )
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


def test_own_request_shapes_pass_the_locust_command(tmp_path: Path) -> None:
    # buyers data, headers, a templated path, product vars and a body outcome rule: all sent
    # by the Locust users and the engine mode as flashsale run sends them (tests/locust/
    # test_own_shop.py runs them against the test shop)
    from simulator.commands.locust import build_command

    seckill = ROOT / "scenarios" / "own-shop-seckill.toml"
    cmd, _ = build_command(str(seckill), ["--headless"])
    assert cmd[-1] == "--headless" and str(seckill) in cmd


def test_the_users_request_is_flashsale_runs_taken_apart(tmp_path: Path) -> None:
    from simulator.load.transport.template import RequestTemplate

    (tmp_path / "buyers.csv").write_text(
        "user,token\n" + "".join(f"u{k},t{k}\n" for k in range(400))
    )
    (tmp_path / "s.toml").write_text(
        (ROOT / "scenarios" / "own-shop-seckill.toml")
        .read_text()
        .replace("own-shop-buyers.csv", "buyers.csv")
        .replace('orders_path = "/api/v1/seckill/{goods_id}/order"',
                 'orders_path = "/api/v1/seckill/{goods_id}/order?u={user}&r={order_id}"')
    )  # fmt: skip
    sc = load_scenario(tmp_path / "s.toml")
    t = RequestTemplate(sc.target, sc.products, "shop:8081", sc.target.orders_path, sc.buyers.data)
    whole = t.render(1, 42, 2, 7)
    target, headers, body = t.split(1, 42, 2, 7)
    assert target == "/api/v1/seckill/2/order?u=u7&r=42"
    assert headers == {
        "Authorization": "Bearer t7",
        "X-Request-Id": "42",
        "Content-Type": "application/json",
    }
    assert body == b'{"qty":2}' and whole.endswith(b"\r\n\r\n" + body)
    assert whole.startswith(b"POST " + target.encode() + b" HTTP/1.1\r\n")


def test_an_empty_tally_travels_too() -> None:
    from simulator.load.tally import Tally

    back = res.tally_from_message(res.tally_to_message(Tally()))
    assert back.scheduled == 0 and not back.latency_s.per_second and not back.hists


def test_a_tally_with_spilled_seconds_travels_whole() -> None:
    """An engine-mode worker's tally keeps old seconds on disk: its message still has them."""
    from simulator.load.tally import Tally

    t = Tally()
    t.latency_s.hold_s = 5
    for s in range(40):
        t.latency_s.add(np.full(10, s, dtype=np.int64), np.arange(10, dtype=np.int64) + 1000 * s)
        t.latency_s.consolidate()
    assert t.latency_s.spill_path is not None and len(t.latency_s.per_second) <= 6
    back = res.tally_from_message(
        msgpack.unpackb(msgpack.packb(res.tally_to_message(t)), raw=False)
    )
    assert sorted(s for s, _, _ in back.latency_s.seconds()) == list(range(40))
    assert back.latency_s.quantiles(40, (0.5,)) == t.latency_s.quantiles(40, (0.5,))
