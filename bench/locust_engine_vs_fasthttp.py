"""Generator CPU per order: the Locust adapter's FastHttpUser senders vs flashsale's own engine.

Both drive the same open-loop schedule (a constant RATE orders/s for SECONDS s) at the bundled
storefront on loopback; the storefront is pinned to core 0 and the generator to core 1
(BENCH-NOTES.md). The figure that carries over to other machines is the generator's CPU time per
request (user + system, from /proc/PID/stat over the whole run), and its inverse, requests a
second per core. Cells run round-robin, REPS times; medians are printed.

    .venv/bin/python bench/locust_engine_vs_fasthttp.py [--rate 3000] [--seconds 8] [--reps 2]

The engine cell runs ``simulator.engine.Run`` with the lean transport (helper B's engine) on
uvloop in a child process; the Locust cell runs ``locust -f simulator/locust/locustfile.py
--headless`` stand-alone (one process, one core).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """
name = "bench-constant"
seed = 3
duration_s = {seconds}
[[products]]
id = "durian"
stock = 100000000
[demand]
baseline_per_s = {rate}
[run]
drain_s = 2.0
connections = 64
"""


def cpu_s(pid: int) -> float:
    """utime + stime of a process (and its reaped children) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def pinned(core: int, cmd: list[str]) -> list[str]:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + cmd


def start_storefront(scenario: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "simulator", "serve", "--scenario", str(scenario), "--port", "0"]
    proc = subprocess.Popen(pinned(0, cmd), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split("listening on ", 1)[1].split()[0]


def measure(cmd: list[str], seconds: float) -> tuple[float, float, str]:
    """Run ``cmd`` pinned to core 1 to its end; (CPU s and wall s of its steady part, output).

    The steady part is the middle of the sale, [end − seconds + 1.5, end − 2] where end is the
    process's exit: it leaves out start-up (imports, schedule) and the drain and report.
    """
    proc = subprocess.Popen(
        pinned(1, cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    samples: list[tuple[float, float]] = []
    out: list[str] = []

    def sampler() -> None:
        while proc.poll() is None:
            with contextlib.suppress(OSError, IndexError):
                samples.append((time.monotonic(), cpu_s(proc.pid)))
            time.sleep(0.05)

    import threading

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    assert proc.stdout is not None
    out.append(proc.stdout.read())
    proc.wait()
    t.join()
    end = samples[-1][0]
    lo, hi = end - seconds + 1.5, end - 2.0
    inside = [(w, c) for w, c in samples if lo <= w <= hi]
    (w0, c0), (w1, c1) = inside[0], inside[-1]
    return c1 - c0, w1 - w0, "".join(out)


def locust_cell(scenario: Path, host: str, report: Path, seconds: float) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "simulator/locust/locustfile.py")]
    cmd += ["--flashsale-scenario", str(scenario), "--headless", "--host", host]
    cmd += ["--flashsale-report", str(report), "--loglevel", "WARNING", "--only-summary"]
    cmd += ["--flashsale-busy", "0.01", "--flashsale-max-users", "200"]
    cpu, wall, _ = measure(cmd, seconds)
    orders = json.loads(report.read_text())["orders"]
    assert orders["not_sent"] == 0, orders
    return cpu, wall


def engine_cell(scenario: Path, host: str, seconds: float) -> tuple[float, float]:
    cmd = [sys.executable, __file__, "--engine-child", str(scenario), host]
    cpu, wall, out = measure(cmd, seconds)
    sent, scheduled = (int(x) for x in out.strip().splitlines()[-1].split())
    assert sent == scheduled, out
    return cpu, wall


def engine_child(scenario_path: str, host: str) -> None:
    """Run the schedule with flashsale's engine (lean transport, uvloop); print the requests."""
    import uvloop

    from simulator.engine import EngineConfig, Run
    from simulator.scenario import load_scenario
    from simulator.schedule import build_schedule
    from simulator.transport import parse_endpoint
    from simulator.transport.lean import LeanTransport

    scenario = load_scenario(scenario_path)
    rows = build_schedule(scenario).materialize()
    transport = LeanTransport(
        parse_endpoint(host),
        scenario.target,
        tuple(p.id for p in scenario.products),
        scenario.run.connections,
        scenario.run.timeout_s,
        scenario.run.connect_timeout_s,
    )
    # spin_s=0: no busy-wait before each due time (it would bill idle time as CPU per request)
    config = EngineConfig(drain_s=scenario.run.drain_s, status=scenario.target.status, spin_s=0)
    result = uvloop.run(Run(rows, transport, config).execute())
    print(int((result.recorder.sent_ns >= 0).sum()), len(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=3000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--engine-child", nargs=2, metavar=("SCENARIO", "HOST"))
    a = p.parse_args()
    if a.engine_child:
        engine_child(*a.engine_child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "bench.toml"
        scenario.write_text(SCENARIO.format(seconds=a.seconds, rate=a.rate))
        store, host = start_storefront(scenario)
        cells: dict[str, list[tuple[float, float]]] = {"locust FastHttpUser": [], "engine": []}
        try:
            time.sleep(0.5)
            for rep in range(a.reps):
                report = Path(tmp) / f"r{rep}.json"
                cells["locust FastHttpUser"].append(locust_cell(scenario, host, report, a.seconds))
                cells["engine"].append(engine_cell(scenario, host, a.seconds))
        finally:
            store.terminate()
            store.wait()
    print(f"open loop, {a.rate:g} orders/s for {a.seconds:g} s, {a.reps} reps (median)")
    print(f"{'generator':<22} {'CPU share':>9} {'µs/request':>11} {'req/s/core':>11}")
    per_req = {}
    for name, runs in cells.items():
        # open loop at a fixed rate: requests in the steady window = rate × its length
        us = statistics.median(cpu / (a.rate * wall) * 1e6 for cpu, wall in runs)
        share = statistics.median(cpu / wall for cpu, wall in runs)
        per_req[name] = us
        print(f"{name:<22} {share:>9.0%} {us:>11.1f} {1e6 / us:>11,.0f}")
    gain = per_req["locust FastHttpUser"] / per_req["engine"]
    print(f"engine gain: {gain:.1f}x requests per core")


if __name__ == "__main__":
    main()
