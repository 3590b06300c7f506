"""``flashsale run`` end to end, as a user runs it: a subprocess, real servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flashsale(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def test_json_report_against_a_target(fake_store, scenario_file, tmp_path: Path) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"))
    out = tmp_path / "out"
    r = flashsale(
        str(scenario_file(rate=300, duration=1.5)), "--target", url, "--json", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert not list(out.glob(".report.*"))  # no temporary file left behind
    orders = report["orders"]
    assert sum(orders["outcomes"].values()) == orders["scheduled"] > 300
    assert report["audit"]["ok"] and report["audit"]["oversell_units"] == 0
    assert report["audit"]["skus"]["a"]["client_units"] == report["audit"]["skus"]["a"]["sold"]
    for kind in ("intended", "service"):
        assert set(report["latency_ms"][kind]) >= {"p50", "p90", "p99", "p99.9", "max"}
    assert report["scenario"]["seed"] == 7 and not report["partial"]
    assert report["run"]["busy_wait"] is False  # sleeps on a timerfd between orders
    assert report["run"]["windows"] is False  # an answer sends the order that has come due
    assert len(report["timeline"]["p99_ms"]) == len(report["timeline"]["second"])


def test_oversell_exits_1(fake_store, scenario_file) -> None:
    url, _ = fake_store("oversell", ("a=10", "b=10"))
    r = flashsale(str(scenario_file(rate=200, duration=1.0)), "--target", url, "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["audit"]["oversell_units"] > 0


def test_two_workers_split_the_schedule_exactly(fake_store, scenario_file) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    path = str(scenario_file(rate=300, duration=1.0))
    one = json.loads(flashsale(path, "--target", url, "--json").stdout)
    two_run = flashsale(path, "--target", url, "--json", "--workers", "2")
    assert two_run.returncode == 0, two_run.stderr
    two = json.loads(two_run.stdout)
    assert two["orders"]["scheduled"] == one["orders"]["scheduled"]
    assert two["orders"]["outcomes"]["confirmed"] == one["orders"]["scheduled"]
    # the timeline runs until the last answer, which may fall in second 1 in one run only
    assert two["timeline"]["intended_per_s"][:1] == one["timeline"]["intended_per_s"][:1]
    assert sum(two["timeline"]["intended_per_s"]) == sum(one["timeline"]["intended_per_s"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "ftp://nope"], "--target: target URL 'ftp://nope': bad URL"),
        (["--target", "http://127.0.0.1:9", "--backend", "memory"], "--backend: backend 'memory'"),
        (["--workers", "0"], "--workers"),
        (["--duration", "-1"], "--duration"),
        (["--backend", "nosuch"], "--backend"),
    ],
)
def test_bad_usage_exits_2_with_one_line(scenario_file, args: list[str], message: str) -> None:
    r = flashsale(str(scenario_file()), *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_bad_value_from_the_scenario_is_not_blamed_on_a_flag(scenario_file, tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(scenario_file().read_text() + '\n[target]\nurl = "http://127.0.0.1:9"\n')
    r = flashsale(str(path), "--ca-file", str(tmp_path / "ca.pem"))
    assert r.returncode == 2 and "--ca-file: a CA file is only for an https:// target" in r.stderr
    r = flashsale(str(path), "--backend", "memory")
    assert r.returncode == 2 and r.stderr.startswith("flashsale: error: --backend: backend")
    bad = tmp_path / "bad.toml"
    bad.write_text(scenario_file().read_text() + '\n[target]\nurl = "ftp://nope"\n')
    r = flashsale(str(bad))
    assert r.returncode == 2 and "ftp://nope" in r.stderr and "--target" not in r.stderr


def test_the_bundled_flow_needs_a_journey(scenario_file, tmp_path):
    path = tmp_path / "flow.toml"
    path.write_text(scenario_file().read_text() + "\n[storefront]\nreservation_ttl_s = 600.0\n")
    r = flashsale(str(path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "flash-sale flow" in r.stderr and "[journey]" in r.stderr


def test_unreachable_target_exits_2(scenario_file) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = flashsale(str(scenario_file()), "--target", f"http://127.0.0.1:{port}")
    assert r.returncode == 2 and "cannot reach the target" in r.stderr


def test_ctrl_c_writes_a_partial_report(fake_store, scenario_file, tmp_path: Path) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            str(scenario_file(rate=200, duration=30)),
            "--target",
            url,
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    time.sleep(3.0)  # let it start sending (imports, connections)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 1, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] and not report["complete"]
    outcomes = report["orders"]["outcomes"]
    assert sum(outcomes.values()) == report["orders"]["scheduled"]
    assert outcomes["not_sent"] > 0 and outcomes["confirmed"] > 0
    assert "PARTIAL" in stdout


def test_embedded_storefront_by_default(scenario_file, tmp_path: Path) -> None:
    r = flashsale(str(scenario_file(rate=200, duration=1.0, stock_a=60)), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["target"]["embedded"]
    audit = report["audit"]
    assert audit["available"] and audit["ok"]
    assert audit["skus"]["a"]["initial"] == 60
    assert audit["skus"]["a"]["client_units"] == audit["skus"]["a"]["ledger_units"]


def test_no_reset_leaves_the_target_as_found(fake_store, scenario_file) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"))
    path = str(scenario_file(rate=100, duration=0.5))
    r = flashsale(path, "--target", url, "--json", "--no-reset")
    assert r.returncode == 0, r.stderr
    notes = json.loads(r.stdout)["run"]["notes"]
    assert any(n.startswith("reset: skipped") for n in notes)
    r = flashsale(path, "--target", url, "--json")
    assert any(n.startswith("reset: 2") for n in json.loads(r.stdout)["run"]["notes"])


def test_busy_wait_runs_the_same_schedule(fake_store, scenario_file) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    path = str(scenario_file(rate=300, duration=1.0))
    r = flashsale(path, "--target", url, "--json", "--busy-wait", "--workers", "2")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["run"]["busy_wait"] is True
    assert sum(report["orders"]["outcomes"].values()) == report["orders"]["scheduled"] > 250
    assert report["audit"]["ok"]


def test_windows_run_the_same_schedule(fake_store, scenario_file) -> None:
    """``--windows``: due orders leave from the timer's wake-ups only (the waiting rules:
    tests/load/test_coalesce_model.py); every order still goes out once and is answered, and
    the report says how it ran."""
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    path = str(scenario_file(rate=3000, duration=1.0))
    r = flashsale(path, "--target", url, "--json", "--windows")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["run"]["windows"] is True and report["run"]["busy_wait"] is False
    assert sum(report["orders"]["outcomes"].values()) == report["orders"]["scheduled"] > 2500
    assert report["orders"]["outcomes"]["confirmed"] == report["orders"]["scheduled"]
    assert report["audit"]["ok"]


def test_windows_and_busy_waiting_are_refused_together(
    fake_store, scenario_file, tmp_path: Path
) -> None:
    """Refused before anything is touched: an earlier run's orders stream stays."""
    url, _ = fake_store("ok", ("a=10", "b=10"))
    path = str(scenario_file(rate=10, duration=0.5))
    orders = tmp_path / "orders.npys"
    assert flashsale(path, "--target", url, "--json", "--orders", str(orders)).returncode == 0
    kept = sorted((f.name, f.read_bytes()) for f in tmp_path.iterdir())
    assert kept
    r = flashsale(path, "--target", url, "--json", "--orders", str(orders), "--windows",
                  "--busy-wait")  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert "--windows" in r.stderr and "busy waiting" in r.stderr
    assert sorted((f.name, f.read_bytes()) for f in tmp_path.iterdir()) == kept


def test_thresholds_are_in_the_one_report_json(fake_store, scenario_file, tmp_path: Path) -> None:
    """Checked before the write: report.json carries them and the exit code they earn."""
    url, _ = fake_store("ok", ("a=100", "b=50"))
    out = tmp_path / "out"
    r = flashsale(
        str(scenario_file(rate=200, duration=1.0)),
        *("--target", url, "--out", str(out)),
        *("--threshold", "oversell_units == 0", "--threshold", "p99_ms < 0.000001"),
    )
    assert r.returncode == 1, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["flashsale_report"] == 2 and report["exit_code"] == 1
    assert [(t["expr"], t["passed"]) for t in report["thresholds"]] == [
        ("oversell_units == 0", True),
        ("p99_ms < 1e-06", False),
    ]
    assert "FAIL  p99_ms < 1e-06" in r.stdout and "1 passed, 1 failed" in r.stdout
    assert not list(out.glob(".report.*"))


def test_an_unwritable_out_dir_keeps_the_report(fake_store, scenario_file, tmp_path: Path) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = flashsale(
        str(scenario_file(rate=200, duration=0.5)), "--target", url, "--out", str(blocker)
    )
    assert r.returncode == 1
    assert f"{blocker / 'report.json'}: cannot write" in r.stderr
    kept = Path(r.stderr.split("report kept at ")[1].split()[0])
    try:
        assert json.loads(kept.read_text())["orders"]["scheduled"] > 0
    finally:
        kept.unlink()
