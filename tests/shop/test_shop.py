"""The test shop itself: login and tokens, business codes on HTTP 200, limits, and its race."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.shop.app import MariaStore, ShopConfig, running_shop
from tests.shop.db import query, scratch_database

pytestmark = pytest.mark.services


def post(url: str, body: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def login(base: str, user: str) -> str:
    status, answer = post(f"{base}/api/v1/login", {"user_id": user})
    assert status == 200 and answer["code"] == 0
    token: str = answer["data"]["token"]
    return token


def test_tokens_codes_and_limits_all_on_http_200(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        config = ShopConfig({"A1": 2, "B2": 5}, per_buyer_limit=1)
        with running_shop(config, MariaStore(db, racy=False, racy_delay_s=0)) as base:
            order = f"{base}/api/v1/seckill/A1/order"
            assert post(order, {"qty": 1}) == (200, {"code": 401, "msg": "unauthorized"})
            assert post(order, {"qty": 1}, "forged")[1]["code"] == 401
            alice, bob, carol = (login(base, u) for u in ("alice", "bob", "carol"))
            status, first = post(order, {"qty": 1}, alice)
            assert status == 200 and first["code"] == 0 and first["data"]["order_ref"]
            assert post(order, {"qty": 1}, alice) == (200, {"code": 1002, "msg": "limit"})
            assert post(order, {"qty": 1}, bob)[1]["code"] == 0
            assert post(order, {"qty": 1}, carol) == (200, {"code": 1001, "msg": "sold out"})
            assert post(f"{base}/api/v1/seckill/nope/order", {}, carol)[1]["code"] == 1004
        rows = query(db, "SELECT user_id, sku, qty FROM orders ORDER BY id")
        assert rows == [("alice", "A1", 1), ("bob", "A1", 1)]
        assert query(db, "SELECT sku, remaining FROM stock ORDER BY sku") == [("A1", 0), ("B2", 5)]


def test_the_open_route_answers_with_a_status_too(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        config = ShopConfig({"A1": 1}, open_orders=True)
        with running_shop(config, MariaStore(db, racy=False, racy_delay_s=0)) as base:
            url = f"{base}/api/v1/open/order"
            body = {"order_id": "7", "sku": "A1", "qty": 1, "user_id": "u1"}
            assert post(url, body)[0] == 201
            assert post(url, {**body, "order_id": "8"}) == (409, {"code": 1001, "msg": "sold out"})
        assert query(db, "SELECT client_ref, sku FROM orders") == [("7", "A1")]


def test_racy_mode_oversells_under_concurrency(mariadb_dsn: str) -> None:
    with scratch_database(mariadb_dsn) as db:
        config = ShopConfig({"A1": 3})
        with running_shop(config, MariaStore(db, racy=True, racy_delay_s=0.05)) as base:
            tokens = [login(base, f"u{i}") for i in range(12)]
            url = f"{base}/api/v1/seckill/A1/order"
            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda t: post(url, {"qty": 1}, t)[1], tokens))
        sold = sum(a["code"] == 0 for a in answers)
        assert sold > 3  # more confirmations than stock: the lost update at work
        assert query(db, "SELECT COUNT(*) FROM orders") == [(sold,)]
