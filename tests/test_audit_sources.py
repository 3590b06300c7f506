"""The audit's sources: the [audit] table as read, and each source against a real store.

The sql and redis sources are checked against what the test shop (tests/shop, no code shared
with the bundled storefront) really stored, read by a direct query beside the code under test.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import jsonpath
from simulator.audit import ServerState, audit_view
from simulator.audit_sources import check_secrets, read_records
from simulator.errors import ScenarioError
from simulator.load.target import Target
from simulator.load.transport import parse_endpoint
from simulator.scenario import HttpAudit, NoAudit, RedisAudit, Scenario, SqlAudit, parse_scenario
from tests.procs import free_port
from tests.shop.app import MariaStore, RedisStore, ShopConfig, running_shop
from tests.shop.db import dsn_of, query, scratch_database
from tests.shop.test_shop import login, post

BASE = """
name = "audit-source"
seed = 1
duration_s = 1
[[products]]
id = "A1"
stock = 3
[[products]]
id = "B2"
stock = 4
[demand]
baseline_per_s = 10
"""


def scenario(audit: str) -> Scenario:
    return parse_scenario(tomllib.loads(BASE + "[audit]\n" + audit), "shop.toml")


# -- the [audit] table -------------------------------------------------------------------------


def test_default_is_todays_http_audit() -> None:
    sc = parse_scenario(tomllib.loads(BASE), "shop.toml")
    assert sc.audit == HttpAudit() and sc.audit.bundled


@pytest.mark.parametrize(
    ("audit", "source"),
    [
        ('source = "none"', NoAudit()),
        (
            'source = "sql"\ndsn = "mysql://root@127.0.0.1:3306/shop"\nquery = "SELECT 1, 2"',
            SqlAudit("mysql://root@127.0.0.1:3306/shop", None, "SELECT 1, 2"),
        ),
        (
            'source = "sql"\ndsn_env = "SHOP_DSN"\nquery = "q"\nledger_query = "l"\ntimeout_s = 3',
            SqlAudit(None, "SHOP_DSN", "q", "l", 3.0),
        ),
        (
            'source = "redis"\nurl = "redis://127.0.0.1:6379/0"\nkey = "s:{sku}:n"\nholds = "sold"',
            RedisAudit("redis://127.0.0.1:6379/0", None, "s:{sku}:n", "sold"),
        ),
        (
            'path = "/admin/stock"\nitems = "$.data.items"\nsku = "sku"\nremaining = "left"',
            HttpAudit(None, "/admin/stock", ("data", "items"), "sku", None, "left"),
        ),
    ],
)
def test_audit_sources_as_read(audit: str, source: object) -> None:
    assert scenario(audit).audit == source


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        ('source = "sqll"', "audit.source: unknown 'sqll'; did you mean 'sql'?"),
        ('source = "sql"\nquery = "q"', "audit.dsn: give dsn or dsn_env"),
        (
            'source = "sql"\ndsn = "mysql://h/d"\ndsn_env = "X"\nquery = "q"',
            "audit.dsn: give dsn or dsn_env",
        ),
        ('source = "sql"\ndsn = "mysql://h/d"', "audit.query: is required"),
        ('source = "sql"\ndsn = "mysql://h/d"\nquery = "  "', "audit.query: must not be empty"),
        ('source = "sql"\ndsn = "sqlite:///x.db"\nquery = "q"', "audit.dsn: must start with"),
        ('source = "sql"\ndsn = "mysql:///shop"\nquery = "q"', "audit.dsn: mysql:// needs a host"),
        ('source = "sql"\ndsn = "mysql://h:99999/d"\nquery = "q"', "audit.dsn: not a database URL"),
        ('source = "sql"\ndsn_env = "MY-DSN"\nquery = "q"', "audit.dsn_env: must be an environ"),
        ('source = "sql"\ndsn = "mysql://h/d"\nquery = "q"\nkey = "k"', "audit.key: unknown key"),
        ('source = "redis"\nurl = "http://x"', "audit.url: must start with redis://"),
        ('source = "redis"\nurl = "redis://h"\nkey = "stock"', "audit.key: must hold {sku} once"),
        ('source = "redis"\nurl = "redis://h"\nkey = "{sku}:{id}"', "audit.key: must hold {sku}"),
        ('source = "redis"\nurl = "redis://h"\nholds = "left"', "audit.holds: must be 'remain"),
        ('url = "ftp://x"\nitems = "a"\nsold = "s"', "audit.url: must start with http://"),
        ('path = "admin"\nitems = "a"\nsold = "s"', "audit.path: must start with '/'"),
        ('url = "http://x/a"\npath = "/a"\nitems = "a"', "audit.url: give url (absolute) or"),
        ('path = "/admin"', "audit.items: is required with path"),
        ('items = "a..b"\nsold = "s"', "audit.items: bad JSON path 'a..b'"),
        ('items = "a"', "audit.sold: give sold or remaining"),
        ('source = "none"\ndsn = "x"', "audit.dsn: unknown key"),
        ('source = "sql"\ndsn = "mysql://h/d"\nquery = "q"\ntimeout_s = 0', "audit.timeout_s"),
    ],
)
def test_bad_audit_tables_name_the_key(audit: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario(audit)
    assert str(err.value).startswith("shop.toml: ") and message in str(err.value)


def test_a_dsn_from_the_environment_is_checked_before_the_run() -> None:
    sc = scenario('source = "sql"\ndsn_env = "SHOP_DSN"\nquery = "q"')
    with pytest.raises(ScenarioError, match=r"audit\.dsn_env: the environment variable SHOP_DSN"):
        check_secrets(sc, {})
    with pytest.raises(ScenarioError, match="the value of SHOP_DSN must start with") as err:
        check_secrets(sc, {"SHOP_DSN": "oracle://scott:tiger@db/x"})
    assert "tiger" not in str(err.value)  # a secret is never repeated
    check_secrets(sc, {"SHOP_DSN": "mysql://u:p@127.0.0.1/shop"})


@pytest.mark.parametrize(
    ("text", "steps"),
    [("$", ()), ("", ()), ("a", ("a",)), ("$.data.items", ("data", "items")),
     ("a[0].b", ("a", 0, "b")), ("[2]", (2,)), ("a[0][1]", ("a", 0, 1))],
)  # fmt: skip
def test_json_paths(text: str, steps: tuple[object, ...]) -> None:
    assert jsonpath.parse_path(text) == steps


@pytest.mark.parametrize("text", ["a..b", "a.", ".a", "a[x]", "a.[0]", "a]"])
def test_bad_json_paths(text: str) -> None:
    with pytest.raises(jsonpath.JsonPathError, match="bad JSON path"):
        jsonpath.parse_path(text)


keys = st.text(st.characters(blacklist_characters=".[]$", blacklist_categories=("Cs",)), min_size=1)


@given(st.lists(st.one_of(keys, st.integers(0, 99)), max_size=6))
def test_json_paths_read_back(steps: list[str | int]) -> None:
    """A path the parser accepts reads back as its steps; one it refuses names the step."""
    path = tuple(steps)
    text = jsonpath.format_path(path)
    bad = [
        s for s in path if isinstance(s, str) and any(unicodedata.category(c) == "Cc" for c in s)
    ]
    if bad:  # a control character in a key: refused, naming the step
        with pytest.raises(jsonpath.JsonPathError, match="control character") as err:
            jsonpath.parse_path(text)
        assert repr(bad[0]) in str(err.value)
        return
    if text[0].isspace() or text[-1].isspace():
        return  # blanks around the whole path are trimmed by design
    assert jsonpath.parse_path(text) == path


@pytest.mark.parametrize("text", ["a.b\x1fc", "\x1f", "a[0].\x00", "data.it\tems"])
def test_control_characters_in_a_json_path_are_refused(text: str) -> None:
    with pytest.raises(
        jsonpath.JsonPathError, match=r"step '.*' holds the control character U\+00"
    ):
        jsonpath.parse_path(text)


def test_json_path_lookup_names_what_is_missing() -> None:
    doc = {"data": {"items": [{"sku": "A1"}]}}
    assert jsonpath.get(doc, ("data", "items", 0, "sku")) == "A1"
    with pytest.raises(jsonpath.Missing, match=r"data\.list: no this key"):
        jsonpath.get(doc, ("data", "list"))
    with pytest.raises(jsonpath.Missing, match=r"data\.items\[3\]"):
        jsonpath.get(doc, ("data", "items", 3))


# -- the sources against real stores ------------------------------------------------------------


def racy_orders(base: str, sku: str, buyers: int) -> list[dict[str, Any]]:
    tokens = [login(base, f"u{i}") for i in range(buyers)]
    url = f"{base}/api/v1/seckill/{sku}/order"
    with ThreadPoolExecutor(buyers) as pool:
        return list(pool.map(lambda t: post(url, {"qty": 1}, t)[1], tokens))


@pytest.mark.services
def test_sql_source_reports_what_the_shops_mariadb_holds(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        with running_shop(ShopConfig({"A1": 3, "B2": 4}), MariaStore(db, True, 0.05)) as base:
            answers = racy_orders(base, "A1", 10)
        sc = scenario(
            f'source = "sql"\ndsn = "{dsn_of(db)}"\n'
            'query = "SELECT sku, SUM(qty) FROM orders GROUP BY sku"\n'
            'ledger_query = "SELECT order_ref, sku, qty, user_id FROM orders"'
        )
        state = read_records(sc, None)
        direct = dict(query(db, "SELECT sku, SUM(qty) FROM orders GROUP BY sku"))
    confirmed = sum(a["code"] == 0 for a in answers)
    assert state.errors == () and state.source == "sql"
    assert state.inventory is not None and state.ledger is not None
    a1 = state.inventory["skus"]["A1"]
    assert a1["sold"] == int(direct["A1"]) == confirmed > 3  # the race oversold
    assert a1["ledger_units"] == confirmed and len(state.ledger) == confirmed
    assert state.inventory["skus"]["B2"] == {
        "sold": 0, "remaining": 4, "ledger_units": 0, "ledger_orders": 0,
    }  # fmt: skip
    result = audit_view(
        _clients({"A1": 0}), ("A1", "B2"), sc.stocks(), {}, state
    )  # the clients' side is another test's business: here the server's count alone
    assert result["oversell_units"] == confirmed - 3 and not result["ok"]
    assert "A1: oversold by" in result["problems"][0]


@pytest.mark.services
def test_sql_source_on_postgresql(postgres_dsn: str) -> None:
    import asyncpg

    table = f"audit_{uuid.uuid4().hex[:10]}"

    async def setup(sql: str) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(setup(f"CREATE TABLE {table} (sku text, qty int); INSERT INTO {table} VALUES "
                      "('A1', 2), ('A1', 1), ('zz', 9)"))  # fmt: skip
    try:
        sc = scenario(f'source = "sql"\ndsn = "{postgres_dsn}"\n'
                      f'query = "SELECT sku, SUM(qty) FROM {table} GROUP BY sku"')  # fmt: skip
        state = read_records(sc, None)
    finally:
        asyncio.run(setup(f"DROP TABLE {table}"))
    assert state.errors == ()
    assert state.inventory is not None
    assert state.inventory["skus"] == {
        "A1": {"sold": 3, "remaining": 0}, "B2": {"sold": 0, "remaining": 4},
    }  # fmt: skip


@pytest.mark.services
def test_redis_source_reports_the_shops_keys(redis_url: str) -> None:
    import redis

    prefix = f"flashsale-test-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix, racy=True, racy_delay_s=0.05)
    client = redis.Redis.from_url(redis_url)
    try:
        with running_shop(ShopConfig({"A1": 3}), store) as base:
            answers = racy_orders(base, "A1", 8)
        sc = scenario(f'source = "redis"\nurl = "{redis_url}"\nkey = "{prefix}stock:{{sku}}"')
        state = read_records(sc, None)
        left = int(client.get(f"{prefix}stock:A1") or -1)
    finally:
        client.delete(f"{prefix}stock:A1")
        client.close()
    confirmed = sum(a["code"] == 0 for a in answers)
    assert confirmed > 3  # the race: more sold than stock, yet the key never went below 0
    assert state.inventory is not None and state.errors == ()
    assert state.inventory["skus"]["A1"] == {"sold": 3 - left, "remaining": left}
    # B2 has no key: the audit says so, it does not invent a count
    result = audit_view(_clients({"A1": confirmed}), ("A1", "B2"), sc.stocks(), {}, state)
    assert "B2: missing from the server's inventory" in result["problems"]
    assert result["skus"]["A1"]["oversell_units"] == confirmed - 3  # the clients saw it


@pytest.mark.services
def test_http_source_with_json_paths_into_the_shops_admin_api(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        with running_shop(ShopConfig({"A1": 3, "B2": 4}), MariaStore(db, True, 0.05)) as base:
            racy_orders(base, "A1", 6)
            sc = scenario('path = "/api/v1/admin/stock"\nitems = "data.items"\nsku = "sku"\n'
                          'sold = "sold"\nremaining = "remaining"')  # fmt: skip
            state = read_records(sc, Target(parse_endpoint(base)))
            absolute = scenario(f'url = "{base}/api/v1/admin/stock"\nitems = "data.items"\n'
                                'sku = "sku"\nremaining = "remaining"')  # fmt: skip
            by_remaining = read_records(absolute, None)
            wrong = scenario('path = "/api/v1/admin/stock"\nitems = "data.list"\nsold = "sold"')
            missing = read_records(wrong, Target(parse_endpoint(base)))
        direct = dict(query(db, "SELECT sku, SUM(qty) FROM orders GROUP BY sku"))
    assert state.inventory is not None and by_remaining.inventory is not None
    assert state.inventory["skus"]["A1"]["sold"] == int(direct["A1"])
    assert by_remaining.inventory["skus"]["B2"] == {"sold": 0, "remaining": 4}
    assert missing.inventory is None
    assert missing.errors[0].endswith("/api/v1/admin/stock: data.list: no this key in the document")


def test_a_source_that_cannot_be_reached_says_why() -> None:
    port = free_port()
    sql = scenario(f'source = "sql"\ndsn = "mysql://root:s3cret@127.0.0.1:{port}/x"\nquery = "q"')
    state = read_records(sql, None)
    assert state.inventory is None
    assert state.errors == (f"sql: connection refused (127.0.0.1:{port})",)
    pg = scenario(f'source = "sql"\ndsn = "postgresql://u:s3cret@127.0.0.1:{port}/x"\nquery = "q"')
    assert read_records(pg, None).errors == (f"sql: connection refused (127.0.0.1:{port})",)
    rd = scenario(f'source = "redis"\nurl = "redis://127.0.0.1:{port}/0"')
    assert read_records(rd, None).errors == (f"redis: connection refused (127.0.0.1:{port})",)
    result = audit_view(_clients({"A1": 1}), ("A1", "B2"), sql.stocks(), {}, state)
    assert not result["available"] and result["ok"] is False
    assert result["unavailable_reason"] == f"sql: connection refused (127.0.0.1:{port})"


@pytest.mark.services
def test_a_query_that_fails_is_reported_with_the_databases_words(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        sc = scenario(f'source = "sql"\ndsn = "{dsn_of(db)}"\nquery = "SELECT sku FROM nothing"')
        state = read_records(sc, None)
        one = scenario(f'source = "sql"\ndsn = "{dsn_of(db)}"\nquery = "SELECT 1"')
        narrow = read_records(one, None)
    assert (
        state.errors[0].startswith("sql: Table '") and "nothing' doesn't exist" in state.errors[0]
    )
    assert narrow.errors == ("sql: the query returned 1 column(s); it must return 2: SKU, "
                             "units sold",)  # fmt: skip


def test_none_is_off_not_unavailable() -> None:
    state = read_records(scenario('source = "none"'), None)
    assert state == ServerState(None, None, (), "none")
    result = audit_view(_clients({"A1": 2}), ("A1", "B2"), {"A1": 3, "B2": 4}, {}, state)
    assert result["source"] == "none" and result["ok"] is None and result["problems"] == []
    assert "unavailable_reason" not in result
    over = audit_view(_clients({"A1": 5}), ("A1", "B2"), {"A1": 3, "B2": 4}, {}, state)
    assert over["ok"] is False and over["oversell_units"] == 2  # the clients' own proof stands


def _clients(units: dict[str, int]) -> Any:
    from simulator.audit import ClientView

    return ClientView.of_units(units)


def test_report_json_keeps_the_source() -> None:
    from simulator.report.sections import Audit

    result = audit_view(
        _clients({"A1": 1}), ("A1",), {"A1": 3}, {}, ServerState(None, None, ("sql: x",), "sql")
    )
    doc = Audit.from_dict(json.loads(json.dumps(result)), {})
    assert doc.source == "sql" and doc.checks["unavailable_reason"] == "sql: x"
