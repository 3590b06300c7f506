"""Requests in flight through the model: one array per field (no per-order objects).

Columns rather than one structured array: the hot path reads a few fields of every request and
gathers rows only on rare paths (throttling, retries, requests still in service at a window's
end), and gathering one int64 column moves a few bytes a row where a record would move all 56.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.schedule import FLAG_DUPLICATE, ORDER_DTYPE

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Index = npt.NDArray[np.intp] | npt.NDArray[np.int64] | npt.NDArray[np.bool_]

#: the shard of each buyer (``shard_of(buyer, out)``: into ``out`` when given; returns it)
ShardOf = Callable[[I64, I64 | None], I64]

#: whether schedule rows are the four little-endian words :func:`from_rows` reads at once
_PACKED = (
    sys.byteorder == "little"
    and np.dtype(
        {
            "names": ["t_ns", "order", "buyer", "product", "qty", "flags"],
            "formats": ["<i8", "<i8", "<i8", "<i4", "<u2", "u1"],
            "offsets": [0, 8, 16, 24, 28, 30],
            "itemsize": 32,
        }
    )
    == ORDER_DTYPE
)


@dataclass(slots=True)
class Requests:
    """Requests (attempts), one row per index across the columns.

    ``t`` intended send time of this attempt, ``first`` intended time of the order's first
    attempt (its schedule row; the same array as ``t`` while every row is a first attempt),
    ``done`` its answer time once served, ``attempt`` 0 for the first, ``buyer`` the buyer
    number (for per-buyer limits). The server a request goes to follows from its product and
    shard (``sim``), so it is not a column: fewer columns to join and gather per batch.
    """

    t: I64
    first: I64
    order: I64
    buyer: I64
    product: I64
    shard: I64
    qty: I64
    flags: U8
    attempt: U8
    done: I64
    #: where the columns are the first rows of longer arrays (``from_rows`` with spare rows):
    #: those arrays, so :func:`join` can add other requests after these without copying them
    room: tuple[npt.NDArray[Any], ...] | None = field(default=None, compare=False, kw_only=True)

    def columns(self) -> list[npt.NDArray[Any]]:
        """The columns, in field order (``first`` may be ``t`` itself)."""
        return [getattr(self, name) for name in COLUMNS]

    def __len__(self) -> int:
        return len(self.t)

    def take(self, index: Index) -> Requests:
        """The requests at ``index`` (indices or a mask)."""
        t = self.t[index]
        first = t if self.first is self.t else self.first[index]
        return Requests(
            t,
            first,
            self.order[index],
            self.buyer[index],
            self.product[index],
            self.shard[index],
            self.qty[index],
            self.flags[index],
            self.attempt[index],
            self.done[index],
        )

    def drop(self, gone: npt.NDArray[np.intp]) -> Requests:
        """These requests without the rows ``gone`` (sorted, unique), in place, O(len(gone)).

        Rows at the end fill the holes, so the order of rows changes: only for callers that
        do not depend on it (stock decides in an explicit completion order).
        """
        keep = len(self) - len(gone)
        holes = gone[gone < keep]
        tail = np.ones(len(self) - keep, dtype=bool)
        tail[gone[gone >= keep] - keep] = False
        fill = keep + np.flatnonzero(tail)
        aliased = self.first is self.t
        cols = self.columns()
        for i, col in enumerate(cols):
            if not (i == 1 and aliased):  # `first` aliasing `t` moves with it
                col[holes] = col[fill]
        out = [c[:keep] for c in cols]
        if aliased:
            out[1] = out[0]
        return Requests(*out)

    def duplicate(self) -> npt.NDArray[np.bool_]:
        """Double clicks: the same order id sent again."""
        dup: npt.NDArray[np.bool_] = (self.flags & FLAG_DUPLICATE) != 0
        return dup


def empty(n: int = 0) -> Requests:
    """``n`` zeroed requests."""

    def z() -> I64:
        return np.zeros(n, dtype=np.int64)

    def b() -> U8:
        return np.zeros(n, dtype=np.uint8)

    return Requests(z(), z(), z(), z(), z(), z(), z(), b(), b(), z())


#: the column fields of :class:`Requests`, in order
COLUMNS = ("t", "first", "order", "buyer", "product", "shard", "qty", "flags", "attempt", "done")


#: rows a block of the transposing copy: its four strided reads of a block (256 KB of 32-byte
#: records) come from the L2 cache, where over a whole window they would each stream it from
#: memory (~1.5x faster on singles-day-peak's ~93k-row windows)
_BLOCK_ROWS = 8192


def from_rows(
    rows: npt.NDArray[np.void] | list[npt.NDArray[np.void]],
    shard_of: ShardOf,
    spare: int = 0,
) -> Requests:
    """First attempts of schedule rows (ORDER_DTYPE; or a list of such arrays, in order), with
    their buyers' shards (``shard_of(buyer, out)``); ``spare``: rows of room after them for
    :func:`join`.

    The rows are 32-byte records: four int64 words (time, order, buyer, then product, qty
    and flags packed in the fourth). One transposing copy reads them once, where a copy per
    field would read every record once per field (2.6x faster on a window of rows); a list
    of arrays is copied part by part (not joined first).
    """
    parts = rows if isinstance(rows, list) else [rows]
    if _PACKED and spare > 0 and all(r.flags.c_contiguous for r in parts):
        return _with_room(parts, shard_of, spare)
    rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
    n = len(rows)
    if not _PACKED or not rows.flags.c_contiguous:
        t = np.ascontiguousarray(rows["t_ns"])
        buyer = np.ascontiguousarray(rows["buyer"])
        order = np.ascontiguousarray(rows["order"])
        product = rows["product"].astype(np.int64)
        qty = rows["qty"].astype(np.int64)
        flags = np.ascontiguousarray(rows["flags"])
    else:
        words = np.empty((4, n), dtype=np.int64)
        _transpose(parts if len(parts) > 1 else [rows], words)
        t, order, buyer, last = words
        product = last & 0xFFFFFFFF  # bytes 24–27 (≥ 0)
        qty = last >> 32
        qty &= 0xFFFF  # bytes 28–29
        flags = (last >> 48).astype(np.uint8)  # byte 30 (the cast keeps the low byte)
    return Requests(
        t,
        t,  # a first attempt's intended time is its order's first
        order,
        buyer,
        product,
        shard_of(buyer, None),
        qty,
        flags,
        np.zeros(n, dtype=np.uint8),
        np.zeros(n, dtype=np.int64),
    )


def _blocks(parts: list[npt.NDArray[np.void]]) -> Iterator[tuple[int, int, I64]]:
    """The rows of ``parts`` (in order) in blocks of at most :data:`_BLOCK_ROWS`: (first row,
    end row, the block's rows as four int64 words each, n × 4)."""
    at = 0
    for part in parts:
        src = part.view(np.int64).reshape(len(part), 4)
        for a in range(0, len(part), _BLOCK_ROWS):
            b = min(a + _BLOCK_ROWS, len(part))
            yield at + a, at + b, src[a:b]
        at += len(part)


def _transpose(parts: list[npt.NDArray[np.void]], words: I64) -> None:
    """The rows' four words into the first rows of ``words`` (4 × ≥ rows), a block at a time."""
    for i, j, block in _blocks(parts):
        np.copyto(words[:, i:j], block.T)


def _with_room(parts: list[npt.NDArray[np.void]], shard_of: ShardOf, spare: int) -> Requests:
    """:func:`from_rows` into columns with ``spare`` rows of room after them (unwritten room
    costs nothing: its pages are mapped when first written). A block of rows is transposed
    and unpacked while it is in the cache; the buyers' shards are hashed over the whole
    column after (the hash runs in cache-sized blocks of its own, twice as long: half the
    NumPy calls; from_rows 1148-1229 -> 1083-1123 µs a window, 2026-12-06 09:03 UTC)."""
    n = sum(len(r) for r in parts)
    cap = n + spare
    words = np.empty((4, cap), dtype=np.int64)
    product = np.empty(cap, dtype=np.int64)
    qty = np.empty(cap, dtype=np.int64)
    flags = np.empty(cap, dtype=np.uint8)
    shard = np.empty(cap, dtype=np.int64)
    # the fourth word's bytes 24–27 (product, ≥ 0), 28–29 (qty), 30 (flags): little-endian
    qty_of = words[3].view(np.uint16).reshape(cap, 4)[:, 2]
    flags_of = words[3].view(np.uint8).reshape(cap, 8)[:, 6]
    for i, j, block in _blocks(parts):
        np.copyto(words[:, i:j], block.T)
        np.bitwise_and(words[3, i:j], 0xFFFFFFFF, out=product[i:j])
        qty[i:j] = qty_of[i:j]
        flags[i:j] = flags_of[i:j]
    into = shard[:n]
    got = shard_of(words[2, :n], into)
    if not np.may_share_memory(got, into):
        into[:] = got  # a shard_of that does not write into ``out``
    attempt = np.zeros(cap, dtype=np.uint8)
    done = np.zeros(cap, dtype=np.int64)
    full: tuple[npt.NDArray[Any], ...] = (words[0], words[0], words[1], words[2], product)
    full += (shard, qty, flags, attempt, done)
    cols = [c[:n] for c in full]
    cols[1] = cols[0]  # a first attempt's intended time is its order's first
    return Requests(*cols, room=full)


def concat(parts: list[Requests]) -> Requests:
    """All requests of ``parts``, in order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    cols = [np.concatenate([getattr(p, name) for p in parts]) for name in COLUMNS]
    if all(p.first is p.t for p in parts):
        cols[1] = cols[0]
    return Requests(*cols)


def join(parts: list[Requests]) -> Requests:
    """All requests of ``parts`` in some order, for callers that do not depend on the order
    of rows: the others are written into the room after the largest part that has room
    (:func:`from_rows` with spare rows), which is not copied; otherwise :func:`concat`."""
    parts = [p for p in parts if len(p)]
    host = max(parts, key=lambda p: len(p) if p.room is not None else -1, default=None)
    total = sum(len(p) for p in parts)
    if host is None or host.room is None or len(host.room[0]) < total or len(parts) == 1:
        return concat(parts)
    if not all(p.first is p.t for p in parts) or not all(
        c.__array_interface__["data"][0] == r.__array_interface__["data"][0]
        for c, r in zip(host.columns(), host.room, strict=True)
    ):  # a column replaced since (a served batch's own answer times): not in the room
        return concat(parts)
    n = len(host)
    others = [p for p in parts if p is not host]
    for i, full in enumerate(host.room):
        if i == 1:  # ``first`` is ``t``
            continue
        at = n
        for p in others:
            col = getattr(p, COLUMNS[i])
            full[at : at + len(col)] = col
            at += len(col)
    cols = [c[:total] for c in host.room]
    cols[1] = cols[0]
    return Requests(*cols, room=host.room)


def take(r: Requests, index: Index) -> Requests:
    """The requests at ``index`` (indices or a mask)."""
    return r.take(index)


def duplicate(r: Requests) -> npt.NDArray[np.bool_]:
    """Double clicks: the same order id sent again."""
    return r.duplicate()
