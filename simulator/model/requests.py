"""Requests in flight through the model, as one structured array (no per-order objects).

Rows are gathered as opaque 48-byte records (one copy per row instead of one per field).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulator.schedule import FLAG_DUPLICATE

#: one request (attempt). ``t`` intended send time of this attempt, ``first`` intended time of
#: the order's first attempt (its schedule row), ``done`` its answer time once served,
#: ``queue`` the server it went to, ``attempt`` 0 for the first.
REQUEST_DTYPE = np.dtype(
    [
        ("t", "<i8"),
        ("first", "<i8"),
        ("order", "<i8"),
        ("done", "<i8"),
        ("queue", "<i8"),
        ("product", "<i4"),
        ("shard", "<i4"),
        ("qty", "<i2"),
        ("flags", "u1"),
        ("attempt", "u1"),
        ("_pad", "V4"),
    ]
)
_RAW = np.dtype((np.void, REQUEST_DTYPE.itemsize))
Requests = npt.NDArray[np.void]
Index = npt.NDArray[np.intp] | npt.NDArray[np.int64] | npt.NDArray[np.bool_]


def empty(n: int = 0) -> Requests:
    """``n`` zeroed requests."""
    return np.zeros(n, dtype=REQUEST_DTYPE)


def from_rows(rows: npt.NDArray[np.void], shard: npt.NDArray[np.int64]) -> Requests:
    """First attempts of schedule rows (ORDER_DTYPE), with their buyers' shards."""
    r = np.empty(len(rows), dtype=REQUEST_DTYPE)
    r["t"] = rows["t_ns"]
    r["first"] = rows["t_ns"]
    r["order"] = rows["order"]
    r["done"] = 0
    r["queue"] = 0
    r["product"] = rows["product"]
    r["shard"] = shard
    r["qty"] = rows["qty"]
    r["flags"] = rows["flags"]
    r["attempt"] = 0
    return r


def take(r: Requests, index: Index) -> Requests:
    """The requests at ``index`` (indices or a mask): a whole-record gather."""
    return r.view(_RAW)[index].view(REQUEST_DTYPE)


def concat(parts: list[Requests]) -> Requests:
    """All requests of ``parts``, in order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p.view(_RAW) for p in parts]).view(REQUEST_DTYPE)


def duplicate(r: Requests) -> npt.NDArray[np.bool_]:
    """Double clicks: the same order id sent again."""
    dup: npt.NDArray[np.bool_] = (r["flags"] & FLAG_DUPLICATE) != 0
    return dup
