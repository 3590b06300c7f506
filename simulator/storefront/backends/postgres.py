"""Stock in PostgreSQL: the transactional ``postgres`` backend and the racy ``postgres-racy``.

The backend owns one schema (``BackendOptions.namespace``) and recreates its tables there at
start: ``stock`` (one row per SKU: the hot row), ``ledger`` (confirmed orders), ``outcomes``
(order id → first outcome, the idempotency record) and ``bought`` (buyer and SKU → units).
Connections use ``synchronous_commit = off``: a mock does not need durable commits, and the
locking behaviour under test (row locks on ``stock``) is unchanged by it.

Reservation mode adds ``holds`` (one row per reservation: state h/p/e/c and its expiry) and
``returns`` (one row per stock return); ``ledger`` then holds the payments. The correct backend
pays or cancels a hold in one function call (the hold's row lock first, then the stock row) and
expires every due hold in one statement; the racy one reads, waits and writes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from simulator.errors import UsageError
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
    next_limits,
    parse_hold,
    parse_hold_record,
    parse_refused,
)

_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {s};
DROP TABLE IF EXISTS {s}.stock, {s}.ledger, {s}.outcomes, {s}.bought, {s}.holds, {s}.returns
    CASCADE;
CREATE TABLE {s}.stock (
    sku text PRIMARY KEY,
    initial bigint NOT NULL,
    remaining bigint NOT NULL,
    sold bigint NOT NULL DEFAULT 0
);
CREATE TABLE {s}.ledger (
    seq bigserial {seq_key},
    order_id text NOT NULL {order_key},
    sku text NOT NULL,
    qty bigint NOT NULL,
    user_id text NOT NULL
);
CREATE TABLE {s}.outcomes (order_id text PRIMARY KEY, record text NOT NULL);
CREATE TABLE {s}.bought (
    user_id text NOT NULL,
    sku text NOT NULL,
    units bigint NOT NULL,
    PRIMARY KEY (user_id, sku)
);
CREATE TABLE {s}.holds (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    qty bigint NOT NULL,
    user_id text NOT NULL,
    state char(1) NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX ON {s}.holds (expires_at) WHERE state = 'h';
CREATE TABLE {s}.returns (
    seq bigserial PRIMARY KEY,
    order_id text NOT NULL,
    sku text NOT NULL,
    qty bigint NOT NULL
);
"""

# Reservation mode: reserve's twin that pre-deducts into a hold instead of confirming. Returns
#: the start both order functions share: a replayed order id returns its first record ('R…');
#: a new one claims its id and, under a per-buyer limit, the buyer's units (outcome 2 if over)
_CLAIM_SQL = """DECLARE
    rec text;
    rem bigint;
    outcome int := 0;
BEGIN
    INSERT INTO {s}.outcomes (order_id, record) VALUES (p_order, '')
        ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT record INTO rec FROM {s}.outcomes WHERE order_id = p_order;
        RETURN 'R' || rec;
    END IF;
    IF p_limit > 0 THEN
        IF p_qty > p_limit THEN
            outcome := 2;
        ELSE
            INSERT INTO {s}.bought AS b (user_id, sku, units) VALUES (p_user, p_sku, p_qty)
                ON CONFLICT (user_id, sku) DO UPDATE SET units = b.units + EXCLUDED.units
                WHERE b.units + EXCLUDED.units <= p_limit;
            IF NOT FOUND THEN
                outcome := 2;
            END IF;
        END IF;
    END IF;
"""


# 'R' or 'N' followed by "outcome|remaining|qty|expiry|sku".
_HOLD_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION {s}.hold(
    p_order text, p_sku text, p_qty bigint, p_user text, p_limit bigint, p_expires float8
) RETURNS text LANGUAGE plpgsql AS $fn$
-- CLAIM --
    IF outcome = 0 THEN
        UPDATE {s}.stock SET remaining = remaining - p_qty
            WHERE sku = p_sku AND remaining >= p_qty
            RETURNING remaining INTO rem;
        IF FOUND THEN
            INSERT INTO {s}.holds VALUES (p_order, p_sku, p_qty, p_user, 'h', p_expires);
        ELSE
            outcome := 1;
            IF p_limit > 0 THEN
                UPDATE {s}.bought SET units = units - p_qty
                    WHERE user_id = p_user AND sku = p_sku;
            END IF;
        END IF;
    END IF;
    IF rem IS NULL THEN
        SELECT remaining INTO rem FROM {s}.stock WHERE sku = p_sku;
    END IF;
    rec := outcome || '|' || coalesce(rem, 0) || '|' || p_qty || '|'
        || CASE WHEN outcome = 0 THEN p_expires::text ELSE '0' END || '|' || p_sku;
    UPDATE {s}.outcomes SET record = rec WHERE order_id = p_order;
    RETURN 'N' || rec;
END
$fn$;

-- pay ('p') or cancel ('c') a hold, or expire it when its time is up: the hold's row lock,
-- then its stock row. Returns '1'/'0' (changed or not) and the hold as
-- "state|qty|expiry|len(sku)|sku user", 'r' and the outcome record, or '' (unknown).
CREATE OR REPLACE FUNCTION {s}.settle(p_order text, p_now float8, p_action text)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    h {s}.holds;
    rec text;
    new_state text;
BEGIN
    SELECT * INTO h FROM {s}.holds WHERE order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN
        SELECT record INTO rec FROM {s}.outcomes WHERE order_id = p_order;
        RETURN coalesce('r' || rec, '');
    END IF;
    new_state := h.state;
    IF h.state = 'h' THEN
        new_state := CASE WHEN p_now >= h.expires_at THEN 'e' ELSE p_action END;
        UPDATE {s}.holds SET state = new_state WHERE order_id = p_order;
        IF new_state = 'p' THEN
            UPDATE {s}.stock SET sold = sold + h.qty WHERE sku = h.sku;
            INSERT INTO {s}.ledger (order_id, sku, qty, user_id)
                VALUES (p_order, h.sku, h.qty, h.user_id);
        ELSE
            UPDATE {s}.stock SET remaining = remaining + h.qty WHERE sku = h.sku;
            INSERT INTO {s}.returns (order_id, sku, qty) VALUES (p_order, h.sku, h.qty);
        END IF;
    END IF;
    RETURN CASE WHEN h.state = 'h' THEN '1' ELSE '0' END || new_state || '|' || h.qty || '|'
        || h.expires_at::text || '|' || length(h.sku) || '|' || h.sku || h.user_id;
END
$fn$;
""".replace("-- CLAIM --\n", _CLAIM_SQL)

# every due hold expired, returned and logged in one statement (one transaction)
_EXPIRE_SQL = """
WITH due AS (
    UPDATE {s}.holds SET state = 'e' WHERE state = 'h' AND expires_at <= $1
    RETURNING order_id, sku, qty
), logged AS (
    INSERT INTO {s}.returns (order_id, sku, qty) SELECT order_id, sku, qty FROM due
), back AS (
    UPDATE {s}.stock SET remaining = stock.remaining + d.units
    FROM (SELECT sku, sum(qty) AS units FROM due GROUP BY sku) AS d WHERE stock.sku = d.sku
)
SELECT count(*) FROM due
"""

_HOLD_TEXT = (
    "state || '|' || qty || '|' || expires_at::text || '|' || length(sku) || '|' || sku || user_id"
)


# One call = one transaction: claim the order id, check the buyer's limit, take the stock with
# a conditional UPDATE … RETURNING (the row lock serialises orders for one SKU), write the
# ledger (order_id is its primary key) and the outcome record. Returns 'R' or 'N' (replayed or
# new) followed by "outcome|remaining|qty|sku".
_RESERVE_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION {s}.reserve(
    p_order text, p_sku text, p_qty bigint, p_user text, p_limit bigint
) RETURNS text LANGUAGE plpgsql AS $fn$
-- CLAIM --
    IF outcome = 0 THEN
        UPDATE {s}.stock SET remaining = remaining - p_qty, sold = sold + p_qty
            WHERE sku = p_sku AND remaining >= p_qty
            RETURNING remaining INTO rem;
        IF FOUND THEN
            INSERT INTO {s}.ledger (order_id, sku, qty, user_id)
                VALUES (p_order, p_sku, p_qty, p_user);
        ELSE
            outcome := 1;
            IF p_limit > 0 THEN
                UPDATE {s}.bought SET units = units - p_qty
                    WHERE user_id = p_user AND sku = p_sku;
            END IF;
        END IF;
    END IF;
    IF rem IS NULL THEN
        SELECT remaining INTO rem FROM {s}.stock WHERE sku = p_sku;
    END IF;
    rec := outcome || '|' || coalesce(rem, 0) || '|' || p_qty || '|' || p_sku;
    UPDATE {s}.outcomes SET record = rec WHERE order_id = p_order;
    RETURN 'N' || rec;
END
$fn$;
""".replace("-- CLAIM --\n", _CLAIM_SQL)

#: how long closing waits for calls under way before cutting their connections
CLOSE_GRACE_S = 1.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _schema(namespace: str) -> str:
    if not _IDENTIFIER.fullmatch(namespace):
        raise UsageError(
            f"PostgreSQL schema {namespace!r}: must be letters, digits and '_' (≤ 63), "
            "not starting with a digit"
        )
    return f'"{namespace}"'


def _parse_record(record: str, replayed: bool) -> Reservation:
    outcome, remaining, qty, sku = record.split("|", 3)
    return Reservation(int(outcome), sku, int(qty), int(remaining), replayed)


class PostgresBackend:
    """Transactional stock in PostgreSQL: one server-side function call per order."""

    name = "postgres"
    _unique_ledger = True

    def __init__(
        self,
        stocks: Mapping[str, int],
        limits: Mapping[str, int],
        options: BackendOptions | None = None,
    ) -> None:
        self._options = options or BackendOptions()
        self._s = _schema(self._options.namespace)
        self._stocks = dict(stocks)
        self._configured_limits = dict(limits)
        self.limits: dict[str, int] = next_limits(limits, stocks)
        self._pool: Any = None
        self._reserve_sql = f"SELECT {self._s}.reserve($1, $2, $3, $4, $5)"
        self._hold_sql = f"SELECT {self._s}.hold($1, $2, $3, $4, $5, $6)"
        self._ttl_s = self._options.reservation_ttl_s
        self._clock = self._options.clock

    async def start(self) -> None:
        """Connect a pool, recreate the schema's tables, load the initial stock."""
        import asyncpg

        opts = self._options
        try:
            self._pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    opts.postgres_dsn,
                    min_size=1,
                    max_size=opts.pool_size,
                    timeout=opts.connect_timeout_s,
                    server_settings={"synchronous_commit": "off"},
                ),
                opts.connect_timeout_s * 2,
            )
            keys = ("", "PRIMARY KEY") if self._unique_ledger else ("PRIMARY KEY", "")
            ddl = _SCHEMA_SQL.format(s=self._s, seq_key=keys[0], order_key=keys[1])
            async with self._pool.acquire() as conn:
                functions = (_RESERVE_FUNCTION_SQL + _HOLD_FUNCTION_SQL).format(s=self._s)
                await conn.execute(ddl + functions)
            await self.reset(self._stocks)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreUnavailableError(
                f"cannot use PostgreSQL at {opts.postgres_dsn}: {exc or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        """Close the pool; a call still under way after ``CLOSE_GRACE_S`` has its connection cut.

        ``Pool.close`` waits for every connection to be released, so a call stuck in the
        store would hold it forever: terminating the pool ends those calls with an error.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_GRACE_S)
            except TimeoutError:
                pool.terminate()

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Call the schema's ``reserve`` function: one round trip, one transaction."""
        ttl_s = self._ttl_s
        if ttl_s is not None:
            result: str = await self._pool.fetchval(
                self._hold_sql, order_id, sku, qty, user_id, self.limits[sku], self._clock() + ttl_s
            )
            return parse_hold_record(result[1:], result[0] == "R")
        result = await self._pool.fetchval(
            self._reserve_sql, order_id, sku, qty, user_id, self.limits[sku]
        )
        return _parse_record(result[1:], result[0] == "R")

    # -- reservations ----------------------------------------------------------------------

    async def pay(self, order_id: str) -> OrderState | None:
        """Pay a hold in one function call (expired instead when its time is up)."""
        return await self._settle(order_id, "p")

    async def cancel(self, order_id: str) -> OrderState | None:
        """Cancel a hold and return its stock in one function call."""
        return await self._settle(order_id, "c")

    async def _settle(self, order_id: str, action: str) -> OrderState | None:
        if self._ttl_s is None:
            return await self.order(order_id)
        now = self._clock()
        result: str = await self._pool.fetchval(
            f"SELECT {self._s}.settle($1, $2, $3)", order_id, now, action
        )
        if not result:
            return None
        if result[0] == "r":
            return parse_refused(order_id, result[1:], True)
        return parse_hold(order_id, result[1:], result[0] == "1", now)

    def _replayed(self, record: str) -> Reservation:
        """An order id's first outcome again, from its record."""
        if self._ttl_s is not None:
            return parse_hold_record(record, True)
        return _parse_record(record, True)

    async def expire_due(self) -> int:
        """Expire, return and log every due hold in one statement."""
        if self._ttl_s is None:
            return 0
        count: int = await self._pool.fetchval(_EXPIRE_SQL.format(s=self._s), self._clock())
        return count

    async def overdue_holds(self, before: float) -> dict[str, Overdue]:
        """Held rows of ``holds`` due before ``before`` (the sweeper's own partial index)."""
        if self._ttl_s is None:
            return {}
        rows = await self._pool.fetch(
            f"SELECT sku, sum(qty) AS units, count(*) AS n, min(expires_at) AS oldest"
            f" FROM {self._s}.holds WHERE state = 'h' AND expires_at < $1 GROUP BY sku",
            before,
        )
        return {r["sku"]: Overdue(int(r["units"]), int(r["n"]), float(r["oldest"])) for r in rows}

    async def stock_left(self, sku: str) -> int:
        """The SKU's remaining stock (one SELECT)."""
        left = await self._pool.fetchval(
            f"SELECT remaining FROM {self._s}.stock WHERE sku = $1", sku
        )
        return int(left or 0)

    async def order(self, order_id: str) -> OrderState | None:
        """Where an order stands, from its hold or its outcome record."""
        s = self._s
        hold, record = await self._pool.fetchrow(
            f"SELECT (SELECT {_HOLD_TEXT} FROM {s}.holds WHERE order_id = $1),"
            f" (SELECT record FROM {s}.outcomes WHERE order_id = $1)",
            order_id,
        )
        if hold is not None:
            return parse_hold(order_id, hold, False, self._clock())
        if record is None:
            return None
        return parse_refused(order_id, record, self._ttl_s is not None)

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Empty every table and load ``stocks``, in one transaction."""
        self.limits = next_limits(self._configured_limits, stocks)
        s = self._s
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"TRUNCATE {s}.stock, {s}.ledger, {s}.outcomes, {s}.bought, {s}.holds,"
                f" {s}.returns RESTART IDENTITY"
            )
            await conn.executemany(
                f"INSERT INTO {s}.stock (sku, initial, remaining) VALUES ($1, $2, $2)",
                list(stocks.items()),
            )

    async def snapshot(self) -> dict[str, SkuSnapshot]:
        """Counters from ``stock``, ledger numbers aggregated from ``ledger``."""
        s = self._s
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            stock = await conn.fetch(f"SELECT sku, initial, sold, remaining FROM {s}.stock")
            ledger = await conn.fetch(
                f"SELECT sku, sum(qty) AS units, count(*) AS orders FROM {s}.ledger GROUP BY sku"
            )
        by_sku = {r["sku"]: (int(r["units"]), int(r["orders"])) for r in ledger}
        out = {
            r["sku"]: SkuSnapshot(
                r["initial"], r["sold"], *by_sku.pop(r["sku"], (0, 0)), r["remaining"]
            )
            for r in stock
        }
        for sku, (units, orders) in by_sku.items():
            out[sku] = SkuSnapshot(0, 0, units, orders, 0)
        if self._ttl_s is None:
            return out
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            holds = await conn.fetch(
                f"SELECT sku, sum(qty) FILTER (WHERE state = 'h') AS held, sum(qty) AS reserved"
                f" FROM {s}.holds GROUP BY sku"
            )
            returns = await conn.fetch(
                f"SELECT sku, sum(qty) AS units, count(*) - count(DISTINCT order_id) AS doubles,"
                f" count(DISTINCT order_id) FILTER (WHERE order_id IN"
                f" (SELECT order_id FROM {s}.ledger)) AS late FROM {s}.returns GROUP BY sku"
            )
        held = {r["sku"]: (int(r["held"] or 0), int(r["reserved"])) for r in holds}
        back = {r["sku"]: (int(r["units"]), int(r["doubles"]), int(r["late"])) for r in returns}
        return {
            sku: replace(
                snap,
                paid=snap.sold,
                held=held.get(sku, (0, 0))[0],
                reserved=held.get(sku, (0, 0))[1],
                returned=back.get(sku, (0, 0, 0))[0],
                double_returns=back.get(sku, (0, 0, 0))[1],
                paid_after_expiry=back.get(sku, (0, 0, 0))[2],
            )
            for sku, snap in out.items()
        }

    async def ledger(self) -> list[LedgerEntry]:
        """Every ledger row in insertion order."""
        rows = await self._pool.fetch(
            f"SELECT order_id, sku, qty, user_id FROM {self._s}.ledger ORDER BY seq"
        )
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


class RacyPostgresBackend(PostgresBackend):
    """Stock in PostgreSQL read and written in separate statements: oversells.

    SELECTs the remaining stock (and the order's record and the buyer's units), awaits a
    simulated delay, then UPDATEs the row to the value computed in Python, under read committed:
    concurrent orders overwrite each other's decrements (lost updates) while each one still
    counts in ``sold`` and the ledger. Its ledger has no unique order id, so a racing repeat of
    one order id is recorded twice, as the audit should find.
    """

    name = "postgres-racy"
    _unique_ledger = False

    def __init__(
        self,
        stocks: Mapping[str, int],
        limits: Mapping[str, int],
        options: BackendOptions | None = None,
    ) -> None:
        super().__init__(stocks, limits, options)
        s = self._s
        self._read_sql = (
            f"SELECT (SELECT record FROM {s}.outcomes WHERE order_id = $1),"
            f" (SELECT remaining FROM {s}.stock WHERE sku = $2),"
            f" (SELECT units FROM {s}.bought WHERE user_id = $3 AND sku = $2)"
        )
        self._confirm_sql = (
            f"WITH u AS (UPDATE {s}.stock SET remaining = $5, sold = sold + $3 WHERE sku = $2),"
            f" l AS (INSERT INTO {s}.ledger (order_id, sku, qty, user_id)"
            f" VALUES ($1, $2, $3, $4)),"
            f" b AS (INSERT INTO {s}.bought (user_id, sku, units) VALUES ($4, $2, $6)"
            f" ON CONFLICT (user_id, sku) DO UPDATE SET units = EXCLUDED.units)"
            f" INSERT INTO {s}.outcomes (order_id, record) VALUES ($1, $7)"
            f" ON CONFLICT (order_id) DO NOTHING"
        )
        self._refuse_sql = (
            f"INSERT INTO {s}.outcomes (order_id, record) VALUES ($1, $2)"
            f" ON CONFLICT (order_id) DO NOTHING"
        )
        self._hold_write_sql = (
            f"WITH u AS (UPDATE {s}.stock SET remaining = $5 WHERE sku = $2),"
            f" h AS (INSERT INTO {s}.holds VALUES ($1, $2, $3, $4, 'h', $8)),"
            f" b AS (INSERT INTO {s}.bought (user_id, sku, units) VALUES ($4, $2, $6)"
            f" ON CONFLICT (user_id, sku) DO UPDATE SET units = EXCLUDED.units)"
            f" INSERT INTO {s}.outcomes (order_id, record) VALUES ($1, $7)"
            f" ON CONFLICT (order_id) DO NOTHING"
        )
        # a hold's end written as decided earlier, whatever its state is by now
        self._end_sql = (
            f"WITH h AS (UPDATE {s}.holds SET state = $2 WHERE order_id = $1),"
            f" st AS (UPDATE {s}.stock SET"
            f" sold = sold + CASE WHEN $2 = 'p' THEN $4::bigint ELSE 0 END,"
            f" remaining = remaining + CASE WHEN $2 = 'p' THEN 0 ELSE $4::bigint END"
            f" WHERE sku = $3),"
            f" l AS (INSERT INTO {s}.ledger (order_id, sku, qty, user_id)"
            f" SELECT $1, $3, $4, $5 WHERE $2 = 'p')"
            f" INSERT INTO {s}.returns (order_id, sku, qty) SELECT $1, $3, $4 WHERE $2 <> 'p'"
        )

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """SELECT, await the simulated delay, UPDATE to the computed value."""
        prev, remaining, bought = await self._pool.fetchrow(self._read_sql, order_id, sku, user_id)
        await asyncio.sleep(self._options.racy_delay_s)
        if prev:
            return self._replayed(prev)
        remaining = int(remaining or 0)
        bought = int(bought or 0)
        limit = self.limits[sku]
        if limit and bought + qty > limit:
            outcome = OVER_LIMIT
        elif remaining < qty:
            outcome = OUT_OF_STOCK
        else:
            outcome = TAKEN
            remaining -= qty
        if self._ttl_s is not None:
            return await self._write_hold(order_id, sku, qty, user_id, outcome, remaining, bought)
        record = f"{outcome}|{remaining}|{qty}|{sku}"
        if outcome == TAKEN:
            await self._pool.execute(
                self._confirm_sql, order_id, sku, qty, user_id, remaining, bought + qty, record
            )
        else:
            await self._pool.execute(self._refuse_sql, order_id, record)
        return Reservation(outcome, sku, qty, remaining)

    async def _write_hold(
        self, order_id: str, sku: str, qty: int, user_id: str, outcome: int, rem: int, bought: int
    ) -> Reservation:
        """Write a decided reservation-mode order: the stock as computed earlier, the hold."""
        expires_at = self._clock() + self._ttl_s if self._ttl_s and outcome == TAKEN else 0.0
        record = f"{outcome}|{rem}|{qty}|{expires_at!r}|{sku}"
        if outcome == TAKEN:
            await self._pool.execute(
                self._hold_write_sql, order_id, sku, qty, user_id, rem, bought + qty, record,
                expires_at,
            )  # fmt: skip
        else:
            await self._pool.execute(self._refuse_sql, order_id, record)
        return Reservation(outcome, sku, qty, rem, expires_at=expires_at)

    async def _settle(self, order_id: str, action: str) -> OrderState | None:
        """Read the hold, wait a round trip, then write its end without looking again."""
        if self._ttl_s is None:
            return await self.order(order_id)
        now = self._clock()
        hold = await self._pool.fetchval(
            f"SELECT {_HOLD_TEXT} FROM {self._s}.holds WHERE order_id = $1", order_id
        )
        await asyncio.sleep(self._options.racy_delay_s)
        if hold is None:
            return await self.order(order_id)  # refused or unknown
        state = parse_hold(order_id, hold, False, NEVER)
        if state.status != HELD:
            return state
        end = "e" if now >= state.expires_at else action
        await self._write_end(state, end)
        return state._replace(status=HOLD_STATUS[end], changed=True)

    async def _write_end(self, state: OrderState, end: str) -> None:
        await self._pool.execute(
            self._end_sql, state.order_id, end, state.sku, state.qty, state.user_id
        )

    async def expire_due(self) -> int:
        """Read the due holds, wait a round trip, then return each one's stock regardless."""
        if self._ttl_s is None:
            return 0
        rows = await self._pool.fetch(
            f"SELECT order_id, {_HOLD_TEXT} AS hold FROM {self._s}.holds"
            f" WHERE state = 'h' AND expires_at <= $1",
            self._clock(),
        )
        await asyncio.sleep(self._options.racy_delay_s)
        for row in rows:
            await self._write_end(parse_hold(row["order_id"], row["hold"], False, NEVER), "e")
        return len(rows)
