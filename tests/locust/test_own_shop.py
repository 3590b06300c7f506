"""``flashsale locust`` against the test shop (tests/shop): another contract, sent exactly as
``flashsale run`` sends it.

The shop wants ``Authorization: Bearer <token>`` (tokens from its login, one per buyer, in a
buyers CSV: buyer k takes row k), the SKU's own id in a templated path
(``/api/v1/seckill/{goods_id}/order``), a JSON body of the order's quantity, and answers HTTP 200
with a business code that the scenario's body rule turns into the outcome. Its stock and orders
live in the real MariaDB; the master's audit reads them with the scenario's ``sql`` source. Locust
runs in subprocesses (users mode, engine mode, and a master with two workers, each worker its
slice of the buyers' rows); what they report is compared with the shop's own database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from simulator.locust import LOCUSTFILE
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
from tests.procs import free_port, stop
from tests.shop.app import MariaStore, ShopConfig, running_shop
from tests.shop.db import dsn_of, query, scratch_database

ROOT = Path(__file__).resolve().parents[2]
BAD_EVERY = 7  # buyer rows k ≡ 0 (mod 7) get a token the shop never issued
N_ROWS = 400
# the shop keys its stock by its own ids; the audit query names flashsale's SKUs
SOLD = "SELECT CASE sku WHEN '1' THEN 'durian' ELSE 'mango' END, SUM(qty) FROM orders GROUP BY sku"

SCENARIO = """
name = "own-shop-locust"
seed = 5
duration_s = 1.0

[[products]]
id = "durian"
stock = 5
vars = {{ goods_id = 1 }}

[[products]]
id = "mango"
stock = 6
vars = {{ goods_id = 2 }}

[demand]
baseline_per_s = 120

[buyers]
data = "buyers.csv"
repeat_share = 0.3

[target]
url = "{url}"
orders_path = "/api/v1/seckill/{{goods_id}}/order"
body = '{{"qty":{{qty}}}}'

[target.headers]
Authorization = "Bearer {{token}}"
X-Request-Id = "{{order_id}}"

[target.outcome]
path = "code"
values = {{ "0" = "confirmed", "1001" = "sold_out", "1002" = "rejected", "401" = "rejected" }}

[run]
connections = 16
timeout_s = 5.0
drain_s = 3.0

[audit]
source = "sql"
dsn = "{dsn}"
query = "{sold}"
"""


def login(base: str, user: str) -> str:
    req = urllib.request.Request(
        base + "/api/v1/login",
        data=json.dumps({"user_id": user}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        token: str = json.loads(r.read())["data"]["token"]
        return token


def locust(*args: str, log: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING", *args]
    return subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip


def run_locust(tmp_path: Path, scenario: Path, mode: str) -> tuple[int, str]:
    """A headless run (stand-alone, or a master and two workers); exit code and the log."""
    common = ["--flashsale-scenario", str(scenario), "--flashsale-no-reset", "--flashsale-lead",
              "0.5", "--flashsale-out", str(tmp_path / "out")]  # fmt: skip
    if mode == "engine":
        common.append("--flashsale-engine")
    if mode != "two-workers":
        proc = locust(*common, "--headless", "--run-time", "30", log=tmp_path / "master.log")
        try:
            code = proc.wait(60)
        finally:
            stop(proc)
        return code, (tmp_path / "master.log").read_text()
    port = free_port()
    master = locust(
        *common, "--master", "--master-bind-port", str(port), "--expect-workers", "2",
        "--headless", "--run-time", "30", log=tmp_path / "master.log",
    )  # fmt: skip
    workers = [
        locust(
            "--flashsale-scenario",
            str(scenario),
            "--worker",
            "--master-port",
            str(port),
            log=tmp_path / f"worker{k}.log",
        )
        for k in range(2)
    ]
    try:
        code = master.wait(60)
        for w in workers:
            w.wait(15)
    finally:
        for p in (master, *workers):
            stop(p)
    return code, (tmp_path / "master.log").read_text()


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["users", "engine", "two-workers"])
def test_locust_sends_the_shops_request_shape(mariadb_dsn: str, tmp_path: Path, mode: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0.0)
        with running_shop(ShopConfig({"1": 5, "2": 6}, per_buyer_limit=1), store) as url:
            lines = ["user,token"]
            for k in range(N_ROWS):
                token = login(url, f"u{k}")
                lines.append(f"u{k},{'forged' + str(k) if k % BAD_EVERY == 0 else token}")
            (tmp_path / "buyers.csv").write_text("\n".join(lines) + "\n")
            path = tmp_path / "shop.toml"
            path.write_text(SCENARIO.format(url=url, dsn=dsn_of(db), sold=SOLD))
            code, log = run_locust(tmp_path, path, mode)
            sold = query(db, "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM orders")[0]
            per_sku = dict(query(db, "SELECT sku, SUM(qty) FROM orders GROUP BY sku"))
            users = {r[0] for r in query(db, "SELECT user_id FROM orders")}
    assert code == 0, log
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    orders = report["orders"]
    outcomes, reasons = orders["outcomes"], orders["reasons"]
    # what the Locust run says it confirmed is what the shop's database holds
    assert outcomes["confirmed"] == sold[0] == 11  # the shop sold out: 5 + 6 units
    assert orders["confirmed_units"] == int(sold[1])
    assert outcomes["error"] == outcomes["timeout"] == outcomes["not_sent"] == 0
    # the templated path reached each product's own id
    assert {k: int(v) for k, v in per_sku.items()} == {"1": 5, "2": 6}
    # the Bearer header carried each buyer's row: only buyers with a real token bought
    rows = build_schedule(load_scenario(path)).materialize()
    assert users <= {f"u{b}" for b in rows["buyer"].tolist()}
    assert all(int(u[1:]) % BAD_EVERY != 0 for u in users)
    forged = int(np.count_nonzero(rows["buyer"] % BAD_EVERY == 0))
    assert forged > 0
    # the outcomes came from the body's business codes, with their reasons
    assert reasons["rejected"]["body code 401"] == forged
    assert set(reasons["rejected"]) <= {"body code 401", "body code 1002"}
    assert reasons["sold_out"] == {"body code 1001": outcomes["sold_out"]}
    assert reasons["confirmed"] == {"body code 0": 11}
    assert sum(outcomes.values()) == orders["scheduled"] == len(rows)
    # the master audited the shop's own database with the scenario's sql source
    audit = report["audit"]
    assert audit["source"] == "sql" and audit["available"] and audit["ok"]
    assert audit["skus"]["durian"]["sold"] == 5 and audit["skus"]["mango"]["sold"] == 6
    loc = report["locust"]
    assert loc["checks"]["ok"] and loc["mode"] == ("engine" if mode == "engine" else "users")
    assert loc["workers"] == (2 if mode == "two-workers" else 1)
