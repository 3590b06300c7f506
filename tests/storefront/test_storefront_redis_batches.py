"""The redis backend sends the orders of one event-loop turn as one pipeline of scripts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any


async def test_batched_orders_survive_redis_losing_its_scripts(
    start: Any, http: Any, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    sf = await start("redis", {"durian": 30})
    first = await asyncio.gather(*(http.order(sf.url, f"a{i}", "durian") for i in range(20)))
    assert Counter(status for status, _ in first) == {201: 20}
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.script_flush()  # e.g. a Redis restart: EVALSHA now answers NOSCRIPT
    finally:
        await client.aclose()
    second = await asyncio.gather(*(http.order(sf.url, f"b{i}", "durian") for i in range(40)))
    assert Counter(status for status, _ in second) == {201: 10, 409: 30}
    # repeated ids sent together come back with their first outcome, replayed
    again = await asyncio.gather(*(http.order(sf.url, "b0", "durian") for _ in range(5)))
    assert all(answer == second[0] for answer in again)
    skus = (await http.get(sf.url + "/inventory"))["skus"]["durian"]
    assert skus["sold"] == skus["ledger_units"] == 30 and skus["remaining"] == 0
