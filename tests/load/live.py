"""Helpers for tests that drive ``flashsale run`` as a subprocess and watch it live."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    """The samples of a /metrics page by their name and labels as written."""
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_for_sent(proc: subprocess.Popen[str], port: int, n: int, timeout_s: float = 60) -> None:
    """Wait until the run behind ``--metrics-port port`` has sent ``n`` requests."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/metrics"
    while True:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1]}"
        try:
            if scrape(url)["flashsale_requests_sent_total"] >= n:
                return
        except OSError:
            pass  # not serving yet
        assert time.monotonic() < deadline, f"the run did not send {n} requests"
        time.sleep(0.1)


def children(pid: int) -> list[tuple[int, str]]:
    """The child processes of ``pid``: (pid, command line)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            out.append((int(child), cmd.decode(errors="replace")))
    return out


def scheduled_orders(scenario: Path) -> int:
    """The scenario's whole schedule (``flashsale schedule --json``)."""
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "schedule", str(scenario), "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
    )  # fmt: skip
    return int(json.loads(r.stdout)["total_orders"])
