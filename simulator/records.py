"""Per-attempt records of a run: ``orders.npz`` (one file, written at the end) or an orders
stream (``flashsale run --orders FILE``, appended batch by batch as the run goes).

One array per field, all of the same length (one element per HTTP attempt, first attempts
first, in schedule-row order, then retries), plus two name tables:

=================  ========  ==========================================================
``row``            int64     schedule row the attempt belongs to
``order``          int64     order id sent (double clicks repeat their original's id)
``buyer``          int64     buyer number
``sku``            int32     index into ``sku_names``
``qty``            uint16    units ordered
``try``            uint8     1 for a first attempt, k for the k-th
``intended_ns``    int64     when it was meant to be sent, ns from the run's start
``dispatched_ns``  int64     when the dispatcher took it (−1: never)
``sent_ns``        int64     when it was written to a connection (−1: never)
``done_ns``        int64     when its answer (or failure) was recorded (−1: never)
``status``         int16     HTTP status (0: none)
``outcome``        uint8     index into ``outcome_names``
``reason``         int32     what decided the outcome (:func:`simulator.outcomes.reason_name`;
                             0: none, e.g. files written before reasons were recorded)
``final``          bool      whether this attempt decided its order
``sku_names``      str       product ids, by index
``outcome_names``  str       outcome names, by code
=================  ========  ==========================================================

Uncompressed (``np.savez``): fast to write at the end of a run, a few dozen bytes per attempt, and
loadable with NumPy alone (``np.load(path)``), no pickle. A file without ``reason`` (written
before reasons were recorded) loads with reason 0 everywhere.

**The orders stream** holds the same fields without holding the run in memory: one file of
``.npy`` arrays one after another (each readable by ``np.load`` on the open file, no pickle):
a magic ``[STREAM_MAGIC]``, ``sku_names``, ``outcome_names``, then for each batch of finished
attempts a marker ``int64 [1, n]`` followed by the :data:`FIELDS` arrays (n elements each, in
that order), and at the end a marker ``int64 [2, attempts]``. Each batch is flushed as it is
written: a run that dies leaves its batches so far readable (a torn last batch is skipped) and
no end marker, which is how a reader tells a complete stream from a cut one. A run stopped
early (Ctrl-C) records every attempt of the schedule rows it reached: the rows it never reached
count in its report as not sent and have no record. With N > 1
workers, worker k writes ``FILE.wk`` (:func:`stream_part`) and a reader reads them all.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from simulator.files import atomic_write

if TYPE_CHECKING:
    from simulator.load.recorder import Recorder

ORDERS_FILE = "orders.npz"
FIELDS = (
    "row",
    "order",
    "buyer",
    "sku",
    "qty",
    "try",
    "intended_ns",
    "dispatched_ns",
    "sent_ns",
    "done_ns",
    "status",
    "outcome",
    "reason",
    "final",
)


def order_arrays(
    rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str]
) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of ``orders.npz`` for a run's schedule rows and recorder."""
    from simulator.outcomes import OUTCOME_NAMES

    m = rec.n_attempts
    row = rec.row_of_attempt()
    final = np.zeros(m, dtype=bool)
    final[rec.final_attempt()] = True
    return {
        "row": row,
        "order": rows["order"][row].astype(np.int64),
        "buyer": rows["buyer"][row].astype(np.int64),
        "sku": rows["product"][row].astype(np.int32),
        "qty": rows["qty"][row].astype(np.uint16),
        "try": rec.tries[:m].copy(),
        "intended_ns": rec.intended_ns[:m].copy(),
        "dispatched_ns": rec.dispatched_ns[:m].copy(),
        "sent_ns": rec.sent_ns[:m].copy(),
        "done_ns": rec.done_ns[:m].copy(),
        "status": rec.status[:m].copy(),
        "outcome": rec.outcome[:m].copy(),
        "reason": rec.reasons()[:m].copy(),
        "final": final,
        "sku_names": np.array(list(skus), dtype=np.str_),
        "outcome_names": np.array(OUTCOME_NAMES, dtype=np.str_),
    }


STREAM_MAGIC = "flashsale-orders-stream-1"
ORDERS_STREAM = "orders.npys"  # the stream's name beside a report, where calibration and CSV look
_BATCH, _END = 1, 2


def stream_part(path: Path, worker: int, workers: int) -> Path:
    """The file worker ``worker`` of ``workers`` streams to: ``path`` itself for one worker,
    ``path.w<k>`` for several (deterministic, so that a reader finds them all)."""
    return path if workers == 1 else path.with_name(f"{path.name}.w{worker}")


def stream_parts(path: Path) -> list[Path]:
    """The files of the orders stream at ``path``: itself, or its workers' parts ``path.w0``,
    ``path.w1``, … (consecutive); empty when there is neither."""
    if path.is_file():
        return [path]
    parts: list[Path] = []
    while (part := stream_part(path, len(parts), 2)).is_file():
        parts.append(part)
    return parts


def clear_stream(path: Path) -> None:
    """Remove an earlier stream at ``path`` (the file and any ``path.w<k>`` parts), so that a
    new run's parts are not read together with an old run's; ValueError when ``path`` cannot
    be a stream file (a directory, or in a directory that does not exist)."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a file name for the orders stream")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: directory {path.parent} does not exist")
    pattern = re.compile(re.escape(path.name) + r"\.w[0-9]+")
    for old in [path, *(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))]:
        old.unlink(missing_ok=True)


class OrderStream:
    """A per-attempt sink for the engine that appends each batch to a stream file as it comes
    (format above) and keeps nothing: a long run's records cost disk, not memory.

    Use as a context manager: leaving it normally writes the end marker (the stream is
    complete); leaving it by an exception closes the file without one.
    """

    def __init__(self, path: Path, skus: Sequence[str]) -> None:
        from simulator.outcomes import OUTCOME_NAMES

        self.path = path
        self.attempts = 0
        self._f: IO[bytes] = open(path, "wb")  # noqa: SIM115  # closed by close()/__exit__
        for head in (
            np.array([STREAM_MAGIC], dtype=np.str_),
            np.array(list(skus), dtype=np.str_),
            np.array(OUTCOME_NAMES, dtype=np.str_),
        ):
            np.save(self._f, head, allow_pickle=False)
        self._f.flush()

    def __call__(self, batch: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Append a batch of finished attempts (fields as :data:`FIELDS`) and flush it."""
        n = len(batch["row"])
        if n == 0:
            return
        np.save(self._f, np.array([_BATCH, n], dtype=np.int64), allow_pickle=False)
        for name in FIELDS:
            np.save(self._f, np.asarray(batch[name]), allow_pickle=False)
        self._f.flush()
        self.attempts += n

    def close(self, complete: bool = True) -> None:
        """Close the file, first writing the end marker if ``complete``."""
        if self._f.closed:
            return
        try:
            if complete:
                np.save(self._f, np.array([_END, self.attempts], dtype=np.int64))
        finally:
            self._f.close()

    def __enter__(self) -> OrderStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(complete=kind is None)


class StreamReader:
    """Reads an orders stream (all its workers' parts) batch by batch, holding one at a time.

    Iterating yields each batch as a dict of the :data:`FIELDS` arrays plus ``sku_names`` and
    ``outcome_names``; afterwards :attr:`complete` says whether every part had its end marker
    (False: a run that died, or a part still being written). ValueError when there is no
    stream at the path or a file is not one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts = stream_parts(path)
        if not self.parts:
            raise ValueError(f"{path}: no orders stream there (nor its parts {path.name}.w0, …)")
        self.complete = True

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[np.generic]]]:
        self.complete = True
        for part in self.parts:
            with open(part, "rb") as f:
                try:
                    magic = np.load(f, allow_pickle=False)
                    skus = np.load(f, allow_pickle=False)
                    outcomes = np.load(f, allow_pickle=False)
                except (EOFError, ValueError, OSError):
                    raise ValueError(f"{part}: not a flashsale orders stream") from None
                if magic.shape != (1,) or str(magic[0]) != STREAM_MAGIC:
                    raise ValueError(f"{part}: not a flashsale orders stream")
                ended = False
                while True:
                    try:
                        kind, n = (int(x) for x in np.load(f, allow_pickle=False))
                        if kind == _END:
                            ended = True
                            break
                        batch = {name: np.load(f, allow_pickle=False) for name in FIELDS}
                    except (EOFError, ValueError):
                        break  # the end of a stream cut short (a torn last batch is skipped)
                    if any(len(batch[name]) != n for name in FIELDS):
                        raise ValueError(f"{part}: a batch's arrays are not all {n} long")
                    batch["sku_names"] = skus
                    batch["outcome_names"] = outcomes
                    yield batch
                self.complete = self.complete and ended


def find_orders(run_dir: Path) -> Path | None:
    """The per-attempt records in a run's directory: its ``orders.npz``, else its orders stream
    ``orders.npys`` (or that stream's workers' parts); None when there are neither."""
    npz = run_dir / ORDERS_FILE
    if npz.is_file():
        return npz
    stream = run_dir / ORDERS_STREAM
    return stream if stream_parts(stream) else None


def order_batches(path: Path) -> Iterator[dict[str, npt.NDArray[np.generic]]]:
    """The records at ``path`` batch by batch: an orders stream one batch at a time (never the
    whole run in memory), an ``orders.npz`` as one batch. ValueError when it is neither."""
    if path.is_file() and zipfile.is_zipfile(path):
        yield load_orders(path)
    else:
        yield from StreamReader(path)


def _joined(
    parts: Sequence[Mapping[str, npt.NDArray[np.generic]]],
    skus: npt.NDArray[np.generic],
    outcomes: npt.NDArray[np.generic],
) -> dict[str, npt.NDArray[np.generic]]:
    from simulator.load.slots import SLOT_FIELDS

    types = dict(SLOT_FIELDS)
    out: dict[str, npt.NDArray[np.generic]] = {
        name: (
            np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, dtype=types[name])
        )
        for name in FIELDS
    }
    out["sku_names"] = skus
    out["outcome_names"] = outcomes
    return out


class MemoryRecords:
    """A per-attempt sink for the engine that keeps every batch's records in memory (tests,
    ``orders.npz`` of a short run): each batch is copied, as the engine recycles its slots."""

    def __init__(self) -> None:
        self.parts: list[dict[str, npt.NDArray[np.generic]]] = []

    def __call__(self, batch: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Keep a copy of a batch of finished attempts (fields as :data:`FIELDS`)."""
        self.parts.append({name: np.array(batch[name]) for name in FIELDS})

    def arrays(self, skus: Sequence[str]) -> dict[str, npt.NDArray[np.generic]]:
        """The kept records as the arrays of ``orders.npz`` (in the order they finished)."""
        from simulator.outcomes import OUTCOME_NAMES

        return _joined(
            self.parts,
            np.array(list(skus), dtype=np.str_),
            np.array(OUTCOME_NAMES, dtype=np.str_),
        )


def save_orders(
    out_dir: Path, rows: npt.NDArray[np.void], rec: Recorder, skus: Sequence[str]
) -> Path:
    """Write ``out_dir/orders.npz`` atomically; returns its path."""
    return save_order_arrays(out_dir, order_arrays(rows, rec, skus))


def save_order_arrays(out_dir: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> Path:
    """Write the arrays of :func:`order_arrays` as ``out_dir/orders.npz`` atomically."""

    def write(f: IO[bytes]) -> None:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # no object arrays: no pickle needed

    return atomic_write(out_dir / ORDERS_FILE, write)


def load_orders(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Read an ``orders.npz`` or a whole orders stream (all its parts, even one cut short) into
    memory, for small runs such as a calibration run; ValueError naming the first missing field.
    """
    if not path.is_file() or not zipfile.is_zipfile(path):
        batches = list(StreamReader(path))
        if batches:
            return _joined(batches, batches[0]["sku_names"], batches[0]["outcome_names"])
        with open(stream_parts(path)[0], "rb") as f:
            np.load(f, allow_pickle=False)  # the magic, checked by the reader already
            skus = np.load(f, allow_pickle=False)
            outcomes = np.load(f, allow_pickle=False)
        return _joined([], skus, outcomes)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "row" in arrays and "reason" not in arrays:  # saved before reasons were recorded
        arrays["reason"] = np.zeros(len(arrays["row"]), dtype=np.int32)
    for name in (*FIELDS, "sku_names", "outcome_names"):
        if name not in arrays:
            raise ValueError(f"{path}: no {name!r} array (not a flashsale orders file)")
    n = len(arrays["row"])
    for name in FIELDS:
        if len(arrays[name]) != n:
            raise ValueError(f"{path}: {name!r} has {len(arrays[name])} elements, not {n}")
    return arrays
