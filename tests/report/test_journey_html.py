"""The journey section of a real run's report: report.json round trip, terminal, and the HTML
page in headless Chromium (tables laid out, figures equal to the report's, no console errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.report.document import Report
from simulator.report.html import write_html
from simulator.report.terminal import render_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def journey_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.json of a real 4-second run of scenarios/seckill-journey.toml."""
    out = tmp_path_factory.mktemp("journey-run")
    cmd = [sys.executable, "-m", "simulator", "run", "scenarios/seckill-journey.toml"]
    cmd += ["--duration", "4", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (out / "report.json").exists(), r.stderr[-2000:]
    return out / "report.json"


def test_the_journey_section_reads_back_as_written(journey_report: Path) -> None:
    data = json.loads(journey_report.read_text())
    report = Report.from_json(data)
    assert report.journey is not None
    assert report.to_json()["journey"] == data["journey"]
    text = render_text(report)
    assert "journeys    " in text and "reserve *" in text and "product_page" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_journey_tables_in_chromium(browser: Any, journey_report: Path, tmp_path: Path):
    from selenium.webdriver.common.by import By

    data = json.loads(journey_report.read_text())
    page = write_html(Report.from_json(data), tmp_path / "journey.html", "report.json")
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#journey-steps tr")[1:]
    names = [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows]
    assert names == ["login", "reserve (order)", "poll", "pay", "cancel"]
    for row, step in zip(rows, data["journey"]["steps"], strict=True):
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert int(cells[1].replace(",", "")) == step["requests"]
        assert float(cells[6]) == pytest.approx(step["latency_ms"]["p99"], abs=0.006)
        assert row.is_displayed()
    streams = browser.find_elements(By.CSS_SELECTOR, "#streams tr")[1:]
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in streams] == [
        "product_page",
        "countdown",
    ]
    summary = browser.find_element(By.ID, "journey-summary").text
    assert f"{data['journey']['started']:,} journeys started" in summary
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
