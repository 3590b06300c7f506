"""``--csv``: timeline.csv carries every per-second series, orders.csv every attempt."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from simulator.outcomes import OUTCOME_NAMES
from simulator.records import load_orders, order_arrays, save_orders
from simulator.report.csvout import ORDER_COLUMNS, timeline_csv, write_csv
from simulator.report.document import Report

from .synth import Synthetic


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_timeline_csv(tmp_path: Path, oversold_run: Synthetic) -> None:
    r = oversold_run.report
    (path,) = write_csv(Report.from_json(r), tmp_path / "out")
    rows = read_csv(path)
    t = r["timeline"]
    assert [int(x["second"]) for x in rows] == t["second"]
    for key in ("intended_per_s", "sent_per_s", "done_per_s"):
        assert [int(x[key]) for x in rows] == t[key]
    for name, series in t["outcomes_per_s"].items():
        assert [int(x[f"{name}_per_s"]) for x in rows] == series
    for key in ("p50_ms", "p99_ms", "max_ms", "service_p99_ms"):
        assert [float(x[key]) if x[key] else None for x in rows] == t[key]
    for sku, units in t["confirmed_units_per_s"].items():
        assert [int(x[f"confirmed_units_{sku}"]) for x in rows] == units
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_empty_seconds_are_empty_cells(oversold_run: Synthetic) -> None:
    r = dict(oversold_run.report)
    r["timeline"] = dict(r["timeline"], p99_ms=[None] * len(r["timeline"]["second"]))
    text = timeline_csv(Report.from_json(r))
    header, first = text.splitlines()[:2]
    assert first.split(",")[header.split(",").index("p99_ms")] == ""


def test_orders_npz_round_trip(tmp_path: Path, oversold_run: Synthetic) -> None:
    s = oversold_run
    path = save_orders(tmp_path, s.rows, s.rec, s.skus)
    assert path.name == "orders.npz"
    loaded = load_orders(path)
    expected = order_arrays(s.rows, s.rec, s.skus)
    assert set(loaded) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(loaded[k], v)
        assert loaded[k].dtype == v.dtype
    assert loaded["final"].sum() == s.rec.n_rows


def test_orders_csv(tmp_path: Path, run_dir: Path, oversold_run: Synthetic) -> None:
    _, orders = write_csv(Report.from_json(oversold_run.report), tmp_path, run_dir / "orders.npz")
    rows = read_csv(orders)
    rec, s = oversold_run.rec, oversold_run
    assert list(rows[0]) == list(ORDER_COLUMNS)
    assert len(rows) == rec.n_attempts
    for i in (0, len(rows) // 2, len(rows) - 1):
        x = rows[i]
        assert int(x["attempt"]) == i and int(x["order_id"]) == int(s.rows["order"][i])
        assert x["sku"] == s.skus[int(s.rows["product"][i])]
        assert x["outcome"] == OUTCOME_NAMES[rec.outcome[i]]
        assert int(x["intended_ns"]) == rec.intended_ns[i]
        assert int(x["done_ns"]) == rec.done_ns[i]
        assert float(x["latency_ms"]) == pytest.approx((rec.done_ns[i] - rec.intended_ns[i]) / 1e6)
    outcomes = [x["outcome"] for x in rows if x["final"] == "1"]
    assert outcomes.count("confirmed") == oversold_run.report["orders"]["outcomes"]["confirmed"]


def test_unsent_attempts_have_empty_times(tmp_path: Path, oversold_run: Synthetic) -> None:
    arrays = order_arrays(oversold_run.rows, oversold_run.rec, oversold_run.skus)
    for key in ("dispatched_ns", "sent_ns", "done_ns"):
        arrays[key] = arrays[key].copy()
        arrays[key][0] = -1
    arrays["outcome"] = arrays["outcome"].copy()
    arrays["outcome"][0] = 0
    np.savez(tmp_path / "orders.npz", **arrays)  # type: ignore[arg-type]
    _, path = write_csv(Report.from_json(oversold_run.report), tmp_path, tmp_path / "orders.npz")
    first = read_csv(path)[0]
    assert first["sent_ns"] == first["done_ns"] == first["latency_ms"] == ""
    assert first["outcome"] == "not_sent"


def test_bad_orders_file(tmp_path: Path, oversold_run: Synthetic) -> None:
    np.savez(tmp_path / "orders.npz", row=np.arange(3))
    with pytest.raises(ValueError, match="no 'order' array"):
        write_csv(Report.from_json(oversold_run.report), tmp_path, tmp_path / "orders.npz")


def test_orders_csv_from_a_stream_equals_the_npz_one(
    tmp_path: Path, run_dir: Path, oversold_run: Synthetic
) -> None:
    from simulator.records import FIELDS, OrderStream

    s = oversold_run
    arrays = order_arrays(s.rows, s.rec, s.skus)
    stream = tmp_path / "orders.npys"
    with OrderStream(stream, s.skus) as sink:
        n = len(arrays["row"])
        for at in range(0, n, 7):  # several batches, the last one short
            sink({name: arrays[name][at : at + 7] for name in FIELDS})
    view = Report.from_json(s.report)
    _, from_stream = write_csv(view, tmp_path / "a", stream)
    _, from_npz = write_csv(view, tmp_path / "b", run_dir / "orders.npz")
    assert from_stream.read_text() == from_npz.read_text()
    assert len(read_csv(from_stream)) == s.rec.n_attempts
