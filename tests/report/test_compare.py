"""``flashsale compare``: the table, verdicts and exit codes (0 same/better, 1 regressed, 2 bad)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.report.compare import REGRESSION, compare
from simulator.report.document import Report

from .conftest import write
from .synth import Synthetic


def worse(report: dict[str, Any], **changes: float) -> dict[str, Any]:
    r = copy.deepcopy(report)
    for key, factor in changes.items():
        if key == "oversell":
            r["audit"]["oversell_units"] += int(factor)
        elif key == "error":
            r["orders"]["outcomes"]["error"] += int(factor)
        else:
            r["latency_ms"]["intended"][key] *= factor
    return r


@pytest.mark.parametrize(
    ("changes", "tolerance", "code", "regressed"),
    [
        ({}, "10", 0, []),
        ({"p99": 1.05}, "10", 0, []),
        ({"p99": 1.5}, "10", 1, ["p99_ms"]),
        ({"p99": 1.5}, "60", 0, []),
        ({"p99": 0.5}, "10", 0, []),  # better
        ({"max": 3.0, "p50": 2.0}, "10", 1, ["p50_ms", "max_ms"]),
        ({"oversell": 1}, "1000", 1, ["oversell_units"]),  # correctness: no tolerance
        ({"error": 50}, "10", 1, ["error_rate"]),
    ],
)
def test_exit_codes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clean_run: Synthetic,
    changes: dict[str, float],
    tolerance: str,
    code: int,
    regressed: list[str],
) -> None:
    base = write(clean_run.report, tmp_path / "base.json")
    new = write(worse(clean_run.report, **changes), tmp_path / "new.json")
    assert main(["compare", str(base), str(new), "--tolerance", tolerance]) == code
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines())
    for metric in ("p50_ms", "p99_ms", "max_ms", "achieved_rate_ratio", "errors", "oversell_units"):
        assert metric in out
    if regressed:
        assert f"regressed past {float(tolerance):g}% tolerance: {', '.join(regressed)}" in out
    else:
        assert "no regression" in out


def test_latency_noise_floor(clean_run: Synthetic) -> None:
    r = copy.deepcopy(clean_run.report)
    r["latency_ms"]["intended"]["p50"] = 0.2
    slower = copy.deepcopy(r)
    slower["latency_ms"]["intended"]["p50"] = 0.6  # +200 %, but only 0.4 ms
    changes = {c.metric: c for c in compare(Report.from_json(r), Report.from_json(slower))}
    assert changes["p50_ms"].verdict == "same"  # within the noise floor
    changes = {
        c.metric: c for c in compare(Report.from_json(r), Report.from_json(slower), min_ms=0.1)
    }
    assert changes["p50_ms"].verdict == REGRESSION


def test_better_and_missing(clean_run: Synthetic, model_report: dict[str, Any]) -> None:
    base = Report.from_json(worse(clean_run.report, p99=2.0))
    changes = {c.metric: c for c in compare(base, Report.from_json(clean_run.report))}
    assert changes["p99_ms"].verdict == "better"
    assert changes["p99_ms"].change_pct == pytest.approx(-50.0)
    no_audit = copy.deepcopy(clean_run.report)
    del no_audit["audit"]
    changes = {c.metric: c for c in compare(base, Report.from_json(no_audit))}
    assert changes["oversell_units"].verdict == "n/a"


def test_run_vs_model_notes_the_difference(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clean_run: Synthetic,
    model_report: dict[str, Any],
) -> None:
    base = write(clean_run.report, tmp_path / "run.json")
    new = write(model_report, tmp_path / "model.json")
    assert main(["compare", str(base), str(new), "--tolerance", "1e9"]) in (0, 1)
    assert "note: comparing run durian-1111 (scale 0.02) with simulate" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"not json", "not JSON"),
        (b'"a string"', "expected a JSON object"),
        (b'{"orders": {"outcomes": {}}}', "no outcome counts"),
    ],
)
def test_unreadable_files_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clean_run: Synthetic,
    content: bytes | None,
    message: str,
) -> None:
    base = write(clean_run.report, tmp_path / "base.json")
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_bytes(content)
    for args in ([str(base), str(bad)], [str(bad), str(base)]):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"flashsale: error: {bad}: ") and message in err
        assert "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_tolerance_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_run: Synthetic, value: str
) -> None:
    base = write(clean_run.report, tmp_path / "base.json")
    assert main(["compare", str(base), str(base), "--tolerance", value]) == 2
    assert "--tolerance: must be a number ≥ 0" in capsys.readouterr().err
