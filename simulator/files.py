"""Writing files whole or not at all: a temporary file beside the target, then rename.

Every file flashsale writes (report.json, orders.npz, HTML, CSV, .npy streams) goes through
:func:`atomic_write`, so an interrupted or failed write never leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


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


def read_json_object(path: str | Path, expected: str) -> dict[str, Any]:
    """A JSON object from ``path``; FlashsaleError naming the file when it is missing,
    unreadable, not JSON or not an object (``expected`` names what it should be)."""
    import orjson

    from simulator.errors import FlashsaleError

    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise FlashsaleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FlashsaleError(f"{path}: is a directory, expected {expected}") from None
    except OSError as exc:
        raise FlashsaleError(f"{path}: cannot read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise FlashsaleError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FlashsaleError(
            f"{path}: expected a JSON object ({expected}), got {type(data).__name__}"
        )
    return data
