"""Stock in Redis: the atomic ``redis`` backend (one Lua script) and the racy ``redis-racy``.

Keys, all under ``<namespace>:``: hashes ``stock``, ``initial`` and ``sold`` (SKU → units),
``orders`` (order id → first outcome, the idempotency record), ``bought`` (buyer and SKU →
units, for per-buyer limits) and the list ``ledger`` (one JSON array per confirmed order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from simulator.storefront.backends.base import (
    OUT_OF_STOCK,
    OVER_LIMIT,
    TAKEN,
    BackendOptions,
    LedgerEntry,
    Reservation,
    SkuSnapshot,
    StoreUnavailableError,
    next_limits,
)
from simulator.storefront.backends.memory import snapshot_from

# KEYS: stock, sold, orders, bought, ledger
# ARGV: order_id, sku, qty, limit, buyer field, ledger entry
# Returns {replayed (0/1), record}, record = "outcome|remaining|qty|sku".
RESERVE_LUA = """
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then return {1, prev} end
local qty = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local rem = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local outcome
if limit > 0 and tonumber(redis.call('HGET', KEYS[4], ARGV[5]) or '0') + qty > limit then
  outcome = 2
elseif rem < qty then
  outcome = 1
else
  rem = redis.call('HINCRBY', KEYS[1], ARGV[2], -qty)
  redis.call('HINCRBY', KEYS[2], ARGV[2], qty)
  if limit > 0 then redis.call('HINCRBY', KEYS[4], ARGV[5], qty) end
  redis.call('RPUSH', KEYS[5], ARGV[6])
  outcome = 0
end
local rec = outcome .. '|' .. rem .. '|' .. ARGV[3] .. '|' .. ARGV[2]
redis.call('HSET', KEYS[3], ARGV[1], rec)
return {0, rec}
"""


def _record(outcome: int, remaining: int, qty: int, sku: str) -> str:
    return f"{outcome}|{remaining}|{qty}|{sku}"


def _parse_record(record: str, replayed: bool) -> Reservation:
    outcome, remaining, qty, sku = record.split("|", 3)
    return Reservation(int(outcome), sku, int(qty), int(remaining), replayed)


def _buyer_field(user_id: str, sku: str) -> str:
    # length-prefixed so that no pair of (sku, user_id) strings can collide
    return f"{len(sku)}:{sku}{user_id}"


class RedisBackend:
    """Atomic stock in Redis: one Lua script checks, decrements, records and remembers."""

    name = "redis"

    def __init__(
        self,
        stocks: Mapping[str, int],
        limits: Mapping[str, int],
        options: BackendOptions | None = None,
    ) -> None:
        self._options = options or BackendOptions()
        self._stocks = dict(stocks)
        self._configured_limits = dict(limits)
        self.limits: dict[str, int] = next_limits(limits, stocks)
        p = self._options.namespace + ":"
        self._k_stock, self._k_initial, self._k_sold = p + "stock", p + "initial", p + "sold"
        self._k_orders, self._k_bought, self._k_ledger = p + "orders", p + "bought", p + "ledger"
        self._reserve_keys = [
            self._k_stock,
            self._k_sold,
            self._k_orders,
            self._k_bought,
            self._k_ledger,
        ]
        self._client: Any = None
        self._script: Any = None
        # reserve calls made in one turn of the event loop go to Redis as one pipeline
        self._batch: list[tuple[list[object], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect (a bounded pool), load the script and the initial stock."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        opts = self._options
        pool = aioredis.BlockingConnectionPool.from_url(
            opts.redis_url,
            max_connections=opts.pool_size,
            timeout=None,
            decode_responses=True,
            socket_connect_timeout=opts.connect_timeout_s,
        )
        self._client = aioredis.Redis.from_pool(pool)
        try:
            await self._client.ping()
            self._script = self._client.register_script(RESERVE_LUA)
            await self._client.script_load(RESERVE_LUA)  # batches call it by its SHA
            await self.reset(self._stocks)
        except (RedisError, OSError) as exc:
            await self.close()
            raise StoreUnavailableError(
                f"cannot use Redis at {opts.redis_url}: {exc or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Run the reserve script: the whole decision happens inside Redis, atomically.

        Calls made in the same turn of the event loop are sent as one pipeline of EVALSHAs
        (each script still runs atomically, in order): one round trip and one connection for
        many orders, as a storefront under load would (bench/storefront_vs_bare.py).
        """
        entry = orjson.dumps((order_id, sku, qty, user_id)).decode()
        args: list[object] = [
            order_id,
            sku,
            qty,
            self.limits[sku],
            _buyer_field(user_id, sku),
            entry,
        ]
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._batch.append((args, answer))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)
        replayed, record = await answer
        return _parse_record(record, bool(replayed))

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run_batch(self, batch: list[tuple[list[object], asyncio.Future[Any]]]) -> None:
        """One pipeline of reserve scripts; each answer (or error) to its caller."""
        from redis.exceptions import NoScriptError

        try:
            results = await self._evalshas([args for args, _ in batch])
            if any(isinstance(r, NoScriptError) for r in results):  # Redis lost its scripts
                await self._client.script_load(RESERVE_LUA)
                results = await self._evalshas([args for args, _ in batch])
        except Exception as exc:  # the store failed: every caller gets the error
            results = [exc] * len(batch)
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.done():  # the caller went away (cancelled)
                continue
            if isinstance(result, BaseException):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def _evalshas(self, calls: list[list[object]]) -> list[Any]:
        sha, keys = self._script.sha, self._reserve_keys
        async with self._client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Delete this namespace's keys and load ``stocks`` in one transaction."""
        self.limits = next_limits(self._configured_limits, stocks)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(*self._reserve_keys, self._k_initial)
            if stocks:
                pipe.hset(self._k_stock, mapping=dict(stocks))
                pipe.hset(self._k_initial, mapping=dict(stocks))
                pipe.hset(self._k_sold, mapping=dict.fromkeys(stocks, 0))
            await pipe.execute()

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters from the hashes, ledger numbers summed from the ledger list."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k_initial)
            pipe.hgetall(self._k_sold)
            pipe.hgetall(self._k_stock)
            pipe.lrange(self._k_ledger, 0, -1)
            initial, sold, stock, raw_ledger = await pipe.execute()
        return snapshot_from(
            _ints(initial), _ints(sold), _ints(stock), [_entry(e) for e in raw_ledger]
        )

    async def ledger(self) -> list[LedgerEntry]:
        """The ledger list, decoded."""
        return [_entry(e) for e in await self._client.lrange(self._k_ledger, 0, -1)]


class RacyRedisBackend(RedisBackend):
    """Stock in Redis taken in two round trips: read everything, then decrement.

    The read (HGET of the order record, the stock and the buyer's purchases) and the write
    (HINCRBY by −qty, ledger RPUSH, record HSET) are separate round trips with a simulated
    delay between them, so concurrent orders all see the same stock and all take it: remaining
    goes negative and ``sold`` exceeds ``initial``. Idempotency and per-buyer limits race too.
    """

    name = "redis-racy"

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """HGET in one round trip, decide in Python, HINCRBY in another."""
        field = _buyer_field(user_id, sku)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(self._k_orders, order_id)
            pipe.hget(self._k_stock, sku)
            pipe.hget(self._k_bought, field)
            prev, stock, bought = await pipe.execute()
        await asyncio.sleep(self._options.racy_delay_s)
        if prev is not None:
            return _parse_record(prev, True)
        remaining = int(stock or 0)
        limit = self.limits[sku]
        if limit and int(bought or 0) + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = OUT_OF_STOCK
        else:
            outcome = TAKEN
        async with self._client.pipeline(transaction=False) as pipe:
            if outcome == TAKEN:
                pipe.hincrby(self._k_stock, sku, -qty)
                pipe.hincrby(self._k_sold, sku, qty)
                pipe.hset(self._k_bought, field, int(bought or 0) + qty)
                pipe.rpush(self._k_ledger, orjson.dumps((order_id, sku, qty, user_id)).decode())
                remaining -= qty
            pipe.hset(self._k_orders, order_id, _record(outcome, remaining, qty, sku))
            await pipe.execute()
        return Reservation(outcome, sku, qty, remaining)


def _ints(mapping: Mapping[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in mapping.items()}


def _entry(raw: str) -> LedgerEntry:
    order_id, sku, qty, user_id = orjson.loads(raw)
    return (order_id, sku, qty, user_id)
