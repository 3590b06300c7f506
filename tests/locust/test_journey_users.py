"""Journeys in Locust's own users (users mode, no ``--flashsale-engine``).

scenarios/seckill-journey.toml (login → reserve → poll → pay or cancel, and its two background
streams) against the bundled storefront's flow, in one process and in a master with two workers:
every row's journey starts once and ends once, every step's requests are its outcomes, the
order step is the rows' outcome, the audit holds. Then the test shop (tests/shop: another
contract, stock and orders in the real MariaDB) through its whole journey, audited with ``sql``.
And the same seed gives the same per-row choices as the engine's. Locust runs in subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.load.journey import takes
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
from tests.procs import stop
from tests.shop.journey import JOURNEY, SOLD

from .test_distributed import _serve, locust, run_master_and_workers
from .test_own_shop import run_locust

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "seckill-journey.toml"


def run_alone(tmp_path: Path, scenario: Path, host: str, *extra: str) -> tuple[int, str, dict]:
    """One headless Locust process (users mode unless told); exit code, log, report."""
    out = tmp_path / "out"
    proc = locust(
        "--flashsale-scenario", str(scenario), "--headless", "--host", host, "--run-time", "40",
        "--flashsale-out", str(out), "--flashsale-lead", "0.5", "--loglevel", "WARNING", *extra,
        log=tmp_path / "locust.log",
    )  # fmt: skip
    try:
        code = proc.wait(90)
    finally:
        stop(proc)
    log = (tmp_path / "locust.log").read_text()
    return code, log, json.loads((out / "report.json").read_text())


def steps_of(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["journey"]["steps"]}


def check_journeys_add_up(report: dict, log: str) -> dict[str, dict]:
    """What holds for every journey run: each started journey ended once, each step's requests
    are its outcomes, the order step is the rows' outcome, the audit conserved and clean."""
    orders, j = report["orders"], report["journey"]
    rows = orders["scheduled"]
    assert rows > 500 and j["started"] == j["ended"] == rows, log[-3000:]
    assert sum(j["terminals"].values()) == rows
    assert sum(orders["outcomes"].values()) == rows and orders["outcomes"]["not_sent"] == 0
    steps = steps_of(report)
    for s in (*steps.values(), *j["streams"]):
        assert s["requests"] == sum(s["outcomes"].values()), s
    assert steps["login"]["requests"] == rows
    reserve = steps["reserve"]
    assert reserve["order"] and reserve["outcomes"] == {
        k: v for k, v in orders["outcomes"].items() if k != "not_sent"
    }
    held = reserve["outcomes"]["confirmed"]
    assert held > 0 and steps["poll"]["outcomes"]["confirmed"] == held
    assert 0.6 * held < steps["pay"]["requests"] < 0.8 * held
    # where journeys ended adds up to the terminals
    ended_at = sum(n for at in j["ended_at"].values() for n in at.values())
    assert ended_at == rows
    assert {s["name"] for s in j["streams"]} == {"product_page", "countdown"}
    assert all(s["requests"] > 100 for s in j["streams"])
    assert j["time_ms"]["completed"]["count"] == j["terminals"]["completed"] > 0
    audit = report["audit"]
    assert audit["ok"] and all(s["conserved"] for s in audit["skus"].values())
    assert report["locust"]["mode"] == "users" and report["locust"]["checks"]["ok"]
    return steps


@pytest.fixture
def flow_storefront() -> Any:
    """The bundled storefront with the scenario's flow (tokens, a 2 s payment window)."""
    yield from _serve(SCENARIO)


@pytest.mark.slow
def test_users_drive_the_journey_in_one_process(tmp_path: Path, flow_storefront: str) -> None:
    code, log, report = run_alone(tmp_path, SCENARIO, flow_storefront)
    check_journeys_add_up(report, log)
    # Locust's own statistics show every step (the order step under the orders' names)
    for name in ("login", "poll", "pay", "product_page", "countdown"):
        assert f"{name} (intended)" in log and f"{name} (service)" in log
    assert "order (intended)" in log
    assert code == 0, log[-3000:]


@pytest.mark.slow
def test_users_on_two_workers_drive_the_journey(tmp_path: Path, flow_storefront: str) -> None:
    code, log, path = run_master_and_workers(tmp_path, SCENARIO, flow_storefront)
    report = json.loads(path.read_text())
    check_journeys_add_up(report, log)
    loc = report["locust"]
    assert loc["workers"] == 2 and loc["missing_workers"] == []
    assert sum(w["slice_orders"] for w in loc["per_worker"]) == report["orders"]["scheduled"]
    assert all(w["slice_orders"] > 0 for w in loc["per_worker"])
    assert code == 0, log[-3000:]


def plenty(tmp_path: Path) -> Path:
    """The seckill journey with stock for everyone and no per-buyer limit: every reservation
    holds, so which steps a buyer takes is the row's draw alone."""
    text = SCENARIO.read_text()
    text = text.replace("stock = 300", "stock = 100000").replace("stock = 150", "stock = 100000")
    text = text.replace("per_buyer_limit = 2\n", "").replace(
        "duration_s = 10.0", "duration_s = 3.0"
    )
    path = tmp_path / "plenty.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_the_same_seed_takes_the_same_steps_in_users_and_engine_mode(tmp_path: Path) -> None:
    scenario_path = plenty(tmp_path)
    sc = load_scenario(scenario_path)
    assert sc.journey is not None
    n = len(build_schedule(sc).materialize())
    took = takes(sc.journey, sc.seed, np.arange(n, dtype=np.int64))
    names = sc.journey.names()
    want = {name: int(took[:, k].sum()) for k, name in enumerate(names)}
    assert 0 < want["cancel"] < want["pay"] < n
    got = {}
    for mode, extra in (("users", ()), ("engine", ("--flashsale-engine",))):
        (tmp_path / mode).mkdir()
        gen = _serve(scenario_path)
        host = next(gen)
        try:
            code, log, report = run_alone(tmp_path / mode, scenario_path, host, *extra)
        finally:
            gen.close()
        assert code == 0, log[-3000:]
        assert report["orders"]["scheduled"] == n
        # every reservation held (late payments may be refused: the steps were still taken)
        assert steps_of(report)["reserve"]["outcomes"]["confirmed"] == n, log[-3000:]
        got[mode] = {k: s["requests"] for k, s in steps_of(report).items()}
    # both modes take, row by row, the steps the seed's draws say
    assert got["users"] == got["engine"] == {**want, "poll": got["users"]["poll"]}
    assert got["users"]["poll"] >= n


SHOP_SCENARIO = """
name = "shop-journey-locust"
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
baseline_per_s = 120

[target]
url = "{url}"

[run]
timeout_s = 3.0
drain_s = 2.0

[audit]
source = "sql"
dsn = "{dsn}"
query = "{sold}"

"""


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["users", "two-workers"])
def test_users_drive_the_shops_journey(mariadb_dsn: str, tmp_path: Path, mode: str) -> None:
    """login → Bearer token and a session cookie → order (business codes in HTTP 200) → poll
    until it settles → pay by the cookie, in Locust's users; the master audits the shop's
    database with ``sql``: what the run confirmed is what the shop sold."""
    from tests.shop.app import MariaStore, ShopConfig, running_shop
    from tests.shop.db import dsn_of, query, scratch_database

    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0)
        with running_shop(ShopConfig({"A1": 40, "B2": 30}), store) as url:
            path = tmp_path / "shop.toml"
            path.write_text(SHOP_SCENARIO.format(url=url, dsn=dsn_of(db), sold=SOLD) + JOURNEY)
            code, log = run_locust(tmp_path, path, mode)
            sold = {k: int(v) for k, v in query(db, SOLD)}
    assert code == 0, log[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    j, orders = report["journey"], report["orders"]
    rows = orders["scheduled"]
    assert rows > 100 and j["started"] == j["ended"] == rows
    steps = steps_of(report)
    login, order, poll, pay = (steps[n] for n in ("login", "order", "poll", "pay"))
    assert login["requests"] == login["outcomes"]["confirmed"] == rows
    # the token reached the order (no 401), the business codes were read
    assert order["requests"] == rows and orders["outcomes"]["error"] == 0
    confirmed = orders["outcomes"]["confirmed"]
    assert confirmed == order["outcomes"]["confirmed"] == sum(sold.values()) == 70
    assert orders["outcomes"]["sold_out"] == order["outcomes"]["sold_out"] > 0
    # every confirmed order polled twice (PENDING, then DONE); half pay, by the session cookie
    assert poll["requests"] == 2 * confirmed
    assert 0.25 * confirmed < pay["requests"] < 0.75 * confirmed
    assert pay["outcomes"]["confirmed"] == pay["requests"]
    assert j["terminals"]["completed"] == confirmed
    audit = report["audit"]
    assert audit["source"] == "sql" and audit["available"] and audit["ok"]
    assert {s: audit["skus"][s]["sold"] for s in ("A1", "B2")} == {"A1": 40, "B2": 30}
    assert report["locust"]["mode"] == "users"
    assert report["locust"]["workers"] == (2 if mode == "two-workers" else 1)
