"""Locust master + two workers on loopback against the bundled storefront: the union of what the
workers sent is the schedule, no order twice, and the master's report (flashsale run's shape, so
``flashsale report`` renders it) carries the audit; the same with ``--flashsale-engine``."""

from __future__ import annotations

import csv
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.cli import main as cli_main
from simulator.locust import LOCUSTFILE
from simulator.records import StreamReader, stream_parts
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
from tests.procs import free_port, stop

MINI = """
name = "mini-locust"
seed = 11
duration_s = 3.0
[[products]]
id = "durian"
stock = 40
weight = 3.0
per_buyer_limit = 2
[[products]]
id = "manggis"
stock = 300
weight = 1.0
[demand]
baseline_per_s = 50.0
[demand.spike]
at_s = 1.0
peak_per_s = 150.0
half_life_s = 1.0
[buyers]
qty_values = [1, 2]
qty_weights = [0.8, 0.2]
duplicate_share = 0.08
duplicate_delay_s = [0.05, 0.3]
[run]
drain_s = 2.0
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    return path


def _serve(scenario_file: Path, *extra: str) -> Iterator[str]:
    cmd = [sys.executable, "-m", "simulator", "serve", "--scenario", str(scenario_file)]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on " in line, line
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        stop(proc)


@pytest.fixture
def storefront(scenario_file: Path) -> Iterator[str]:
    """The bundled storefront on a free loopback port; its URL."""
    yield from _serve(scenario_file)


@pytest.fixture
def tls_storefront(scenario_file: Path, tls_cert: tuple[Path, Path]) -> Iterator[str]:
    """The bundled storefront over HTTPS (a self-signed certificate); its https URL."""
    yield from _serve(scenario_file, "--tls-cert", str(tls_cert[0]), "--tls-key", str(tls_cert[1]))


def locust(*args: str, log: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]
    return subprocess.Popen(
        cmd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_master_and_workers(
    tmp_path: Path,
    scenario_file: Path,
    storefront: str,
    *extra: str,
    meanwhile: Callable[[list[subprocess.Popen[str]]], None] | None = None,
) -> tuple[int, str, Path]:
    """A headless master and two workers on loopback; (master's exit code, its log, report).

    ``meanwhile`` is called with the two workers once all processes are started.
    """
    port = free_port()
    out_dir = tmp_path / "out"
    common = ["--flashsale-scenario", str(scenario_file), "--loglevel", "WARNING"]
    master = locust(
        *common,
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        "2",
        "--headless",
        "--host",
        storefront,
        "--run-time",
        "30",
        "--flashsale-out",
        str(out_dir),
        "--flashsale-lead",
        "0.5",
        *extra,
        log=tmp_path / "master.log",
    )
    workers = [
        locust(
            *common,
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
            log=tmp_path / f"worker{k}.log",
        )
        for k in range(2)
    ]
    try:
        if meanwhile is not None:
            meanwhile(workers)
        code = master.wait(45)
        for w in workers:
            w.wait(15)
    finally:
        for p in (master, *workers):
            stop(p)
    return code, (tmp_path / "master.log").read_text(), out_dir / "report.json"


def check_report(path: Path, scenario_file: Path, storefront: str, mode: str) -> dict:
    """The merged report: the engine's shape, the whole schedule once, a clean audit."""
    report: dict = json.loads(path.read_text())
    rows = build_schedule(load_scenario(scenario_file)).materialize()
    orders, loc = report["orders"], report["locust"]
    assert report["complete"] and report["exit_code"] == 0
    assert loc["mode"] == mode and loc["workers"] == 2 and loc["missing_workers"] == []
    assert orders["scheduled"] == len(rows)
    per_worker = {w["worker"]: w for w in loc["per_worker"]}
    assert sorted(per_worker) == [0, 1]
    assert sum(w["slice_orders"] for w in per_worker.values()) == len(rows)
    assert sum(w["sent"] for w in per_worker.values()) == orders["sent"] == len(rows)
    assert per_worker[0]["slice_orders"] == len(rows[0::2])
    checks = loc["checks"]
    assert checks["ok"] and checks["rows_sent_twice"] == 0
    assert checks["unintended_repeats"] == 0
    assert checks["double_clicks_sent"] == int((rows["flags"] & 1).sum()) > 0
    assert sum(orders["outcomes"].values()) == len(rows)
    assert orders["outcomes"]["not_sent"] == 0
    assert report["latency_ms"]["intended"]["count"] == orders["attempts"]

    audit = report["audit"]
    assert audit["available"] and audit["ok"] and audit["oversell_units"] == 0
    assert audit["skus"]["durian"]["sold"] == 40  # sold out: 40 units, demand ≫ 40
    assert audit["lost_confirmations"]["count"] == 0
    assert audit["phantom_sales"]["count"] == 0

    # the storefront's own ledger: every order at most once, only scheduled order ids
    context = ssl._create_unverified_context() if storefront.startswith("https") else None
    with urllib.request.urlopen(storefront + "/ledger", timeout=5, context=context) as r:
        ledger = json.loads(r.read())["orders"]
    ids = [int(entry[0]) for entry in ledger]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(rows["order"].tolist())
    return report


@pytest.mark.slow
def test_master_and_two_workers_send_the_schedule_once(
    tmp_path: Path, scenario_file: Path, storefront: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "out" / "orders.npys"
    code, out, path = run_master_and_workers(
        tmp_path, scenario_file, storefront, "--flashsale-orders", str(stream)
    )
    assert code == 0, out
    assert "flashsale run · mini-locust" in out and "users mode · 2 workers" in out
    assert "checks ok" in out and "audit ok: oversell 0 units" in out
    report = check_report(path, scenario_file, storefront, "users")
    # each worker streamed its part of the per-attempt records as it went: flashsale run's format
    assert [p.name for p in stream_parts(stream)] == ["orders.npys.w0", "orders.npys.w1"]
    reader = StreamReader(stream)
    records = list(reader)
    assert reader.complete
    assert sum(len(b["row"]) for b in records) == report["orders"]["attempts"]
    rows = sorted(r for b in records for r in b["row"][b["try"] == 1].tolist())
    assert rows == list(range(report["orders"]["scheduled"]))  # global row numbers, each once

    # flashsale report renders the master's report as it renders flashsale run's
    argv = ["report", str(path), "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "c")]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert "mini-locust" in text and "no oversell" in text and "durian" in text
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert (tmp_path / "c" / "orders.csv").exists()  # from the orders stream beside the report


@pytest.mark.slow
def test_engine_mode_master_and_two_workers(
    tmp_path: Path, scenario_file: Path, storefront: str
) -> None:
    code, out, path = run_master_and_workers(
        tmp_path, scenario_file, storefront, "--flashsale-engine", "--csv", str(tmp_path / "st")
    )
    assert code == 0, out
    assert "engine mode · 2 workers" in out
    report = check_report(path, scenario_file, storefront, "engine")
    assert report["target"]["transport"] == "flashsale engine (lean)"
    # the workers reported every answer into Locust's statistics, under both names
    stats = {r["Name"]: r for r in csv.DictReader((tmp_path / "st_stats.csv").open())}
    attempts = report["orders"]["attempts"]
    assert int(stats["order (intended)"]["Request Count"]) == attempts
    assert int(stats["order (service)"]["Request Count"]) == attempts


@pytest.mark.slow
def test_engine_mode_over_tls(tmp_path: Path, scenario_file: Path, tls_storefront: str) -> None:
    # like Locust's FastHttpUser, the certificate of an https host is not checked
    assert tls_storefront.startswith("https://")
    code, out, path = run_master_and_workers(
        tmp_path, scenario_file, tls_storefront, "--flashsale-engine"
    )
    assert code == 0, out
    report = check_report(path, scenario_file, tls_storefront, "engine")
    assert report["orders"]["outcomes"]["error"] == 0


@pytest.mark.slow
def test_worker_count_mismatch_is_refused_at_start(tmp_path: Path, scenario_file: Path) -> None:
    proc = locust(
        "--flashsale-scenario",
        str(scenario_file),
        "--master",
        "--headless",
        "--expect-workers",
        "2",
        "--flashsale-workers",
        "3",
        "--host",
        "http://127.0.0.1:9",
        log=tmp_path / "m.log",
    )
    try:
        code = proc.wait(30)
    finally:
        stop(proc)
    out = (tmp_path / "m.log").read_text()
    assert code == 2, out
    assert "--flashsale-workers 3 but --expect-workers 2" in out


def _sold(storefront: str) -> int:
    try:
        with urllib.request.urlopen(storefront + "/inventory", timeout=2) as r:
            return sum(int(s["sold"]) for s in json.loads(r.read())["skus"].values())
    except OSError:
        return 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_reported_lost_with_its_sales(
    tmp_path: Path, scenario_file: Path, storefront: str
) -> None:
    def kill_worker_1_once_selling(workers: list[subprocess.Popen[str]]) -> None:
        deadline = time.monotonic() + 30
        while _sold(storefront) < 20:  # the sale is on: both workers have sold something
            assert time.monotonic() < deadline, "the sale did not start"
            time.sleep(0.05)
        os.kill(workers[1].pid, signal.SIGKILL)  # the process this test started, and only it

    code, out, path = run_master_and_workers(
        tmp_path, scenario_file, storefront, meanwhile=kill_worker_1_once_selling
    )
    assert code == 1, out
    # the worker number is the slice Locust's master gave the process (by the order the workers
    # registered), not the index of the process this test started
    report = json.loads(path.read_text())
    loc, orders, audit = report["locust"], report["orders"], report["audit"]
    assert len(loc["missing_workers"]) == 1, loc
    lost = loc["missing_workers"][0]
    assert f"worker {lost} lost mid-run" in out  # the cause, in the terminal
    assert f"PARTIAL run: worker {lost} lost" in out and "stopped before the end" not in out
    rows = build_schedule(load_scenario(scenario_file)).materialize()
    assert report["partial"] and not report["complete"]
    assert [w["worker"] for w in loc["per_worker"]] == [1 - lost]
    assert any(f"worker {lost} lost" in e for e in report["run"]["worker_errors"])
    assert orders["outcomes"]["not_sent"] == len(rows[lost::2])  # its rows: never heard of
    # the server sold orders of the lost worker that no client heard answered: in the problems
    unheard = audit["unacknowledged_sales"]["count"]
    assert unheard > 0, audit
    assert f"{unheard} ledger sales whose orders no client heard answered" in " ".join(
        audit["problems"]
    )
    assert "unacknowledged" in out
    assert audit["oversell_units"] == 0 and audit["lost_confirmations"]["count"] == 0


def test_plain_http_at_the_tls_storefront_is_one_line(
    scenario_file: Path, tls_storefront: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tls_storefront.replace("https://", "http://")
    assert cli_main(["locust", str(scenario_file), "--headless", "--host", plain]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answered in TLS: use https://127.0.0.1:" in err, err
