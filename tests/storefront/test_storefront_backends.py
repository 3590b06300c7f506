"""Every backend under thousands of concurrent orders, over real HTTP on loopback.

Correct backends confirm exactly the stock and their three counts agree; racy ones oversell
(reliably: their simulated round trip makes every concurrent order read the same stock) and
still record every unit they sold in the ledger.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

CORRECT = ("memory", "redis", "postgres")
RACY = ("memory-racy", "redis-racy", "postgres-racy")
ALL = CORRECT + RACY
N_ORDERS = 2000
STOCK = 100


async def _barrage(
    http: Any, url: str, n: int, sku: str = "durian", prefix: str = "o"
) -> list[tuple[int, dict[str, object]]]:
    return await asyncio.gather(
        *(http.order(url, f"{prefix}{i}", sku, 1, f"user{i}") for i in range(n))
    )


@pytest.mark.parametrize("backend", ALL)
async def test_concurrent_orders_for_a_small_stock(backend: str, start: Any, http: Any) -> None:
    sf = await start(backend, {"durian": STOCK, "other": 7})
    answers = await _barrage(http, sf.url, N_ORDERS)
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {201, 409}, statuses
    confirmed = sorted(body["order_id"] for status, body in answers if status == 201)  # type: ignore[type-var]
    inventory = await http.get(sf.url + "/inventory")
    ledger = (await http.get(sf.url + "/ledger"))["orders"]
    durian = inventory["skus"]["durian"]
    assert inventory["backend"] == backend
    assert inventory["skus"]["other"] == {
        "initial": 7, "sold": 0, "ledger_units": 0, "ledger_orders": 0, "remaining": 7
    }  # fmt: skip
    # the ledger records every unit the backend confirmed, whatever the backend
    assert sorted(entry[0] for entry in ledger) == confirmed
    assert all(entry[1:] == ["durian", 1, f"user{entry[0][1:]}"] for entry in ledger)
    assert durian["ledger_units"] == durian["ledger_orders"] == len(confirmed)
    assert durian["initial"] == STOCK
    if backend in CORRECT:
        assert statuses[201] == STOCK
        assert durian["sold"] == durian["ledger_units"] == STOCK
        assert durian["remaining"] == 0
    else:
        assert statuses[201] > STOCK, "a racy backend must oversell"
        assert durian["sold"] == statuses[201] > durian["initial"]
        # the oversell shows as negative stock (DECRBY) or as lost updates (write-back)
        assert durian["remaining"] < 0 or durian["initial"] - durian["remaining"] < durian["sold"]


@pytest.mark.parametrize("backend", CORRECT)
async def test_concurrent_repeats_of_one_order_id_take_stock_once(
    backend: str, start: Any, http: Any
) -> None:
    sf = await start(backend, {"durian": 10})
    answers = await asyncio.gather(*(http.order(sf.url, "same", "durian", 2) for _ in range(50)))
    first = {"order_id": "same", "sku": "durian", "qty": 2, "remaining": 8}
    assert answers == [(201, first)] * 50
    assert (await http.get(sf.url + "/ledger"))["orders"] == [["same", "durian", 2, "u"]]
    # a repeat with other fields still gets the first answer and takes nothing
    assert await http.order(sf.url, "same", "durian", 1, "someone-else") == (201, first)
    skus = (await http.get(sf.url + "/inventory"))["skus"]
    assert skus["durian"]["remaining"] == 8


@pytest.mark.parametrize("backend", ALL)
async def test_repeated_sold_out_and_over_limit_answers_are_replayed(
    backend: str, start: Any, http: Any
) -> None:
    sf = await start(backend, {"durian": 1, "walet": 5}, {"walet": 2})
    assert (await http.order(sf.url, "a", "durian"))[0] == 201
    sold_out = await http.order(sf.url, "b", "durian")
    assert sold_out[0] == 409 and sold_out[1]["field"] == "sku"
    assert await http.order(sf.url, "b", "durian") == sold_out
    assert (await http.order(sf.url, "w1", "walet", 2, "ann"))[0] == 201
    over = await http.order(sf.url, "w2", "walet", 1, "ann")
    assert over[0] == 422 and over[1]["field"] == "qty"
    assert await http.order(sf.url, "w2", "walet", 1, "ann") == over
    skus = (await http.get(sf.url + "/inventory"))["skus"]
    assert skus["walet"]["remaining"] == 3 and skus["walet"]["sold"] == 2


@pytest.mark.parametrize("backend", CORRECT)
async def test_per_buyer_limit_holds_under_concurrency(backend: str, start: Any, http: Any) -> None:
    sf = await start(backend, {"walet": 100}, {"walet": 3})
    answers = await asyncio.gather(
        *(http.order(sf.url, f"o{i}", "walet", 1, f"buyer{i % 4}") for i in range(80))
    )
    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 12, 422: 68}
    assert all(body["field"] == "qty" for status, body in answers if status == 422)
    ledger = (await http.get(sf.url + "/ledger"))["orders"]
    assert Counter(entry[3] for entry in ledger) == {f"buyer{i}": 3 for i in range(4)}
    durian = (await http.get(sf.url + "/inventory"))["skus"]["walet"]
    assert durian["sold"] == durian["ledger_units"] == 100 - durian["remaining"] == 12


@pytest.mark.parametrize("backend", ALL)
async def test_reset_restores_stock_and_forgets_orders(backend: str, start: Any, http: Any) -> None:
    sf = await start(backend, {"durian": 3, "manggis": 4}, {"durian": 1})
    await http.order(sf.url, "a", "durian")
    await http.order(sf.url, "b", "manggis", 4)
    status, body = await http.post(sf.url + "/reset", {"stock": {"durian": 2, "new": 9}})
    assert status == 200
    assert body["stock"] == {"durian": 2, "manggis": 4, "new": 9}
    skus = (await http.get(sf.url + "/inventory"))["skus"]
    assert skus == {
        sku: {"initial": n, "sold": 0, "ledger_units": 0, "ledger_orders": 0, "remaining": n}
        for sku, n in {"durian": 2, "manggis": 4, "new": 9}.items()
    }
    assert (await http.get(sf.url + "/ledger"))["orders"] == []
    # records are gone: the same order id is a new order; limits survive a reset
    assert (await http.order(sf.url, "a", "durian")) == (
        201,
        {"order_id": "a", "sku": "durian", "qty": 1, "remaining": 1},
    )
    assert (await http.order(sf.url, "c", "durian", 2))[0] == 422
    assert (await http.order(sf.url, "d", "new", 9))[0] == 201
    status, body = await http.post(sf.url + "/reset")  # no body: the configured stock
    assert (status, body["stock"]) == (200, {"durian": 3, "manggis": 4})
    assert set((await http.get(sf.url + "/inventory"))["skus"]) == {"durian", "manggis"}
