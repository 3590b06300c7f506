"""The CPU a journey costs per request, against nginx, in one run (issue 12's goals).

Three cells, each the engine in a child pinned to the generator core, nginx pinned to the other,
at the same *request* rate, measured by the child's own process CPU:

- ``order``: a scenario without a journey: one order request per row (the hot path);
- ``journey-1``: the same order as a one-step journey (the journey machinery, nothing else);
- ``journey-4``: login (extract a token from JSON) → order (Bearer header) → poll (GET, until
  a state) → pay, at a quarter of the rows so the requests per second are the same.

Printed: CPU µs per request of each, and the ratios journey-1 / order and journey-4 / order
(the issue's goals: a scenario without a journey costs what it did, a 4-step journey at most
1.5× the CPU per request of a single order). With ``--baseline-tree PATH`` (a checkout of an
earlier commit, e.g. ``git worktree add /tmp/base <sha>``) the ``order`` cell also runs from
that tree in the same run: today's hot path against the earlier one. Every cell is repeated
(``--reps``) and the median kept; the host's load is printed with the figures.

    .venv/bin/python bench/journey_cpu.py --rate 8000 --seconds 5 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

JOURNEY_4 = """
[journey]
order_step = "order"
[[journey.steps]]
name = "login"
path = "/j/login"
body = '{"user_id":"{user_id}"}'
extract = { token = { json = "token" } }
[[journey.steps]]
name = "order"
path = "/orders"
headers = { Authorization = "Bearer {token}" }
[[journey.steps]]
name = "poll"
method = "GET"
path = "/j/poll/{token}"
poll = { json = "state", until = ["DONE"], every_s = 0.1, max = 3 }
[[journey.steps]]
name = "pay"
path = "/j/pay/{token}"
"""
JOURNEY_1 = """
[journey]
order_step = "order"
[[journey.steps]]
name = "order"
path = "/orders"
"""
SCENARIO = """
name = "journey-cpu"
seed = 1
duration_s = {seconds}
[[products]]
id = "bench"
stock = 1000000000
[demand]
baseline_per_s = {rate}
{journey}
"""


def child(mode: str, url: str, rate: float, seconds: float, connections: int) -> None:
    """Drive ``url`` with one cell's scenario; print CPU and requests as one JSON line."""
    import tomllib

    import numpy as np
    import uvloop

    from simulator.load.engine import EngineConfig
    from simulator.load.journey import make_run
    from simulator.load.transport import parse_endpoint
    from simulator.load.transport.lean import LeanTransport
    from simulator.scenario.reader import parse_scenario
    from simulator.schedule import ORDER_DTYPE

    rows_per_s = rate / 4 if mode == "journey-4" else rate
    journey = {"order": "", "journey-1": JOURNEY_1, "journey-4": JOURNEY_4}[mode]
    text = SCENARIO.format(seconds=seconds, rate=rows_per_s, journey=journey)
    scenario = parse_scenario(tomllib.loads(text), "journey-cpu.toml")
    n = int(rows_per_s * seconds)
    rows = np.zeros(n, dtype=ORDER_DTYPE)
    rows["t_ns"] = (np.arange(n) * (1e9 / rows_per_s)).astype(np.int64)
    rows["order"] = rows["buyer"] = np.arange(n)
    rows["qty"] = 1
    endpoint = parse_endpoint(url)
    transport = LeanTransport(endpoint, scenario.target, scenario.products, connections, 5.0, 2.0)
    cfg = EngineConfig(timeout_s=5.0, drain_s=2.0)
    run = make_run(rows, transport, cfg, None, scenario, endpoint)
    cpu0 = time.process_time()
    result = uvloop.run(run.execute())
    cpu_s = time.process_time() - cpu0
    t = result.tally
    requests = t.sent
    if t.journey is not None:
        requests = sum(s.sent for s in t.journey.steps)
    print(json.dumps({"mode": mode, "rows": n, "requests": requests, "cpu_s": cpu_s,
                      "cpu_us_per_request": cpu_s / max(requests, 1) * 1e6}))  # fmt: skip


def cell(mode: str, url: str, args: argparse.Namespace, tree: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    script = str(Path(__file__).resolve())
    if tree is not None:  # the earlier tree's engine, through its own bench harness child
        harness_py = str(tree / "bench" / "harness.py")
        argv = [sys.executable, harness_py, "engine-step", url, str(args.rate),
                str(args.seconds), str(args.connections), harness.SKU, "{}"]  # fmt: skip
    else:
        argv = [sys.executable, script, "child", mode, url, str(args.rate), str(args.seconds),
                str(args.connections)]  # fmt: skip
    out = subprocess.run(
        harness.pinned(harness.GENERATOR_CORE, argv),
        capture_output=True,
        text=True,
        timeout=args.seconds + 120,
        env=env,
        cwd=tree or harness.ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if tree is not None:
        figures = {
            "mode": "order@baseline",
            "requests": figures["orders"],
            "cpu_s": figures["cpu_s"],
            "cpu_us_per_request": figures["cpu_us_per_order"],
        }
    return figures


def cpu_model() -> str:
    """The host's CPU model name (figures are dated with their host)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=harness.sized(8000, 1000), help="requests/s")
    p.add_argument("--seconds", type=float, default=harness.sized(5.0, 1.0))
    p.add_argument("--reps", type=int, default=harness.sized(3, 1))
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--baseline-tree", type=Path, help="also run the order cell from this tree")
    args = p.parse_args()
    if harness.missing("nginx"):
        harness.install_peers()
    if harness.missing("nginx"):
        print(f"skipped: {harness.missing('nginx')}")
        return 0
    modes = ["order", "journey-1", "journey-4"]
    if args.baseline_tree is not None:
        modes.append("order@baseline")
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    before = harness.host_sample()
    with tempfile.TemporaryDirectory() as tmp, harness.nginx(Path(tmp)) as (_proc, url):
        for _ in range(args.reps):
            for mode in modes:
                tree = args.baseline_tree if mode == "order@baseline" else None
                f = cell(mode.split("@")[0], url, args, tree)
                cpu[mode].append(f["cpu_us_per_request"])
                print(f"  {mode:<15} {f['requests']:>8,} requests  "
                      f"{f['cpu_us_per_request']:6.1f} µs CPU/request")  # fmt: skip
    host = harness.host_since(before)
    med = {m: statistics.median(v) for m, v in cpu.items()}
    when = time.strftime("%Y-%m-%d")
    load = f"load {host['load1']:.2f}, steal {host['steal_share']:.1%}"
    print(f"\njourney CPU per request, median of {args.reps} ({when}, {cpu_model()}, {load}):")
    for m in modes:
        print(f"  {m:<15} {med[m]:6.1f} µs")
    print(f"  journey-1 / order = {med['journey-1'] / med['order']:.2f}×")
    print(f"  journey-4 / order = {med['journey-4'] / med['order']:.2f}×  (goal ≤ 1.5×)")
    if "order@baseline" in med:
        print(f"  order / order@baseline = {med['order'] / med['order@baseline']:.2f}×  "
              "(goal ≤ 1.05×)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
