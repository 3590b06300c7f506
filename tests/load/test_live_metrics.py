"""``flashsale run --metrics-port``: the live Prometheus metrics, scraped by a real Prometheus.

The coarse histogram bounds and the exposition are checked directly; the end-to-end test starts
the Debian ``prometheus`` binary on loopback, lets it scrape a short run against the bundled
storefront (one worker and two) and reads the figures back through its HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.histogram import Histogram
from simulator.load.livemetrics import (
    EDGES_NS,
    MAX_SKU_SERIES,
    Coarse,
    Figures,
    MetricsServer,
    UnitsSeen,
    render,
    total,
)
from simulator.load.tally import Tally, first_confirmed
from simulator.outcomes import CONFIRMED, OUTCOME_NAMES
from tests.load.live import ROOT, free_port, scrape

SCENARIO = """
name = "live-metrics"
seed = 14
duration_s = 4.0

[[products]]
id = "durian"
stock = 100000

[[products]]
id = "manggis"
stock = 60

[demand]
baseline_per_s = 400

[run]
connections = 16
timeout_s = 2.0
drain_s = 2.0
"""


#: report latency kind → the metric served for it
QUANTILED = {"intended": "intended_latency_seconds", "service": "service_time_seconds"}


# -- the bounds and the exposition ---------------------------------------------------------------


def test_coarse_buckets_count_exactly_the_values_below_each_bound() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.lognormal(np.log(2e6), 1.5, 20_000).astype(np.int64), EDGES_NS, EDGES_NS - 1]
    )
    h = Histogram.empty()
    h.add(values)
    c = Coarse.of(h)
    expected = (values[None, :] < EDGES_NS[:, None]).sum(axis=1)
    assert c.below.tolist() == expected.tolist()
    assert c.count == len(values) and c.sum_ns == int(values.sum())
    # four bounds per octave, 8.192 µs … 68.7 s, each 1.25, 1.2, 1.17 or 1.14 times the last
    ratios = EDGES_NS[1:] / EDGES_NS[:-1]
    assert EDGES_NS[0] == 8192 and EDGES_NS[-1] == 1 << 36
    assert ratios.max() == 1.25 and ratios.min() > 1.14


def test_units_seen_counts_each_order_id_once_as_the_report_does() -> None:
    rng = np.random.default_rng(5)
    tally, seen = Tally(), UnitsSeen(3)
    for _ in range(6):  # batches of confirmations, double clicks within and across them
        order = rng.integers(0, 400, 300)
        n = len(order)
        tally.fold(
            intended_ns=np.zeros(n, dtype=np.int64), dispatched_ns=np.zeros(n, dtype=np.int64),
            sent_ns=np.zeros(n, dtype=np.int64), done_ns=rng.integers(1, 10**9, n),
            outcome=np.full(n, CONFIRMED, dtype=np.uint8), final=np.ones(n, dtype=np.bool_),
            first_ns=np.zeros(n, dtype=np.int64), retry=np.zeros(n, dtype=np.bool_),
            order=order, product=order % 3, qty=1 + order % 2,
        )  # fmt: skip
        expected = first_confirmed(*tally.confirmed()).units_per_product(3)
        assert seen.update(tally).tolist() == expected.tolist()
    assert seen.update(tally).tolist() == expected.tolist()  # nothing new: the same


def test_figures_of_workers_add_up() -> None:
    h = Histogram.empty()
    h.add(np.array([50_000, 2_000_000], dtype=np.int64))
    a = Figures(due=10, sent=9, hists={"intended": Coarse.of(h)}, units=np.array([3, 1]))
    b = Figures(due=5, sent=5, hists={"service": Coarse.of(h)}, units=np.array([2]), queued=1)
    s = total([a, b])
    assert (s.due, s.sent, s.queued, s.units.tolist()) == (15, 14, 1, [5, 1])
    assert s.hists["intended"].count == s.hists["service"].count == 2
    assert not s.finished


def test_the_exposition_caps_sku_series_and_keeps_the_sums() -> None:
    n = MAX_SKU_SERIES + 5
    skus = [f"sku-{i}" for i in range(n)]
    f = Figures(units=np.ones(n, dtype=np.int64), attempts=np.arange(len(OUTCOME_NAMES)))
    text = render(f, skus, [10] * n)
    sku_lines = [ln for ln in text.splitlines() if ln.startswith("flashsale_stock_left{")]
    assert len(sku_lines) == MAX_SKU_SERIES + 1
    assert sku_lines[-1] == 'flashsale_stock_left{sku="_other"} 45'
    assert 'flashsale_attempts_total{outcome="timeout"} 6' in text
    assert 'flashsale_intended_latency_seconds_bucket{le="+Inf"} 0' in text


def test_the_server_serves_what_was_published_and_only_metrics() -> None:
    server = MetricsServer("127.0.0.1", free_port(), ["a"], [5])
    try:
        assert scrape(server.url)['flashsale_stock_left{sku="a"}'] == 5
        server.publish(Figures(sent=7, units=np.array([2])))
        page = scrape(server.url)
        assert page["flashsale_requests_sent_total"] == 7
        assert page['flashsale_stock_left{sku="a"}'] == 3
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=5)
        assert err.value.code == 404
    finally:
        server.close()


def test_a_taken_port_is_a_usage_error_before_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "simulator", "run", str(scenario), "--metrics-port", str(port),
             "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"flashsale: error: --metrics-port: 127.0.0.1:{port}: cannot serve metrics there (in use)"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "0"], "--metrics-port: must be ≥ 1, got 0"),
        (["--metrics-port", "70000"], "--metrics-port: must be ≤ 65535, got 70000"),
        (["--metrics-linger", "2"], "--metrics-linger: only with --metrics-port"),
        (["--metrics-port", "9", "--metrics-linger", "-1"], "--metrics-linger: must be ≥ 0"),
        (["--metrics-port", "9", "--metrics-host", "no.such.invalid"], "--metrics-host: 'no.such"),
    ],
)
def test_bad_metrics_flags_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(scenario), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"flashsale: error: {message}"), line


# -- a real Prometheus ---------------------------------------------------------------------------


def _need_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is not None:
        return path
    reason = "prometheus is not installed (apt-get install prometheus)"
    if os.environ.get("FLASHSALE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and FLASHSALE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


class Prometheus:
    """A Prometheus server on loopback scraping one target every 0.25 s."""

    def __init__(self, binary: str, target_port: int, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n"
            "scrape_configs:\n  - job_name: flashsale\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        # ready, and already scraping (the target is down until the run serves): its first
        # scrape can come seconds after it is ready (target updates are throttled)
        deadline = time.monotonic() + 60
        while not self._scraping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus did not start: {(workdir / 'prometheus.log').read_text()}")
            time.sleep(0.1)

    def _scraping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api}/api/v1/targets", timeout=1) as r:
                targets = json.loads(r.read())["data"]["activeTargets"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(targets) and not targets[0]["lastScrape"].startswith("0001-")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``/api/v1/query``)."""
        url = f"{self.api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        """The one value of an instant query."""
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, int]]:
    """(a Prometheus server, the port it scrapes); stopped by its PID after the test."""
    binary = _need_prometheus()
    port = free_port()
    prom = Prometheus(binary, port, tmp_path)
    try:
        yield prom, port
    finally:
        prom.stop()


def _coarse_bounds(p_s: float) -> tuple[float, float]:
    """The coarse bucket (s) that holds a value (s)."""
    edges = np.concatenate([[0], EDGES_NS]) / 1e9
    i = int(np.searchsorted(edges, p_s, side="left"))
    return float(edges[i - 1]), float(edges[i])


@pytest.mark.parametrize("workers", [1, 2])
def test_prometheus_scrapes_a_run_and_its_figures_match_the_report(
    prometheus: tuple[Prometheus, int], tmp_path: Path, workers: int
) -> None:
    prom, port = prometheus
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(scenario), "--workers", str(workers),
         "--metrics-port", str(port), "--metrics-linger", "2", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    orders = report["orders"]

    def last(metric: str) -> float:
        return prom.value(f"last_over_time({metric}[10m])")

    deadline = time.monotonic() + 10  # the last scrape is ingested by now
    while not prom.query("last_over_time(flashsale_run_finished[10m]) == 1"):
        assert time.monotonic() < deadline, "prometheus never saw the finished figures"
        time.sleep(0.2)
    # live figures were scraped before the end: the finished flag was 0 first
    assert prom.value("min_over_time(flashsale_run_finished[10m])") == 0
    assert prom.value("count_over_time(flashsale_requests_sent_total[10m])") >= 3
    sent = last("flashsale_requests_sent_total")
    assert sent == orders["sent"] == orders["attempts"] > 1000
    assert last("flashsale_orders_due_total") == orders["scheduled"]
    assert prom.value("sum(last_over_time(flashsale_attempts_total[10m]))") == orders["attempts"]
    assert (
        last('flashsale_attempts_total{outcome="confirmed"}')
        == (orders["attempt_outcomes"]["confirmed"])
    )
    sold = report["audit"]["skus"]["manggis"]["client_units"]
    assert sold == 60  # the small SKU sells out
    assert last('flashsale_stock_left{sku="manggis"}') == 0
    assert (
        prom.value("sum(last_over_time(flashsale_units_confirmed_total[10m]))")
        == (orders["confirmed_units"])
    )
    assert (
        last("flashsale_intended_latency_seconds_count")
        == report["latency_ms"]["intended"]["count"]
    )
    assert last("flashsale_in_flight") == 0
    # p99 from the buckets, by Prometheus, lies in the coarse bucket of the report's p99
    for kind, metric in QUANTILED.items():
        q = prom.value(f"histogram_quantile(0.99, last_over_time(flashsale_{metric}_bucket[10m]))")
        p99_s = report["latency_ms"][kind]["p99"] / 1e3
        lo, hi = _coarse_bounds(p99_s)
        assert lo * 0.998 <= q <= hi * 1.002, (kind, q, p99_s, lo, hi)
    # the counters never went back while the run went
    series = prom.query("flashsale_requests_sent_total[10m]")
    values = [float(v) for _, v in series[0]["values"]]
    assert values == sorted(values) and values[-1] == orders["sent"]
