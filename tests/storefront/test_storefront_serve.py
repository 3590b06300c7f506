"""``flashsale serve`` as the load engine runs it: a child process that announces its URL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^flashsale storefront: listening on (http://127\.0\.0\.1:\d+) \(backend (\S+)\)$"
)


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # buffered stdout, as under the engine: the ready line must be flushed by serve itself
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )


def _post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, orjson.loads(resp.read())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_announces_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    scenario = ROOT / "scenarios" / "durian-1111.toml"
    proc = _spawn("--scenario", str(scenario), "--scale", "0.001", "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        match = LINE.match(line)
        assert match, line
        url, backend = match.groups()
        assert backend == "memory"
        with urllib.request.urlopen(url + "/inventory", timeout=5) as resp:
            skus = orjson.loads(resp.read())["skus"]
        assert skus["durian-musang-king"]["initial"] == 12  # 12000 at scale 0.001
        order = {"order_id": "o1", "sku": "durian-d24", "qty": 2, "user_id": "u"}
        assert _post(url + "/orders", order) == (
            201,
            {"order_id": "o1", "sku": "durian-d24", "qty": 2, "remaining": 3},
        )
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line on stdout, already read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stock", "a=5", "--backend", "redis", "--redis-url", "redis://127.0.0.1:1/0"],
         "cannot use Redis at redis://127.0.0.1:1/0"),
        (["--stock", "a=5", "--backend", "postgres",
          "--postgres-dsn", "postgresql://postgres@127.0.0.1:1/test"],
         "cannot use PostgreSQL at postgresql://postgres@127.0.0.1:1/test"),
        (["--stock", "a"], "--stock 'a': expected SKU=N"),
        (["--stock", "a=-1"], "--stock 'a=-1': expected SKU=N"),
        (["--stock", "a=5", "--limit", "a=x"], "--limit 'a=x': expected SKU=N"),
        ([], "give --scenario FILE or at least one --stock SKU=N"),
        (["--stock", "a=5", "--backend", "mongo"], "unknown backend 'mongo'"),
        (["--scenario", "no-such.toml"], "no-such.toml: no such scenario file"),
        (["--stock", "a=5", "--port", "70000"], "--port: must be 0–65535"),
        (["--stock", "a=5", "--read-timeout", "0"], "read_timeout_s: must be a number of seconds"),
        (["--stock", "a=5", "--keepalive-timeout", "inf"], "keepalive_timeout_s: must be a number"),
        (["--stock", "a=5", "--reservation-ttl", "0"], "--reservation-ttl: must be a number of"),
        (["--stock", "a=5", "--admit-per-s", "nan"], "--admit-per-s: must be a number"),
        (["--stock", "a=5", "--max-active", "-2"], "--max-active: must be an integer ≥ 0"),
        (["--stock", "a=5", "--session-s", "-1"], "--session-s: must be a number of seconds"),
    ],
)  # fmt: skip
def test_serve_refuses_with_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = _spawn("--port", "0", *args) if "--port" not in args else _spawn(*args)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashsale: error: "), err
    assert message in lines[0]


def test_serve_refuses_a_port_in_use() -> None:
    first = _spawn("--stock", "a=1", "--port", "0")
    try:
        assert first.stdout is not None
        match = LINE.match(first.stdout.readline().rstrip("\n"))
        assert match
        port = match.group(1).rsplit(":", 1)[1]
        second = _spawn("--stock", "a=1", "--port", port)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in err
    finally:
        first.terminate()
        first.communicate(timeout=10)
    assert first.returncode == 0


def test_serve_over_tls_and_a_run_against_it(tls_cert: tuple[Path, Path]) -> None:
    cert, key = (str(p) for p in tls_cert)
    scenario = str(ROOT / "scenarios" / "durian-1111.toml")
    proc = _spawn("--scenario", scenario, "--scale", "0.01", "--port", "0",
                  "--tls-cert", cert, "--tls-key", key)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        match = re.match(r"^flashsale storefront: listening on (https://127\.0\.0\.1:\d+) ", line)
        assert match, line
        url = match.group(1)
        run = subprocess.run(
            [sys.executable, "-m", "simulator", "run", scenario, "--scale", "0.01",
             "--duration", "12", "--target", url, "--ca-file", cert, "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        report = orjson.loads(run.stdout)
        assert report["target"]["url"] == url
        assert report["orders"]["outcomes"]["confirmed"] > 0
        assert report["orders"]["outcomes"]["error"] == 0
        assert report["audit"]["available"] and report["audit"]["ok"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("cert-only", "give both, or neither"),
        ("missing", "cannot load"),
        ("swapped", "cannot load"),
    ],
)
def test_serve_refuses_bad_tls_files(
    tls_cert: tuple[Path, Path], tmp_path: Path, which: str, message: str
) -> None:
    cert, key = (str(p) for p in tls_cert)
    args = {
        "cert-only": ["--tls-cert", cert],
        "missing": ["--tls-cert", str(tmp_path / "no.pem"), "--tls-key", key],
        "swapped": ["--tls-cert", key, "--tls-key", cert],
    }[which]
    proc = _spawn("--stock", "a=5", "--port", "0", *args)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_serve_with_the_flash_sale_flow() -> None:
    proc = _spawn(
        "--stock", "a=5", "--port", "0", "--reservation-ttl", "30", "--require-token",
        "--max-active", "10", "--room-order", "shuffle",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = LINE.match(proc.stdout.readline().rstrip("\n"))
        assert match
        url = match.group(1)
        status, login = _post(url + "/login", {"user_id": "u"})
        assert status == 200 and isinstance(login, dict)
        request = urllib.request.Request(
            url + "/orders",
            data=orjson.dumps({"order_id": "o1", "sku": "a", "qty": 1, "user_id": "u"}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {login['token']}",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            held = orjson.loads(resp.read())
        assert (resp.status, held["status"], held["ttl_s"]) == (201, "held", 30.0)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
