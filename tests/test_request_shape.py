"""Testing one's own storefront: request shape, buyers data and outcomes from the body.

The bad-input table runs the real CLI in-process (exit 2, one line naming the key). The shop
tests run ``flashsale run`` as a user does against the test shop (tests/shop: login, Bearer
tokens, the SKU in the path, HTTP 200 with business codes, orders in MariaDB), with tokens
obtained from its login and written to a buyers CSV; the run's counts are compared with the
shop's own database and with the schedule's buyers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule
from tests.shop.app import MariaStore, ShopConfig, running_shop
from tests.shop.db import query, scratch_database

ROOT = Path(__file__).resolve().parent.parent

BASE = """
name = "shape"
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
baseline_per_s = {rate}

[buyers]
data = "buyers.csv"
repeat_share = {repeat}
{buyers}

[target]
url = "{url}"
{target}

[target.headers]
Authorization = "Bearer {{token}}"

[target.outcome]
path = "code"
values = {{ "0" = "confirmed", "1001" = "sold_out", "1002" = "rejected", "401" = "rejected" }}

[run]
connections = 16
timeout_s = 5.0
drain_s = 3.0

[audit]
source = "none"
"""


def write(tmp: Path, *, rows: int = 50, url: str = "http://127.0.0.1:9", rate: int = 20,
          repeat: float = 0.0, buyers: str = "", target: str = "",
          csv: str | None = None) -> Path:  # fmt: skip
    if csv is None:
        csv = "user,token\n" + "".join(f"u{k},t{k}\n" for k in range(rows))
    (tmp / "buyers.csv").write_text(csv)
    defaults = {"orders_path": '"/api/v1/seckill/{goods_id}/order"', "body": """'{"qty":{qty}}'"""}
    given = target
    for key, value in defaults.items():
        if not given.startswith(key):
            target = f"{key} = {value}\n{target}"
    path = tmp / "shop.toml"
    path.write_text(BASE.format(rate=rate, url=url, repeat=repeat, buyers=buyers, target=target))
    return path


# -- bad input: one line, exit 2 ----------------------------------------------------------------

BAD = [
    ({"target": 'orders_path = "/x/{goods}/o"'}, "target.orders_path: unknown variable {goods}"),
    ({"target": 'orders_path = "/x/{user-id}/o"'}, "target.orders_path: a brace that is not"),
    ({"target": 'orders_path = "/x y"'}, "target.orders_path: must be URL text"),
    ({"target": 'orders_path = "/x\\r\\nX: 1"'}, "target.orders_path: must not hold control"),
    ({"target": 'inventory_path = "/inv/{sku}"'}, "target.inventory_path: is not a template"),
    ({"target": 'body = "{tokn}"'}, "target.body: unknown variable {tokn}"),
    ({"target": 'content_type = "text/plain\\r\\nX-Evil: 1"'}, "target.content_type: must not"),
    ({"target": 'content_type = "json"'}, "target.content_type: must be a media type"),
    ({"target": "[target.status]\n422 = 'nope'"}, "target.status.422: must be one of"),
    (
        {"csv": "user,token\nu0,t0\r\n", "buyers": "wrap = true"},
        None,
    ),  # a CRLF line ending is CSV, not a value: fine
    ({"csv": 'user,token\nu0,"t\nX"\n'}, "(used in a header): must not hold control characters"),
    ({"csv": "user,token\nu0\n"}, "line 2: 1 values for 2 columns"),
    ({"csv": "user,user\nu0,u1\n"}, "column 'user' appears twice"),
    ({"csv": "user,qty\nu0,1\n"}, "column 'qty' would hide the built-in {qty}"),
    ({"csv": "user,token\n"}, "no rows"),
    ({"csv": "us er,token\nu,t\n"}, "column 'us er': must be a variable name"),
    ({"rows": 3}, "buyers.data: the sale expects about 20 orders"),
    ({"buyers": "wrap = 1"}, "buyers.wrap: must be true or false"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_shapes_and_data_are_one_line_exit_2(tmp_path, capsys, change, message) -> None:
    path = write(tmp_path, **change)
    code = main(["schedule", str(path), "--json"])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ('"Bad Name" = "x"', "target.headers.Bad Name: not a header name"),
        ('Host = "evil"', "target.headers.Host: written by flashsale itself"),
        ('Content-Type = "a/b"', "target.headers.Content-Type: set by content_type"),
        ('X-A = "a\\nb"', "target.headers.X-A: must not hold control characters"),
        ('X-A = "€"', "target.headers.X-A: a header value must be Latin-1"),
        ("X-A = 1", "target.headers.X-A: must be a string"),
        ('X-A = "{nope}"', "target.headers.X-A: unknown variable {nope}"),
    ],
)
def test_bad_headers(tmp_path, capsys, headers: str, message: str) -> None:
    path = write(tmp_path)
    text = path.read_text().replace('Authorization = "Bearer {token}"', headers)
    path.write_text(text)
    assert main(["schedule", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err.replace("'", '"'), err


def test_a_data_file_too_big_is_refused_before_reading(tmp_path, capsys, monkeypatch) -> None:
    from simulator.scenario import buyerdata

    monkeypatch.setattr(buyerdata, "MAX_DATA_BYTES", 100)
    path = write(tmp_path, rows=50)
    assert main(["schedule", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "buyers.data" in err and "at most 100" in err, err


def test_wrap_lets_few_rows_serve_many_buyers(tmp_path) -> None:
    sc = load_scenario(write(tmp_path, rows=3, buyers="wrap = true"))
    assert sc.buyers.data is not None and sc.buyers.data.wrap
    assert sc.buyers.data.row_of(7) == 1


def test_a_users_status_map_extends_the_defaults(tmp_path) -> None:
    sc = load_scenario(
        write(tmp_path, target="[target.status]\n200 = 'confirmed'\n418 = 'rejected'")
    )
    status = dict(sc.target.status)
    assert status[422] == "rejected" and status[409] == "sold_out" and status[418] == "rejected"


# -- against the test shop -------------------------------------------------------------------


def login(url: str, user: str) -> str:
    req = urllib.request.Request(
        f"{url}/api/v1/login",
        data=json.dumps({"user_id": user}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["data"]["token"]


def run(path: Path, *args: str) -> tuple[int, dict, str]:
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(path), "--json", "--no-reset", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr


BAD_EVERY = 7  # buyer rows k ≡ 0 (mod 7) get a token the shop never issued


@pytest.mark.services
@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
def test_counts_match_the_shops_database(mariadb_dsn: str, tmp_path: Path, transport: str):
    n_rows = 400
    with scratch_database(mariadb_dsn) as db:
        store = MariaStore(db, racy=False, racy_delay_s=0.0)
        shop = ShopConfig({"1": 5, "2": 6}, per_buyer_limit=1)
        with running_shop(shop, store) as url:
            lines = ["user,token"]
            for k in range(n_rows):
                token = login(url, f"u{k}")
                lines.append(f"u{k},{'forged' + str(k) if k % BAD_EVERY == 0 else token}")
            path = write(tmp_path, url=url, rate=120, repeat=0.3, csv="\n".join(lines) + "\n")
            code, report, err = run(path, "--transport", transport)
            assert code == 0, err
            sold = query(db, "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM orders")[0]
            users = {r[0] for r in query(db, "SELECT user_id FROM orders")}
    orders = report["orders"]
    outcomes, reasons = orders["outcomes"], orders["reasons"]
    # what the run says it confirmed is what the shop's database holds
    assert outcomes["confirmed"] == sold[0] and orders["confirmed_units"] == int(sold[1])
    assert outcomes["confirmed"] == 11  # the shop sold out: 5 + 6 units
    assert outcomes["error"] == outcomes["timeout"] == outcomes["not_sent"] == 0
    # who bought: only buyers with a real token, each row to its buyer
    assert all(int(u[1:]) % BAD_EVERY != 0 for u in users)
    rows = build_schedule(load_scenario(path)).materialize()
    forged = int(np.count_nonzero(rows["buyer"] % BAD_EVERY == 0))
    assert forged > 0
    assert reasons["rejected"]["body code 401"] == forged
    assert set(reasons["rejected"]) <= {"body code 401", "body code 1002"}
    assert reasons["sold_out"] == {"body code 1001": outcomes["sold_out"]}
    assert reasons["confirmed"] == {"body code 0": 11}
    assert sum(outcomes.values()) == orders["scheduled"] == len(rows)
