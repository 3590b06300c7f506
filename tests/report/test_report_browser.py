"""The HTML report in a real headless Chromium: no console errors, every plot drawn, headline
numbers equal to the report's, and a screenshot kept as a test artefact.

The page under test comes from a real run (``flashsale run`` of the durian scenario at scale
0.02 for 6 s against the bundled storefront); a second page from a synthetic run with an
oversold product, so every figure and the oversell highlight are drawn at least once. Screenshots
go to pytest's tmp dir and, when FLASHSALE_ARTIFACTS is set, are copied there. Skips where Chromium,
chromedriver or selenium is missing, unless FLASHSALE_REQUIRE_SERVICES=1 (CI): then it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.report.document import Report
from simulator.report.html import HEADLINE, OPTIONAL_HEADLINE, write_html

from .conftest import write
from .synth import ROOT, Synthetic
from .test_html import PLOTS, expected_headline


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.json of a real 6-second run of the durian scenario."""
    out = tmp_path_factory.mktemp("real-run")
    cmd = [sys.executable, "-m", "simulator", "run", "scenarios/durian-1111.toml"]
    cmd += ["--scale", "0.02", "--duration", "6", "--out", str(out)]
    cmd += ["--threshold", "oversell_units == 0", "--threshold", "p99_ms < 100000"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "report.json"


def keep(path: Path) -> None:
    """Copy a test artefact to FLASHSALE_ARTIFACTS when that is set."""
    target = os.environ.get("FLASHSALE_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def check_page(browser: Any, report: dict[str, Any], page: Path, shot: Path) -> list[str]:
    """Load the page and check it; returns the keys of the plots drawn."""
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    assert browser.title.startswith("flashsale run")
    # a tall window, so that the screenshot holds the whole page
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(int(height) + 40, 6000))
    drawn = []
    for fig in browser.find_elements(By.CSS_SELECTOR, "figure[data-plot]"):
        key = fig.get_attribute("data-plot")
        svgs = fig.find_elements(By.TAG_NAME, "svg")
        if "missing" in (fig.get_attribute("class") or ""):
            assert not svgs and fig.find_element(By.CLASS_NAME, "note").text, key
            continue
        (svg,) = svgs
        box = browser.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", svg
        )
        assert box[0] > 300 and box[1] > 100, (key, box)
        # the plot's lines were laid out: its drawing has a real extent inside the SVG
        extent = browser.execute_script(
            "const b = arguments[0].querySelector('g[id$=\"axes_1\"]').getBBox();"
            "return [b.width, b.height];",
            svg,
        )
        assert extent[0] > 100 and extent[1] > 50, (key, extent)
        drawn.append(key)
    expected = expected_headline(report)
    for metric, _, _ in HEADLINE:
        if metric in OPTIONAL_HEADLINE and metric not in expected:  # no reservation TTL
            assert not browser.find_elements(By.ID, f"metric-{metric}"), metric
            continue
        el = browser.find_element(By.ID, f"metric-{metric}")
        assert el.get_attribute("data-metric") == metric
        assert el.find_element(By.CLASS_NAME, "value").is_displayed()
        assert float(el.get_attribute("data-value")) == pytest.approx(
            expected[metric], rel=1e-12
        ), metric
    for metric in ("scheduled", "confirmed", "oversell_units"):
        shown = browser.find_element(By.CSS_SELECTOR, f"#metric-{metric} .value").text
        assert int(shown.replace(",", "")) == expected[metric]
    p99 = browser.find_element(By.CSS_SELECTOR, "#metric-p99_ms .value").text
    assert float(p99.removesuffix(" ms")) == report["latency_ms"]["intended"]["p99"]
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    keep(shot)
    return drawn


def test_real_run_report_in_chromium(browser: Any, real_report: Path, tmp_path: Path) -> None:
    report = json.loads(real_report.read_text())
    page = write_html(Report.from_json(report), tmp_path / "report.html", "report.json")
    drawn = check_page(browser, report, page, tmp_path / "flashsale-report-run.png")
    assert {"demand", "latency", "outcomes"} <= set(drawn)
    # the figures whose data the report has are all drawn
    assert ("stock" in drawn) == ("confirmed_units_per_s" in report["timeline"])
    assert ("spectrum" in drawn) == ("latency_spectrum" in report)
    assert ("history" in drawn) == ("stock_history" in report)


def test_every_figure_in_chromium(browser: Any, oversold_run: Synthetic, tmp_path: Path) -> None:
    path = write(oversold_run.report, tmp_path / "report.json")
    page = write_html(Report.from_json(oversold_run.report), tmp_path / "report.html", path.name)
    drawn = check_page(browser, oversold_run.report, page, tmp_path / "flashsale-report-all.png")
    assert drawn == list(PLOTS)
    from selenium.webdriver.common.by import By

    row = browser.find_element(By.CSS_SELECTOR, "#audit-table tr.oversell")
    assert row.get_attribute("data-sku") == "durian-musang-king"
    cell = row.find_element(By.TAG_NAME, "td")  # highlighted: a red tint, bold red text
    assert cell.value_of_css_property("background-color") == "rgba(253, 236, 234, 1)"
    assert cell.value_of_css_property("font-weight") == "600"
    # the reservation lifecycle: a red verdict naming the breakage, the product's row marked
    verdict = browser.find_element(By.ID, "lifecycle-verdict")
    assert "BROKEN: 2 double returns" in verdict.text and verdict.is_displayed()
    assert verdict.value_of_css_property("color") == "rgba(165, 14, 14, 1)"
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#lifecycle-table tr.broken")
    assert row.get_attribute("data-sku") == "durian-musang-king"
    assert row.find_element(By.CSS_SELECTOR, 'td[data-field="double_returns"]').text == "2"
    # the stock over time: one stacked panel per series (totals, then each product)
    history = browser.find_element(By.CSS_SELECTOR, 'figure[data-plot="history"] svg')
    panels = history.find_elements(By.CSS_SELECTOR, 'g[id^="history-axes_"]')
    assert len(panels) == 3


def test_run_metadata_and_thresholds_in_chromium(
    browser: Any, real_report: Path, oversold_run: Synthetic, tmp_path: Path
) -> None:
    """The page says where, when and how the run went, and each threshold's PASS/FAIL."""
    from selenium.webdriver.common.by import By

    report = json.loads(real_report.read_text())
    page = write_html(Report.from_json(report), tmp_path / "meta.html", "report.json")
    browser.get(page.as_uri())

    def field(name: str) -> str:
        el = browser.find_element(By.CSS_SELECTOR, f'#run-meta dd[data-field="{name}"]')
        assert el.is_displayed(), name
        return str(el.text)

    assert field("target") == report["target"]["url"]
    assert field("backend") == report["target"]["backend"] == "memory"
    assert field("started-at") == report["run"]["started_at"]
    assert field("connections") == str(report["run"]["connections"])
    assert field("target-kind") == "bundled storefront"
    assert "max concurrency" in field("storefront")
    rows = browser.find_elements(By.CSS_SELECTOR, "#thresholds tr[data-passed]")
    shown = [r.find_element(By.TAG_NAME, "td").text for r in rows]
    assert shown == [t["expr"] for t in report["thresholds"]]  # the scenario's, then ours
    assert shown[-2:] == ["oversell_units == 0", "p99_ms < 100000"]
    assert all(r.find_element(By.CLASS_NAME, "verdict").text == "PASS" for r in rows)

    # a failing threshold is marked FAIL, in red
    doc = Report.from_json(oversold_run.report)
    from simulator.report.thresholds import check, parse_thresholds

    doc = doc.with_thresholds(check(doc, parse_thresholds(["oversell_units == 0"])))
    page = write_html(doc, tmp_path / "fail.html")
    browser.get(page.as_uri())
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#thresholds tr[data-passed]")
    assert row.get_attribute("data-passed") == "false"
    verdict = row.find_element(By.CLASS_NAME, "verdict")
    assert (
        verdict.text == "FAIL" and verdict.value_of_css_property("color") == "rgba(165, 14, 14, 1)"
    )
    assert "0 passed, 1 failed" in browser.find_element(By.ID, "thresholds-summary").text
