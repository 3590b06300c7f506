"""Loopback servers for the engine tests: the fake storefront in its own process."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from simulator.schedule import ORDER_DTYPE

HERE = Path(__file__).resolve().parent

SCENARIO = """
name = "engine-test"
seed = 7
duration_s = {duration}

[[products]]
id = "a"
stock = {stock_a}
per_buyer_limit = 0

[[products]]
id = "b"
stock = 50

[demand]
baseline_per_s = {rate}

[buyers.retry]
share = {retry_share}
max_attempts = 3
backoff_s = 0.02

[run]
connections = 16
timeout_s = 2.0
drain_s = 2.0
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a small constant-rate scenario; keyword arguments fill the template."""

    def make(
        rate: float = 300, duration: float = 2.0, stock_a: int = 200, retry_share: float = 0.0
    ) -> Path:
        path = tmp_path / "engine-test.toml"
        path.write_text(
            SCENARIO.format(rate=rate, duration=duration, stock_a=stock_a, retry_share=retry_share)
        )
        return path

    return make


@pytest.fixture
def fake_store() -> Iterator[Callable[..., tuple[str, subprocess.Popen[str]]]]:
    """Start fake storefronts (``mode``, stock pairs); all are killed after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(
        mode: str = "ok",
        stock: tuple[str, ...] = ("a=200", "b=50"),
        tls: tuple[Path, Path] | None = None,
    ) -> tuple[str, subprocess.Popen[str]]:
        extra = ["--tls", str(tls[0]), str(tls[1])] if tls else []
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "fake_store.py"),
                "--mode",
                mode,
                *extra,
                "--stock",
                *stock,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"https?://\S+", line)
        assert m, f"fake store did not start: {line!r}"
        return m.group(0), proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def constant_rows(n: int, every_ns: int, products: int = 2, flags: int = 0) -> np.ndarray:
    """``n`` orders ``every_ns`` apart, alternating products, one unit each."""
    rows = np.zeros(n, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.arange(n, dtype=np.int64) * every_ns
    rows["order"] = np.arange(n)
    rows["buyer"] = np.arange(n)
    rows["product"] = np.arange(n) % products
    rows["qty"] = 1
    rows["flags"] = flags
    return rows
