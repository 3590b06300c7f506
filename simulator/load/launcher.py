"""The embedded default target: the bundled storefront started as a child process for a run.

``python -m simulator serve --scenario FILE --scale F --backend NAME --port 0`` prints one line
``flashsale storefront: listening on http://127.0.0.1:PORT (backend NAME)`` when ready; it runs
in its own session so that a Ctrl-C meant for the run does not kill it before the audit, and it
is stopped with SIGTERM (then SIGKILL) when the run is over.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from simulator.errors import FlashsaleError

_URL = re.compile(r"http://\S+")


class StorefrontStartError(FlashsaleError):
    """The bundled storefront did not start (its last words are in the message)."""


@dataclass(frozen=True, slots=True)
class StorefrontSpec:
    """What to start: a scenario file at a scale, with an inventory backend."""

    scenario_path: str
    scale: float
    backend: str
    start_timeout_s: float = 30.0


def _read_ready_line(proc: subprocess.Popen[str], timeout_s: float, log: IO[str]) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                line = proc.stdout.readline()
                if line == "":
                    break  # exited before saying it listens
                if (m := _URL.search(line)) is not None:
                    return m.group(0).rstrip(")")
            elif proc.poll() is not None:
                break
    finally:
        sel.close()
    _stop(proc)
    log.seek(0)
    err = log.read()
    tail = " | ".join(err.strip().splitlines()[-3:]) or "no output"
    raise StorefrontStartError(f"the bundled storefront did not start: {tail}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def embedded_storefront(spec: StorefrontSpec) -> Iterator[str]:
    """Start the storefront, yield its base URL, stop it on the way out."""
    cmd = [
        sys.executable,
        "-m",
        "simulator",
        "serve",
        "--scenario",
        spec.scenario_path,
        "--scale",
        repr(spec.scale),
        "--backend",
        spec.backend,
        "--port",
        "0",
    ]
    # stderr goes to a file: a pipe nobody reads during the run could fill and block the server
    with tempfile.TemporaryFile("w+", prefix="flashsale-storefront-") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # Ctrl-C goes to the run, which stops this itself
        )
        try:
            yield _read_ready_line(proc, spec.start_timeout_s, log)
        finally:
            _stop(proc)
