"""Per-attempt records of a run, saved beside its report as ``orders.npz`` (proposed format).

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
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


def concat_orders(
    parts: Sequence[dict[str, npt.NDArray[np.generic]]],
) -> dict[str, npt.NDArray[np.generic]]:
    """Several workers' order arrays as one (their ``row`` numbers are the schedule's global
    row numbers already: worker k of N holds rows k, k + N, …)."""
    out: dict[str, npt.NDArray[np.generic]] = {
        name: np.concatenate([p[name] for p in parts]) for name in FIELDS
    }
    out["sku_names"] = parts[0]["sku_names"]
    out["outcome_names"] = parts[0]["outcome_names"]
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
        from simulator.load.slots import SLOT_FIELDS
        from simulator.outcomes import OUTCOME_NAMES

        types = dict(SLOT_FIELDS)
        out: dict[str, npt.NDArray[np.generic]] = {
            name: (
                np.concatenate([p[name] for p in self.parts])
                if self.parts
                else np.zeros(0, dtype=types[name])
            )
            for name in FIELDS
        }
        out["sku_names"] = np.array(list(skus), dtype=np.str_)
        out["outcome_names"] = np.array(OUTCOME_NAMES, dtype=np.str_)
        return out


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
    """Read an ``orders.npz``; ValueError naming the first missing field."""
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
