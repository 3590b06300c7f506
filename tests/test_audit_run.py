"""``flashsale run`` against the test shop (tests/shop), audited from the shop's own records.

A subprocess, as a user runs it; the shop and its MariaDB database are real. What the report
says the shop sold is compared to a direct query of that database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import free_port
from tests.shop.app import MariaStore, ShopConfig, running_shop
from tests.shop.db import dsn_of, query, scratch_database

ROOT = Path(__file__).resolve().parent.parent
SOLD = "SELECT sku, SUM(qty) FROM orders GROUP BY sku"
OFF = '(oversell_units n/a: the audit is off ([audit] source = "none"))'

SCENARIO = """
name = "own-shop-test"
seed = 11
duration_s = 1.0

[[products]]
id = "A1"
stock = 5

[[products]]
id = "B2"
stock = 6

[demand]
baseline_per_s = {rate}

[target]
url = "{url}"
orders_path = "/api/v1/open/order"

[run]
connections = 32
timeout_s = 3.0
drain_s = 3.0

[audit]
{audit}
"""


def run(tmp_path: Path, url: str, audit: str, *args: str, rate: int = 200) -> tuple[int, dict, str]:
    path = tmp_path / "own-shop.toml"
    path.write_text(SCENARIO.format(rate=rate, url=url, audit=audit))
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(path), "--json", "--no-reset", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return r.returncode, json.loads(r.stdout), r.stderr


def exit_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("flashsale run: exit ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.services
def test_racy_shops_oversell_is_found_in_its_database(mariadb_dsn: str, tmp_path: Path) -> None:
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=True, racy_delay_s=0.02)
        with running_shop(ShopConfig({"A1": 5, "B2": 6}, open_orders=True), store) as url:
            audit = (
                f'source = "sql"\ndsn = "{dsn_of(db)}"\n'
                f'query = "{SOLD}"\n'
                'ledger_query = "SELECT client_ref, sku, qty, user_id FROM orders"'
            )
            code, report, stderr = run(tmp_path, url, audit)
        direct = {k: int(v) for k, v in query(db, "SELECT sku, SUM(qty) FROM orders GROUP BY sku")}
    a = report["audit"]
    assert a["source"] == "sql" and a["available"] and report["complete"]
    for sku in ("A1", "B2"):
        s = a["skus"][sku]
        assert s["sold"] == s["ledger_units"] == direct.get(sku, 0)
        assert s["client_units"] == s["sold"]  # every sale answered 201, every 201 a sale
        assert s["oversell_units"] == max(0, direct.get(sku, 0) - s["initial"])
    assert a["oversell_units"] > 0 and not a["ok"]  # the race oversold, and the audit says so
    assert a["lost_confirmations"]["count"] == a["phantom_sales"]["count"] == 0
    assert code == 1
    assert exit_line(stderr) == f"flashsale run: exit 1: oversold by {a['oversell_units']:,} units"


@pytest.mark.services
def test_a_safe_shop_passes_and_none_exits_on_completion_only(
    mariadb_dsn: str, tmp_path: Path
) -> None:
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0)
        with running_shop(ShopConfig({"A1": 5, "B2": 6}, open_orders=True), store) as url:
            sql = f'source = "sql"\ndsn = "{dsn_of(db)}"\nquery = "{SOLD}"'
            code, report, stderr = run(tmp_path, url, sql, "--threshold", "oversell_units == 0")
            assert code == 0, stderr
            assert report["audit"]["ok"] and report["audit"]["skus"]["A1"]["sold"] == 5
            assert "flashsale run: exit" not in stderr
            assert "PASS  oversell_units == 0  (oversell_units = 0)" in stderr

            code, report, stderr = run(tmp_path, url, 'source = "none"')
            assert code == 0, stderr
            assert report["audit"]["source"] == "none" and report["complete"]

            code, report, stderr = run(
                tmp_path, url, 'source = "none"', "--threshold", "oversell_units == 0"
            )
    assert code == 1
    assert f"FAIL  oversell_units == 0  {OFF}" in stderr
    assert (
        exit_line(stderr) == f"flashsale run: exit 1: threshold failed: oversell_units == 0 {OFF}"
    )


@pytest.mark.services
def test_a_source_that_fails_is_the_one_reason_to_exit_1(mariadb_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0)
        with running_shop(ShopConfig({"A1": 5, "B2": 6}, open_orders=True), store) as url:
            dead = f'source = "sql"\ndsn = "mysql://root:pw@127.0.0.1:{port}/shop"\nquery = "q"'
            code, report, stderr = run(tmp_path, url, dead, rate=50)
    assert code == 1 and not report["complete"] and not report["audit"]["available"]
    reason = f"sql: connection refused (127.0.0.1:{port})"
    assert report["audit"]["unavailable_reason"] == reason
    assert exit_line(stderr) == (
        f"flashsale run: exit 1: the audit could not read the storefront's records: {reason}"
    )
    assert "pw@" not in stderr + json.dumps(report)  # the password never shows


def test_an_unset_dsn_variable_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    audit = 'source = "sql"\ndsn_env = "FLASHSALE_TEST_UNSET_DSN"\nquery = "q"'
    path = tmp_path / "own-shop.toml"
    path.write_text(SCENARIO.format(rate=10, url="http://127.0.0.1:9", audit=audit))
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert "audit.dsn_env: the environment variable FLASHSALE_TEST_UNSET_DSN is not set" in r.stderr
    assert "Traceback" not in r.stderr
