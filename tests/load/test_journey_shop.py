"""Buyer journeys through ``flashsale run`` against a storefront with another contract.

The test shop (tests/shop: its own code, stock in a real MariaDB database) wants a login, a
Bearer token, the SKU in the path, business codes in HTTP 200 bodies, polling until an order
settles and a payment that goes by a session cookie. The journey must drive all of that, and
the report must add up: every journey ends once, the order step's outcomes are the orders'.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.shop.app import MariaStore, ShopConfig, running_shop
from tests.shop.db import dsn_of, query, scratch_database
from tests.shop.journey import JOURNEY, SOLD

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name = "shop-journey"
seed = 5
duration_s = 1.5

[[products]]
id = "A1"
stock = 40
vars = {{ goods_id = "A1" }}

[[products]]
id = "B2"
stock = 30
vars = {{ goods_id = "B2" }}

[demand]
baseline_per_s = {rate}

[target]
url = "{url}"

[run]
connections = {connections}
timeout_s = 3.0
drain_s = 2.0

[audit]
source = "sql"
dsn = "{dsn}"
query = "{sold}"

"""


def run_journey(tmp_path: Path, url: str, db: dict[str, Any], **kw: Any) -> tuple[int, dict, str]:
    path = tmp_path / "journey.toml"
    values = {"rate": 120, "connections": 32, **kw}
    path.write_text(SCENARIO.format(url=url, dsn=dsn_of(db), sold=SOLD, **values) + JOURNEY)
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(path), "--json", "--no-reset"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def step(report: dict, name: str) -> dict:
    return next(s for s in report["journey"]["steps"] if s["name"] == name)


@pytest.mark.services
def test_a_whole_journey_against_the_shop(mariadb_dsn: str, tmp_path: Path) -> None:
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0)
        with running_shop(ShopConfig({"A1": 40, "B2": 30}), store) as url:
            code, report, stderr = run_journey(tmp_path, url, db)
        sold = {k: int(v) for k, v in query(db, SOLD)}
    j, orders = report["journey"], report["orders"]
    rows = orders["scheduled"]
    assert rows > 100
    # every journey started ends exactly once, and the counts add up to the schedule
    assert j["started"] == j["ended"] == rows
    assert sum(orders["outcomes"].values()) == rows
    login, order, poll, pay = (step(report, n) for n in ("login", "order", "poll", "pay"))
    assert login["requests"] == rows and login["outcomes"]["confirmed"] == rows
    # the order step is the buyer's outcome: the token was sent (no 401), the shop's codes read
    assert order["order"] and order["requests"] == rows
    assert orders["outcomes"]["confirmed"] == order["outcomes"]["confirmed"] == sum(sold.values())
    assert orders["outcomes"]["sold_out"] == order["outcomes"]["sold_out"] > 0
    assert orders["outcomes"]["error"] == 0
    # polling: every confirmed order is looked at twice (PENDING, then DONE)
    confirmed = orders["outcomes"]["confirmed"]
    assert poll["requests"] == 2 * confirmed
    # half of the buyers pay (a binomial draw per row), and the session cookie pays every time
    assert 0.25 * confirmed < pay["requests"] < 0.75 * confirmed
    assert pay["outcomes"]["confirmed"] == pay["requests"]
    assert j["terminals"]["completed"] == confirmed
    assert j["ended_at"]["order"] == {"sold_out": orders["outcomes"]["sold_out"]}
    # the audit read the shop's own database
    a = report["audit"]
    assert a["available"] and a["oversell_units"] == 0
    assert {s: a["skus"][s]["sold"] for s in ("A1", "B2")} == {"A1": 40, "B2": 30}
    assert code == 0, stderr


@pytest.mark.services
def test_a_full_pool_shows_in_the_steps_latency_not_hidden(
    mariadb_dsn: str, tmp_path: Path
) -> None:
    """One connection for 300 journeys a second: steps wait for it, and their latency, counted
    from when each was due, holds that wait (the service time alone would not)."""
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0)
        with running_shop(ShopConfig({"A1": 40, "B2": 30}), store) as url:
            _, report, _ = run_journey(tmp_path, url, db, rate=300, connections=1)
    j = report["journey"]
    assert j["started"] == j["ended"] == report["orders"]["scheduled"]
    order = step(report, "order")
    # ~1,000 requests a second on one connection: they queue, and the queue is in the latency
    wait, lat, svc = report["queue_wait_ms"], order["latency_ms"], order["service_ms"]
    assert wait["max"] > 1.0  # requests did wait for the one connection
    # and the wait is in the latency: from due time = (dispatch lag +) queue wait + service
    assert lat["mean"] >= svc["mean"] + wait["mean"] - 0.01
    assert lat["max"] >= wait["max"]
