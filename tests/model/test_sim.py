"""The model end to end: against a per-request reference simulation, conservation, retries,
false sold-out, determinism, capacity search and the command line."""

from __future__ import annotations

import heapq
import json
from typing import Any

import numpy as np
import pytest

from simulator.cli import main as cli_main
from simulator.model import (
    Model,
    ModelConfig,
    build_report,
    config_for,
    find_capacity,
    parse_vary,
    service,
)
from simulator.model.flow import EXPIRED, PAID
from simulator.outcomes import OUTCOME_NAMES
from simulator.scenario import Scenario, parse_scenario
from simulator.schedule import FLAG_DUPLICATE, FLAG_RETRIES


def small_scenario(limit_b: int = 0, **buyers: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 7,
        "duration_s": 3.0,
        "products": [
            {"id": "a", "stock": 300, "weight": 3.0},
            {"id": "b", "stock": 120, "weight": 1.0, "per_buyer_limit": limit_b},
        ],
        "demand": {
            "baseline_per_s": 400.0,
            "spike": {"at_s": 1.0, "peak_per_s": 1500.0, "half_life_s": 0.5},
        },
        "buyers": {
            "qty_values": [1, 2],
            "qty_weights": [0.7, 0.3],
            "duplicate_share": 0.1,
            "duplicate_delay_s": [0.01, 0.2],
            "repeat_share": 0.2,
            "retry": {"share": 0.7, "max_attempts": 3, "backoff_s": 0.05, "jitter": 0.5},
            **buyers,
        },
    }
    return parse_scenario(data, "tiny.toml")


def reference(scenario: Scenario, cfg: ModelConfig) -> dict[str, Any]:
    """One request at a time: heap of arrivals, one FIFO queue per shard served by the earliest
    free of its c servers, answers ``overhead_ms`` after service, stock in completion order."""
    assert not cfg.hot_row
    model = Model(scenario, cfg)
    rows = model.schedule.materialize()
    table, w_ns = model.table, model.window_ns
    retry = scenario.buyers.retry
    heap: list[tuple[int, int, int, int, int]] = [
        (int(r["t_ns"]), 0, i, 0, 0) for i, r in enumerate(rows)
    ]
    heapq.heapify(heap)
    limit = cfg.queue_limit
    overhead = round(cfg.overhead_ms * 1e6)
    free_at: dict[int, list[int]] = {}  # per shard: when each server is free
    in_system: dict[int, list[int]] = {}  # per shard: departures of admitted orders
    in_flight: list[int] = []  # all shards: departures of admitted orders (max_in_flight)
    admitted: list[tuple[int, int, int, int, int, int, int]] = []  # group, D, row, attempt, t
    final: dict[int, tuple[str, int]] = {}
    retries = 0
    limits = [p.per_buyer_limit for p in scenario.products]
    validation = 0
    flow = model.flow
    bucket_ns = round(1e9 / cfg.admit_per_s) if cfg.admit_per_s else 0
    burst = cfg.burst or max(1, round(cfg.admit_per_s))
    tat = -(1 << 62)  # the token bucket as GCRA: its theoretical arrival time
    while heap:
        t, _, row_i, attempt, _ = heapq.heappop(heap)
        r = rows[row_i]
        if 0 < limits[int(r["product"])] < int(r["qty"]):  # refused in validation, at once
            final[row_i] = ("rejected", 0)
            validation += 1
            continue
        dup = bool(r["flags"] & FLAG_DUPLICATE)
        shard = int(service.shard_of(np.array([r["buyer"]]), cfg.shards, cfg.seed)[0])
        key = service.order_key(np.array([r["order"]]), np.array([attempt]), np.array([dup]))
        s = int(service.draw(table, service.uniforms(key, cfg.seed, 0))[0])
        free = free_at.setdefault(shard, [-(1 << 62)] * cfg.servers)
        held_now = in_system[shard] = [d for d in in_system.get(shard, []) if d > t]
        bucket_ok = not bucket_ns or tat - t <= (burst - 1) * bucket_ns
        if bucket_ok and bucket_ns:
            tat = max(t, tat) + bucket_ns
        in_flight = [d for d in in_flight if d > t]
        room = cfg.max_in_flight == 0 or len(in_flight) < cfg.max_in_flight
        if bucket_ok and room and (limit == 0 or len(held_now) < limit):
            k = min(range(cfg.servers), key=lambda j: free[j])
            free[k] = max(t, free[k]) + s
            held_now.append(free[k])
            in_flight.append(free[k])
            d = free[k] + overhead
            group = int(r["product"]) * cfg.shards + shard
            admitted.append((group, d, row_i, attempt, t, int(r["qty"]), int(r["order"])))
            continue
        done = t + round(cfg.throttle_ms * 1e6)
        if r["flags"] & FLAG_RETRIES and attempt + 1 < retry.max_attempts:
            u = float(service.unit(service.uniforms(key, cfg.seed, 1))[0])
            t2 = max(done + retry.delay_ns(attempt + 1, u), (t // w_ns + 1) * w_ns)
            heapq.heappush(heap, (t2, 1, row_i, attempt + 1, 0))
            retries += 1
        else:
            final[row_i] = ("throttled", done - int(r["t_ns"]))
    admitted.sort(key=lambda x: (x[0], x[1]))
    left = {g: int(u) for g, u in enumerate(model_stock(scenario, cfg.shards))}
    decided: dict[int, str] = {}
    held: dict[tuple[int, int], int] = {}  # (buyer, product) → units confirmed
    replays = 0
    coming: dict[int, list[tuple[int, int]]] = {}  # group → heap of (return time, units)
    ends = [0, 0, 0]  # units paid, cancelled, expired
    for group, d, row_i, attempt, t, qty, order in admitted:
        back = coming.get(group, [])
        while back and back[0][0] < d:  # units back before this completion are free again
            left[group] += heapq.heappop(back)[1]
        dup = bool(rows[row_i]["flags"] & FLAG_DUPLICATE)
        if (dup or attempt > 0) and order in decided:
            outcome = decided[order]
            replays += 1
        else:
            key = (int(rows[row_i]["buyer"]), int(rows[row_i]["product"]))
            limit = limits[key[1]]
            if limit and held.get(key, 0) + qty > limit:  # the storefront checks this first
                outcome = "rejected"
            elif qty <= left[group]:
                outcome = "confirmed"
                left[group] -= qty
                held[key] = held.get(key, 0) + qty
                if flow is not None:
                    e, at = flow.ends(np.array([order]), np.array([d]), cfg.seed)
                    end, when = int(e[0]), int(at[0])
                    if d - t > cfg.timeout_s * 1e9:  # the buyer never saw the hold
                        end, when = EXPIRED, d + flow.ttl_ns
                    ends[end] += qty
                    if end != PAID:
                        heapq.heappush(coming.setdefault(group, []), (when, qty))
            else:
                outcome = "sold_out"
            decided[order] = outcome
        if d - t > cfg.timeout_s * 1e9:
            outcome = "timeout"
        final[row_i] = (outcome, d - int(rows[row_i]["t_ns"]))
    for group, back in coming.items():  # every hold ends
        left[group] += sum(u for _, u in back)
    counts = {name: 0 for name in OUTCOME_NAMES}
    for outcome, _ in final.values():
        counts[outcome] += 1
    return {
        "ends": ends,
        "outcomes": counts,
        "rows": len(rows),
        "retries": retries,
        "replays": replays,
        "left": left,
        "over_limit_later": counts["rejected"] - validation,
    }


def model_stock(scenario: Scenario, shards: int) -> np.ndarray:
    from simulator.model.stock import split_stock

    return split_stock(np.array([scenario.stock_of(p) for p in scenario.products]), shards)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(shards=1, service_median_ms=0.4, queue_limit=8, seed=7),
        ModelConfig(shards=3, service_median_ms=1.5, service_sigma=1.0, queue_limit=5, seed=7),
        ModelConfig(shards=2, service_median_ms=2.0, queue_limit=0, timeout_s=0.05, seed=7),
        # more stock groups than a window has requests: stock decided by sorting the rows
        ModelConfig(shards=64, service_median_ms=20.0, queue_limit=1, seed=7),
        # c servers sharing one FIFO queue per shard, with and without a limit, and an overhead
        ModelConfig(shards=2, servers=3, service_median_ms=3.0, queue_limit=7, seed=7),
        ModelConfig(shards=1, servers=4, service_median_ms=4.0, service_sigma=0.8, seed=7),
        ModelConfig(shards=2, service_median_ms=0.8, queue_limit=4, overhead_ms=1.5, seed=7),
        # the storefront's limit on orders in flight across all shards (max_concurrency)
        ModelConfig(shards=3, service_median_ms=1.5, service_sigma=1.0, max_in_flight=6, seed=7),
        ModelConfig(shards=2, servers=3, service_median_ms=3.0, queue_limit=4, max_in_flight=7),
    ],
    ids=[
        "one-shard",
        "three-shards-throttling",
        "unlimited-with-timeouts",
        "64-shards",
        "shared-queue-limited",
        "shared-queue",
        "overhead",
        "in-flight-limit",
        "in-flight-and-queue-limits",
    ],
)
@pytest.mark.parametrize(
    "limit_b",
    [0, 1, 2, 3],
    # limit 3 > the largest quantity (2): a buyer's units must be remembered from the first
    # one on, or a third order (1 + 2 + 1 > 3) gets through
    ids=["no-limit", "b-limit-1", "b-limit-2", "b-limit-3"],
)
def test_model_equals_a_per_request_reference_simulation(cfg, limit_b):
    scenario = small_scenario(limit_b)
    result = Model(scenario, cfg).run(chunk_orders=777)
    ref = reference(scenario, cfg)
    if limit_b:  # repeat buyers' orders past the limit are refused (and at limit 1, 2 units)
        assert ref["over_limit_later"] > 0
        assert (ref["outcomes"]["rejected"] > ref["over_limit_later"]) == (limit_b == 1)
    report = build_report(result)
    orders = report["orders"]
    assert orders["outcomes"] == ref["outcomes"]
    assert orders["scheduled"] == ref["rows"]
    assert orders["retries"] == ref["retries"]
    assert orders["replays"] == ref["replays"]
    assert result.stock.left.tolist() == [ref["left"][g] for g in range(len(result.stock.left))]


def test_every_order_has_one_outcome_and_stock_is_never_oversold():
    scenario = small_scenario(qty_values=[1], qty_weights=[1.0])
    result = Model(scenario, ModelConfig(shards=4, service_median_ms=1.0, queue_limit=6)).run()
    report = build_report(result)
    assert (
        sum(report["orders"]["outcomes"].values())
        == report["orders"]["scheduled"]
        == len(result.schedule.materialize())
    )
    orders = report["orders"]
    assert sum(orders["attempt_outcomes"].values()) == orders["attempts"]
    assert report["audit"]["oversell_units"] == 0
    for sku in report["skus"].values():
        assert sku["sold_units"] <= sku["stock"]
    book = result.stock
    assert (book.left >= 0).all()
    # a shard answers "sold out" only once its own stock is gone (quantity 1)
    answered = book.first_sold_out_ns < np.iinfo(np.int64).max
    assert (book.zero_ns[answered] <= book.first_sold_out_ns[answered]).all()
    timeline = report["timeline"]
    assert sum(timeline["demand_per_s"]) == orders["scheduled"]
    assert sum(timeline["sent_per_s"]) == sum(timeline["done_per_s"]) == orders["attempts"]


def test_retries_die_out_after_max_attempts():
    scenario = small_scenario(
        retry={
            "share": 1.0,
            "max_attempts": 4,
            "backoff_s": 0.02,
            "backoff_factor": 1.5,
            "jitter": 0.2,
        }
    )
    result = Model(scenario, ModelConfig(shards=1, service_median_ms=3.0, queue_limit=2)).run()
    st = result.stats
    assert st.retries > st.rows  # a hard overload: most orders retry
    assert st.retries <= 3 * st.rows  # at most max_attempts − 1 retries each
    assert st.attempts == st.rows + st.retries
    assert st.outcomes.sum() == st.rows


def test_false_sold_out_needs_several_shards():
    scenario = small_scenario(repeat_share=0.6)  # skewed: a few buyers place many orders
    one = build_report(Model(scenario, ModelConfig(shards=1, service_median_ms=0.5)).run())
    many = build_report(Model(scenario, ModelConfig(shards=8, service_median_ms=0.5)).run())
    assert one["false_sold_out"] == 0
    assert many["false_sold_out"] > 0
    sku = many["skus"]["a"]
    assert sku["sell_out_s"] is None or sku["first_sold_out_s"] <= sku["sell_out_s"]


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    r = dict(report)
    for key in ("run", "model"):
        r.pop(key)
    return r


def test_same_seed_same_result_whatever_the_chunk_or_window():
    scenario = small_scenario()
    cfg = ModelConfig(shards=3, servers=1, service_median_ms=1.2, queue_limit=6, seed=3)
    base = _comparable(build_report(Model(scenario, cfg).run(chunk_orders=1 << 20)))
    assert _comparable(build_report(Model(scenario, cfg).run(chunk_orders=97))) == base
    # windows shorter than the shortest backoff (25 ms) change nothing
    short = cfg.replace(window_s=0.007)
    assert _comparable(build_report(Model(scenario, short).run(chunk_orders=500))) == base
    other = _comparable(build_report(Model(scenario, cfg.replace(seed=4)).run()))
    assert other != base


def test_several_servers_per_shard_and_hot_rows_conserve_orders():
    scenario = small_scenario()
    for cfg in (
        ModelConfig(shards=2, servers=4, service_median_ms=4.0, queue_limit=12),
        ModelConfig(shards=2, servers=2, service_median_ms=2.0, hot_row=True, queue_limit=4),
    ):
        report = build_report(Model(scenario, cfg).run(chunk_orders=300))
        assert sum(report["orders"]["outcomes"].values()) == report["orders"]["scheduled"]
        assert report["audit"]["oversell_units"] == 0
    more = build_report(
        Model(scenario, ModelConfig(shards=1, servers=8, service_median_ms=4.0)).run()
    )
    fewer = build_report(
        Model(scenario, ModelConfig(shards=1, servers=2, service_median_ms=4.0)).run()
    )
    assert more["latency_ms"]["intended"]["p99"] < fewer["latency_ms"]["intended"]["p99"]


def test_capacity_search_returns_the_smallest_passing_setting():
    scenario = small_scenario()
    cfg = ModelConfig(service_median_ms=2.0, service_sigma=0.3)
    best, probes, report = find_capacity(scenario, cfg, "p99_ms < 20", parse_vary("shards=1..16"))
    assert best is not None and report is not None
    by_value = {p.value: p.ok for p in probes}
    assert by_value[best]
    assert by_value.get(best - 1) is False or best == 1
    assert report["latency_ms"]["intended"]["p99"] < 20
    assert [p.value for p in probes][:2] == [1, 2]  # the doubling sweep comes first


def test_config_for_takes_the_scenarios_storefront():
    scenario = small_scenario()
    cfg = config_for(scenario, shards=4, servers=None)
    assert cfg.shards == 4 and cfg.servers == 1 and cfg.seed == scenario.seed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shards", "0"], "--shards: must be ≥ 1"),
        (["--service-ms", "-1"], "--service-ms: must be > 0"),
        (["--find", "p99_ms < 5"], "--find and --vary go together"),
        (["--find", "p99 <", "--vary", "shards=1..4"], "threshold 'p99 <'"),
        (["--find", "p99_ms < 5", "--vary", "disks=1..4"], "unknown knob"),
        (["--find", "p99_ms < 5", "--vary", "shards=4..1"], "LO ≤ HI"),
        (["--calibrate", "/nonexistent/run.json"], "--calibrate: calibration run: "),
        (["--shards", "100000000"], "--shards: must be ≤ 100000"),
        (["--shards", "100000", "--servers", "10000"], "GB of model state"),  # before allocating
    ],
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name="t"\nseed=1\nduration_s=1.0\n[[products]]\nid="a"\nstock=5\n'
        "[demand]\nbaseline_per_s=50.0\n"
    )
    assert cli_main(["simulate", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_writes_the_report(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name="t"\nseed=1\nduration_s=2.0\n[[products]]\nid="a"\nstock=50\n'
        "[demand]\nbaseline_per_s=200.0\n"
    )
    out = tmp_path / "model.json"
    assert cli_main(["simulate", str(path), "--shards", "2", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["mode"] == saved["mode"] == "simulate"
    assert printed["skus"]["a"]["sold_units"] == 50


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(shards=1, service_median_ms=0.4, queue_limit=8, seed=7),
        ModelConfig(shards=3, service_median_ms=1.5, service_sigma=1.0, queue_limit=5, seed=7),
        ModelConfig(shards=2, service_median_ms=2.0, timeout_s=0.05, seed=7),
        ModelConfig(shards=2, service_median_ms=0.5, seed=7, admit_per_s=900.0, burst=40),
    ],
    ids=["one-shard", "three-shards-throttling", "timeouts", "token-bucket"],
)
@pytest.mark.parametrize("limit_b", [0, 2], ids=["no-limit", "b-limit-2"])
@pytest.mark.parametrize(
    "pay_delay",
    [
        [0.05, 0.6],
        {"median": 0.15, "sigma": 1.0, "min": 0.02},
        {"mean": 0.2, "min": 0.03},
        0.1,
    ],
    ids=["uniform", "lognormal", "exponential", "constant"],
)
def test_model_with_the_flow_equals_the_reference(cfg, limit_b, pay_delay):
    """Holds for a 0.3 s TTL: paid, cancelled or expired as drawn, units back and sold again;
    with every form of pay delay (the windows no longer than its lowest value)."""
    scenario = small_scenario(limit_b, pay_share=0.5, pay_delay_s=pay_delay, abandon_share=0.5)
    cfg = cfg.replace(reservation_ttl_s=0.3)
    result = Model(scenario, cfg).run(chunk_orders=777)
    ref = reference(scenario, cfg)
    report = build_report(result)
    assert report["orders"]["outcomes"] == ref["outcomes"]
    assert report["orders"]["retries"] == ref["retries"]
    assert report["orders"]["replays"] == ref["replays"]
    assert result.stock.left.tolist() == [ref["left"][g] for g in range(len(result.stock.left))]
    assert result.holds is not None
    assert result.holds.sum(axis=0).tolist() == ref["ends"]
    assert min(ref["ends"]) > 0  # every end happened
    assert report["flow"]["reserved_units"] > sum(p.stock for p in scenario.products)
