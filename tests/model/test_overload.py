"""An overloaded model answers in bounded time and memory and says so; its size is checked
before anything is allocated."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.model import Model, ModelConfig, build_report
from simulator.model.overload import MAX_STATE_BYTES, state_bytes

from .test_sim import reference, small_scenario

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1 << 30  # address space: the old model needed ~1.2 GB of memory for this run


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_an_overloaded_sale_is_answered_in_bounded_memory(tmp_path: Path) -> None:
    """singles-day-peak's first 30 s on its defaults (1 shard, no queue limit): ~4.6 M orders
    against ~18,000/s of capacity. The backlog used to be kept order by order (quadratic time,
    memory growing with it); now it is one number per server."""
    out = tmp_path / "model.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "simulate",
            "scenarios/singles-day-peak.toml",
            "--duration",
            "30",
            "--no-progress",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 0, proc.stderr
    over = json.loads(out.read_text())["overload"]
    assert over["overloaded"]
    assert over["demand_per_s"] > 5 * over["capacity_per_s"]
    assert over["backlog_max_s"] > 60  # far beyond the 5 s timeout
    assert over["decided_early"] > 1_000_000  # the backlog was not kept request by request
    line = next(x for x in proc.stdout.splitlines() if x.startswith("overloaded:"))
    assert f"demand {over['demand_per_s']:,.0f}/s vs capacity" in line
    assert "latency" in proc.stdout and "stock" in proc.stdout  # and it still reports


@pytest.mark.parametrize("limit_b", [0, 2])
def test_deciding_a_long_backlog_early_keeps_one_server_shards_exact(limit_b: int) -> None:
    """Overloaded 15×, with a tiny backlog allowance: queued requests are decided long before
    they complete, and outcomes, replays and stock still equal the per-request reference."""
    scenario = small_scenario(limit_b)
    cfg = ModelConfig(shards=2, service_median_ms=20.0, timeout_s=0.5, seed=7)
    result = Model(scenario, cfg).run(chunk_orders=500, backlog_rows=64)
    report = build_report(result)
    assert result.overload.overloaded and result.overload.decided_early > 1000
    assert "overloaded: demand" in result.overload.message()
    ref = reference(scenario, cfg)
    assert report["orders"]["outcomes"] == ref["outcomes"]
    assert report["orders"]["replays"] == ref["replays"]
    assert result.stock.left.tolist() == [ref["left"][g] for g in range(len(result.stock.left))]


def test_a_run_that_keeps_up_is_not_overloaded() -> None:
    cfg = ModelConfig(shards=4, service_median_ms=0.2, seed=7)
    over = Model(small_scenario(), cfg).run().overload
    assert not over.overloaded and over.message() == "" and over.decided_early == 0
    assert over.capacity_per_s > over.demand_per_s > 0


@pytest.mark.parametrize(
    ("shards", "servers", "hot_row", "queue_limit"),
    [
        (100_000_000, 1, False, 0),
        (1, 200_000_000, False, 0),
        (5_000_000, 1, True, 0),
        (1000, 1, False, 200_000),
    ],
)
def test_a_model_too_big_for_memory_is_refused_before_it_starts(
    shards: int, servers: int, hot_row: bool, queue_limit: int
) -> None:
    cfg = ModelConfig(shards=shards, servers=servers, hot_row=hot_row, queue_limit=queue_limit)
    assert (
        state_bytes(2, shards, servers, hot_row, -(-cfg.queue_limit // servers)) > MAX_STATE_BYTES
    )
    with pytest.raises(ValueError, match=r"would need [\d,.]+ GB of model state"):
        Model(small_scenario(), cfg)
