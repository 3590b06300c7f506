"""The HTML page without a browser: plots, headline numbers, audit, self-contained, atomic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from simulator.report.document import Report
from simulator.report.html import HEADLINE, render_html, write_html

from .synth import Synthetic

PLOTS = ("demand", "latency", "outcomes", "stock", "history", "spectrum")


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'<figure[^>]*data-plot="(\w+)"[^>]*>(.*?)</figure>', page, re.S))


def headline(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-metric="(\w+)" data-value="([^"]*)"', page))


def expected_headline(r: dict[str, Any]) -> dict[str, float]:
    """The headline numbers, read straight from the report JSON."""
    o, lat, t, a = r["orders"], r["latency_ms"]["intended"], r["timeline"], r["audit"]
    due = sum(t["intended_per_s"])
    on_time = sum(map(min, t["sent_per_s"], t["intended_per_s"]))
    return {
        "scheduled": o["scheduled"],
        "confirmed": o["outcomes"]["confirmed"],
        "sold_out": o["outcomes"]["sold_out"],
        "throttled": o["outcomes"]["throttled"],
        "errors": o["outcomes"]["error"] + o["outcomes"]["timeout"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "achieved_rate_ratio": on_time / due,
        "throughput_peak_per_s": max(t["done_per_s"]),
        "oversell_units": a["oversell_units"],
        # the reservation lifecycle's, only with a TTL
        **{k: a[k] for k in ("undersell_units", "double_returns", "paid_after_expiry") if k in a},
    }


@pytest.fixture(scope="module")
def page(oversold_run: Synthetic) -> str:
    return render_html(Report.from_json(oversold_run.report), "report.json")


def test_every_plot_is_an_inline_svg(page: str) -> None:
    figs = figures(page)
    assert list(figs) == list(PLOTS)
    for key, body in figs.items():
        assert "<svg" in body and "</svg>" in body, key
        # notes: the latency plot's; the stock plot says the clients' units are reservations
        assert 'class="note"' not in body or key in ("latency", "stock"), key
    assert "expired holds are reserved again" in figs["stock"]


def test_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"url\((?!#)", page)  # only references within the page
    assert "<?xml" not in page  # inline SVG, not documents pasted in


def test_element_ids_are_unique(page: str) -> None:
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)) > 100
    for ref in set(re.findall(r'(?:url\(#|href="#)([^)"]+)', page)):
        assert ref in ids, ref


def test_headline_numbers_are_the_reports(page: str, oversold_run: Synthetic) -> None:
    shown = headline(page)
    assert list(shown) == [m for m, _, _ in HEADLINE]
    for metric, value in expected_headline(oversold_run.report).items():
        assert float(shown[metric]) == pytest.approx(value, rel=1e-12), metric


def test_audit_table_highlights_oversell(page: str) -> None:
    assert re.search(r'<p id="audit-verdict" class="bad">OVERSOLD by 7 units', page)
    table = re.search(r'<table id="audit-table">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r'<tr( class="oversell")? data-sku="([\w-]+)">', table.group())
    assert rows == [(' class="oversell"', "durian-musang-king"), ("", "durian-d24")]
    assert 'id="metric-oversell_units" data-metric="oversell_units" data-value="7"' in page
    assert "oversold by 7 units (stock 240)" in page


def test_clean_run_says_no_oversell(clean_run: Synthetic) -> None:
    page = render_html(Report.from_json(clean_run.report))
    assert '<p id="audit-verdict" class="ok">no oversell</p>' in page
    assert 'class="oversell"' not in page


def test_missing_sections_are_notes(clean_run: Synthetic) -> None:
    r = dict(clean_run.report)
    del r["latency_spectrum"]
    r["timeline"] = {k: v for k, v in r["timeline"].items() if k != "confirmed_units_per_s"}
    figs = figures(render_html(Report.from_json(r)))
    assert "<svg" not in figs["spectrum"] and "no latency spectrum" in figs["spectrum"]
    assert "<svg" not in figs["stock"] and "per-SKU confirmed units" in figs["stock"]
    assert "<svg" in figs["demand"]


def test_model_report_page(model_report: dict[str, Any]) -> None:
    page = render_html(Report.from_json(model_report))
    figs = figures(page)
    assert all("<svg" in figs[k] for k in ("demand", "latency", "outcomes"))
    shown = headline(page)
    assert float(shown["p99_ms"]) == model_report["latency_ms"]["intended"]["p99"]
    assert "flashsale simulate" in page


def test_written_atomically(tmp_path: Path, clean_run: Synthetic) -> None:
    path = write_html(Report.from_json(clean_run.report), tmp_path / "sub" / "r.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, clean_run: Synthetic) -> None:
    path = tmp_path / "r.html"
    path.write_text("old")
    view = Report.from_json(clean_run.report)
    with pytest.raises(IsADirectoryError):
        write_html(view, tmp_path)  # a directory cannot be replaced by a file
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
