"""The typed report: version 1 files still read, version 2 round-trips, the writer never loses a
finished run, shares never round to 100 %, confirmed units count each order id once."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest

from simulator.audit import ServerState, audit
from simulator.load.recorder import Recorder
from simulator.outcomes import CONFIRMED, SOLD_OUT
from simulator.report.document import REPORT_VERSION, Report
from simulator.report.sections import ScenarioInfo
from simulator.report.store import load_report, report_bytes, write_report
from simulator.report.terminal import render_text, share
from simulator.results import confirmations, measure, sku_units_per_s
from tests.load.conftest import constant_rows

from .synth import Synthetic


def test_version_1_file_reads(tmp_path: Path, oversold_run: Synthetic) -> None:
    """The synthetic report is a version 1 document, as ``flashsale run`` wrote it before."""
    v1 = oversold_run.report
    assert v1["flashsale_report"] == 1
    path = tmp_path / "v1.json"
    path.write_bytes(orjson.dumps(v1, option=orjson.OPT_SERIALIZE_NUMPY))
    doc = load_report(path)
    assert doc.version == 1 and doc.thresholds == () and doc.target.storefront is None
    assert doc.orders.outcomes == v1["orders"]["outcomes"]
    assert doc.audit is not None and doc.audit.checks["duplicate_confirmations"]["count"] > 0
    assert all(s.sell_out_s is not None for s in doc.skus)  # derived from the timeline


def test_version_2_round_trips(tmp_path: Path, oversold_run: Synthetic) -> None:
    doc = Report.from_json(oversold_run.report)
    path = write_report(doc, tmp_path)
    again = load_report(path)
    assert orjson.loads(path.read_bytes())["flashsale_report"] == REPORT_VERSION == 2
    assert again == dataclasses.replace(doc, version=REPORT_VERSION)
    assert again.to_json() == doc.to_json()


def test_a_partial_run_names_its_cause(oversold_run: Synthetic) -> None:
    doc = Report.from_json(oversold_run.report)
    stopped = dataclasses.replace(doc, partial=True)
    assert stopped.remarks()[0] == "PARTIAL run: stopped before the end of the schedule"
    lost = dataclasses.replace(
        stopped, run=dataclasses.replace(doc.run, worker_errors=("worker 1 lost mid-run",))
    )
    assert lost.remarks()[0] == "PARTIAL run: worker 1 lost mid-run"
    long = (
        "worker 0 lost mid-run (no heartbeat): its results never came, its orders count as not sent"
    )
    text = render_text(
        dataclasses.replace(lost, run=dataclasses.replace(doc.run, worker_errors=(long,)))
    )
    assert "count as not sent" in text  # a note is wrapped at 80 columns, never cut
    assert all(len(line) <= 80 for line in text.splitlines())
    assert not any("PARTIAL" in r for r in doc.remarks())


def test_model_report_round_trips(model_report: dict) -> None:
    doc = Report.from_json(model_report)
    assert doc.kind == "simulate" and "model" in doc.extra and doc.timeline is not None
    assert Report.from_json(doc.to_json()) == doc


def test_wide_integers_never_lose_the_report(tmp_path: Path, clean_run: Synthetic) -> None:
    """A seed of 2**64 made orjson fail after the run: now it is written as a string."""
    doc = Report.from_json(clean_run.report)
    wide = dataclasses.replace(doc, scenario=ScenarioInfo("x", None, 1.0, 2**64, 1.0))
    path = write_report(wide, tmp_path)
    assert orjson.loads(path.read_bytes())["scenario"]["seed"] == str(2**64)
    assert load_report(path).scenario.seed == 2**64
    data = report_bytes({"extra": {"n": 2**70, "arr": np.arange(2)}, "ok": 2**63})
    assert orjson.loads(data) == {"extra": {"n": str(2**70), "arr": [0, 1]}, "ok": 2**63}


def test_a_failed_write_keeps_the_report(tmp_path: Path, clean_run: Synthetic) -> None:
    from simulator.load.runner import save_run
    from simulator.records import order_arrays

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    doc = Report.from_json(clean_run.report)
    orders = order_arrays(clean_run.rows, clean_run.rec, clean_run.skus)
    path, problems = save_run(doc, blocker, orders)
    assert path is not None and path.parent != blocker
    try:
        assert load_report(path) == dataclasses.replace(doc, version=REPORT_VERSION)
        assert len(problems) == 2
        assert str(blocker / "report.json") in problems[0] and str(path) in problems[0]
        assert str(blocker / "orders.npz") in problems[1]
    finally:
        path.unlink()


@pytest.mark.parametrize(
    ("x", "decimals", "shown"),
    [
        (0.9996, 1, "99.9%"),  # not "100.0%": some orders were late
        (1.0, 1, "100.0%"),
        (0.95, 1, "95.0%"),
        (0.00004, 1, "0.1%"),  # not "0.0%": some were
        (0.0, 1, "0.0%"),
        (0.99996, 2, "99.99%"),
        (0.123456, 2, "12.35%"),
    ],
)
def test_share_never_rounds_to_all_or_nothing(x: float, decimals: int, shown: str) -> None:
    assert share(x, decimals) == shown


def test_terminal_on_time_share_short_of_100(clean_run: Synthetic) -> None:
    r = copy.deepcopy(clean_run.report)
    t = r["timeline"]
    t["intended_per_s"] = [10_000] + [0] * (len(t["second"]) - 1)
    t["sent_per_s"] = [9_996] + [4] + [0] * (len(t["second"]) - 2)
    text = render_text(Report.from_json(r))
    assert "sent on time 99.9%" in text and "100.0%" not in text


def double_clicked() -> tuple[np.ndarray, Recorder]:
    """Four rows: 0 and 1 share an order id (a double click) and both were confirmed."""
    rows = constant_rows(4, 1_000_000)
    rows["order"][1] = rows["order"][0]
    rows["product"][:] = 0
    rows["qty"][:] = [3, 3, 2, 5]
    rec = Recorder.allocate(rows["t_ns"].astype(np.int64), 0)
    rec.sent_ns[:4] = rec.intended_ns[:4]
    rec.done_ns[:4] = rec.intended_ns[:4] + 1_000
    rec.outcome[:4] = [CONFIRMED, CONFIRMED, CONFIRMED, SOLD_OUT]
    return rows, rec


def test_confirmed_units_count_each_order_id_once() -> None:
    rows, rec = double_clicked()
    c = confirmations(rows, rec)
    assert c.order.tolist() == rows["order"][[0, 2]].tolist() and c.units() == 5
    summary = measure(rows, rec, 1.0, ("a", "b"))
    assert summary.orders.confirmed_units == 5  # not 8: the double click counts once
    assert summary.orders.outcomes["confirmed"] == 3  # three orders (rows) were confirmed
    server = ServerState({"skus": {"a": {"initial": 10, "sold": 5}}}, None)
    a = audit(rows, rec, ("a", "b"), {"a": 10, "b": 0}, {}, server)
    assert a["skus"]["a"]["client_units"] == 5 and a["skus"]["a"]["client_orders"] == 2
    assert sum(sku_units_per_s(rows, rec, ("a", "b"), 1)["a"]) == 5
    assert summary.timeline.sku_units["a"] == [5]


def test_a_report_from_before_the_lifecycle_and_history_reads(oversold_run: Synthetic) -> None:
    """Written before the reservation lifecycle and the stock history: both absent, nothing
    lost, the page says the figure is missing; a malformed history is skipped, not fatal."""
    from simulator.report.html import render_html
    from simulator.report.sections import LIFECYCLE_KEYS, LIFECYCLE_TOTALS

    old = copy.deepcopy(oversold_run.report)
    del old["stock_history"]
    for key in (*LIFECYCLE_TOTALS, "holds"):
        del old["audit"][key]
    for s in old["audit"]["skus"].values():
        for key in (*LIFECYCLE_KEYS, "conserved"):
            s.pop(key)
    doc = Report.from_json(old)
    assert doc.stock_history is None and doc.audit is not None and doc.audit.lifecycle == {}
    assert all(s.cycle is None for s in doc.skus)
    assert doc.audit.breakages == doc.oversell_units == 7
    assert "lifecycle" not in render_text(doc)
    page = render_html(doc)
    assert "stock over time not in this report" in page and 'id="lifecycle-verdict"' not in page
    assert "stock_history" not in doc.to_json()
    for bad in ({"t_s": [0, "x"], "series": {}}, {"t_s": [1.0], "series": {"a": {}}}, [1]):
        assert Report.from_json({**oversold_run.report, "stock_history": bad}).stock_history is None


def test_the_lifecycle_and_the_history_round_trip(oversold_run: Synthetic) -> None:
    doc = Report.from_json(oversold_run.report)
    assert doc.stock_history is not None and doc.audit is not None
    assert doc.audit.lifecycle == {
        "undersell_units": 0, "double_returns": 2, "paid_after_expiry": 0, "excess_units": 7,
    }  # fmt: skip
    assert doc.audit.breakages == 7 + 2 + 7
    again = Report.from_json(orjson.loads(report_bytes(doc)))
    assert again.stock_history == doc.stock_history and again.audit == doc.audit
    cycle = dict((s.sku, s.cycle) for s in again.skus)["durian-musang-king"]
    assert cycle is not None and cycle.double_returns == 2 and not cycle.conserved
