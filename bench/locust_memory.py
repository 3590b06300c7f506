"""Peak RSS of a Locust worker (and its master) for runs of different lengths at a constant rate.

A Locust worker takes its slice of the schedule block by block, keeps its attempts in the
engine's recycled slots and folds them into a tally (issue #14), so its memory must not grow
with the run's length; what it sends the master is that tally. This starts the bundled
storefront (one SKU of 1,000 units, reset by the master at each start: the sale sells out, then
answers sold out, as a drop does)
pinned to one core, and for each mode and duration a headless Locust master and one worker
(pinned to the other core) at a constant open-loop rate; it reads each process's peak RSS from
``wait4`` and checks that the report adds up.

Run: ``.venv/bin/python bench/locust_memory.py [--rate 1000] [--durations 20,60]
[--modes users,engine]``. ``--source DIR`` runs another checkout's ``simulator`` package (e.g.
an export of main, to compare with the code before #14) with this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

SCENARIO = """
name = "locust-memory-bench"
seed = 1
duration_s = {duration}

[[products]]
id = "bench"
stock = 1000

[demand]
baseline_per_s = {rate}

[audit]
source = "none"

[run]
connections = 32
timeout_s = 2.0
drain_s = 1.0
"""


def _peak_mb(proc: subprocess.Popen[bytes]) -> float:
    """Wait for ``proc``; its peak RSS in MB."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def run_once(
    scenario: Path, url: str, mode: str, out: Path, env: dict[str, str], locustfile: Path
) -> tuple[float, float, dict[str, Any]]:
    """One master + one worker run; (worker MB, master MB, report)."""
    port = harness.free_port()
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING",
            "--flashsale-scenario", str(scenario)]  # fmt: skip
    master_argv = [
        *base, "--master", "--master-bind-port", str(port), "--expect-workers", "1",
        "--headless", "--run-time", "3600", "--host", url, "--flashsale-out", str(out),
        *(["--flashsale-engine"] if mode == "engine" else []),
    ]  # fmt: skip
    worker_argv = harness.pinned(
        harness.GENERATOR_CORE, [*base, "--worker", "--master-port", str(port)]
    )
    log = out.parent / f"{out.name}.log"
    with log.open("w") as f:
        # not in a checkout: ``python -m`` puts the working directory first on sys.path
        kw: dict[str, Any] = {
            "stdout": f,
            "stderr": subprocess.STDOUT,
            "env": env,
            "cwd": out.parent,
        }
        master = subprocess.Popen(master_argv, **kw)
        worker = subprocess.Popen(worker_argv, **kw)
        worker_mb = _peak_mb(worker)
        master_mb = _peak_mb(master)
    path = out / "report.json"
    report = json.loads(path.read_text()) if path.exists() else None
    if master.returncode not in (0, 1) or report is None:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        sys.exit(f"the run failed (master exit {master.returncode}):\n{tail}")
    return worker_mb, master_mb, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--durations", default="20,60", help="seconds, comma-separated")
    ap.add_argument("--modes", default="users,engine", help="users and/or engine")
    ap.add_argument("--source", type=Path, default=None, help="a checkout whose simulator to run")
    args = ap.parse_args()
    if (why := harness.locust_missing()) is not None:
        sys.exit(why)
    env = dict(os.environ)
    locustfile = harness.ROOT / "simulator" / "locust" / "locustfile.py"
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        locustfile = args.source.resolve() / "simulator" / "locust" / "locustfile.py"
    durations = [float(x) for x in args.durations.split(",")]
    print(
        f"host {platform.node()} ({os.cpu_count()} cpus, Linux {platform.release()}, "
        f"Python {platform.python_version()}); rate {args.rate:,.0f}/s, one worker; "
        f"code: {args.source or harness.ROOT}"
    )
    print(f"{'mode':7} {'run':>6} {'orders':>9} {'worker MB':>10} {'master MB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, url = harness.start_server(harness.storefront_argv(stock=1000))
        try:
            for mode in args.modes.split(","):
                peaks = []
                for d in durations:
                    scen = work / f"memory-{d:g}.toml"
                    scen.write_text(SCENARIO.format(duration=d, rate=args.rate))
                    out = work / f"{mode}-{d:g}"
                    w_mb, m_mb, report = run_once(scen, url, mode, out, env, locustfile)
                    o = report["orders"]
                    peaks.append(w_mb)
                    print(
                        f"{mode:7} {d:5.0f}s {o['scheduled']:9,} {w_mb:10.1f} {m_mb:10.1f}"
                        f"   not sent {o['outcomes']['not_sent']:,}, exit {report['exit_code']}"
                    )
                print(f"{mode:7} worker spread {max(peaks) / min(peaks) - 1:.1%} (max/min − 1)")
        finally:
            harness.stop(proc)


if __name__ == "__main__":
    main()
