"""Peak RSS of one engine worker for runs of different lengths at a constant rate (issue #14).

A run's memory must not grow with its length: the schedule is generated chunk by chunk as it is
sent, attempts live in a bounded ring of slots folded into histograms as they finish. This
starts nginx pinned to one core (bench/harness.py), and for each duration runs ``flashsale run``
(one worker, pinned to the other core) at a constant rate, nginx's 201 counted as sold out (a
sale's usual answer once the stock is gone: confirmed orders, bounded by the stock, are kept
for the audit), and reads the worker's peak RSS from ``wait4``.

Run: ``.venv/bin/python bench/run_memory.py [--rate 20000] [--durations 60,180,600]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import harness

SCENARIO = """
name = "memory-bench"
seed = 1
duration_s = {duration}

[[products]]
id = "bench"
stock = 1000
per_buyer_limit = 0

[demand]
baseline_per_s = {rate}

[target]
orders_path = "/orders"

[target.status]
201 = "sold_out"

[audit]
source = "none"

[run]
connections = 64
timeout_s = 2.0
drain_s = 1.0
"""


def peak_rss_mb(argv: list[str]) -> tuple[float, int]:
    """Run ``argv``; its peak RSS (MB) and exit code."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        sys.exit(f"flashsale run failed ({proc.returncode}): {err.strip()[-500:]}")
    return usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20_000.0)
    ap.add_argument("--durations", default="60,180", help="seconds, comma-separated")
    args = ap.parse_args()
    if (why := harness.missing("nginx")) is not None:
        sys.exit(why)
    durations = [float(x) for x in args.durations.split(",")]
    print(
        f"host {platform.node()} ({os.cpu_count()} cpus, Linux {platform.release()}, "
        f"Python {platform.python_version()}); rate {args.rate:,.0f}/s, one worker"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with harness.nginx(work) as (_, url):
            peaks = []
            for d in durations:
                scen = work / f"memory-{d:g}.toml"
                scen.write_text(SCENARIO.format(duration=d, rate=args.rate))
                argv = harness.pinned(
                    harness.GENERATOR_CORE,
                    [str(harness.VENV_BIN / "flashsale"), "run", str(scen), "--target", url,
                     "--workers", "1", "--no-reset", "--json"],
                )  # fmt: skip
                mb, _ = peak_rss_mb(argv)
                peaks.append(mb)
                print(f"{d:6.0f} s  {d * args.rate:12,.0f} orders  peak RSS {mb:7.1f} MB")
    spread = max(peaks) / min(peaks) - 1
    print(f"spread {spread:.1%} (max/min − 1); largest {max(peaks):.1f} MB")


if __name__ == "__main__":
    main()
