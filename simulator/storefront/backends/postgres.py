"""Stock in PostgreSQL: the transactional ``postgres`` backend and the racy ``postgres-racy``.

The backend owns one schema (``BackendOptions.namespace``) and recreates its tables there at
start: ``stock`` (one row per SKU: the hot row), ``ledger`` (confirmed orders), ``outcomes``
(order id → first outcome, the idempotency record) and ``bought`` (buyer and SKU → units).
Connections use ``synchronous_commit = off``: a mock does not need durable commits, and the
locking behaviour under test (row locks on ``stock``) is unchanged by it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from simulator.errors import UsageError
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

_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {s};
DROP TABLE IF EXISTS {s}.stock, {s}.ledger, {s}.outcomes, {s}.bought CASCADE;
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
"""

# One call = one transaction: claim the order id, check the buyer's limit, take the stock with
# a conditional UPDATE … RETURNING (the row lock serialises orders for one SKU), write the
# ledger (order_id is its primary key) and the outcome record. Returns 'R' or 'N' (replayed or
# new) followed by "outcome|remaining|qty|sku".
_RESERVE_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION {s}.reserve(
    p_order text, p_sku text, p_qty bigint, p_user text, p_limit bigint
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
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
"""

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
                await conn.execute(ddl + _RESERVE_FUNCTION_SQL.format(s=self._s))
            await self.reset(self._stocks)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreUnavailableError(
                f"cannot use PostgreSQL at {opts.postgres_dsn}: {exc or type(exc).__name__}"
            ) from None

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Call the schema's ``reserve`` function: one round trip, one transaction."""
        result: str = await self._pool.fetchval(
            self._reserve_sql, order_id, sku, qty, user_id, self.limits[sku]
        )
        return _parse_record(result[1:], result[0] == "R")

    async def reset(self, stocks: Mapping[str, int]) -> None:
        """Empty every table and load ``stocks``, in one transaction."""
        self.limits = next_limits(self._configured_limits, stocks)
        s = self._s
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"TRUNCATE {s}.stock, {s}.ledger, {s}.outcomes, {s}.bought RESTART IDENTITY"
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
        return out

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

    async def reserve(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """SELECT, await the simulated delay, UPDATE to the computed value."""
        prev, remaining, bought = await self._pool.fetchrow(self._read_sql, order_id, sku, user_id)
        await asyncio.sleep(self._options.racy_delay_s)
        if prev:
            return _parse_record(prev, True)
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
        record = f"{outcome}|{remaining}|{qty}|{sku}"
        if outcome == TAKEN:
            await self._pool.execute(
                self._confirm_sql, order_id, sku, qty, user_id, remaining, bought + qty, record
            )
        else:
            await self._pool.execute(self._refuse_sql, order_id, record)
        return Reservation(outcome, sku, qty, remaining)
