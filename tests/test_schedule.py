"""The order stream: Poisson counts match ∫λ, determinism, worker slices, flags, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulator.schedule as schedule_mod
from simulator.errors import TooLargeError
from simulator.scenario import Scenario, load_scenario, parse_scenario
from simulator.schedule import (
    FLAG_DUPLICATE,
    FLAG_REPEAT,
    FLAG_REPEATED,
    FLAG_RETRIES,
    ORDER_DTYPE,
    AliasSampler,
    build_schedule,
    concat,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scenario(demand: dict[str, Any], *, duration_s: float = 5.0, seed: int = 7, **extra: Any):
    data: dict[str, Any] = {
        "name": "prop",
        "seed": seed,
        "duration_s": duration_s,
        "products": [
            {"id": "a", "stock": 10, "weight": 3.0},
            {"id": "b", "stock": 10, "weight": 1.0},
        ],
        "demand": demand,
    }
    data.update(extra)
    return parse_scenario(data, "prop.toml")


demands = st.fixed_dictionaries(
    {"baseline_per_s": st.floats(min_value=0.0, max_value=3000.0)},
    optional={
        "spike": st.fixed_dictionaries(
            {
                "at_s": st.floats(min_value=0.0, max_value=4.0),
                "peak_per_s": st.floats(min_value=0.0, max_value=20000.0),
                "half_life_s": st.floats(min_value=0.05, max_value=5.0),
            }
        ),
        "countdown": st.fixed_dictionaries(
            {
                "start_s": st.just(0.0),
                "end_s": st.floats(min_value=0.1, max_value=3.0),
                "from_per_s": st.floats(min_value=0.0, max_value=500.0),
                "to_per_s": st.floats(min_value=0.0, max_value=5000.0),
            }
        ),
    },
)
durations = st.floats(min_value=0.3, max_value=4.5)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Row-for-row identical, padding included (tobytes() of a strided view drops padding)."""
    return a.shape == b.shape and bool(np.all(a.view("V32") == b.view("V32")))


def _within_poisson(observed: float, expected: float, z: float = 5.0) -> bool:
    return abs(observed - expected) <= z * math.sqrt(max(expected, 1.0)) + 1.0


@FAST
@given(demands, durations, st.integers(0, 2**32 - 1))
def test_counts_agree_with_integral_of_lambda(demand, duration, seed):
    sched = build_schedule(_scenario(demand, duration_s=duration, seed=seed))
    rows = sched.materialize()
    expected = sched.expected_per_product()
    assert _within_poisson(len(rows), expected.sum())
    counts = np.bincount(rows["product"], minlength=2)
    for observed, mean in zip(counts, expected, strict=True):
        assert _within_poisson(observed, mean)
    assert np.all(np.diff(rows["t_ns"]) >= 0), "time order"
    assert np.all((rows["t_ns"] >= 0) & (rows["t_ns"] < round(duration * 1e9)))
    assert np.array_equal(rows["order"], np.arange(len(rows))), "no double clicks configured"


def test_time_profile_follows_the_curve():
    sc = _scenario(
        {
            "baseline_per_s": 1000.0,
            "spike": {"at_s": 2.0, "peak_per_s": 50000.0, "half_life_s": 0.5},
        },
        duration_s=4.0,
    )
    sched = build_schedule(sc)
    rows = sched.materialize()
    per_100ms = np.bincount(rows["t_ns"] // 100_000_000, minlength=40)
    edges = np.arange(0.0, 4.01, 0.1)
    lam = np.diff(sc.demand.cumulative(edges))
    for observed, mean in zip(per_100ms, lam, strict=True):
        assert _within_poisson(observed, mean)


@FAST
@given(
    st.sampled_from([1, 7, 1000, 1 << 20]),
    st.sampled_from([3, 64, 4096]),
    st.integers(0, 1000),
)
def test_same_stream_whatever_the_chunk_size(chunk_a, chunk_b, seed):
    sc = _scenario(
        {"baseline_per_s": 400.0, "bursts": {"branching_ratio": 0.5, "decay_s": 0.3}},
        duration_s=3.5,
        seed=seed,
        buyers={
            "duplicate_share": 0.2,
            "repeat_share": 0.3,
            "duplicate_delay_s": [0.1, 1.5],
            "qty_values": [1, 2, 3],
            "retry": {"share": 0.5},
        },
    )
    sched = build_schedule(sc)
    a = list(sched.chunks(chunk_a))
    b = list(sched.chunks(chunk_b))
    assert all(len(c) <= chunk_a for c in a)
    assert _same(concat(a), concat(b))
    again = build_schedule(sc).materialize()
    assert _same(again, concat(a)), "bit for bit on a fresh build"


@FAST
@given(st.integers(1, 7), st.integers(0, 1000))
def test_worker_slices_are_disjoint_and_complete(workers, seed):
    sc = _scenario(
        {"baseline_per_s": 300.0},
        duration_s=2.5,
        seed=seed,
        buyers={"duplicate_share": 0.1},
    )
    sched = build_schedule(sc)
    whole = sched.materialize()
    slices = [sched.materialize(k, workers) for k in range(workers)]
    assert sum(len(s) for s in slices) == len(whole)
    for k, part in enumerate(slices):
        assert _same(part, whole[k::workers])
        assert np.all(np.diff(part["t_ns"]) >= 0)
    merged = concat(slices)
    mi = np.lexsort((merged["order"], merged["flags"], merged["t_ns"]))
    wi = np.lexsort((whole["order"], whole["flags"], whole["t_ns"]))
    # raw 32-byte views: fancy indexing a structured array field by field drops the padding
    assert np.array_equal(merged.view("V32")[mi], whole.view("V32")[wi])


def test_seed_changes_the_stream():
    a = build_schedule(_scenario({"baseline_per_s": 500.0}, seed=1)).materialize()
    b = build_schedule(_scenario({"baseline_per_s": 500.0}, seed=2)).materialize()
    assert not _same(a, b)


def test_duplicates_repeat_an_earlier_order_later():
    sc = _scenario(
        {"baseline_per_s": 2000.0},
        duration_s=3.0,
        buyers={"duplicate_share": 0.25, "duplicate_delay_s": [0.2, 1.2]},
    )
    rows = build_schedule(sc).materialize()
    dup = rows[(rows["flags"] & FLAG_DUPLICATE) != 0]
    orig = rows[(rows["flags"] & FLAG_DUPLICATE) == 0]
    share = len(dup) / len(orig)
    assert 0.18 < share < 0.25  # some fall past the end of the run
    assert np.array_equal(orig["order"], np.arange(len(orig)))
    first = orig[np.searchsorted(orig["order"], dup["order"])]
    delay = dup["t_ns"] - first["t_ns"]
    assert delay.min() >= 200_000_000 and delay.max() <= 1_200_000_000
    for field in ("buyer", "product", "qty"):
        assert np.array_equal(dup[field], first[field])


def test_repeat_buyers_reuse_an_earlier_buyer_and_product():
    sc = _scenario(
        {"baseline_per_s": 3000.0},
        duration_s=2.0,
        buyers={"repeat_share": 0.3},
    )
    rows = build_schedule(sc).materialize()
    rep = rows[(rows["flags"] & FLAG_REPEAT) != 0]
    new = rows[(rows["flags"] & FLAG_REPEAT) == 0]
    assert 0.25 < len(rep) / len(rows) < 0.35
    assert np.array_equal(new["buyer"], new["order"])  # a new buyer is numbered by its order
    assert np.all(rep["buyer"] < rep["order"])
    by_order = {int(o): int(p) for o, p in zip(new["order"], new["product"], strict=True)}
    assert all(
        by_order[int(b)] == int(p) for b, p in zip(rep["buyer"], rep["product"], strict=True)
    )
    # a buyer's first order says the buyer comes back: exactly the buyers of the repeats
    marked = new[(new["flags"] & FLAG_REPEATED) != 0]
    assert set(marked["order"].tolist()) == set(rep["buyer"].tolist())


def test_quantity_and_retry_flags_follow_the_buyers_table():
    sc = _scenario(
        {"baseline_per_s": 20000.0},
        duration_s=2.0,
        buyers={"qty_values": [1, 2, 5], "qty_weights": [0.5, 0.3, 0.2], "retry": {"share": 0.4}},
    )
    rows = build_schedule(sc).materialize()
    n = len(rows)
    for value, weight in ((1, 0.5), (2, 0.3), (5, 0.2)):
        assert abs(np.count_nonzero(rows["qty"] == value) / n - weight) < 0.01
    assert set(np.unique(rows["qty"]).tolist()) == {1, 2, 5}
    assert abs(np.count_nonzero(rows["flags"] & FLAG_RETRIES) / n - 0.4) < 0.01


def test_bursts_cluster_and_raise_demand():
    base = {"baseline_per_s": 500.0}
    plain = build_schedule(_scenario(base, duration_s=4.0)).materialize()
    sc = _scenario({**base, "bursts": {"branching_ratio": 0.6, "decay_s": 0.02}}, duration_s=4.0)
    sched = build_schedule(sc)
    bursty = sched.materialize()
    assert len(bursty) > 2 * len(plain)
    assert abs(len(bursty) - sched.expected_orders()) < 0.1 * sched.expected_orders()

    # overdispersion: counts per 100 ms of a Poisson stream have variance = mean (Fano factor 1);
    # a clustered one well above (→ 1/(1 − η)² = 6.25 over long windows)
    def fano(rows):
        counts = np.bincount(rows["t_ns"] // 100_000_000, minlength=40)
        return counts.var() / counts.mean()

    assert fano(plain) < 1.6
    assert fano(bursty) > 2.5


def test_per_product_curves_add_to_their_share():
    data = {
        "name": "pp",
        "seed": 3,
        "duration_s": 3.0,
        "products": [
            {"id": "a", "stock": 1, "weight": 1.0},
            {
                "id": "b",
                "stock": 1,
                "weight": 1.0,
                "demand": {"spike": {"at_s": 1.0, "peak_per_s": 4000.0, "half_life_s": 0.5}},
            },
        ],
        "demand": {"baseline_per_s": 1000.0},
    }
    sched = build_schedule(parse_scenario(data, "pp.toml"))
    rows = sched.materialize()
    expected = sched.expected_per_product()
    assert expected[1] > 2 * expected[0]
    counts = np.bincount(rows["product"], minlength=2)
    assert all(_within_poisson(c, e) for c, e in zip(counts, expected, strict=True))
    b_times = rows["t_ns"][rows["product"] == 1]
    assert np.count_nonzero((b_times > 1e9) & (b_times < 1.5e9)) > 1000


@FAST
@given(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=12))
def test_alias_sampler_matches_weights(weights):
    if sum(weights) <= 0:
        with pytest.raises(ValueError):
            AliasSampler(weights)
        return
    u = np.random.default_rng(0).random(200_000)
    got = np.bincount(AliasSampler(weights).sample(u), minlength=len(weights)) / len(u)
    want = np.array(weights) / sum(weights)
    assert np.all(np.abs(got - want) < 0.01)
    assert np.all(got[want == 0] == 0)


def test_memory_is_bounded_by_a_block():
    sc = load_scenario(SCENARIOS / "singles-day-peak.toml", scale=0.01)
    sched = build_schedule(sc)
    biggest = max(len(c) for c in sched.chunks(1 << 30))
    assert biggest * ORDER_DTYPE.itemsize < 64 << 20  # one second of orders, not the sale


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "schedule", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_json_summary_and_npy_output(tmp_path: Path):
    out = tmp_path / "durian.npy"
    proc = _cli(str(SCENARIOS / "durian-1111.toml"), "--scale", "0.1", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in (
        "total_orders",
        "expected_orders",
        "peak_rate_per_s",
        "first_minute_orders",
        "per_sku",
    ):
        assert key in summary
    rows = np.load(out)
    assert rows.dtype == ORDER_DTYPE
    assert len(rows) == summary["total_orders"]
    assert summary["per_sku"] == {
        "durian-musang-king": int(np.count_nonzero(rows["product"] == 0)),
        "durian-d24": int(np.count_nonzero(rows["product"] == 1)),
    }
    assert summary["first_minute_orders"] == int(np.count_nonzero(rows["t_ns"] < 60e9))
    peak = np.bincount(rows["t_ns"] // 1_000_000_000).max()
    assert summary["peak_rate_per_s"] == peak
    assert _within_poisson(summary["total_orders"], summary["expected_orders"])
    same = load_scenario(SCENARIOS / "durian-1111.toml", scale=0.1)
    assert _same(build_schedule(same).materialize(), rows)


def test_durian_first_minute_is_about_80000_orders():
    sc = load_scenario(SCENARIOS / "durian-1111.toml")
    sched = build_schedule(sc, duration_s=60.0)
    expected = sched.expected_orders()
    assert 75_000 < expected < 88_000
    assert sum(sc.stocks().values()) < expected


def test_singles_day_peaks_at_583000_per_second():
    sc: Scenario = load_scenario(SCENARIOS / "singles-day-peak.toml")
    t = np.array([59.999, 60.0, 61.0])
    rate = sc.demand.rate(t)
    assert rate[1] == pytest.approx(583_000.0)
    assert rate.max() == rate[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk", "0"], "--chunk: must be ≥ 1"),
        (["--duration", "-1"], "--duration: must be > 0"),
        (["--out", "x.csv"], "--out: x.csv: only .npy files are supported"),
        (["--scale", "0"], "scale: must be > 0"),
    ],
)
def test_cli_bad_arguments_exit_2(args: list[str], message: str):
    proc = _cli(str(SCENARIOS / "durian-1111.toml"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_out_to_missing_directory_leaves_nothing(tmp_path: Path):
    proc = _cli(str(SCENARIOS / "durian-1111.toml"), "--out", str(tmp_path / "no" / "x.npy"))
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr
    assert not (tmp_path / "no").exists()


def test_duration_cut_is_a_prefix_of_the_stream():
    sc = dataclasses.replace(
        load_scenario(SCENARIOS / "durian-1111.toml", scale=0.05),
        buyers=dataclasses.replace(
            load_scenario(SCENARIOS / "durian-1111.toml").buyers, duplicate_share=0.0
        ),
    )
    whole = build_schedule(sc).materialize()
    cut = build_schedule(sc, duration_s=20.0).materialize()
    assert _same(cut, whole[: len(cut)])
    assert whole["t_ns"][len(cut)] >= 20e9 > cut["t_ns"][-1]


@pytest.mark.parametrize(
    "demand",
    [
        {"baseline_per_s": 200.0},
        {"spike": {"at_s": 1.0, "peak_per_s": 500.0, "half_life_s": 1.0}},
        {"baseline_per_s": 100.0, "bursts": {"branching_ratio": 0.5, "decay_s": 0.2}},
    ],
)
def test_size_agrees_with_the_expected_orders(demand: dict[str, Any]):
    sched = build_schedule(_scenario(demand, buyers={"duplicate_share": 0.1}))
    size = sched.size()
    assert size.orders == pytest.approx(sched.expected_orders(), rel=0.02)
    per_s = np.bincount(sched.materialize()["t_ns"] // 1_000_000_000)
    assert per_s.max() <= size.peak_per_s + 5 * math.sqrt(size.peak_per_s)


def test_size_counts_the_retries_buyers_may_send():
    retry = {"share": 0.5, "max_attempts": 5}
    sched = build_schedule(_scenario({"baseline_per_s": 100.0}, buyers={"retry": retry}))
    size = sched.size()
    assert size.retries == pytest.approx(size.orders * 0.5 * 4)


def test_a_schedule_too_big_to_stream_is_refused_when_built():
    sc = _scenario({"baseline_per_s": 1e7}, duration_s=86_400.0)
    with pytest.raises(TooLargeError, match=r"would hold 8\.64e\+11 orders over 86400 s; at most"):
        build_schedule(sc)


def test_a_second_too_big_for_memory_is_refused_before_drawing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(schedule_mod, "available_memory_bytes", lambda: 100_000_000)
    sc = _scenario({"spike": {"at_s": 0.0, "peak_per_s": 1e7, "half_life_s": 0.5}})
    with pytest.raises(TooLargeError, match=r"busiest second would hold up to 1e\+07 orders"):
        build_schedule(sc)


def test_materialize_checks_its_slice_against_free_memory(monkeypatch: pytest.MonkeyPatch):
    sched = build_schedule(_scenario({"baseline_per_s": 1000.0}))  # ~5,000 orders
    need = sched.size().live_bytes()
    monkeypatch.setattr(schedule_mod, "available_memory_bytes", lambda: int(need * 0.6))
    with pytest.raises(TooLargeError, match=r"a live run would hold 5e\+03 orders over 5 s"):
        sched.materialize()
    with pytest.raises(TooLargeError, match="room for about 3e"):
        sched.check_materialize()
    assert len(sched.materialize(0, 2)) > 0  # half of it fits


def test_a_live_run_is_sized_by_its_rate_not_its_length(monkeypatch: pytest.MonkeyPatch):
    """The engine streams the schedule: a day at 1,000 orders/s needs what a minute does, plus
    a few kB per second of counts; a rate whose attempts in flight do not fit is refused."""
    monkeypatch.setattr(schedule_mod, "available_memory_bytes", lambda: 8_000_000_000)
    day = build_schedule(_scenario({"baseline_per_s": 1000.0}, duration_s=86_400.0))
    minute = build_schedule(_scenario({"baseline_per_s": 1000.0}, duration_s=60.0))
    with pytest.raises(TooLargeError):  # held whole, 86.4 M orders would not fit
        day.check_materialize()
    day.check_live_run(timeout_s=5.0, drain_s=5.0, connections=256, workers=1)
    day_bytes, in_flight = day.live_run_bytes(5.0, 5.0, 256, 1)
    minute_bytes, same = minute.live_run_bytes(5.0, 5.0, 256, 1)
    assert in_flight == same and 6_000 < in_flight < 9_000  # ~1,000/s (+10σ) over 5 s + 1 s
    assert (day_bytes - minute_bytes) / (86_400 - 60) < 100_000  # per second of the run
    fast = build_schedule(_scenario({"baseline_per_s": 1e7}, duration_s=1.0))
    with pytest.raises(
        TooLargeError, match=r"a live run would hold up to 6\.\d+e\+07 orders in flight and 6 s"
    ):
        fast.check_live_run(timeout_s=5.0, drain_s=5.0, connections=256, workers=1)


def test_long_sales_get_coarser_expectation_bins():
    sc = _scenario({"baseline_per_s": 10.0}, duration_s=86_400.0)
    sched = build_schedule(sc)
    assert sched.expected_orders() == pytest.approx(864_000, rel=1e-6)
