"""A hypothesis barrage of odd and concurrent orders; the stock invariant must hold after it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.storefront.config import StorefrontSettings
from simulator.storefront.openapi import PATHS
from simulator.storefront.server import start_storefront

STOCK = {"durian": 6, "walet": 4, "zero": 0}
LIMITS = {"walet": 2}
DOCUMENTED = {int(code) for code in PATHS["/orders"]["post"]["responses"]}

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_field_values = {
    "order_id": st.sampled_from(["o1", "o2", "o3", "o4", "o5", "", "x" * 200]) | _json_scalars,
    "sku": st.sampled_from([*STOCK, "nope", ""]) | _json_scalars,
    "qty": st.integers(-2, 5) | st.sampled_from([2**31, 2**63 - 1, 1.0, "1", True]),
    "user_id": st.sampled_from(["ann", "bob", "cid", ""]) | _json_scalars,
}


@st.composite
def _order_like(draw: st.DrawFn) -> bytes:
    """Mostly near-valid orders (some fields odd, dropped or extra), sometimes junk."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return json.dumps(draw(_json)).encode()  # stdlib: big ints and NaN pass through
    body: dict[str, Any] = {}
    for name, odd in _field_values.items():
        if draw(st.integers(0, 19)) == 0:
            continue  # dropped
        body[name] = draw(odd)
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(min_size=1, max_size=6))] = draw(_json_scalars)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


_requests = st.lists(
    st.tuples(_order_like(), st.sampled_from(["application/json"] * 8 + ["text/plain", ""])),
    min_size=1,
    max_size=40,
)


async def _barrage(stock_settings: StorefrontSettings, requests: list[tuple[bytes, str]]) -> None:
    async with await start_storefront(stock_settings) as sf, aiohttp.ClientSession() as http:

        async def post(body: bytes, content_type: str) -> tuple[int, Any]:
            headers = {"Content-Type": content_type} if content_type else {}
            async with http.post(sf.url + "/orders", data=body, headers=headers) as resp:
                return resp.status, await resp.json()

        answers = await asyncio.gather(*(post(b, ct) for b, ct in requests))
        async with http.get(sf.url + "/inventory") as resp:
            skus = (await resp.json())["skus"]
        async with http.get(sf.url + "/ledger") as resp:
            ledger = (await resp.json())["orders"]
    for status, body in answers:
        assert status in DOCUMENTED, (status, body)
        if status >= 400:
            assert isinstance(body["error"], str) and isinstance(body["field"], str)
    # the invariant: the three counts agree, nothing oversold, ids and limits respected
    assert set(skus) == set(STOCK)
    for sku, numbers in skus.items():
        assert numbers["initial"] == STOCK[sku]
        assert numbers["sold"] == numbers["ledger_units"] == STOCK[sku] - numbers["remaining"]
        assert numbers["remaining"] >= 0
    order_ids = [entry[0] for entry in ledger]
    assert len(order_ids) == len(set(order_ids))
    bought = Counter[tuple[str, str]]()
    for _, sku, qty, user in ledger:
        bought[user, sku] += qty
    assert all(units <= LIMITS.get(sku, units) for (_, sku), units in bought.items())
    confirmed = {body["order_id"] for status, body in answers if status == 201}
    assert confirmed == set(order_ids)


def _run(backend: str, requests: list[tuple[bytes, str]], **store: str) -> None:
    namespace = f"fs_fuzz_{uuid.uuid4().hex[:12]}"
    stock_settings = StorefrontSettings(
        stocks=STOCK, limits=LIMITS, backend=backend, namespace=namespace, **store
    )
    try:
        asyncio.run(_barrage(stock_settings, requests))
    finally:
        asyncio.run(_drop(backend, namespace, store))


async def _drop(backend: str, namespace: str, store: dict[str, str]) -> None:
    if backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(store["redis_url"])
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    elif backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(store["postgres_dsn"])
        await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await conn.close()


def _fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_fuzz(60)
@given(requests=_requests)
def test_memory_invariant_holds_after_a_barrage(requests: list[tuple[bytes, str]]) -> None:
    _run("memory", requests)


@pytest.mark.services
@_fuzz(10)
@given(requests=_requests)
def test_redis_invariant_holds_after_a_barrage(
    redis_url: str, requests: list[tuple[bytes, str]]
) -> None:
    _run("redis", requests, redis_url=redis_url)


@pytest.mark.services
@_fuzz(10)
@given(requests=_requests)
def test_postgres_invariant_holds_after_a_barrage(
    postgres_dsn: str, requests: list[tuple[bytes, str]]
) -> None:
    _run("postgres", requests, postgres_dsn=postgres_dsn)
