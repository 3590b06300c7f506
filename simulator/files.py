"""Writing files whole or not at all: a temporary file beside the target, then rename.

Every file flashsale writes (report.json, orders.npz, HTML, CSV, .npy streams) goes through
:func:`atomic_write`, so an interrupted or failed write never leaves half a file behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from simulator.errors import FlashsaleError


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

    raw = read_regular_file(path, MAX_JSON_BYTES, expected, missing="file")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FlashsaleError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FlashsaleError(
            f"{path}: expected a JSON object ({expected}), got {type(data).__name__}"
        )
    return data


#: the largest JSON file read back (a report.json is a few MB even for long runs)
MAX_JSON_BYTES = 1 << 30


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def read_regular_file(
    path: str | Path,
    max_bytes: int,
    expected: str,
    *,
    missing: str | None = None,
    error: type[FlashsaleError] = FlashsaleError,
) -> bytes:
    """The bytes of the regular file at ``path``, if it holds at most ``max_bytes``.

    A FIFO, a device (``/dev/zero``), a directory or a file too big is refused with ``error``
    naming the path (``expected`` says what it should be, ``missing`` what "no such …" says),
    before anything is read: no hang on a pipe without a writer, no memory blown on an endless
    device.
    """
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of waiting
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{path}: no such {missing or expected}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"{path}: is a directory, expected {expected}")
        raise error(f"{path}: is a {_kind(mode)}, not a regular file; expected {expected}")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise error(f"{path}: larger than {max_bytes:,} bytes, too big for {expected}")
    return data
