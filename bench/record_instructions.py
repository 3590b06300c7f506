"""Instructions the engine spends per order, by callgrind: recording an answer
(``Run.on_response``), and an order's whole Python path (dispatch, the answer's parse, record).

Instruction counts do not depend on what else the machine is doing, so two trees compare
exactly where timings on a shared 2-vCPU host swing by 2×. The ``record`` child answers 8,000
attempts (201, 201, 201, 409, 429, 500 in turn) ``n`` times. The ``path`` child sends 8,000
orders ``n`` times, 25 µs apart on a clock it sets, through ``Run._tick`` to a lean connection
whose socket write is a no-op, and feeds each one's answer (HTTP/1.1 201, 15 body bytes) to its
connection as uvloop would (``data_received``) half-way to the next order (two connections:
the next order is in flight when an answer comes): the engine's own Python per order, without the
kernel and the event loop's C. The ``behind`` child is the saturated case: each answer comes a
quarter of a gap after the next order's time, so the answer sends it (coalescing) and no tick
runs. Each child runs under ``valgrind --tool=callgrind`` (PYTHONHASHSEED=0) with n = 1 and
n = 11 and the difference is divided by 80,000: imports and set-up cancel out.

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
from typing import Any

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


ANSWER = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    b'{"status":"ok"}'
)


def child_path(n: int, behind: bool = False) -> None:
    """Send ``ANSWERS`` orders ``n`` times through the dispatcher and answer each (see module);
    ``behind``: each answer comes after the next order's time (the saturated case)."""
    import functools
    import operator
    import types

    import numpy as np
    import uvloop

    import simulator.load.engine as engine
    from simulator.load.engine import EngineConfig, Run
    from simulator.load.transport import parse_endpoint
    from simulator.load.transport.lean import LeanTransport
    from simulator.scenario import Target
    from simulator.schedule import ORDER_DTYPE

    gap = 25_000
    rows = np.zeros(ANSWERS * n, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.arange(len(rows)) * gap
    rows["order"] = rows["buyer"] = np.arange(len(rows))
    rows["qty"] = 1
    clock = [0]
    now = functools.partial(operator.getitem, clock, 0)  # a clock in C, as perf_counter_ns is
    engine.time = types.SimpleNamespace(perf_counter_ns=now)  # type: ignore[assignment]
    transport = LeanTransport(parse_endpoint("http://127.0.0.1:9"), Target(), ("a",), 1, 5.0, 1.0)
    run = Run(rows, transport, EngineConfig())
    loop = uvloop.new_event_loop()
    run._loop = loop  # the loop is never run: a spin's call_soon only queues a handle

    class Timer:  # the timerfd's place: arming is recorded, nothing fires
        armed = False

        def arm_at(self, deadline_ns: int) -> None:
            self.armed = True

        def cancel(self) -> None:
            self.armed = False

    run._fine = Timer()  # type: ignore[assignment]
    transport.sink = run
    conns = []
    for _ in range(2):  # two connections: an answer comes while the next order is in flight
        conn = transport._conn_class(transport)
        conn.transport = types.SimpleNamespace(write=len)  # type: ignore[assignment]
        conn.alive = True
        conns.append(conn)
        run._free.append(conn)
    run._t0 = 0
    run._spin_ns, run.min_sleep_ns = 50_000, 56_000  # as execute sets them (this host's wake cost)
    tick = run._tick
    if behind:  # each answer comes after the next order's time: the answer sends it (coalescing)
        busy = conns[0]  # the connection the order in flight went out on
        for i in range(len(rows)):
            clock[0] = i * gap + gap // 4
            if i:
                busy.data_received(ANSWER)
            if run._in_flight == 0:  # not sent from the answer (a chunk's end): the tick's
                if run._timer is not None and run._timer is not run._fine:
                    run._timer.cancel()
                tick()
                busy = conns[0] if conns[0].attempt >= 0 else conns[1]
        assert run._in_flight == 1
        loop.close()
        return
    busy: list[Any] = []  # connections in the order their requests went out
    for i in range(len(rows)):
        clock[0] = i * gap
        if run._timer is not None and run._timer is not run._fine:
            run._timer.cancel()
        busy.append(run._free[-1])  # the free connection the tick sends this order on
        tick()
        clock[0] = i * gap + gap // 2
        if i:  # the answer to the order before
            busy.pop(0).data_received(ANSWER)
    assert run._in_flight == 1 and len(run._free) == 1
    loop.close()


def instructions(tree: Path, n: int, what: str = "record") -> int:
    """Instructions callgrind counts for the ``what`` child of ``tree`` doing ``n`` rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")  # same dicts each run
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, str(Path(__file__).resolve()), what, str(n)],
            capture_output=True, text=True, env=env, cwd=tree, timeout=1800,
        )  # fmt: skip
    m = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(m.group(1))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in ("record", "path", "behind"):
        if sys.argv[1] == "record":
            child(int(sys.argv[2]))
        else:
            child_path(int(sys.argv[2]), behind=sys.argv[1] == "behind")
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed (apt-get install valgrind)")
        return 0
    for tree in [ROOT, *args.tree]:
        per = (instructions(tree, 11) - instructions(tree, 1)) / (10 * ANSWERS)
        print(f"{tree!s:<30} {per:8,.0f} instructions per answer recorded (Run.on_response)")
        per = (instructions(tree, 11, "path") - instructions(tree, 1, "path")) / (10 * ANSWERS)
        print(f"{tree!s:<30} {per:8,.0f} instructions per order: dispatch, parse, record")
        per = (instructions(tree, 11, "behind") - instructions(tree, 1, "behind")) / (10 * ANSWERS)
        print(f"{tree!s:<30} {per:8,.0f} instructions per order, each answer after the next due")
    return 0


if __name__ == "__main__":
    sys.exit(main())
