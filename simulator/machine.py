"""What this machine can hold: free memory and open files, read when a size check needs them.

Size checks (:mod:`simulator.schedule`, the live run's connections) compare the work a command
asks for against these before allocating anything, so that a value too big costs one line
instead of a MemoryError, a hang in swap or "too many open files" half-way through a run.
"""

from __future__ import annotations

import os
import resource

from simulator.errors import TooLargeError

#: file descriptors kept free for everything but connections (stdio, the event loop, logs, pipes)
FD_MARGIN = 64


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_used() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def available_memory_bytes() -> int:
    """Bytes this process can still allocate: the system's available memory, or less if an
    address-space limit (``ulimit -v``, RLIMIT_AS) leaves less room."""
    avail = _meminfo_available()
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        avail = min(avail, max(0, soft - _address_space_used()))
    return avail


def open_files_limit() -> int:
    """The most file descriptors this process may open (RLIMIT_NOFILE's soft limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def check_connections(per_process: int, what: str = "connections") -> None:
    """TooLargeError when one process would open more connections than its open-files limit
    allows (less a margin for everything else)."""
    room = open_files_limit() - FD_MARGIN
    if per_process > room:
        raise TooLargeError(
            f"{what}: {per_process:,} per process, but this process may open {room:,} "
            f"(open-files limit {open_files_limit():,} less {FD_MARGIN} kept free) — lower "
            "connections, use more workers, or raise the limit (ulimit -n)"
        )


def human_bytes(n: float) -> str:
    """``n`` bytes as a short decimal size: 3.2 GB, 10 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover - the loop returns
