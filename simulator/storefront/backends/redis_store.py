"""Stock in Redis: the atomic ``redis`` backend (one Lua script) and the racy ``redis-racy``.

Keys, all under ``<namespace>:``: hashes ``stock``, ``initial`` and ``sold`` (SKU → units),
``orders`` (order id → first outcome, the idempotency record), ``bought`` (buyer and SKU →
units, for per-buyer limits) and the list ``ledger`` (one JSON array per confirmed order).
Reservation mode adds the hash ``holds`` (order id → ``state|qty|expiry|len(sku)|sku user``,
state one of h/p/e/c), the sorted set ``expiries`` (held order ids by expiry) and the list
``returns`` (one JSON array [order_id, sku, qty] per stock return); ``ledger`` then holds the
payments. The correct backend changes a hold only inside a Lua script; the racy one reads, waits
and writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from simulator.storefront.backends.base import (
    HELD,
    HOLD_STATUS,
    NEVER,
    OUT_OF_STOCK,
    OVER_LIMIT,
    TAKEN,
    BackendOptions,
    LedgerEntry,
    OrderState,
    Overdue,
    Reservation,
    SkuSnapshot,
    StoreUnavailableError,
    cancel_until_done,
    hold_value,
    next_limits,
    overdue_totals,
    parse_hold,
    parse_hold_record,
    parse_refused,
)
from simulator.storefront.backends.memory import hold_totals, snapshot_from

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


# Reservation mode. KEYS: stock, sold, orders, bought, ledger, holds, expiries, returns.
# ARGV: order_id, sku, qty, limit, buyer field, user_id, expiry.
# Returns {replayed, record}, record = "outcome|remaining|qty|expiry|sku".
HOLD_LUA = """
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then return {1, prev} end
local qty = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local rem = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local outcome
local exp = '0'
if limit > 0 and tonumber(redis.call('HGET', KEYS[4], ARGV[5]) or '0') + qty > limit then
  outcome = 2
elseif rem < qty then
  outcome = 1
else
  rem = redis.call('HINCRBY', KEYS[1], ARGV[2], -qty)
  if limit > 0 then redis.call('HINCRBY', KEYS[4], ARGV[5], qty) end
  exp = ARGV[7]
  local hold = 'h|' .. ARGV[3] .. '|' .. exp .. '|' .. #ARGV[2] .. '|' .. ARGV[2] .. ARGV[6]
  redis.call('HSET', KEYS[6], ARGV[1], hold)
  redis.call('ZADD', KEYS[7], exp, ARGV[1])
  outcome = 0
end
local rec = outcome .. '|' .. rem .. '|' .. ARGV[3] .. '|' .. exp .. '|' .. ARGV[2]
redis.call('HSET', KEYS[3], ARGV[1], rec)
return {0, rec}
"""

# helpers shared by the settle and expire scripts: parse a hold; end it ('p', 'e' or 'c')
_HOLD_LUA_LIB = """
local function parse(v)
  local st, qty, exp, n, rest = string.match(v, '^(%a)|(%d+)|([^|]+)|(%d+)|(.*)$')
  n = tonumber(n)
  return st, tonumber(qty), tonumber(exp), string.sub(rest, 1, n), string.sub(rest, n + 1)
end
local function finish(id, v, new)
  local st, qty, exp, sku, user = parse(v)
  redis.call('HSET', KEYS[6], id, new .. string.sub(v, 2))
  redis.call('ZREM', KEYS[7], id)
  if new == 'p' then
    redis.call('HINCRBY', KEYS[2], sku, qty)
    redis.call('RPUSH', KEYS[5], cjson.encode({id, sku, qty, user}))
  else
    redis.call('HINCRBY', KEYS[1], sku, qty)
    redis.call('RPUSH', KEYS[8], cjson.encode({id, sku, qty}))
  end
  return new .. string.sub(v, 2)
end
"""

# ARGV: order_id, now, 'p' (pay) or 'c' (cancel). A hold past its expiry is expired instead.
# Returns {changed, hold} or {0, 'r' .. record} (a refused order) or {0, ''} (unknown).
SETTLE_LUA = (
    _HOLD_LUA_LIB
    + """
local v = redis.call('HGET', KEYS[6], ARGV[1])
if not v then
  local rec = redis.call('HGET', KEYS[3], ARGV[1])
  if rec then return {0, 'r' .. rec} end
  return {0, ''}
end
if string.sub(v, 1, 1) ~= 'h' then return {0, v} end
local st, qty, exp = parse(v)
if tonumber(ARGV[2]) >= exp then return {1, finish(ARGV[1], v, 'e')} end
return {1, finish(ARGV[1], v, ARGV[3])}
"""
)

# ARGV: now, most to expire. Returns {due ids looked at, holds expired}.
EXPIRE_LUA = (
    _HOLD_LUA_LIB
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[6], id)
  if v and string.sub(v, 1, 1) == 'h' then
    finish(id, v, 'e')
    n = n + 1
  else
    redis.call('ZREM', KEYS[7], id)
  end
end
return {#ids, n}
"""
)

#: holds expired per script call (one call must stay short: Redis runs nothing else meanwhile)
EXPIRE_BATCH = 500


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
        self._k_holds, self._k_expiries, self._k_returns = (
            p + "holds",
            p + "expiries",
            p + "returns",
        )
        self._ttl_s = self._options.reservation_ttl_s
        self._clock = self._options.clock
        self._reserve_keys = [
            self._k_stock,
            self._k_sold,
            self._k_orders,
            self._k_bought,
            self._k_ledger,
        ]
        self._hold_keys = [*self._reserve_keys, self._k_holds, self._k_expiries, self._k_returns]
        self._reserve_lua = RESERVE_LUA if self._ttl_s is None else HOLD_LUA
        self._keys = self._reserve_keys if self._ttl_s is None else self._hold_keys
        self._client: Any = None
        self._script: Any = None
        self._settle_script: Any = None
        self._expire_script: Any = None
        # reserve calls made in one turn of the event loop go to Redis as one pipeline
        self._batch: list[tuple[list[object], asyncio.Future[Any]]] = []
        # batches under way, each with its callers' answers (failed by ``close``)
        self._sending: dict[asyncio.Task[None], list[asyncio.Future[Any]]] = {}
        self._closed = False

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
            self._script = self._client.register_script(self._reserve_lua)
            await self._client.script_load(self._reserve_lua)  # batches call it by its SHA
            self._settle_script = self._client.register_script(SETTLE_LUA)
            self._expire_script = self._client.register_script(EXPIRE_LUA)
            await self.reset(self._stocks)
        except (RedisError, OSError) as exc:
            await self.close()
            raise StoreUnavailableError(
                f"cannot use Redis at {opts.redis_url}: {exc or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        """Fail every pending reserve, stop the batches under way, close the connection pool.

        Every caller still waiting for an answer gets :class:`StoreUnavailableError`, whether
        its call was still queued for the next batch or already sent, so nothing waits on a
        backend that is gone.
        """
        self._closed = True
        closed = StoreUnavailableError("the Redis backend was closed")
        queued, self._batch = self._batch, []
        _fail([answer for _, answer in queued], closed)
        sending, self._sending = self._sending, {}
        await cancel_until_done(sending)
        for answers in sending.values():
            _fail(answers, closed)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Run the reserve script: the whole decision happens inside Redis, atomically.

        Calls made in the same turn of the event loop are sent as one pipeline of EVALSHAs
        (each script still runs atomically, in order): one round trip and one connection for
        many orders, as a storefront under load would (bench/storefront_vs_bare.py).
        """
        if self._ttl_s is None:
            last: object = orjson.dumps((order_id, sku, qty, user_id)).decode()
        else:
            last = repr(self._clock() + self._ttl_s)
        args: list[object] = [
            order_id,
            sku,
            qty,
            self.limits[sku],
            _buyer_field(user_id, sku),
            user_id if self._ttl_s is not None else last,
            last,
        ]
        if self._closed:
            raise StoreUnavailableError("the Redis backend was closed")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._batch.append((args, answer))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)
        replayed, record = await answer
        if self._ttl_s is not None:
            return parse_hold_record(record, bool(replayed))
        return _parse_record(record, bool(replayed))

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:  # closed meanwhile: its callers have their error already
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._sending[task] = [answer for _, answer in batch]
        task.add_done_callback(lambda done: self._sending.pop(done, None))

    async def _run_batch(self, batch: list[tuple[list[object], asyncio.Future[Any]]]) -> None:
        """One pipeline of reserve scripts; each answer (or error) to its caller."""
        from redis.exceptions import NoScriptError

        try:
            results = await self._evalshas([args for args, _ in batch])
            if any(isinstance(r, NoScriptError) for r in results):  # Redis lost its scripts
                await self._client.script_load(self._reserve_lua)
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
        sha, keys = self._script.sha, self._keys
        async with self._client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Delete this namespace's keys and load ``stocks`` in one transaction."""
        self.limits = next_limits(self._configured_limits, stocks)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(*self._hold_keys, self._k_initial)
            if stocks:
                pipe.hset(self._k_stock, mapping=dict(stocks))
                pipe.hset(self._k_initial, mapping=dict(stocks))
                pipe.hset(self._k_sold, mapping=dict.fromkeys(stocks, 0))
            await pipe.execute()

    # -- reservations ----------------------------------------------------------------------

    async def pay(self, order_id: str) -> OrderState | None:
        """Pay a hold inside one script (expired instead when its time is up)."""
        return await self._settle(order_id, "p")

    async def cancel(self, order_id: str) -> OrderState | None:
        """Cancel a hold and return its stock inside one script."""
        return await self._settle(order_id, "c")

    async def _settle(self, order_id: str, action: str) -> OrderState | None:
        if self._ttl_s is None:
            return await self.order(order_id)
        now = self._clock()
        changed, value = await self._settle_script(
            keys=self._hold_keys, args=[order_id, repr(now), action]
        )
        return self._state_from(order_id, value, bool(changed), now)

    def _state_from(
        self, order_id: str, value: str, changed: bool, now: float
    ) -> OrderState | None:
        if not value:
            return None
        if value[0] == "r":
            return parse_refused(order_id, value[1:], True)
        return parse_hold(order_id, value, changed, now)

    def _replayed(self, record: str) -> Reservation:
        """An order id's first outcome again, from its record."""
        if self._ttl_s is not None:
            return parse_hold_record(record, True)
        return _parse_record(record, True)

    async def expire_due(self) -> int:
        """Expire the due holds, a batch per script call (each call atomic)."""
        if self._ttl_s is None:
            return 0
        now, expired = repr(self._clock()), 0
        while True:
            looked, n = await self._expire_script(keys=self._hold_keys, args=[now, EXPIRE_BATCH])
            expired += int(n)
            if int(looked) < EXPIRE_BATCH:
                return expired

    async def overdue_holds(self, before: float) -> dict[str, Overdue]:
        """The ids on the sorted set of expiries before ``before`` whose hold is still held."""
        if self._ttl_s is None:
            return {}
        ids = await self._client.zrangebyscore(self._k_expiries, "-inf", f"({before!r}")
        values = await self._client.hmget(self._k_holds, ids) if ids else []
        states = (
            parse_hold(order_id, value, False, NEVER)
            for order_id, value in zip(ids, values, strict=True)
            if value is not None and value[0] == "h"
        )
        return overdue_totals((s.sku, s.qty, s.expires_at) for s in states)

    async def stock_left(self, sku: str) -> int:
        """The SKU's remaining stock (one HGET)."""
        return int(await self._client.hget(self._k_stock, sku) or 0)

    async def order(self, order_id: str) -> OrderState | None:
        """Where an order stands, from its hold or its outcome record."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(self._k_holds, order_id)
            pipe.hget(self._k_orders, order_id)
            hold, record = await pipe.execute()
        if hold is not None:
            return parse_hold(order_id, hold, False, self._clock())
        if record is None:
            return None
        return parse_refused(order_id, record, self._ttl_s is not None)

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters from the hashes, ledger numbers summed from the ledger list.

        In reservation mode held and reserved units are summed from the holds themselves, and
        returns, double returns and payments after expiry from the returns list and the ledger.
        """
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k_initial)
            pipe.hgetall(self._k_sold)
            pipe.hgetall(self._k_stock)
            pipe.lrange(self._k_ledger, 0, -1)
            pipe.hvals(self._k_holds)
            pipe.lrange(self._k_returns, 0, -1)
            initial, sold, stock, raw_ledger, holds, raw_returns = await pipe.execute()
        ledger = [_entry(e) for e in raw_ledger]
        totals = snapshot_from(_ints(initial), _ints(sold), _ints(stock), ledger)
        if self._ttl_s is None:
            return totals
        held: dict[str, int] = {}
        reserved: dict[str, int] = {}
        for value in holds:
            state, qty, _, n, rest = value.split("|", 4)
            sku = rest[: int(n)]
            reserved[sku] = reserved.get(sku, 0) + int(qty)
            if state == "h":
                held[sku] = held.get(sku, 0) + int(qty)
        returns = [orjson.loads(e) for e in raw_returns]
        return hold_totals(totals, held, reserved, ledger, [(o, s, q) for o, s, q in returns])

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
            return self._replayed(prev)
        remaining = int(stock or 0)
        limit = self.limits[sku]
        if limit and int(bought or 0) + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = OUT_OF_STOCK
        else:
            outcome = TAKEN
        ttl_s = self._ttl_s
        hold = ttl_s is not None
        exp = repr(self._clock() + ttl_s) if ttl_s is not None and outcome == TAKEN else "0"
        async with self._client.pipeline(transaction=False) as pipe:
            if outcome == TAKEN:
                pipe.hincrby(self._k_stock, sku, -qty)
                pipe.hset(self._k_bought, field, int(bought or 0) + qty)
                remaining -= qty
                if hold:
                    pipe.hset(self._k_holds, order_id, hold_value("h", qty, exp, sku, user_id))
                    pipe.zadd(self._k_expiries, {order_id: float(exp)})
                else:
                    pipe.hincrby(self._k_sold, sku, qty)
                    entry = orjson.dumps((order_id, sku, qty, user_id)).decode()
                    pipe.rpush(self._k_ledger, entry)
            if hold:
                pipe.hset(self._k_orders, order_id, f"{outcome}|{remaining}|{qty}|{exp}|{sku}")
            else:
                pipe.hset(self._k_orders, order_id, _record(outcome, remaining, qty, sku))
            await pipe.execute()
        return Reservation(outcome, sku, qty, remaining, expires_at=float(exp))

    async def _settle(self, order_id: str, action: str) -> OrderState | None:
        """Read the hold, wait a round trip, then write its end without looking again."""
        if self._ttl_s is None:
            return await self.order(order_id)
        now = self._clock()
        value = await self._client.hget(self._k_holds, order_id)
        await asyncio.sleep(self._options.racy_delay_s)
        if value is None:
            return await self.order(order_id)  # refused or unknown
        state = parse_hold(order_id, value, False, NEVER)
        if state.status != HELD:
            return state
        end = "e" if now >= state.expires_at else action
        await self._write_end(state, end)
        return state._replace(status=HOLD_STATUS[end], changed=True)

    async def _write_end(self, state: OrderState, end: str) -> None:
        """Write a hold's end and its stock effect, whatever the hold's state is by now."""
        sku, qty, order_id = state.sku, state.qty, state.order_id
        value = hold_value(end, qty, repr(state.expires_at), sku, state.user_id)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(self._k_holds, order_id, value)
            pipe.zrem(self._k_expiries, order_id)
            if end == "p":
                pipe.hincrby(self._k_sold, sku, qty)
                entry = orjson.dumps((order_id, sku, qty, state.user_id)).decode()
                pipe.rpush(self._k_ledger, entry)
            else:
                pipe.hincrby(self._k_stock, sku, qty)
                pipe.rpush(self._k_returns, orjson.dumps((order_id, sku, qty)).decode())
            await pipe.execute()

    async def expire_due(self) -> int:
        """Read the due holds, wait a round trip, then return each one's stock regardless."""
        if self._ttl_s is None:
            return 0
        ids = await self._client.zrangebyscore(self._k_expiries, "-inf", repr(self._clock()))
        values = await self._client.hmget(self._k_holds, ids) if ids else []
        due = [
            parse_hold(order_id, value, False, NEVER)
            for order_id, value in zip(ids, values, strict=True)
            if value is not None and value[0] == "h"
        ]
        await asyncio.sleep(self._options.racy_delay_s)
        for state in due:
            await self._write_end(state, "e")  # a hold paid or cancelled meanwhile too
        return len(due)


def _fail(answers: list[asyncio.Future[Any]], error: BaseException) -> None:
    """Give ``error`` to every caller still waiting on one of ``answers``."""
    for answer in answers:
        if not answer.done():
            answer.set_exception(error)


def _ints(mapping: Mapping[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in mapping.items()}


def _entry(raw: str) -> LedgerEntry:
    order_id, sku, qty, user_id = orjson.loads(raw)
    return (order_id, sku, qty, user_id)
