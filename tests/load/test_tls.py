"""https targets: both transports over TLS, the certificate checked (or trusted, or skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_run_command import flashsale


@pytest.mark.parametrize(("transport", "workers"), [("lean", "1"), ("aiohttp", "1"), ("lean", "2")])
def test_a_run_over_tls_with_the_targets_ca(
    fake_store, scenario_file, tls_cert: tuple[Path, Path], transport: str, workers: str
) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"), tls=tls_cert)
    assert url.startswith("https://")
    path = str(scenario_file(rate=200, duration=1.0))
    r = flashsale(path, "--target", url, "--json", "--transport", transport,
                  "--workers", workers, "--ca-file", str(tls_cert[0]))  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    outcomes = report["orders"]["outcomes"]
    assert outcomes["confirmed"] + outcomes["sold_out"] == report["orders"]["scheduled"] > 150
    assert outcomes["error"] == 0
    assert report["audit"]["available"] and report["audit"]["ok"]  # inventory read over TLS
    assert report["run"]["notes"] == ["reset: 200"]  # and the reset POSTed over TLS


def test_an_untrusted_certificate_stops_the_run_before_it_starts(
    fake_store, scenario_file, tls_cert: tuple[Path, Path]
) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"), tls=tls_cert)
    path = str(scenario_file(rate=200, duration=1.0))
    r = flashsale(path, "--target", url, "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert "certificate verify failed" in r.stderr or "self-signed" in r.stderr, r.stderr
    assert "--ca-file" in r.stderr and "Traceback" not in r.stderr
    # --insecure runs anyway
    r = flashsale(path, "--target", url, "--json", "--insecure")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["orders"]["outcomes"]["error"] == 0


def test_tls_options_are_checked(fake_store, scenario_file, tmp_path: Path) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"))
    path = str(scenario_file(rate=100, duration=0.5))
    r = flashsale(path, "--target", url, "--ca-file", str(tmp_path / "none.pem"))
    assert r.returncode == 2 and "--ca-file: a CA file is only for an https:// target" in r.stderr
    r = flashsale(path, "--target", url.replace("http://", "https://"), "--insecure",
                  "--ca-file", str(tmp_path / "none.pem"))  # fmt: skip
    assert r.returncode == 2 and "--ca-file: CA file" in r.stderr, r.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = flashsale(path, "--target", url.replace("http://", "https://"), "--ca-file", str(bad))
    assert r.returncode == 2 and "--ca-file: CA file" in r.stderr, r.stderr
