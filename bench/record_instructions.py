"""Instructions per answer the engine spends recording it (``Run.on_response``), by callgrind.

Instruction counts do not depend on what else the machine is doing, so two trees compare
exactly where timings on a shared 2-vCPU host swing by 2×. The child answers 8,000 attempts
(201, 201, 201, 409, 429, 500 in turn) ``n`` times; this runs it under ``valgrind
--tool=callgrind`` with n = 1 and n = 11 and divides the difference by 80,000: the imports and
set-up cancel out.

    .venv/bin/python bench/record_instructions.py [--tree PATH …]

Each ``--tree`` (a checkout of another commit, e.g. ``git worktree add /tmp/base 83e7681``) is
measured beside this one. Needs valgrind (``apt-get install valgrind``); skipped without it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = 8_000


def child(n: int) -> None:
    """Answer ``ANSWERS`` attempts ``n`` times through ``Run.on_response``."""
    from types import SimpleNamespace

    import numpy as np

    from simulator.load.engine import EngineConfig, Run
    from simulator.load.transport import parse_endpoint
    from simulator.load.transport.lean import LeanTransport
    from simulator.outcomes import DEFAULT_STATUS, status_table
    from simulator.scenario import Target
    from simulator.schedule import ORDER_DTYPE

    rows = np.zeros(2 * ANSWERS, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.arange(len(rows)) * 100_000
    rows["order"] = rows["buyer"] = np.arange(len(rows))
    rows["qty"] = 1
    endpoint = parse_endpoint("http://127.0.0.1:9")
    run = Run(rows, LeanTransport(endpoint, Target(), ("a", "b"), 1, 5.0, 1.0), EngineConfig())
    channel = SimpleNamespace(alive=True)
    table = status_table(DEFAULT_STATUS)
    statuses = [(201, 201, 201, 409, 429, 500)[i % 6] for i in range(ANSWERS)]
    answers = [(a, s, table[s]) for a, s in enumerate(statuses)]
    on_response, free = run.on_response, run._free
    for _ in range(n):
        for attempt, status, outcome in answers:
            on_response(channel, attempt, status, outcome, status)
        free.clear()


def instructions(tree: Path, n: int) -> int:
    """Instructions callgrind counts for the child of ``tree`` answering ``n`` rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree))
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, str(Path(__file__).resolve()), "child", str(n)],
            capture_output=True, text=True, env=env, cwd=tree, timeout=1800,
        )  # fmt: skip
    m = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(m.group(1))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        child(int(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed (apt-get install valgrind)")
        return 0
    for tree in [ROOT, *args.tree]:
        per = (instructions(tree, 11) - instructions(tree, 1)) / (10 * ANSWERS)
        print(f"{tree!s:<30} {per:8,.0f} instructions per answer recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
