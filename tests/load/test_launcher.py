"""The run's bundled storefront: started through the storefront package, gone with its parent.

Real child processes on loopback; every process a test starts it ends by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from simulator.load.launcher import StorefrontSpec, StorefrontStartError, embedded_storefront
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.process import storefront_process

ROOT = Path(__file__).resolve().parents[2]
#: how long a test waits for a process to appear or disappear (a bound, not a measurement)
PATIENCE_S = 30.0
T = TypeVar("T")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _children(pid: int) -> list[int]:
    """The PIDs of a process's children (every thread's), from /proc."""
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                out += [
                    int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return out


def _is_storefront(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"simulator.storefront" in cmdline


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has stopped, and listens no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports a process listens on: its socket inodes matched in /proc/net/tcp."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(int(cols[1].rpartition(":")[2], 16))
    return ports


def _wait_for(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return True
    return False


@pytest.fixture
def started() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start processes (killed by PID at teardown, with any storefront child they left)."""
    procs: list[subprocess.Popen[str]] = []
    strays: list[int] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    start.strays = strays  # type: ignore[attr-defined]
    yield start
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _storefront_of(pid: int) -> tuple[int, int]:
    """(PID, port) of the storefront child of ``pid`` once it listens."""

    def probe() -> tuple[int, int] | None:
        for child in _children(pid):
            if _is_storefront(child) and (ports := _listening_ports(child)):
                return child, min(ports)
        return None

    return _wait_for(probe, f"a listening storefront child of {pid}")


def _assert_gone(pid: int, port: int) -> None:
    _wait_for(lambda: True if not _alive(pid) else None, f"storefront {pid} to exit")
    assert _refuses(port)


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "slow.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "launcher-test"
            seed = 3
            duration_s = 60

            [[products]]
            id = "a"
            stock = 100000

            [demand]
            baseline_per_s = 20

            [run]
            connections = 2
            """
        )
    )
    return path


# -- start and stop ---------------------------------------------------------------------------


def test_the_bundled_storefront_serves_and_stops_with_its_context(tmp_path: Path) -> None:
    with embedded_storefront(StorefrontSpec(str(_scenario(tmp_path)), 1.0, "memory")) as url:
        with urllib.request.urlopen(url + "/inventory", timeout=10) as resp:
            assert b'"a":{"initial":100000' in resp.read()
        (child,) = [p for p in _children(os.getpid()) if _is_storefront(p)]
        port = int(url.rpartition(":")[2])
    _assert_gone(child, port)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (
            StorefrontSettings(stocks={"a": 1}, backend="redis", redis_url="redis://127.0.0.1:1/0"),
            "redis",
        ),
        (
            StorefrontSettings(
                stocks={"a": 1},
                backend="postgres",
                postgres_dsn="postgresql://postgres@127.0.0.1:1/x",
            ),
            "postgres",
        ),
    ],
    ids=["redis down", "postgres down"],
)
def test_a_store_that_cannot_be_reached_is_one_start_error(
    settings: StorefrontSettings, reason: str
) -> None:
    with pytest.raises(StorefrontStartError) as err, storefront_process(settings):
        pass
    message = str(err.value)
    assert message.startswith("the bundled storefront did not start: ")
    assert reason in message.lower() and "\n" not in message and "Traceback" not in message
    assert not [p for p in _children(os.getpid()) if _is_storefront(p) and _alive(p)]


def test_a_port_in_use_is_one_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = StorefrontSettings(stocks={"a": 1})
        refused = pytest.raises(StorefrontStartError, match=f"cannot listen on 127.0.0.1:{port}")
        with refused, storefront_process(settings, port=port):
            pass


def test_an_unknown_backend_is_one_start_error(tmp_path: Path) -> None:
    spec = StorefrontSpec(str(_scenario(tmp_path)), 1.0, "sqlite")
    refused = pytest.raises(StorefrontStartError, match="unknown backend 'sqlite'")
    with refused, embedded_storefront(spec):
        pass


# -- the child dies with its parent -------------------------------------------------------------


@linux_only
def test_kill_9_of_a_run_takes_its_storefront_along(started, tmp_path: Path) -> None:
    run = started([sys.executable, "-m", "simulator", "run", str(_scenario(tmp_path))])
    pid, port = _storefront_of(run.pid)
    started.strays.append(pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    _assert_gone(pid, port)


PARENT = """
import os, sys, threading, time
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.process import storefront_process

def hold():
    with storefront_process(StorefrontSettings(stocks={"a": 1})) as url:
        if sys.argv[1] == "fork":  # a child holding the channel open: only PDEATHSIG is left
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
        print(url, flush=True)
        time.sleep(600)

if sys.argv[1] == "thread":  # no PDEATHSIG from another thread: only the channel is left
    threading.Thread(target=hold).start()
else:
    hold()
"""


@linux_only
@pytest.mark.parametrize("how", ["thread", "fork"], ids=["channel eof", "pdeathsig"])
def test_each_of_the_two_ties_alone_takes_the_child_along(
    how: str, started, tmp_path: Path
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = started([sys.executable, str(script), how])
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), parent.stderr.read() if parent.stderr else ""
    pid, port = _storefront_of(parent.pid)
    started.strays += [pid, *(p for p in _children(parent.pid) if p != pid)]
    assert port == int(url.rpartition(":")[2])
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _assert_gone(pid, port)
