"""``--flashsale-engine``: the engine's answers reach Locust's statistics, each attempt once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from simulator.locust.engine_mode import EngineSlice
from simulator.outcomes import CONFIRMED, SOLD_OUT, THROTTLED
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule

SCENARIO = """
name = "engine-mode"
seed = 1
duration_s = 2.0
[[products]]
id = "a"
stock = 10
[demand]
baseline_per_s = 20.0
[buyers.retry]
share = 1.0
max_attempts = 2
"""


def test_answers_are_reported_once_each_with_both_names(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    rows = build_schedule(scenario).materialize()
    # never started: no connection is made; the sale "started" long ago, so every row is due
    eng = EngineSlice(scenario, rows, "http://127.0.0.1:9", 1, 0, time.time() - 100)
    rec = eng.recorder
    events: list[dict[str, Any]] = []

    def fire(**kw: Any) -> None:
        events.append(kw)

    rec.sent_ns[:3] = rows["t_ns"][:3] + 1_000
    rec.done_ns[:3] = rows["t_ns"][:3] + 3_000_000
    rec.outcome[:2] = [CONFIRMED, THROTTLED]  # row 2: done written, outcome not yet
    assert eng.report(fire) == 2
    assert [e["name"] for e in events] == ["order (service)", "order (intended)"] * 2
    assert events[1]["response_time"] == 3.0 and events[1]["exception"] is None
    assert str(events[3]["exception"]) == "throttled (0)"
    assert eng.report(fire) == 0  # nothing new

    rec.outcome[2] = SOLD_OUT
    retry = rec.add_retry(1, int(rows["t_ns"][1]) + 50_000_000)
    rec.sent_ns[retry] = rec.intended_ns[retry]
    rec.done_ns[retry] = rec.intended_ns[retry] + 1_000_000
    rec.outcome[retry] = CONFIRMED
    events.clear()
    assert eng.report(fire) == 2  # row 2 and the retry of row 1
    assert eng.report(fire) == 0
    service = sorted(e["response_time"] for e in events if e["name"] == "order (service)")
    assert service == [1.0, pytest.approx(2.999)]
