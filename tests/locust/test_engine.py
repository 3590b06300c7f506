"""``--flashsale-engine``: the engine's folded batches reach Locust's statistics (each answered
attempt once, under both names) and the live counts; the engine reads its slice block by block."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.locust.engine_mode import EngineSlice
from simulator.locust.plan import RunPlan, SliceDigest, digesting, slice_chunks
from simulator.outcomes import CONFIRMED, NOT_SENT, THROTTLED, TIMEOUT
from simulator.scenario import load_scenario

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


def _batch(**fields: list[int]) -> dict[str, np.ndarray]:
    n = len(fields["outcome"])
    base: dict[str, Any] = {
        "intended_ns": [0] * n, "sent_ns": [-1] * n, "done_ns": [-1] * n, "reason": [0] * n,
        "try": [1] * n, "final": [True] * n, "flags": [0] * n, "order": list(range(n)),
        "sku": [0] * n, "qty": [1] * n,
    }  # fmt: skip
    base.update(fields)
    return {k: np.array(v) for k, v in base.items()}


def test_folded_batches_are_reported_once_each_with_both_names(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    plan = RunPlan(1, 1, 1.0, None, "x")
    digest = SliceDigest()
    rows = digesting(slice_chunks(scenario, plan, 0), digest)
    # never started: no connection is made; of the schedule only its first second is taken
    eng = EngineSlice(scenario, rows, "http://127.0.0.1:9", 1, 0, 1, time.time())
    first = next(slice_chunks(scenario, plan, 0))
    assert digest.rows == len(first) and first["t_ns"].max() < 1_000_000_000
    events: list[dict[str, Any]] = []
    eng.fire = lambda **kw: events.append(kw)

    eng._on_batch(
        _batch(
            intended_ns=[0, 1_000_000, 2_000_000, 3_000_000],
            sent_ns=[1_000, 1_001_000, -1, -1],
            done_ns=[3_000_000, 4_000_000, 7_000_000, -1],
            outcome=[CONFIRMED, THROTTLED, TIMEOUT, NOT_SENT],  # a queue timeout; never sent
            reason=[201, 429, 6, 0],
            final=[True, False, True, True],
        )
    )
    assert eng.drain() == 3 and eng.drain() == 0  # each answered attempt once
    names = [e["name"] for e in events]
    assert names == ["order (service)", "order (intended)"] * 2 + ["order (intended)"]
    assert events[1]["response_time"] == 3.0 and events[1]["exception"] is None
    assert events[0]["response_time"] == pytest.approx(2.999)
    assert str(events[3]["exception"]) == "throttled (status 429)"
    assert str(events[4]["exception"]) == "timeout (timeout waiting for a connection)"
    counters = eng.counts.counters(["a"], eng.done)
    assert counters["sends"] == 2 and counters["outcomes"]["confirmed"] == 1
    assert counters["outcomes"]["timeout"] == 1 and counters["outcomes"]["not_sent"] == 1
    assert counters["confirmed_units"] == {"a": 1}
