"""``--flashsale-engine`` tests, run in a pytest of their own.

Importing Locust monkey-patches ``socket`` and ``threading`` with gevent for the whole process;
the engine's uvloop tests then hang when their loop closes. So the tests that need Locust's
classes in-process live in ``tests/inprocess_locust/`` and run here in a separate interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_engine_mode_in_its_own_process() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "inprocess_locust" / "check_engine_mode.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=HERE.parent,
        env={**os.environ, "FLASHSALE_GEVENT_OK": "1"},  # this process is only Locust's
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
