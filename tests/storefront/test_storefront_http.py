"""The storefront's HTTP layer on the memory backend: bad input, methods, shedding, hot row."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

JSON = "application/json"
STOCK = {"durian": 10, "walet": 5}
LIMITS = {"walet": 2}


def _order(**changes: Any) -> bytes:
    body: dict[str, Any] = {"order_id": "o1", "sku": "durian", "qty": 1, "user_id": "u1"}
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return orjson.dumps(body)


def _dup(middle: bytes) -> bytes:
    """An order whose keys between sku and user_id are ``middle`` (a key repeated there)."""
    return b'{"order_id":"o1","sku":"durian",' + middle + b',"user_id":"u1"}'


BAD_ORDERS = [
    # (case, body, content type, status, field)
    ("malformed json", b'{"order_id": "o1", "sku"', JSON, 400, "body"),
    ("empty body", b"", JSON, 400, "body"),
    ("not utf-8", b'{"order_id": "\xff"}', JSON, 400, "body"),
    ("array", b'["o1", "durian", 1, "u1"]', JSON, 400, "body"),
    ("string", b'"order"', JSON, 400, "body"),
    ("null", b"null", JSON, 400, "body"),
    ("text/plain", _order(), "text/plain", 400, "content-type"),
    ("form", _order(), "application/x-www-form-urlencoded", 400, "content-type"),
    ("no content type", _order(), None, 400, "content-type"),
    ("missing user_id", _order(user_id=...), JSON, 422, "user_id"),
    ("missing qty", _order(qty=...), JSON, 422, "qty"),
    ("extra field", _order(coupon="X"), JSON, 422, "coupon"),
    ("renamed field", _order(user_id=..., user="u1"), JSON, 422, "user_id"),
    ("empty object", b"{}", JSON, 422, "order_id"),
    ("order_id int", _order(order_id=7), JSON, 422, "order_id"),
    ("order_id empty", _order(order_id=""), JSON, 422, "order_id"),
    ("order_id too long", _order(order_id="x" * 129), JSON, 422, "order_id"),
    ("user_id null", _order(user_id=None), JSON, 422, "user_id"),
    ("sku number", _order(sku=5), JSON, 422, "sku"),
    ("unknown sku", _order(sku="mangosteen"), JSON, 422, "sku"),
    ("qty string", _order(qty="1"), JSON, 422, "qty"),
    ("qty float", _order(qty=1.0), JSON, 422, "qty"),
    ("qty bool", _order(qty=True), JSON, 422, "qty"),
    ("qty zero", _order(qty=0), JSON, 422, "qty"),
    ("qty negative", _order(qty=-3), JSON, 422, "qty"),
    ("qty huge", _order(qty=2**31), JSON, 422, "qty"),
    ("qty 1e400", b'{"order_id":"o","sku":"durian","qty":1e400,"user_id":"u"}', JSON, 400, "body"),
    ("qty over limit", _order(sku="walet", qty=3), JSON, 422, "qty"),
    # a repeated key is refused whatever its last value (orjson alone would keep the last)
    ("qty twice, last valid", _dup(b'"qty":-5,"qty":1'), JSON, 400, "qty"),
    ("qty twice, last bad", _dup(b'"qty":1,"qty":-5'), JSON, 400, "qty"),
    ("sku twice, escaped", _dup(b'"qty":1,"s\\u006bu":"walet"'), JSON, 400, "sku"),
    ("user_id thrice", _dup(b'"qty":1,"user_id":"a","user_id":"b"'), JSON, 400, "user_id"),
]  # fmt: skip


async def _unchanged(http: Any, url: str) -> None:
    skus = (await http.get(url + "/inventory"))["skus"]
    assert skus == {
        sku: {"initial": n, "sold": 0, "ledger_units": 0, "ledger_orders": 0, "remaining": n}
        for sku, n in STOCK.items()
    }
    assert (await http.get(url + "/ledger"))["orders"] == []


async def test_bad_orders_are_refused_and_change_nothing(start: Any, http: Any) -> None:
    sf = await start("memory", STOCK, LIMITS, client_max_size=1024)
    for case, body, content_type, status, field in BAD_ORDERS:
        headers = {"Content-Type": content_type} if content_type else {}
        async with http.session.post(sf.url + "/orders", data=body, headers=headers) as resp:
            answer = await resp.json()
            assert (resp.status, answer["field"]) == (status, field), (case, answer)
            assert resp.content_type == JSON and isinstance(answer["error"], str), case
    oversized = _order(user_id="u" * 2000)
    async with http.session.post(
        sf.url + "/orders", data=oversized, headers={"Content-Type": JSON}
    ) as resp:
        assert (resp.status, (await resp.json())["field"]) == (413, "body")
    await _unchanged(http, sf.url)
    # the counters saw every refusal, and a good order still works afterwards
    shop = sf.storefront
    assert shop.stats.by_status[400] + shop.stats.by_status[422] == len(BAD_ORDERS)
    async with http.session.post(
        sf.url + "/orders",
        data=_order(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    ) as resp:
        assert resp.status == 201
        assert await resp.json() == {"order_id": "o1", "sku": "durian", "qty": 1, "remaining": 9}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/orders", "POST"),
        ("PUT", "/orders", "POST"),
        ("DELETE", "/inventory", "GET"),
        ("POST", "/ledger", "GET"),
        ("GET", "/reset", "POST"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_wrong_method_is_a_json_405(
    method: str, path: str, allow: str, start: Any, http: Any
) -> None:
    sf = await start("memory", STOCK)
    async with http.session.request(method, sf.url + path) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == allow
        assert (await resp.json())["field"] == "method"
    await _unchanged(http, sf.url)


async def test_unknown_path_is_a_json_404(start: Any, http: Any) -> None:
    sf = await start("memory", STOCK)
    async with http.session.post(sf.url + "/order", json={}) as resp:
        assert (resp.status, (await resp.json())["field"]) == (404, "path")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b'{"stock": {"durian": -1}}', JSON, 422, "stock"),
        (b'{"stock": {"durian": "5"}}', JSON, 422, "stock"),
        (b'{"stock": [1]}', JSON, 422, "stock"),
        (b'{"stok": {}}', JSON, 422, "stok"),
        (b'{"stock": ', JSON, 400, "body"),
        (b'{"stock": {}}', "text/plain", 400, "content-type"),
        (b'{"stock": {"durian": 1, "durian": 2}}', JSON, 400, "durian"),
        (b'{"stock": {}, "stock": {"durian": 2}}', JSON, 400, "stock"),
    ],
)
async def test_bad_resets_are_refused(
    body: bytes, content_type: str, status: int, field: str, start: Any, http: Any
) -> None:
    sf = await start("memory", STOCK)
    await http.order(sf.url, "o1", "durian")
    headers = {"Content-Type": content_type}
    async with http.session.post(sf.url + "/reset", data=body, headers=headers) as resp:
        assert (resp.status, (await resp.json())["field"]) == (status, field)
    assert (await http.get(sf.url + "/inventory"))["skus"]["durian"]["sold"] == 1


async def test_orders_beyond_max_concurrency_are_shed_with_429(start: Any, http: Any) -> None:
    # every order waits 100 ms in the store, so all but the first 4 arrive while 4 are in flight
    sf = await start("memory", {"durian": 100}, max_concurrency=4, service_time_median_ms=100.0)
    answers = await asyncio.gather(*(http.order(sf.url, f"o{i}", "durian") for i in range(40)))
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) == {201, 429} and statuses[201] >= 4
    assert all(body["field"] == "max_concurrency" for status, body in answers if status == 429)
    durian = (await http.get(sf.url + "/inventory"))["skus"]["durian"]
    assert durian["sold"] == durian["ledger_units"] == statuses[201] == 100 - durian["remaining"]
    # a shed order was never recorded: the same id can be placed again
    shed = next(body for status, body in answers if status == 429)
    assert shed.get("order_id") is None


async def test_hot_row_serialises_orders_per_sku(start: Any, http: Any) -> None:
    # the racy backend oversells when orders interleave; hot-row mode forbids interleaving
    sf = await start(
        "memory-racy",
        {"durian": 20, "walet": 20},
        hot_row=True,
        service_time_median_ms=0.2,
        racy_delay_ms=0.3,
    )
    answers = await asyncio.gather(
        *(http.order(sf.url, f"o{i}", ("durian", "walet")[i % 2], 1, f"u{i}") for i in range(120))
    )
    assert Counter(status for status, _ in answers) == {201: 40, 409: 80}
    skus = (await http.get(sf.url + "/inventory"))["skus"]
    for sku in ("durian", "walet"):
        assert skus[sku]["sold"] == skus[sku]["ledger_units"] == 20
        assert skus[sku]["remaining"] == 0


async def test_service_time_is_lognormal_around_its_median(start: Any) -> None:
    sf = await start("memory", STOCK, service_time_median_ms=2.0, service_time_sigma=0.5, seed=3)
    shop = sf.storefront
    draws = sorted(shop._rng.lognormvariate(shop._service_mu, 0.5) for _ in range(2001))  # type: ignore[arg-type]
    assert 0.0017 < draws[1000] < 0.0023


async def test_healthz_and_metrics(start: Any, http: Any) -> None:
    sf = await start("memory", STOCK, LIMITS)
    assert await http.get(sf.url + "/healthz") == {"ok": True}
    await http.order(sf.url, "o1", "durian", 3)
    await http.order(sf.url, "o1", "durian", 3)
    await http.order(sf.url, "o2", "durian", 8)
    await http.order(sf.url, "o3", "nope", 1)
    async with http.session.get(sf.url + "/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    responses = "flashsale_storefront_order_responses_total"
    assert samples[(responses, (("status", "201"),))] == 2
    assert samples[(responses, (("status", "409"),))] == 1
    assert samples[(responses, (("status", "422"),))] == 1
    assert samples[("flashsale_storefront_order_replays_total", ())] == 1
    assert samples[("flashsale_storefront_orders_in_flight", ())] == 0
    durian = (("backend", "memory"), ("sku", "durian"))
    assert samples[("flashsale_storefront_sku_remaining", durian)] == 7
    assert samples[("flashsale_storefront_sku_ledger_units", durian)] == 3


async def test_two_apps_keep_separate_metrics(start: Any, http: Any) -> None:
    a = await start("memory", STOCK)
    b = await start("memory", STOCK)
    await http.order(a.url, "o1", "durian")
    assert a.storefront.stats.by_status[201] == 1
    assert b.storefront.stats.by_status[201] == 0
    assert a.storefront.registry is not b.storefront.registry


async def _raw_exchange(url: str, parts: list[bytes], pause_s: float = 0.05) -> tuple[int, dict]:
    """Send one request in ``parts`` with a pause between them; the status and JSON answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(
            next(
                line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            ).split(b":")[1]
        )
        return status, orjson.loads(await reader.readexactly(length))
    finally:
        writer.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_order_whose_body_comes_after_its_headers(
    chunked: bool, start: Any, http: Any
) -> None:
    # the handler starts before the body is there: it must wait for it, not read a part
    sf = await start("memory", STOCK, client_max_size=1024)
    body = _order(order_id="late")
    if chunked:
        head = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        half = len(body) // 2
        parts = [
            head + b"%x\r\n%s\r\n" % (half, body[:half]),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]),
        ]
    else:
        head = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        parts = [head + body[:10], body[10:]]
    status, answer = await _raw_exchange(sf.url, parts)
    assert (status, answer) == (
        201,
        {"order_id": "late", "sku": "durian", "qty": 1, "remaining": 9},
    )
    # and an oversized body that trickles in is refused like one that arrives at once
    big = _order(order_id="big", user_id="u" * 2000)
    head = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(big)
    status, answer = await _raw_exchange(sf.url, [head, big[:500], big[500:]])
    assert (status, answer["field"]) == (413, "body")
    assert (await http.get(sf.url + "/inventory"))["skus"]["durian"]["sold"] == 1
