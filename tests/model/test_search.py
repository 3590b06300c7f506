"""The capacity search: every SLO must hold, and refusing the load does not count as meeting
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main as cli_main
from simulator.model import ModelConfig, find_capacity, parse_vary
from simulator.model.search import refused_share

from .test_sim import small_scenario

# a queue limit of 4: too few shards throttle most orders, and a 429 comes back at once
LIMITED = ModelConfig(service_median_ms=3.0, service_sigma=0.3, queue_limit=4, seed=7)


def test_throttling_the_load_does_not_meet_a_latency_slo() -> None:
    scenario = small_scenario(retry={"share": 0.0})
    vary = parse_vary("shards=1..64")
    cheat, probes, _ = find_capacity(scenario, LIMITED, "p99_ms < 20", vary, max_refused=1.0)
    assert cheat == 1 and probes[0].refused_share > 0.5  # what the search used to answer
    best, probes, report = find_capacity(scenario, LIMITED, "p99_ms < 20", vary)
    assert best is not None and best > 1 and report is not None
    assert refused_share(report) == (0, 0.0)
    by_value = {p.value: p for p in probes}
    below = by_value[best - 1]
    assert not below.ok and below.refused > 0  # one shard fewer refuses orders
    assert all(p.ok == (p.refused == 0 and p.metrics[0] < 20) for p in probes)


def test_a_refused_share_allowance_is_honoured() -> None:
    scenario = small_scenario(retry={"share": 0.0})
    vary = parse_vary("shards=1..64")
    strict, _, _ = find_capacity(scenario, LIMITED, "p99_ms < 20", vary)
    loose, probes, report = find_capacity(scenario, LIMITED, "p99_ms < 20", vary, max_refused=0.05)
    assert loose is not None and strict is not None and loose <= strict
    assert report is not None and refused_share(report)[1] <= 0.05
    assert all(p.ok == (p.refused_share <= 0.05 and p.metrics[0] < 20) for p in probes)


def test_every_slo_is_enforced() -> None:
    scenario = small_scenario()
    cfg = ModelConfig(service_median_ms=2.0, service_sigma=0.3, seed=7)
    vary = parse_vary("shards=1..32")
    one, _, _ = find_capacity(scenario, cfg, ["p99_ms < 50"], vary)
    both, probes, report = find_capacity(scenario, cfg, ["p99_ms < 50", "p50_ms < 2.1"], vary)
    assert one is not None and both is not None and both > one
    assert report is not None
    lat = report["latency_ms"]["intended"]
    assert lat["p99"] < 50 and lat["p50"] < 2.1
    assert all(len(p.metrics) == 2 for p in probes)
    assert all(p.ok == (p.metrics[0] < 50 and p.metrics[1] < 2.1) for p in probes)


@pytest.mark.parametrize(
    ("slos", "max_refused", "message"),
    [([], 0.0, "at least one SLO"), (["p99_ms < 5"], 1.5, "refused share allowed")],
)
def test_bad_search_arguments_are_refused(slos: list[str], max_refused: float, message: str):
    with pytest.raises(ValueError, match=message):
        find_capacity(
            small_scenario(), LIMITED, slos, parse_vary("shards=1..2"), max_refused=max_refused
        )


def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name="t"\nseed=1\nduration_s=2.0\n[[products]]\nid="a"\nstock=50\n'
        "[demand]\nbaseline_per_s=400.0\n"
    )
    return path


def test_cli_enforces_every_find_and_reports_them(tmp_path: Path, capsys) -> None:
    argv = [
        "simulate",
        str(_tiny(tmp_path)),
        "--service-ms",
        "4",
        "--queue-limit",
        "4",
        "--find",
        "p99_ms < 30",
        "--find",
        "p50_ms < 5",
        "--vary",
        "shards=1..32",
        "--json",
    ]
    assert cli_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["slo"] == ["p99_ms < 30", "p50_ms < 5"] and out["max_refused"] == 0.0
    tried = {t["value"]: t for t in out["tried"]}
    assert tried[out["found"]]["ok"] and tried[out["found"]]["refused"] == 0
    assert all(len(t["metrics"]) == 2 for t in tried.values())


@pytest.mark.parametrize("share", ["-0.1", "1.5", "nan"])
def test_cli_refuses_a_bad_max_refused(tmp_path: Path, capsys, share: str) -> None:
    argv = [
        "simulate",
        str(_tiny(tmp_path)),
        "--find",
        "p99_ms < 30",
        "--vary",
        "shards=1..2",
        "--max-refused",
        share,
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "--max-refused: must be a share in 0..1" in err and err.count("\n") == 1
