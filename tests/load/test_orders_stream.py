"""``flashsale run --orders FILE``: per-attempt records streamed to disk batch by batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simulator.model.calibrate import find_records
from simulator.records import (
    FIELDS,
    STREAM_MAGIC,
    OrderStream,
    StreamReader,
    clear_stream,
    load_orders,
)

ROOT = Path(__file__).resolve().parents[2]


def flashsale(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def batch(n: int, start: int = 0) -> dict[str, np.ndarray]:
    """n made-up records (the types the engine's slots have)."""
    from simulator.load.slots import SLOT_FIELDS

    types = dict(SLOT_FIELDS)
    return {name: (np.arange(start, start + n) % 2).astype(types[name]) for name in FIELDS} | {
        "row": np.arange(start, start + n, dtype=types["row"])
    }


def batches_read(path: Path) -> int:
    """How many whole batches a reader finds at ``path`` now (0: none yet, or no file)."""
    try:
        return sum(1 for _ in StreamReader(path))
    except ValueError:
        return 0


def test_a_running_run_has_written_batches_already(
    fake_store, scenario_file, tmp_path: Path
) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    out, orders = tmp_path / "out", tmp_path / "out" / "orders.npys"  # --out makes the dir
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "simulator", "run", str(scenario_file(rate=200, duration=30))),
            *("--target", url, "--out", str(out), "--orders", str(orders)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 25
        seen = 0
        while not seen and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = batches_read(orders)
        assert proc.poll() is None  # the run is still going ...
        assert seen > 0  # ... and its first batches are on disk, readable
        reader = StreamReader(orders)
        list(reader)
        assert not reader.complete  # no end marker yet
    finally:
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, stderr  # partial run
    report = json.loads((out / "report.json").read_text())
    reader = StreamReader(orders)
    records = list(reader)
    assert reader.complete  # stopped by Ctrl-C, it still closed its stream
    arrays = load_orders(orders)
    assert sum(len(b["row"]) for b in records) == len(arrays["row"]) > 0
    # the records are every attempt of the rows the run reached; the rows it never reached
    # (stopped) are in the report's counts as not sent, and in no record
    never_reached = report["orders"]["attempts"] - len(arrays["row"])
    assert int(arrays["final"].sum()) + never_reached == report["orders"]["scheduled"]
    not_sent = list(arrays["outcome_names"]).index("not_sent")
    recorded_not_sent = int((arrays["outcome"] == not_sent).sum())
    assert recorded_not_sent + never_reached == report["orders"]["outcomes"]["not_sent"]


def test_two_workers_write_a_part_each(fake_store, scenario_file, tmp_path: Path) -> None:
    url, _ = fake_store("ok", ("a=100000", "b=100000"))
    out = tmp_path / "out"
    orders = out / "orders.npys"
    out.mkdir()
    orders.write_bytes(b"an earlier run's single-worker stream")  # must not be read with these
    r = flashsale(
        "run", str(scenario_file(rate=300, duration=1.5)), "--target", url, "--workers", "2",
        "--out", str(out), "--orders", str(orders), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert sorted(p.name for p in out.iterdir()) == [
        "orders.npys.w0",
        "orders.npys.w1",
        "report.json",
    ]
    parts = [load_orders(out / f"orders.npys.w{k}") for k in (0, 1)]
    assert all(len(p["row"]) > 0 for p in parts)
    assert {int(r) % 2 for r in parts[1]["row"]} == {1}  # worker k holds rows k, k + 2, …
    arrays = load_orders(orders)  # the reader takes both parts
    assert len(arrays["row"]) == report["orders"]["attempts"]
    assert sorted(arrays["row"][arrays["final"]].tolist()) == list(
        range(report["orders"]["scheduled"])
    )
    # the CSV beside the report is read from the stream, and equals the records
    csv_dir = tmp_path / "csv"
    c = flashsale("report", str(out / "report.json"), "--csv", str(csv_dir), "-q")
    assert c.returncode == 0, c.stderr
    lines = (csv_dir / "orders.csv").read_text().splitlines()
    assert len(lines) == 1 + len(arrays["row"])
    header = lines[0].split(",")
    cells = [line.split(",") for line in lines[1:]]
    assert [int(x[header.index("row")]) for x in cells] == arrays["row"].tolist()
    assert [int(x[header.index("attempt")]) for x in cells] == list(range(len(cells)))
    # and calibration finds the records beside the report
    found = find_records(out / "report.json")
    assert found is not None and len(found["row"]) == len(arrays["row"])


def test_without_orders_the_out_dir_has_the_report_only(
    fake_store, scenario_file, tmp_path: Path
) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"))
    out = tmp_path / "out"
    r = flashsale("run", str(scenario_file(duration=1.0)), "--target", url, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.iterdir()] == ["report.json"]
    assert find_records(out / "report.json") is None


@pytest.mark.parametrize("where", ["missing-dir/orders.npys", "."])
def test_a_bad_orders_path_exits_2(scenario_file, tmp_path: Path, where: str) -> None:
    r = flashsale("run", str(scenario_file()), "--orders", str(tmp_path / where))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--orders" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_stream_cut_short_keeps_its_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "orders.npys"
    stream = OrderStream(path, ["a", "b"])
    stream(batch(5))
    stream(batch(3, start=5))
    stream({name: batch(0)[name] for name in FIELDS})  # an empty batch writes nothing
    size = path.stat().st_size
    stream(batch(4, start=8))
    stream._f.flush()
    whole = path.read_bytes()
    path.write_bytes(whole[: size + (len(whole) - size) // 2])  # the last batch torn
    reader = StreamReader(path)
    rows = [b["row"].tolist() for b in reader]
    assert rows == [list(range(5)), list(range(5, 8))]
    assert not reader.complete
    arrays = load_orders(path)
    assert arrays["sku_names"].tolist() == ["a", "b"] and len(arrays["final"]) == 8
    stream.close()


def test_a_closed_stream_is_complete_and_loads_like_orders_npz(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with OrderStream(path, ["x"]) as stream:
        stream(batch(2))
    reader = StreamReader(path)
    assert [len(b["row"]) for b in reader] == [2] and reader.complete
    with pytest.raises(RuntimeError), OrderStream(path, ["x"]) as stream:
        stream(batch(1))
        raise RuntimeError("the run died")
    reader = StreamReader(path)
    assert [len(b["row"]) for b in reader] == [1] and not reader.complete
    empty = tmp_path / "empty"
    OrderStream(empty, ["x"]).close()
    arrays = load_orders(empty)
    assert len(arrays["row"]) == 0 and arrays["sku_names"].tolist() == ["x"]
    assert arrays["row"].dtype == load_orders(path)["row"].dtype


def test_not_a_stream(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no orders stream"):
        StreamReader(tmp_path / "nothing")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="not a flashsale orders stream"):
        load_orders(junk)
    other = tmp_path / "other"
    with other.open("wb") as f:
        np.save(f, np.array(["something else"]))
    with pytest.raises(ValueError, match="not a flashsale orders stream"):
        list(StreamReader(other))
    assert STREAM_MAGIC not in "something else"


def test_clear_stream_removes_an_earlier_runs_parts_only(tmp_path: Path) -> None:
    path = tmp_path / "o.npys"
    for name in ("o.npys", "o.npys.w0", "o.npys.w12", "o.npys.wx", "o.npys.w0.bak", "keep"):
        (tmp_path / name).write_text("old")
    clear_stream(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "o.npys.w0.bak", "o.npys.wx"]
    with pytest.raises(ValueError, match="is a directory"):
        clear_stream(tmp_path)
