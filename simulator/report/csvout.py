"""CSV for spreadsheets and pandas: the per-second timeline and the per-attempt records.

``timeline.csv`` has one row per second and one column per series the report has:
``second, intended_per_s, sent_per_s, done_per_s, <outcome>_per_s…, p50_ms, p99_ms, max_ms,
service_p50_ms…, confirmed_units_<sku>…`` (an empty cell: no value that second).
``orders.csv`` has one row per attempt from ``orders.npz`` or an orders stream (see
:mod:`simulator.records`; a stream is read batch by batch, never whole), with names for SKU and
outcome, times in ns from the run's start (empty: never) and latency/service in ms.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from simulator.files import atomic_write
from simulator.report.document import Report

TIMELINE_FILE = "timeline.csv"
ORDERS_CSV = "orders.csv"
CHUNK = 65_536  # attempts formatted at a time


def timeline_columns(view: Report) -> dict[str, list[int] | list[float | None]]:
    """The timeline's series as named columns (empty dict when the report has no timeline)."""
    t = view.timeline
    if t is None:
        return {}
    cols: dict[str, list[int] | list[float | None]] = {"second": t.second}
    for name, series in (("intended", t.intended), ("sent", t.sent), ("done", t.done)):
        if series is not None:
            cols[f"{name}_per_s"] = series
    for name, counts in t.outcomes.items():
        cols[f"{name}_per_s"] = counts
    for key, values in t.latency.items():
        cols[f"{key}_ms"] = values
    for key, values in t.service.items():
        cols[f"service_{key}_ms"] = values
    for sku, units in t.sku_units.items():
        cols[f"confirmed_units_{sku}"] = units
    return cols


def _cell(x: int | float | None) -> str:
    return "" if x is None else repr(x) if isinstance(x, float) else str(x)


def timeline_csv(view: Report) -> str:
    """``timeline.csv`` as text (just a header line when there is no timeline)."""
    cols = timeline_columns(view)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols or ["second"])
    for row in zip(*cols.values(), strict=True):
        w.writerow([_cell(x) for x in row])
    return buf.getvalue()


def _order_rows(
    batches: Iterable[Mapping[str, npt.NDArray[np.generic]]],
) -> Iterator[list[object]]:
    first = 0  # attempt number of the batch's first record
    for arrays in batches:
        yield from _batch_rows(arrays, first)
        first += len(arrays["row"])


def _batch_rows(
    arrays: Mapping[str, npt.NDArray[np.generic]], first: int
) -> Iterator[list[object]]:
    skus = arrays["sku_names"].tolist()
    names = arrays["outcome_names"].tolist()
    n = len(arrays["row"])
    for at in range(0, n, CHUNK):
        part = {
            k: v[at : at + CHUNK]
            for k, v in arrays.items()
            if k not in ("sku_names", "outcome_names")
        }
        intended = part["intended_ns"].astype(np.int64)
        sent = part["sent_ns"].astype(np.int64)
        done = part["done_ns"].astype(np.int64)
        latency = np.where(done >= 0, (done - intended) / 1e6, np.nan)
        service = np.where((done >= 0) & (sent >= 0), (done - sent) / 1e6, np.nan)
        columns = (
            range(first + at, first + at + len(intended)),
            part["row"].tolist(),
            part["order"].tolist(),
            part["buyer"].tolist(),
            [skus[i] if 0 <= i < len(skus) else str(i) for i in part["sku"].tolist()],
            part["qty"].tolist(),
            part["try"].tolist(),
            intended.tolist(),
            [x if x >= 0 else "" for x in part["dispatched_ns"].tolist()],
            [x if x >= 0 else "" for x in sent.tolist()],
            [x if x >= 0 else "" for x in done.tolist()],
            part["status"].tolist(),
            [names[i] if 0 <= i < len(names) else str(i) for i in part["outcome"].tolist()],
            ["" if x != x else round(x, 6) for x in latency.tolist()],
            ["" if x != x else round(x, 6) for x in service.tolist()],
            [int(x) for x in part["final"].tolist()],
        )
        yield from (list(r) for r in zip(*columns, strict=True))


ORDER_COLUMNS = (
    "attempt",
    "row",
    "order_id",
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
    "latency_ms",
    "service_ms",
    "final",
)


def write_orders_csv(batches: Iterable[Mapping[str, npt.NDArray[np.generic]]], path: Path) -> Path:
    """Write the per-attempt records, given batch by batch (one batch: all of them), as
    ``orders.csv`` (atomically); one batch is formatted at a time."""

    def write(f: IO[bytes]) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(ORDER_COLUMNS)
        w.writerows(_order_rows(batches))
        text.flush()
        text.detach()

    return atomic_write(path, write)


def write_csv(view: Report, out_dir: Path, orders: Path | None = None) -> list[Path]:
    """Write ``timeline.csv`` and, given an ``orders.npz`` or an orders stream, ``orders.csv``
    into ``out_dir``."""
    from simulator.records import order_batches

    data = timeline_csv(view).encode()

    def write(f: IO[bytes]) -> None:
        f.write(data)

    paths = [atomic_write(out_dir / TIMELINE_FILE, write)]
    if orders is not None:
        paths.append(write_orders_csv(order_batches(orders), out_dir / ORDERS_CSV))
    return paths
