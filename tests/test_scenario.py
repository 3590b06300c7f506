"""Scenario files: the shipped ones load, every broken rule gives one clear error."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import simulator.scenario as scenario_pkg
from simulator.errors import ScenarioError
from simulator.scenario import (
    MAX_SCENARIO_BYTES,
    load_scenario,
    parse_scenario,
    scaled_stock,
    sku_problem,
)
from simulator.scenario.model import Think

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

SHIPPED = sorted(SCENARIOS.glob("*.toml"))

BASE: dict[str, Any] = {
    "name": "t",
    "seed": 1,
    "duration_s": 10.0,
    "products": [{"id": "a", "stock": 10}],
    "demand": {"baseline_per_s": 100.0},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one key set (dotted path; [i] indexes lists); value DELETE removes it."""
    data = copy.deepcopy(BASE)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        if part.endswith("]"):
            name, idx = part[:-1].split("[")
            node = node[name][int(idx)]
        else:
            node = node.setdefault(part, {})
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


DELETE = object()


def test_shipped_scenarios_exist():
    names = {p.name for p in SHIPPED}
    assert {
        "durian-1111.toml",
        "manggis-launch.toml",
        "walet-burst.toml",
        "singles-day-peak.toml",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_load_and_explain_themselves(path: Path):
    sc = load_scenario(path)
    assert sc.products and sc.duration_s > 0
    assert path.read_text().lstrip().startswith("#"), "each file opens with a comment"
    assert all(v >= 0 for v in sc.stocks().values())


def test_singles_day_has_many_zipf_skus():
    sc = load_scenario(SCENARIOS / "singles-day-peak.toml")
    assert len(sc.products) == 500
    w = [p.weight for p in sc.products]
    assert w == sorted(w, reverse=True)
    assert w[0] / w[1] == pytest.approx(2**1.1)


def test_scale_multiplies_stock_but_keeps_at_least_one_unit():
    sc = load_scenario(SCENARIOS / "durian-1111.toml", scale=0.001)
    assert sc.stocks() == {"durian-musang-king": 12, "durian-d24": 5}
    tiny = sc.with_scale(1e-9)
    assert tiny.stocks() == {"durian-musang-king": 1, "durian-d24": 1}
    with pytest.raises(ScenarioError, match="scale: must be > 0"):
        sc.with_scale(0.0)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("products[0].stock", -5, "t.toml: products[0].stock: must be ≥ 0, got -5"),
        ("products[0].stock", "many", "products[0].stock: must be an integer, got 'many'"),
        ("products[0].stock", DELETE, "products[0].stock: is required"),
        ("products[0].id", "bad sku!", "products[0].id: must be 1–64 letters"),
        ("products[0].price", -1, "products[0].price: must be ≥ 0, got -1"),
        ("products[0].per_buyer_limit", -1, "products[0].per_buyer_limit: must be ≥ 0"),
        ("products[0].weight", True, "products[0].weight: must be a number, got True"),
        ("products[0].stok", 3, "products[0].stok: unknown key; did you mean 'stock'?"),
        ("seed", -1, "seed: must be ≥ 0, got -1"),
        ("seed", DELETE, "seed: is required"),
        ("duration_s", 0, "duration_s: must be > 0, got 0"),
        ("scale", -1.0, "scale: must be > 0, got -1"),
        ("name", 3, "name: must be a string, got 3"),
        ("durationn_s", 3, "durationn_s: unknown key; did you mean 'duration_s'?"),
        ("demand.baseline_per_s", -1.0, "demand.baseline_per_s: must be ≥ 0, got -1"),
        ("demand.spike", {"peak_per_s": 1.0}, "demand.spike.half_life_s: is required"),
        (
            "demand.spike",
            {"peak_per_s": 1.0, "half_life_s": 0.0},
            "demand.spike.half_life_s: must be > 0",
        ),
        (
            "demand.countdown",
            {"start_s": 5.0, "end_s": 5.0, "to_per_s": 1.0},
            "demand.countdown.end_s: must be > start_s",
        ),
        (
            "demand.waves",
            [{"first_s": 1.0, "period_s": 1.0, "count": 0, "peak_per_s": 1.0, "half_life_s": 1.0}],
            "demand.waves[0].count: must be ≥ 1",
        ),
        (
            "demand.bursts",
            {"branching_ratio": 1.2, "decay_s": 1.0},
            "demand.bursts.branching_ratio: must be in [0, 1), got 1.2",
        ),
        ("demand.spkie", {}, "demand.spkie: unknown key; did you mean 'spike'?"),
        ("demand", {}, "demand: no demand"),
        ("buyers.qty_values", [0], "buyers.qty_values: must be a non-empty list of integers ≥ 1"),
        ("buyers.qty_weights", [1, 2], "buyers.qty_weights: must be 1 non-negative numbers"),
        ("buyers.duplicate_share", 1.5, "buyers.duplicate_share: must be ≤ 1, got 1.5"),
        ("buyers.duplicate_delay_s", [2, 1], "buyers.duplicate_delay_s: must be [low, high]"),
        ("buyers.pay_share", 1.5, "buyers.pay_share: must be ≤ 1, got 1.5"),
        ("buyers.pay_share", -0.1, "buyers.pay_share: must be ≥ 0, got -0.1"),
        ("buyers.pay_share", "most", "buyers.pay_share: must be a number, got 'most'"),
        ("buyers.abandon_share", 2, "buyers.abandon_share: must be ≤ 1, got 2"),
        ("buyers.pay_delay_s", [30, 5], "buyers.pay_delay_s: [a, b] needs a ≤ b, got [30, 5]"),
        ("buyers.pay_delay_s", "x", "buyers.pay_delay_s: must be seconds, [a, b], {median"),
        ("buyers.pay_delay_s", 0, "buyers.pay_delay_s: must be ≥ 0.001, got 0"),
        ("buyers.pay_delay_s", {"mean": 2}, "buyers.pay_delay_s: an exponential delay needs min"),
        ("buyers.pay_delay_s", {"median": 2}, "buyers.pay_delay_s: a lognormal delay needs min"),
        ("buyers.pay_delay_s", {"mean": 2, "min": 3}, "pay_delay_s: min must be ≤ the mean"),
        ("buyers.pay_delay_s", {"mean": 2, "min": 0}, "buyers.pay_delay_s.min: must be ≥ 0.001"),
        ("buyers.pay_delay_s", {"sigma": 1}, "buyers.pay_delay_s: a table needs mean"),
        ("buyers.pay_delay_s", [0, 5], "buyers.pay_delay_s: every entry must be ≥ 0.001, got 0"),
        ("buyers.pay_delay_s", [1, 1e6], "buyers.pay_delay_s: every entry must be ≤ 3600"),
        ("buyers.pay_dealy_s", [1, 2], "buyers.pay_dealy_s: unknown key; did you mean 'pay_de"),
        (
            "buyers.retry",
            {"share": 0.5, "max_attempts": 0},
            "buyers.retry.max_attempts: must be ≥ 1",
        ),
        ("buyers.retry", {"jiter": 0.1}, "buyers.retry.jiter: unknown key; did you mean 'jitter'?"),
        ("target.url", "ftp://x", "target.url: must start with http:// or https://"),
        ("target.orders_path", "orders", "target.orders_path: must start with '/'"),
        ("target.method", "GET", "target.method: must be POST or PUT"),
        ("target.body", '{"x": "{nope}"}', "target.body: unknown variable {nope}"),
        ("target.status", {"2000": "confirmed"}, "target.status.2000: must be an HTTP status code"),
        ("target.status", {"201": "yay"}, "target.status.201: must be one of confirmed"),
        ("run.connections", 0, "run.connections: must be ≥ 1, got 0"),
        ("run.timeout_s", 0, "run.timeout_s: must be > 0, got 0"),
        (
            "storefront.backend",
            "reddis",
            "storefront.backend: unknown backend 'reddis'; did you mean 'redis'?",
        ),
        ("storefront.hot_row", "yes", "storefront.hot_row: must be true or false"),
        ("storefront.reservation_ttl_s", 0, "storefront.reservation_ttl_s: must be > 0, got 0"),
        ("storefront.room_order", "lifo", "storefront.room_order: must be one of fifo, shuffle"),
        ("storefront.max_active", -1, "storefront.max_active: must be ≥ 0, got -1"),
        ("storefront.admit_per_s", 1e9, "storefront.admit_per_s: must be ≤ 1e+07"),
        ("storefront.require_token", "yes", "storefront.require_token: must be true or false"),
        ("thresholds", "p99 < 1", "thresholds: must be a list of strings"),
        ("products", [], "products: at least one product"),
    ],
)
def test_validation_errors_name_file_and_key(path: str, value: Any, message: str):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_with(path, value), "t.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("t.toml: ")


def test_duplicate_skus_are_rejected():
    data = _with("products", [{"id": "a", "stock": 1}, {"id": "a", "stock": 2}])
    with pytest.raises(ScenarioError, match=r"products\[1\].id: duplicate SKU 'a'"):
        parse_scenario(data, "t.toml")


def test_file_errors(tmp_path: Path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)


def test_per_product_curves_and_catalog_parse():
    data = _with(
        "products[0].demand", {"spike": {"at_s": 1.0, "peak_per_s": 50.0, "half_life_s": 2.0}}
    )
    data["catalog"] = [{"count": 3, "stock_total": 600, "zipf_s": 1.0, "id_prefix": "z-"}]
    sc = parse_scenario(data, "t.toml")
    assert [p.id for p in sc.products] == ["a", "z-1", "z-2", "z-3"]
    assert sc.products[0].curve is not None
    assert [p.stock for p in sc.products[1:]] == [327, 164, 109]


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path):
    bad = tmp_path / "durian.toml"
    bad.write_text(
        'name = "d"\nseed = 1\nduration_s = 10.0\n[[products]]\nid = "x"\nstock = -5\n'
        "[demand]\nbaseline_per_s = 1.0\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "schedule", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "flashsale: error: durian.toml: products[0].stock: must be ≥ 0, got -5"
    )
    assert "Traceback" not in proc.stderr


def test_readme_example_scenario_parses():
    readme = (SCENARIOS.parent / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    import tomllib

    sc = parse_scenario(tomllib.loads(block), "README.md")
    assert sc.name == "durian-1111"
    assert len(sc.demand.components) == 3
    assert sc.buyers.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("seed", 2**64, "seed: must be ≤ 9223372036854775807"),
        ("duration_s", 1e12, "duration_s: must be ≤ 86400 (one day), got 1e+12"),
        ("duration_s", float("inf"), "duration_s: must be a finite number, got inf"),
        ("scale", 1e9, "scale: must be ≤ 1000"),
        ("demand.baseline_per_s", 3e8, "demand.baseline_per_s: must be ≤ 1e+07"),
        ("demand.spike", {"peak_per_s": 1e9, "half_life_s": 1.0}, "spike.peak_per_s: must be ≤"),
        (
            "demand.waves",
            [
                {
                    "first_s": 1.0,
                    "period_s": 1.0,
                    "count": 10**6,
                    "peak_per_s": 1.0,
                    "half_life_s": 1,
                }
            ],
            "demand.waves[0].count: must be ≤ 1000",
        ),
        ("products[0].stock", 2**63, "products[0].stock: must be ≤ 9223372036854775807"),
        ("buyers.qty_values", [70_000], "buyers.qty_values: every entry must be ≤ 65535"),
        ("buyers.duplicate_delay_s", [0, 1e9], "buyers.duplicate_delay_s: every entry must be ≤"),
        ("buyers.retry", {"max_attempts": 10**9}, "buyers.retry.max_attempts: must be ≤ 100"),
        (
            "buyers.retry",
            {"max_attempts": 100, "backoff_s": 1.0, "backoff_factor": 2.0},
            "buyers.retry.max_attempts: the last of 100 attempts would wait 3.17e+29 s",
        ),
        ("run.timeout_s", 1e12, "run.timeout_s: must be ≤ 3600 (one hour)"),
        ("run.connections", 10**9, "run.connections: must be ≤ 100000"),
        ("run.workers", 10**6, "run.workers: must be ≤ 1024"),
        ("storefront.service_time_sigma", 1e6, "storefront.service_time_sigma: must be ≤ 10"),
        (
            "catalog",
            [{"count": 10**7, "stock_total": 1}],
            "catalog[0].count: must be ≤ 100000 (the most SKUs a scenario may have)",
        ),
        (
            "catalog",
            [{"count": 99_999, "stock_total": 1}, {"count": 5, "stock_total": 1, "id_prefix": "b"}],
            "catalog[1].count: 5 SKUs would make more than 100,000",
        ),
        ("catalog", [{"count": 2, "stock_total": 1, "id_prefix": "a b"}], "catalog[0].id_prefix"),
    ],
)
def test_every_number_has_a_range(path: str, value: Any, message: str):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_with(path, value), "t.toml")
    assert message in str(info.value)


def test_the_largest_stock_stays_exact_at_every_scale():
    big = 2**63 - 1
    sc = parse_scenario(_with("products[0].stock", big), "t.toml")
    assert sc.stocks() == {"a": big}
    assert sc.with_scale(0.5).stocks() == {"a": round(Fraction(big) / 2)}
    with pytest.raises(ScenarioError, match=r"stock at scale 2 totals \d+ units; at most 2\*\*63"):
        sc.with_scale(2.0)
    assert scaled_stock(12_000, 0.001) == 12 and scaled_stock(5, 1e-9) == 1
    assert scaled_stock(0, 3.0) == 0


@pytest.mark.parametrize(
    ("sku", "ok"),
    [
        ("durian-d24", True),
        ("a.b_c-1", True),
        ("榴莲", True),
        ("x" * 64, True),
        ("", False),
        ("bad sku", False),
        ("x" * 65, False),
        ("a/b", False),
        ("a=b", False),
    ],
)
def test_one_rule_for_sku_ids(sku: str, ok: bool):
    assert (sku_problem(sku) is None) == ok


def test_backend_names_are_the_storefronts():
    from simulator.storefront.backends import BACKEND_NAMES

    for name in BACKEND_NAMES:
        assert parse_scenario(_with("storefront", {"backend": name}), "t.toml").storefront.backend
    assert not hasattr(scenario_pkg, "BACKENDS")


def test_only_regular_files_of_bounded_size_are_read(tmp_path: Path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError, match=r"pipe\.toml: is a FIFO, not a regular file"):
        load_scenario(fifo)
    with pytest.raises(ScenarioError, match="/dev/zero: is a character device"):
        load_scenario("/dev/zero")
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_SCENARIO_BYTES + 1))
    with pytest.raises(ScenarioError, match="larger than 1,048,576 bytes"):
        load_scenario(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(latin)


def test_the_storefront_flow_keys_reach_the_bundled_storefront() -> None:
    from simulator.storefront.config import StorefrontSettings

    knobs = {
        "reservation_ttl_s": 600.0, "require_token": True, "admit_per_s": 5000.0, "burst": 200,
        "max_active": 10_000, "session_s": 120.0, "room_order": "shuffle", "sale_start_s": 10.0,
    }  # fmt: skip
    sc = parse_scenario(_with("storefront", knobs), "t.toml")
    settings = StorefrontSettings.from_scenario(sc)
    assert settings.flow
    assert {k: getattr(settings, k) for k in knobs} == knobs
    plain = parse_scenario(_with("storefront", {"backend": "memory"}), "t.toml")
    plain_settings = StorefrontSettings.from_scenario(plain)
    assert not plain_settings.flow  # the contract's one-request order stays the default
    assert plain_settings.reservation_ttl_s is None


def test_buyers_pay_keys_parse_with_defaults():
    """No pay keys: everyone pays (an order is final without a TTL anyway)."""
    b = parse_scenario(_with("buyers", {}), "t.toml").buyers
    assert (b.pay_share, b.pay_delay_s, b.abandon_share) == (1.0, Think("uniform", 5, 60), 1.0)
    b = parse_scenario(
        _with("buyers", {"pay_share": 0.7, "pay_delay_s": [2, 30.5], "abandon_share": 0.25}),
        "t.toml",
    ).buyers
    assert (b.pay_share, b.pay_delay_s, b.abandon_share) == (0.7, Think("uniform", 2, 30.5), 0.25)


@pytest.mark.parametrize(
    ("value", "think"),
    [
        (2.5, Think("constant", 2.5)),
        ([1, 4], Think("uniform", 1.0, 4.0)),
        ({"median": 3, "sigma": 0.8, "min": 0.5}, Think("lognormal", 3.0, 0.8, 0.5)),
        ({"median": 3, "min": 0.5}, Think("lognormal", 3.0, 0.5, 0.5)),  # sigma 0.5 by default
        ({"mean": 10, "min": 1}, Think("exponential", 10.0, 0.0, 1.0)),
    ],
)
def test_pay_delay_takes_the_forms_of_a_think_time(value, think):
    """``pay_delay_s`` is a :class:`Think` written as a step's ``think_s``; its lowest value
    (the model's bound) is the uniform's low end, the constant, or the ``min``."""
    b = parse_scenario(_with("buyers", {"pay_delay_s": value}), "t.toml").buyers
    assert b.pay_delay_s == think
    assert b.pay_delay_s.lowest >= 0.001
    assert b.pay_delay_s.as_toml() == (
        {"median": 3.0, "sigma": think.b, "min": 0.5} if think.kind == "lognormal" else value
    )
