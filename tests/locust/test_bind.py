"""Everything of ours listens on loopback unless told otherwise: the web UI and the master."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import free_port, stop

from .test_distributed import MINI


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net shows them) listening on ``port``, IPv4 and v6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_web_ui_and_master_bind_loopback_by_default(tmp_path: Path) -> None:
    scenario = tmp_path / "mini.toml"
    scenario.write_text(MINI)
    web, master = free_port(), free_port()
    cmd = [sys.executable, "-m", "simulator", "locust", str(scenario), "--master"]
    cmd += ["--web-port", str(web), "--master-bind-port", str(master)]
    # no --host: the bundled storefront is started; no worker connects, so nothing is sent
    log = tmp_path / "locust.log"
    proc = subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (listening(web) and listening(master)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert listening(web) == {"0100007F"}, log.read_text()  # 127.0.0.1, nothing else
        assert listening(master) == {"0100007F"}
    finally:
        stop(proc)
