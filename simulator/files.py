"""Writing files whole or not at all: a temporary file beside the target, then rename.

Every file flashsale writes (report.json, orders.npz, HTML, CSV, .npy streams) goes through
:func:`atomic_write`, so an interrupted or failed write never leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` with a binary file that becomes ``path`` only once it is complete.

    A reader never sees a half-written file; on any error the temporary file is removed and the
    error propagates (the old ``path``, if any, is left as it was).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
