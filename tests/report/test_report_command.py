"""``flashsale report``: terminal summary by default, --html, --csv, --threshold exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.report.metrics import METRICS

from .conftest import write
from .synth import Synthetic
from .test_html import PLOTS


def test_terminal_summary_fits_80_columns(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(run_dir / "report.json")]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for text in ("flashsale run · durian-1111", "OVERSOLD by 7 units", "intended", "service"):
        assert text in out


def test_model_summary(
    tmp_path: Path, model_report: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(model_report, tmp_path / "model.json")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "flashsale simulate · durian-1111" in out and "no oversell" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_html_and_csv(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, csv_dir = tmp_path / "r.html", tmp_path / "csv"
    args = ["report", str(run_dir / "report.json"), "--html", str(html), "--csv", str(csv_dir)]
    assert main([*args, "-q"]) == 0
    out = capsys.readouterr().out
    assert html.read_text().count("<svg") == len(PLOTS)  # every figure drawn
    assert sorted(p.name for p in csv_dir.iterdir()) == ["orders.csv", "timeline.csv"]
    assert f"wrote {html}" in out and "flashsale run ·" not in out


def test_csv_without_orders_says_so(
    tmp_path: Path, clean_run: Synthetic, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(clean_run.report, tmp_path / "run" / "report.json")
    assert main(["report", str(path), "--csv", str(tmp_path / "csv"), "-q"]) == 0
    assert "no orders.npz beside" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "csv").iterdir()] == ["timeline.csv"]


@pytest.mark.parametrize(
    ("thresholds", "code", "lines"),
    [
        (["p99_ms < 1000"], 0, ["PASS  p99_ms < 1000"]),
        (["p99_ms < 1000", "oversell_units == 0"], 1, ["FAIL  oversell_units == 0"]),
        (["error_rate < 0.5", "achieved_rate_ratio > 0.95"], 0, ["2 passed, 0 failed"]),
    ],
)
def test_thresholds_exit_code(
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    thresholds: list[str],
    code: int,
    lines: list[str],
) -> None:
    args = [a for t in thresholds for a in ("--threshold", t)]
    assert main(["report", str(run_dir / "report.json"), "-q", *args]) == code
    out = capsys.readouterr().out
    assert all(line in out for line in lines)


def test_bad_threshold_exits_2_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert main(["report", str(missing), "--threshold", "p99 < 5"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'p99'; did you mean 'p99_ms'" in err and "nope" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.json"], "nope.json: no such file"),
        ([], "give a report file"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["report", *args]) == 2
    assert message in capsys.readouterr().err


def test_unwritable_html(tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["report", str(run_dir / "report.json"), "-q", "--html", str(blocker / "r.html")]
    assert main(args) == 2
    assert "--html:" in capsys.readouterr().err


def test_metrics_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--metrics"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in METRICS)
