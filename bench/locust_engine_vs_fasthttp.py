"""Generator CPU per order in Locust: FastHttpUser senders vs ``--flashsale-engine``.

    .venv/bin/python bench/locust_engine_vs_fasthttp.py [--rate 3000] [--seconds 10] [--reps 2]
    .venv/bin/python bench/locust_engine_vs_fasthttp.py --journey --rate 500   # 4-step journeys

Every cell drives the same open-loop schedule (a constant RATE orders/s for SECONDS s) at nginx
(one process, ``return 201``; ``bench/harness.py``) pinned to core 0; the generator is pinned to
core 1, all on 127.0.0.1. Cells, round-robin, REPS times, medians printed:

* ``locust FastHttpUser``: ``locust -f simulator/locust/locustfile.py --headless`` stand-alone
  (one process: the adapter's users send);
* ``locust --flashsale-engine``: the same Locust process, but the slice is driven by
  ``simulator.load.engine.Run`` (lean transport, uvloop, timers ≥ 1 ms ahead: ``spin_s = −0.001``)
  in a thread of it, every answer reported into Locust's statistics (two request events an
  order);
* ``engine alone``: ``simulator.load.engine.Run``, same settings, in a bare process (no Locust).

The figure that carries over to other machines is the generator's CPU time per request (user +
system of the whole process, threads included, from /proc/PID/stat over the steady middle of the
run), and its inverse, requests a second per core. Each Locust cell checks from its report that
every order was sent. ``--journey``: every row is the 4-step journey of ``bench/journey_cpu.py``
(login → order → poll → pay, against nginx's ``/j/`` answers: 4 requests a row), RATE rows/s,
the two Locust cells only (the journey's steps run in Locust's users, or in the engine). Kills
only the processes it started; without nginx or taskset it says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness
from journey_cpu import JOURNEY_4

ROOT = harness.ROOT
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
CELLS = ("locust FastHttpUser", "locust --flashsale-engine", "engine alone")


def measure(cmd: list[str], seconds: float) -> tuple[float, float, str]:
    """Run ``cmd`` pinned to the generator core to its end: (CPU s, wall s, output).

    CPU and wall time cover the steady part of the sale, [end − seconds + 1.5, end − 2.5] where
    end is the process's exit: start-up (imports, schedule), the drain and the report are out.
    """
    proc = subprocess.Popen(
        harness.pinned(harness.GENERATOR_CORE, cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    samples: list[tuple[float, float]] = []

    def sampler() -> None:
        while proc.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                samples.append((time.monotonic(), harness.cpu_seconds(proc.pid)))
            time.sleep(0.05)

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    t.join()
    end = samples[-1][0]
    lo, hi = end - seconds + 1.5, end - 2.5
    inside = [(w, c) for w, c in samples if lo <= w <= hi]
    (w0, c0), (w1, c1) = inside[0], inside[-1]
    return c1 - c0, w1 - w0, out


def locust_cell(
    scenario: Path, host: str, out_dir: Path, seconds: float, engine: bool
) -> tuple[float, float, float | None]:
    """One Locust run: (CPU s, wall s, dispatch-lag p99 ms) of its steady part."""
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "simulator/locust/locustfile.py")]
    cmd += ["--flashsale-scenario", str(scenario), "--headless", "--host", host]
    cmd += ["--flashsale-out", str(out_dir), "--loglevel", "WARNING", "--only-summary"]
    cmd += ["--flashsale-busy", "0.01", "--flashsale-max-users", "200", "--flashsale-no-reset"]
    if engine:
        cmd.append("--flashsale-engine")
    cpu, wall, out = measure(cmd, seconds)
    report = json.loads((out_dir / "report.json").read_text())
    not_sent = report["orders"]["outcomes"]["not_sent"]
    assert not_sent == 0, f"{not_sent} orders not sent:\n{out}"
    return cpu, wall, report["dispatch_lag_ms"]["p99"]


def engine_cell(scenario: Path, host: str, seconds: float) -> tuple[float, float, float | None]:
    cmd = [sys.executable, __file__, "--engine-child", str(scenario), host]
    cpu, wall, out = measure(cmd, seconds)
    sent, scheduled, lag = out.strip().splitlines()[-1].split()
    assert sent == scheduled, out
    return cpu, wall, float(lag)


def engine_child(scenario_path: str, host: str) -> None:
    """The schedule with the bare engine (lean transport, uvloop): sent, rows, dispatch-lag p99."""
    import uvloop

    from simulator.load.engine import EngineConfig, Run
    from simulator.load.transport import parse_endpoint
    from simulator.load.transport.lean import LeanTransport
    from simulator.locust.engine_mode import SPIN_S
    from simulator.scenario import load_scenario
    from simulator.schedule import build_schedule

    sc = load_scenario(scenario_path)
    rows = build_schedule(sc).materialize()
    skus = tuple(p.id for p in sc.products)
    endpoint = parse_endpoint(host)
    conns, timeout_s = sc.run.connections, sc.run.timeout_s
    transport = LeanTransport(endpoint, sc.target, skus, conns, timeout_s, sc.run.connect_timeout_s)
    # the spin of --flashsale-engine (simulator/locust/engine_mode.py explains; override it with
    # FLASHSALE_BENCH_SPIN_S to see the engine's default, 0.00005 on a timerfd, at this rate)
    spin_s = float(os.environ.get("FLASHSALE_BENCH_SPIN_S", SPIN_S))
    config = EngineConfig(drain_s=sc.run.drain_s, spin_s=spin_s)
    tally = uvloop.run(Run(rows, transport, config).execute()).tally
    lag_ms = float(tally.combined("dispatch_lag").percentiles((99.0,))[0] / 1e6)
    print(tally.sent, len(rows), round(lag_ms, 3))


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rate", type=float, default=3000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of the cells")
    p.add_argument("--journey", action="store_true", help="a 4-step journey per row")
    p.add_argument("--engine-child", nargs=2, metavar=("SCENARIO", "HOST"))
    a = p.parse_args()
    per_row = 4 if a.journey else 1  # requests a row makes (the journey's poll settles at once)
    if a.engine_child:
        engine_child(*a.engine_child)
        return
    reason = harness.missing("nginx", "taskset")
    if reason:
        print(f"skipped: {reason}")
        return
    chosen = [c for c in CELLS if c in a.cells.split(",")]
    if a.journey:
        chosen = [c for c in chosen if c != "engine alone"]
    cells: dict[str, list[tuple[float, float, float | None]]] = {c: [] for c in chosen}
    with tempfile.TemporaryDirectory(prefix="flashsale-bench-locust-") as tmp:
        workdir = Path(tmp)
        scenario = workdir / "bench.toml"
        text = SCENARIO.format(seconds=a.seconds, rate=a.rate)
        scenario.write_text(text + (JOURNEY_4 if a.journey else ""))
        with harness.nginx(workdir) as (_proc, host):
            for rep in range(a.reps):
                for name in chosen:
                    if name == "engine alone":
                        cells[name].append(engine_cell(scenario, host, a.seconds))
                    else:
                        out = workdir / f"{rep}-{len(cells[name])}-{name[-6:]}"
                        engine = name.endswith("engine")
                        cells[name].append(locust_cell(scenario, host, out, a.seconds, engine))
    what = "4-step journeys" if a.journey else "orders"
    print(f"open loop at nginx, {a.rate:g} {what}/s for {a.seconds:g} s, {a.reps} reps (median);")
    print("generator pinned to core 1, nginx to core 0")
    head = f"{'generator':<26} {'CPU share':>9} {'µs/request':>11} {'req/s/core':>11}"
    print(head + f" {'lag p99 ms':>11}")
    per_req = {}
    for name, runs in cells.items():
        # open loop at a fixed rate: requests in the steady window = rate × its length
        us = statistics.median(cpu / (a.rate * per_row * wall) * 1e6 for cpu, wall, _ in runs)
        share = statistics.median(cpu / wall for cpu, wall, _ in runs)
        lags = [lag for _, _, lag in runs if lag is not None]
        lag = f"{statistics.median(lags):.2f}" if lags else "-"
        per_req[name] = us
        print(f"{name:<26} {share:>9.0%} {us:>11.1f} {1e6 / us:>11,.0f} {lag:>11}")
    base = per_req.get("locust FastHttpUser")
    if base is not None:
        for name in ("locust --flashsale-engine", "engine alone"):
            if name in per_req:
                print(f"{name} vs FastHttpUser: {base / per_req[name]:.1f}x requests per core")


if __name__ == "__main__":
    main()
