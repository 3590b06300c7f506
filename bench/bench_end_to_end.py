"""Whole runs (group ``end_to_end``), and smoke runs of the head-to-head scripts.

``flashsale run`` against the bundled storefront for real: the schedule, the engine on its lean
transport, the storefront child, the audit and the report, timed by wall clock and checked for
an OK audit and counts that add up. Quick mode (``FLASHSALE_BENCH_QUICK=1``) runs 3 s of it.

The script smoke tests (not benchmarks: ``--benchmark-only`` skips them, ``make bench-quick``
runs them) drive ``peers.py``, ``engine_vs_peers.py``, ``storefront_vs_bare.py`` and
``engine_timer.py`` for a second or two per cell, so they never rot; without nginx or wrk they
skip with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import harness
import pytest

SCENARIO = harness.ROOT / "scenarios" / "durian-1111.toml"


@pytest.mark.benchmark(group="end_to_end")
def test_durian_run_against_the_bundled_storefront(benchmark):
    """durian-1111 at scale 0.2 for its first 15 s: countdown, the midnight drop, its decay."""
    duration_s = harness.sized(15, 3)
    argv = [str(harness.VENV_BIN / "flashsale"), "run", str(SCENARIO), "--scale", "0.2",
            "--duration", str(duration_s), "--json"]  # fmt: skip

    def run() -> tuple[dict, float]:
        cpu0 = harness.children_cpu_s()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=harness.ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout), harness.children_cpu_s() - cpu0

    report, cpu_s = benchmark.pedantic(run, rounds=1)
    orders, audit = report["orders"], report["audit"]
    assert report["complete"] and not report["partial"]
    assert audit["ok"] and audit["oversell_units"] == 0 and not audit["problems"]
    assert sum(orders["outcomes"].values()) == orders["scheduled"] > 0
    assert sum(orders["attempt_outcomes"].values()) == orders["attempts"]
    assert orders["attempts"] == orders["scheduled"] + orders["retries"]
    assert orders["outcomes"]["error"] == orders["outcomes"]["timeout"] == 0
    assert orders["outcomes"]["not_sent"] == 0
    assert report["latency_ms"]["intended"]["count"] == orders["attempts"]
    skus = audit["skus"].values()
    client_units = sum(s["client_units"] for s in skus)  # per order id: double clicks once
    assert client_units == sum(s["sold"] for s in skus) == sum(s["ledger_units"] for s in skus)
    assert 0 < client_units <= orders["confirmed_units"]
    benchmark.extra_info.update(
        orders=orders["scheduled"],
        cpu_us_per_order=round(cpu_s / orders["attempts"] * 1e6, 1),
        intended_p99_ms=report["latency_ms"]["intended"]["p99"],
    )


def _script(name: str, *args: str, timeout_s: float = 90) -> str:
    out = subprocess.run(
        [sys.executable, str(harness.ROOT / "bench" / name), *args],
        capture_output=True, text=True, timeout=timeout_s, cwd=harness.ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


needs_peers = pytest.mark.skipif(
    harness.missing("nginx", "wrk") is not None, reason=str(harness.missing("nginx", "wrk"))
)


@needs_peers
def test_peers_script_quick():
    out = _script("peers.py", "--quick", "--no-install")
    assert "req/s" in out and "stall" in out and "truth" in out
    assert "engine, windows, rate search" in out  # both engines searched
    if harness.k6_missing(install=False) is None:
        assert "k6 (open, sustained)" in out and "k6 constant-arrival-rate" in out


@needs_peers
def test_engine_vs_peers_script_quick():
    out = _script("engine_vs_peers.py", "--seconds", "1", "--start-rate", "20000",
                  "--max-rate", "30000", "--no-locust")  # fmt: skip
    assert "engine max sustained open-loop rate" in out


@needs_peers
def test_closed_loop_floor_script_quick():
    out = _script("closed_loop_floor.py", "--seconds", "1", "--reps", "1")
    assert "medians of 1" in out and "uvloop + httptools" in out and "µs CPU per request" in out


@pytest.mark.skipif(harness.missing("wrk") is not None, reason=str(harness.missing("wrk")))
def test_storefront_vs_bare_script_quick():
    out = _script("storefront_vs_bare.py", "--seconds", "1", "--reps", "1", "--skip-stores")
    assert "ratio memory/bare" in out


@pytest.mark.skipif(harness.missing("nginx") is not None, reason=str(harness.missing("nginx")))
def test_engine_timer_script_quick():
    out = _script("engine_timer.py", "--rates", "2000", "--seconds", "1", "--reps", "1")
    assert "less than spinning" in out and "coalescing" in out
    assert "IPIs/order target" in out and "kernel)" in out  # interrupts, the kernel's part
    assert "window" in out  # the windowed cell (answers_send=False)


@pytest.mark.skipif(harness.missing("nginx") is not None, reason=str(harness.missing("nginx")))
def test_engine_timer_search_quick():
    out = _script("engine_timer.py", "--search", "2000", "--max-rate", "2500", "--cells",
                  "adaptive,window", "--seconds", "1", "--reps", "1", "--rounds", "1")  # fmt: skip
    assert "each step runs 1 times" in out  # the rule, printed with the figures
    assert "round 1, adaptive:" in out and "round 1, window:" in out
    # from 2,000/s up one step (×1.15) to the cap, or down where a 1 s step failed on a busy host
    assert re.search(r"2,000/s: (pass|FAIL) \[[+-]\]", out), out
    summary = out.split("max sustained rate per cell")[1].splitlines()
    for cell in ("adaptive", "window"):
        (line,) = [s for s in summary if s.startswith(cell)]
        assert "/s (searches: " in line or "no search passed a step" in line, line
