"""``flashsale run`` when things go wrong mid-run: Ctrl-C, a target that dies, a worker that dies.

Each still writes a complete report.json, marked (partial, incomplete, with the reason), whose
counts add up to the whole schedule. The runs are real subprocesses against real storefronts on
loopback; the tests wait for the run to be under way through its own live metrics
(``--metrics-port``), and kill processes by their PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.load.live import ROOT, children, free_port, scheduled_orders, wait_for_sent

SCENARIO = """
name = "robust"
seed = 15
duration_s = {duration}

[[products]]
id = "a"
stock = 100000

[[products]]
id = "b"
stock = 50

[demand]
baseline_per_s = 300

[run]
connections = 16
timeout_s = 1.0
drain_s = 1.0
"""

#: reasons of attempts that never left the client (lean transport): with the sent attempts and
#: the rows never sent, they make up every attempt
NEVER_SENT = {
    "error": ("connect failed", "worker lost: fate unknown"),
    "timeout": ("timeout waiting for a connection",),
}


def start_run(tmp_path: Path, duration: float, *args: str) -> tuple[subprocess.Popen[str], int]:
    """``flashsale run`` in the background with live metrics, in a process group of its own
    (as a shell starts it: a terminal's Ctrl-C goes to the group); (process, metrics port)."""
    scenario = tmp_path / "robust.toml"
    scenario.write_text(SCENARIO.format(duration=duration))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "run", str(scenario), "--out", str(tmp_path / "out"),
         "--metrics-port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    return proc, port


def finish(proc: subprocess.Popen[str], tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Wait for the run; its report.json and stderr (exit 1: the run is marked incomplete)."""
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr
    return json.loads((tmp_path / "out" / "report.json").read_text()), stderr


def answered(report: dict[str, Any]) -> int:
    """Orders answered confirmed or sold out."""
    outcomes = report["orders"]["outcomes"]
    return int(outcomes["confirmed"] + outcomes["sold_out"])


def assert_adds_up(report: dict[str, Any], tmp_path: Path) -> None:
    """Every order of the whole schedule has one outcome; every attempt was sent or not."""
    orders = report["orders"]
    assert orders["scheduled"] == scheduled_orders(tmp_path / "robust.toml")
    assert sum(orders["outcomes"].values()) == orders["scheduled"]
    assert sum(orders["attempt_outcomes"].values()) == orders["attempts"]
    reasons = orders["reasons"]
    never = sum(reasons.get(o, {}).get(r, 0) for o, rs in NEVER_SENT.items() for r in rs)
    assert orders["sent"] + orders["outcomes"]["not_sent"] + never == orders["attempts"]
    units = sum(s["client_units"] for s in report["audit"]["skus"].values())
    assert units == orders["confirmed_units"]


def test_ctrl_c_with_two_workers_stops_both_and_reports_the_rest_not_sent(tmp_path: Path) -> None:
    proc, port = start_run(tmp_path, 60, "--workers", "2")
    wait_for_sent(proc, port, 300)
    os.kill(proc.pid, signal.SIGINT)
    report, stderr = finish(proc, tmp_path)
    assert report["partial"] and not report["complete"]
    assert report["run"]["worker_errors"] == []
    assert report["orders"]["outcomes"]["not_sent"] > 0
    assert answered(report) >= 300
    assert_adds_up(report, tmp_path)
    assert stderr.strip().splitlines()[-1] == (
        "flashsale run: exit 1: the run did not complete: stopped before the end of the schedule"
    )


def test_ctrl_c_at_the_terminal_reaches_the_workers_too_and_they_stop_once(tmp_path: Path) -> None:
    proc, port = start_run(tmp_path, 60, "--workers", "2")
    wait_for_sent(proc, port, 300)
    os.killpg(proc.pid, signal.SIGINT)  # the parent and both workers, as a terminal does
    report, _ = finish(proc, tmp_path)
    assert report["partial"] and report["run"]["worker_errors"] == []
    assert report["orders"]["outcomes"]["not_sent"] > 0 and answered(report) >= 300
    assert_adds_up(report, tmp_path)


def test_ctrl_c_while_the_workers_start_stops_the_run_before_it_sends(tmp_path: Path) -> None:
    proc, _ = start_run(tmp_path, 60, "--workers", "2")
    while len([pid for pid, cmd in children(proc.pid) if "spawn_main" in cmd]) < 2:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # the workers are still importing, or waiting to start
    report, stderr = finish(proc, tmp_path)
    assert report["partial"] and report["run"]["worker_errors"] == []
    assert report["orders"]["outcomes"]["not_sent"] > 0
    assert_adds_up(report, tmp_path)
    assert stderr.strip().splitlines()[-1].endswith("stopped before the end of the schedule")


def test_a_target_that_dies_mid_run_turns_the_rest_into_errors(tmp_path: Path) -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", "--stock", "a=100000", "--stock", "b=50",
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        m = re.search(r"http://\S+", serve.stdout.readline())
        assert m, "the storefront did not start"
        proc, port = start_run(tmp_path, 6, "--target", m.group(0))
        wait_for_sent(proc, port, 300)
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait()
        report, stderr = finish(proc, tmp_path)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    check_dead_target(report, stderr, tmp_path)


def test_the_bundled_storefront_dying_mid_run_is_reported(tmp_path: Path) -> None:
    proc, port = start_run(tmp_path, 6)
    wait_for_sent(proc, port, 300)
    (store,) = [pid for pid, cmd in children(proc.pid) if "simulator.storefront" in cmd]
    os.kill(store, signal.SIGKILL)
    report, stderr = finish(proc, tmp_path)
    check_dead_target(report, stderr, tmp_path)


def check_dead_target(report: dict[str, Any], stderr: str, tmp_path: Path) -> None:
    """The schedule ran to its end against a dead target: errors, an audit it could not read."""
    assert not report["partial"] and not report["complete"]
    outcomes = report["orders"]["outcomes"]
    assert answered(report) >= 300 and outcomes["not_sent"] == 0
    assert outcomes["error"] + outcomes["timeout"] > 0
    assert not report["audit"]["available"]
    assert_adds_up(report, tmp_path)
    assert "the audit could not read the storefront's records" in stderr.splitlines()[-1]


def test_a_worker_that_dies_loses_only_its_own_orders(tmp_path: Path) -> None:
    proc, port = start_run(tmp_path, 6, "--workers", "2")
    wait_for_sent(proc, port, 300)
    workers = [pid for pid, cmd in children(proc.pid) if "spawn_main" in cmd]
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    report, stderr = finish(proc, tmp_path)
    assert report["partial"] and not report["complete"]
    (died,) = report["run"]["worker_errors"]
    assert re.fullmatch(r"worker [01] died \(exit -9\)", died)
    orders = report["orders"]
    lost = orders["reasons"]["error"]["worker lost: fate unknown"]
    assert lost > 0 and orders["outcomes"]["not_sent"] > 0  # due before it died / after
    assert answered(report) >= 600  # the other worker answers its 900 orders (6 s at 150/s)
    assert_adds_up(report, tmp_path)
    # the audit still reads the storefront; the lost orders it sold show as unacknowledged
    assert report["audit"]["available"]
    assert (
        stderr.strip().splitlines()[-1]
        == f"flashsale run: exit 1: the run did not complete: {died}"
    )
