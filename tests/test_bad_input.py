"""Bad input never costs a traceback, a hang or a memory blow-up (issue 17).

Every input below is run through the real CLI in a child process with an address-space limit
(RLIMIT_AS) and a timeout: each must give exactly one line on stderr naming the key or flag and
its value, exit 2, and no traceback.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

FLASHSALE = [sys.executable, "-m", "simulator"]
MEMORY_LIMIT = 3 << 30  # bytes of address space the child may map
TIMEOUT_S = 60
OPEN_FILES = 1024

BASE = """\
name = "bad"
seed = {seed}
duration_s = {duration_s}
scale = {scale}

[[products]]
id = "widget"
stock = {stock}

[demand]
baseline_per_s = {rate}

[buyers.retry]
share = 0.5
max_attempts = {max_attempts}

[run]
connections = {connections}
timeout_s = {timeout_s}
"""

DEFAULTS = {
    "seed": "1",
    "duration_s": "2.0",
    "scale": "1.0",
    "stock": "100",
    "rate": "50.0",
    "max_attempts": "3",
    "connections": "8",
    "timeout_s": "5.0",
}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def flashsale(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child limited in memory, open files and time."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [*FLASHSALE, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_limits,
        env=env,
        check=False,
    )


def scenario(tmp_path: Path, extra: str = "", **values: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(BASE.format(**{**DEFAULTS, **values}) + extra)
    return str(path)


CATALOG = """
[[catalog]]
count = {count}
stock_total = 1000
"""

# (command, scenario values, extra TOML, extra arguments, what the one line must say)
CASES = [
    ("run", {"duration_s": "1e12"}, "", [], "duration_s: must be ≤ 86400 (one day), got 1e+12"),
    ("schedule", {"duration_s": "1e12"}, "", [], "duration_s: must be ≤ 86400"),
    ("simulate", {"duration_s": "1e12"}, "", [], "duration_s: must be ≤ 86400"),
    ("run", {"rate": "1e12"}, "", [], "demand.baseline_per_s: must be ≤ 1e+07"),
    ("run", {"rate": "3e8"}, "", [], "demand.baseline_per_s: must be ≤ 1e+07"),
    ("simulate", {"rate": "3e8"}, "", [], "demand.baseline_per_s: must be ≤ 1e+07"),
    ("run", {"scale": "1e9"}, "", [], "scale: must be ≤ 1000"),
    ("run", {"max_attempts": "1000000000"}, "", [], "buyers.retry.max_attempts: must be ≤ 100"),
    ("simulate", {"max_attempts": "1000000000"}, "", [], "buyers.retry.max_attempts: must be ≤"),
    ("run", {"timeout_s": "1e12"}, "", [], "run.timeout_s: must be ≤ 3600 (one hour), got 1e+12"),
    ("run", {"connections": "1000000000"}, "", [], "run.connections: must be ≤ 100000"),
    ("run", {"seed": str(2**64)}, "", [], f"seed: must be ≤ {2**63 - 1}"),
    ("schedule", {"seed": "-1"}, "", [], "seed: must be ≥ 0, got -1"),
    ("run", {}, CATALOG.format(count=10_000_000), [], "catalog[0].count: must be ≤ 100000"),
    ("run", {}, "", ["--duration", "inf"], "--duration: must be a finite number, got inf"),
    ("run", {}, "", ["--duration", "nan"], "--duration: must be a finite number, got nan"),
    ("run", {}, "", ["--duration", "-1"], "--duration: must be > 0, got -1"),
    ("schedule", {}, "", ["--duration", "inf"], "--duration: must be a finite number"),
    ("simulate", {}, "", ["--duration", "nan"], "--duration: must be a finite number"),
    ("run", {}, "", ["--scale", "1e9"], "--scale: must be ≤ 1000"),
    ("run", {}, "", ["--connections", "1000000000"], "--connections: must be ≤ 100000"),
    ("run", {}, "", ["--workers", "100000"], "--workers: must be ≤ 1024"),
    ("simulate", {}, "", ["--shards", "100000000"], "--shards: must be ≤ 100000"),
    # in range one by one, too big together: the size checks say how big, before allocating
    (
        "run",
        {"rate": "1e6", "duration_s": "1000"},
        "",
        [],
        "a live run would hold up to 1.21e+07 orders in flight and 1005 s of per-second counts",
    ),
    ("run", {"rate": "1e6", "duration_s": "1000"}, "", [], "lower scale or the demand rates"),
    ("schedule", {"rate": "1e7", "duration_s": "86400"}, "", [], "would hold 8.64e+11 orders"),
    ("simulate", {"rate": "1e7", "duration_s": "86400"}, "", [], "at most 1e+10 are generated"),
    (
        "run",
        {"connections": "100000"},
        "",
        [],
        "connections: 100,000 per process, but this process may open 960",
    ),
]


@pytest.mark.parametrize(
    ("command", "values", "extra", "args", "message"),
    CASES,
    ids=[f"{c[0]}-{c[4][:40]}" for c in CASES],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, command: str, values: dict[str, str], extra: str, args: list[str], message: str
):
    proc = flashsale(command, scenario(tmp_path, extra, **values), *args)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("flashsale: error: ")
    assert message in lines[0]
    assert proc.returncode == 2


def test_scenario_paths_that_are_not_regular_files(tmp_path: Path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    cases = [
        ("/dev/zero", "/dev/zero: is a character device, not a regular file"),
        (str(fifo), "pipe.toml: is a FIFO, not a regular file"),
        (str(tmp_path), "is a directory"),
        (str(big), "big.toml: larger than 1,048,576 bytes"),
        (str(tmp_path / "missing.toml"), "missing.toml: no such scenario file"),
    ]
    for path, message in cases:
        for command in ("schedule", "run", "simulate"):
            proc = flashsale(command, path)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, (command, path, proc.stderr)
            assert len(lines) == 1 and message in lines[0], (command, path, proc.stderr)


def test_serve_stock_ids_follow_the_scenario_rule():
    for stock, message in [
        ("bad sku=1", "--stock 'bad sku=1': the SKU must be 1–64 letters"),
        ("x" * 65 + "=1", "the SKU must be 1–64 letters"),
        ("=1", "the SKU must be 1–64 letters"),
        (f"a={2**63}", "expected SKU=N with N an integer 0…2**63 - 1"),
        ("a=-1", "expected SKU=N"),
    ]:
        proc = flashsale("serve", "--port", "0", "--stock", stock)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_the_largest_stock_stays_an_exact_integer(tmp_path: Path):
    proc = flashsale("schedule", "--json", scenario(tmp_path, stock=str(2**63 - 1)))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["stock_per_sku"] == {"widget": 2**63 - 1}
    assert summary["stock_total"] == 2**63 - 1


def test_stock_that_scales_past_int64_is_refused(tmp_path: Path):
    proc = flashsale("schedule", scenario(tmp_path, stock=str(2**62), scale="4.0"))
    assert proc.returncode == 2
    assert "stock at scale 4 totals 18446744073709551616 units; at most 2**63 - 1" in proc.stderr
