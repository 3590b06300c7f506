"""Background streams: reads on curves of their own, beside the buyers, through ``flashsale run``.

The bundled storefront (its own process) serves the product page and the clock; the buyers'
orders must be exactly what they are without the streams (the same schedule), and each stream
must send exactly its own schedule's requests, open loop, reported on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import ScenarioError
from simulator.load.journey import merged_rows, stream_schedules
from simulator.scenario.reader import parse_scenario
from simulator.schedule import ORDER_DTYPE

ROOT = Path(__file__).resolve().parents[2]

BASE = """
name = "streams"
seed = 9
duration_s = 2.0
[[products]]
id = "a"
stock = 60
[[products]]
id = "b"
stock = 40
weight = 0.25
[demand]
baseline_per_s = 80.0
[run]
connections = 32
drain_s = 1.0
"""
STREAMS = """
[[streams]]
name = "page"
method = "GET"
path = "/products/{sku}"
[streams.demand]
baseline_per_s = 300.0
[streams.demand.spike]
at_s = 0.5
peak_per_s = 600.0
half_life_s = 0.3

[[streams]]
name = "clock"
method = "GET"
path = "/time"
[streams.demand]
baseline_per_s = 50.0
"""


def run(tmp_path: Path, text: str, *args: str) -> dict:
    path = tmp_path / "s.toml"
    path.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.stdout, r.stderr
    report: dict = json.loads(r.stdout)
    return report


def expected(text: str) -> dict[str, int]:
    scenario = parse_scenario(tomllib.loads(text), "s.toml")
    return {
        s.name: sum(len(c) for c in rows)
        for s, rows in zip(scenario.streams, stream_schedules(scenario, None, 0, 1), strict=True)
    }


def test_streams_send_their_own_schedule_and_leave_the_orders_alone(tmp_path: Path) -> None:
    plain = run(tmp_path, BASE)
    mixed = run(tmp_path, BASE + STREAMS)
    assert mixed["orders"]["scheduled"] == plain["orders"]["scheduled"]
    assert mixed["orders"]["outcomes"]["confirmed"] == plain["orders"]["outcomes"]["confirmed"]
    assert mixed["audit"]["oversell_units"] == 0
    j = mixed["journey"]
    assert j["implicit"] and [s["name"] for s in j["steps"]] == ["order"]
    want = expected(BASE + STREAMS)
    got = {s["name"]: s for s in j["streams"]}
    assert {k: v["requests"] for k, v in got.items()} == want
    assert want["page"] > 5 * want["clock"] > 0
    for s in got.values():  # the storefront answered every read
        assert s["outcomes"]["confirmed"] == s["requests"]
        assert s["latency_ms"]["count"] == s["requests"]


def test_a_two_worker_run_splits_the_streams_too(tmp_path: Path) -> None:
    mixed = run(tmp_path, BASE + STREAMS, "--workers", "2")
    got = {s["name"]: s["requests"] for s in mixed["journey"]["streams"]}
    assert got == expected(BASE + STREAMS)  # every request once, shared by the workers


def test_rows_merge_in_time_order_tagged_by_source() -> None:
    def chunks(times: list[int], size: int) -> list[np.ndarray]:
        rows = np.zeros(len(times), dtype=ORDER_DTYPE)
        rows["t_ns"] = times
        rows["order"] = np.arange(len(times))
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    a = chunks([0, 5, 5, 9, 20, 21], 2)
    b = chunks([1, 5, 30], 1)
    c = chunks([], 1)
    out = np.concatenate(list(merged_rows([a, b, c])))
    assert out["t_ns"].tolist() == [0, 1, 5, 5, 5, 9, 20, 21, 30]
    pairs = sorted(zip(out["t_ns"].tolist(), out["stream"].tolist(), strict=True))
    assert pairs == [(0, 0), (1, 1), (5, 0), (5, 0), (5, 1), (9, 0), (20, 0), (21, 0), (30, 1)]
    assert out["order"][out["stream"] == 0].tolist() == list(range(6))  # each source in order


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("/products/{sku}", "/products/{goods}"), "streams[0].path: unknown variable {goods}"),
        (("[streams.demand]\nbaseline_per_s = 50.0", ""), "streams[1].demand: is required"),
        (('name = "clock"', 'name = "page"'), "streams[1].name: 'page' is the name of an"),
        (('path = "/time"', 'path = "/time"\nthink_s = 1.0'), "streams[1].think_s: a stream"),
    ],
)
def test_stream_mistakes_are_one_error(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in STREAMS
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("{", r"\{")):
        parse_scenario(tomllib.loads(BASE + STREAMS.replace(old, new, 1)), "s.toml")
