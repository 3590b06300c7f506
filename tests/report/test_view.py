"""Reading reports: both shapes, missing sections become notes, bad files are clear errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from simulator.report.document import Report
from simulator.report.html import render_html
from simulator.report.sections import ReportError
from simulator.report.store import load_report
from simulator.report.terminal import render_text

from .synth import Synthetic

MINIMAL = {"orders": {"scheduled": 3, "outcomes": {"confirmed": 2, "sold_out": 1}}}
OLD_MODEL = {  # the model's first report shape: counts at the top level
    "scenario": "old",
    "mode": "simulate",
    "scale": 1.0,
    "duration_s": 2.0,
    "orders": 3,
    "attempts": 3,
    "retries": 0,
    "outcomes": {"confirmed": 2, "sold_out": 1},
    "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
    "oversell_units": 0,
    "sold_units": 2,
    "skus": {"a": {"stock": 2, "sold_units": 2, "sell_out_s": 1.5}},
    "timeline": {
        "second": [0, 1],
        "demand": [2, 1],
        "sent": [2, 1],
        "completed": [2, 1],
        "outcomes": {"confirmed": [2, 0], "sold_out": [0, 1]},
        "p50_ms": [1.0, None],
    },
}


def test_run_view(oversold_run: Synthetic) -> None:
    r = oversold_run.report
    v = Report.from_json(r)
    assert v.kind == "run" and v.scenario.name == "durian-1111" and v.scenario.scale == 0.02
    assert v.outcomes == r["orders"]["outcomes"]
    assert v.latency["intended"].p99 == r["latency_ms"]["intended"]["p99"]
    assert v.oversell_units == 7 and v.audit is not None and v.audit.problems
    assert [s.sku for s in v.skus] == list(oversold_run.skus)
    assert v.timeline is not None and v.timeline.service and v.timeline.sku_units
    assert set(v.spectrum) == {"intended", "service"}
    assert v.notes == ()


def test_model_view(model_report: dict[str, Any]) -> None:
    v = Report.from_json(model_report)
    assert v.kind == "simulate" and v.scenario.name == "durian-1111"
    assert v.oversell_units == 0
    sell_out = {s.sku: s.sell_out_s for s in v.skus}
    assert sell_out == {k: s["sell_out_s"] for k, s in model_report["skus"].items()}
    assert v.timeline is not None and v.timeline.intended is not None


def test_old_model_shape() -> None:
    v = Report.from_json(OLD_MODEL)
    assert v.kind == "simulate" and v.orders.scheduled == 3 and v.orders.sent == 3
    assert v.latency["intended"].p99 == 2.0 and v.skus[0].sell_out_s == 1.5
    assert v.timeline is not None and v.timeline.latency["p50"] == [1.0, None]


def test_capacity_search_summary_reads_its_best_report(model_report: dict[str, Any]) -> None:
    v = Report.from_json({"mode": "simulate-find", "report": model_report})
    assert v.orders.scheduled == model_report["orders"]["scheduled"]


@pytest.mark.parametrize("doc", [MINIMAL, OLD_MODEL])
def test_sparse_reports_render_with_notes(doc: dict[str, Any]) -> None:
    v = Report.from_json(copy.deepcopy(doc))
    text = render_text(v)
    assert all(len(line) <= 80 for line in text.splitlines())
    page = render_html(v)
    assert 'class="missing"' in page  # the plots it cannot draw are notes, not crashes
    if doc is MINIMAL:
        assert "no timeline" in text and "audit       not in this report" in text


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({}, "no 'orders' section"),
        ({"orders": "many"}, "no 'orders' section"),
        ({"orders": {"scheduled": 1}}, "no outcome counts"),
        ({"orders": {"outcomes": {"confirmed": -1}}}, "outcome 'confirmed' is not a count"),
        ({"orders": {"outcomes": {"confirmed": "x"}}}, "not a count"),
    ],
)
def test_not_a_report(doc: Any, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        Report.from_json(doc, "x.json")


def test_malformed_optional_sections_are_skipped(clean_run: Synthetic) -> None:
    r = copy.deepcopy(clean_run.report)
    r["timeline"]["p99_ms"] = "oops"
    r["timeline"]["confirmed_units_per_s"] = [1, 2]
    r["latency_spectrum"] = {"intended": [[50, 1.0], "bad", [99, None]]}
    r["audit"]["skus"] = None
    v = Report.from_json(r)
    assert v.timeline is not None and "p99" not in v.timeline.latency
    assert v.timeline.sku_units == {} and v.skus == ()
    assert v.spectrum == {"intended": [(50.0, 1.0)]}
    render_html(v)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"hello": 1}', "not a flashsale report"),
    ],
)
def test_load_report_errors_name_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReportError, match=message) as exc:
        load_report(path)
    assert str(path) in str(exc.value)
    with pytest.raises(ReportError, match="is a directory"):
        load_report(tmp_path)
