"""A second storefront, written for the tests, that shares no code with ``simulator.storefront``.

It speaks the common seckill style rather than the bundled contract: ``POST /api/v1/login``
issues a token per user, ``Authorization: Bearer <token>`` is required, the SKU is a path
parameter (``POST /api/v1/seckill/{sku}/order``), and every answer is HTTP 200 with a business
code in the body: ``{"code": 0, "data": {"order_ref": …}}``, ``{"code": 1001, "msg": "sold
out"}``, ``{"code": 1002, "msg": "limit"}``, ``{"code": 401, …}`` for a bad token.

Stock and orders live in a real MariaDB database (:class:`MariaStore`), or the stock in Redis
keys ``{prefix}stock:{sku}`` with the orders in memory (:class:`RedisStore`). ``racy`` reads the
stock, waits, then writes what it read minus the quantity, without a lock: concurrent orders
oversell, as a careless shop does. ``open_orders`` adds ``POST /api/v1/open/order`` taking the
load engine's default body (order_id, sku, qty, user_id, no token) and answering with an HTTP
status as well (201 / 409 / 422): today's engine reads outcomes from the status alone, and
these answers keep its count honest. ``GET /api/v1/admin/stock`` lists stock per SKU as a
storefront's admin API might (``data.items[*].{sku, remaining, sold}``). For buyer journeys:
login also sets a session cookie ``sid``; an order's answer carries its ref in ``X-Order-Ref``
too; ``GET /api/v1/orders/{ref}`` (Bearer) says ``PENDING`` on the first look and ``DONE``
after (``PAID`` once paid); ``POST /api/v1/orders/{ref}/pay`` goes by the ``sid`` cookie.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiomysql
from aiohttp import web

SOLD_OUT = {"code": 1001, "msg": "sold out"}
LIMIT = {"code": 1002, "msg": "limit"}
BAD_TOKEN = {"code": 401, "msg": "unauthorized"}
NO_SKU = {"code": 1004, "msg": "no such sku"}
HTTP_STATUS = {0: 201, 1001: 409, 1002: 422, 401: 401, 1004: 404, 400: 400}


@dataclass(frozen=True)
class ShopConfig:
    """How the shop behaves: its stock, per-buyer limit, whether it races, the open route."""

    stock: dict[str, int]
    per_buyer_limit: int = 0  # 0: none
    racy: bool = False
    racy_delay_s: float = 0.002
    open_orders: bool = False


class Store(Protocol):
    """Where the shop keeps stock and orders."""

    async def open(self, stock: dict[str, int]) -> None: ...
    async def close(self) -> None: ...
    async def bought(self, user: str, sku: str) -> int: ...
    async def order(self, sku: str, qty: int, user: str, ref: str, client_ref: str | None) -> int:
        """0 on a sale, else the business code (1001 sold out, 1004 no such SKU)."""
        ...

    async def listing(self) -> list[dict[str, Any]]: ...


class MariaStore:
    """Stock rows and an orders table in one MariaDB database (created by :func:`create_db`)."""

    def __init__(self, db: dict[str, Any], racy: bool, racy_delay_s: float) -> None:
        self.db, self.racy, self.racy_delay_s = db, racy, racy_delay_s
        self.pool: aiomysql.Pool | None = None

    async def open(self, stock: dict[str, int]) -> None:
        self.pool = await aiomysql.create_pool(minsize=1, maxsize=20, autocommit=True, **self.db)
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "CREATE TABLE stock (sku VARCHAR(64) PRIMARY KEY, initial BIGINT NOT NULL, "
                "remaining BIGINT NOT NULL)"
            )
            await cur.execute(
                "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                "order_ref VARCHAR(40) NOT NULL, client_ref VARCHAR(64) NULL, "
                "sku VARCHAR(64) NOT NULL, qty INT NOT NULL, user_id VARCHAR(64) NOT NULL)"
            )
            await cur.executemany(
                "INSERT INTO stock VALUES (%s, %s, %s)", [(k, v, v) for k, v in stock.items()]
            )

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()

    async def bought(self, user: str, sku: str) -> int:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT COALESCE(SUM(qty), 0) FROM orders WHERE user_id = %s AND sku = %s",
                (user, sku),
            )
            (n,) = await cur.fetchone()
            return int(n)

    async def order(self, sku: str, qty: int, user: str, ref: str, client_ref: str | None) -> int:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            if self.racy:
                # the careless shop: read, think, write what was read minus qty (a lost update)
                await cur.execute("SELECT remaining FROM stock WHERE sku = %s", (sku,))
                row = await cur.fetchone()
                if row is None:
                    return 1004
                if row[0] < qty:
                    return 1001
                await asyncio.sleep(self.racy_delay_s)
                await cur.execute(
                    "UPDATE stock SET remaining = %s WHERE sku = %s", (row[0] - qty, sku)
                )
            else:
                await cur.execute(
                    "UPDATE stock SET remaining = remaining - %s WHERE sku = %s "
                    "AND remaining >= %s",
                    (qty, sku, qty),
                )
                if cur.rowcount == 0:
                    await cur.execute("SELECT 1 FROM stock WHERE sku = %s", (sku,))
                    return 1001 if await cur.fetchone() else 1004
            await cur.execute(
                "INSERT INTO orders (order_ref, client_ref, sku, qty, user_id) "
                "VALUES (%s, %s, %s, %s, %s)",
                (ref, client_ref, sku, qty, user),
            )
            return 0

    async def listing(self) -> list[dict[str, Any]]:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT s.sku, s.remaining, COALESCE(SUM(o.qty), 0) FROM stock s "
                "LEFT JOIN orders o ON o.sku = s.sku GROUP BY s.sku, s.remaining ORDER BY s.sku"
            )
            rows = await cur.fetchall()
        return [{"sku": r[0], "remaining": int(r[1]), "sold": int(r[2])} for r in rows]


class RedisStore:
    """Stock in Redis keys ``{prefix}stock:{sku}``; orders in memory (for the redis audit)."""

    def __init__(self, url: str, prefix: str, racy: bool, racy_delay_s: float) -> None:
        self.url, self.prefix, self.racy, self.racy_delay_s = url, prefix, racy, racy_delay_s
        self.orders: list[tuple[str, str | None, str, int, str]] = []
        self.redis: Any = None

    def key(self, sku: str) -> str:
        return f"{self.prefix}stock:{sku}"

    async def open(self, stock: dict[str, int]) -> None:
        import redis.asyncio

        self.redis = redis.asyncio.Redis.from_url(self.url)
        await self.redis.mset({self.key(k): v for k, v in stock.items()})

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def bought(self, user: str, sku: str) -> int:
        return sum(o[3] for o in self.orders if o[4] == user and o[2] == sku)

    async def order(self, sku: str, qty: int, user: str, ref: str, client_ref: str | None) -> int:
        key = self.key(sku)
        if self.racy:
            value = await self.redis.get(key)
            if value is None:
                return 1004
            if int(value) < qty:
                return 1001
            await asyncio.sleep(self.racy_delay_s)
            await self.redis.set(key, int(value) - qty)
        else:
            if not await self.redis.exists(key):
                return 1004
            if await self.redis.decrby(key, qty) < 0:
                await self.redis.incrby(key, qty)
                return 1001
        self.orders.append((ref, client_ref, sku, qty, user))
        return 0

    async def listing(self) -> list[dict[str, Any]]:
        return []


def make_app(config: ShopConfig, store: Store) -> web.Application:
    """The shop's aiohttp application over ``store``."""
    tokens: dict[str, str] = {}  # token → user id (per app: no module state)
    sessions: dict[str, str] = {}  # session cookie → user id
    refs: dict[str, list[Any]] = {}  # order ref → [user, polls so far, paid]

    async def on_startup(_: web.Application) -> None:
        await store.open(config.stock)

    async def on_cleanup(_: web.Application) -> None:
        await store.close()

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            user = str(body["user_id"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"code": 400, "msg": "user_id required"})
        token = secrets.token_hex(16)
        tokens[token] = user
        sid = secrets.token_hex(8)
        sessions[sid] = user
        response = web.json_response({"code": 0, "data": {"token": token}})
        response.set_cookie("sid", sid, httponly=True)
        return response

    async def place(sku: str, qty: int, user: str, client_ref: str | None) -> dict[str, Any]:
        if config.per_buyer_limit and await store.bought(user, sku) + qty > config.per_buyer_limit:
            return LIMIT
        ref = secrets.token_hex(8)
        code = await store.order(sku, qty, user, ref, client_ref)
        if code == 0:
            return {"code": 0, "data": {"order_ref": ref}}
        return SOLD_OUT if code == 1001 else NO_SKU

    async def seckill(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        user = tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if user is None:
            return web.json_response(BAD_TOKEN)  # HTTP 200, as such shops answer
        try:
            body = await request.json() if request.can_read_body else {}
            qty = int(body.get("qty", 1))
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"code": 400, "msg": "bad body"})
        answer = await place(request.match_info["sku"], qty, user, None)
        if answer["code"] != 0:
            return web.json_response(answer)
        ref = answer["data"]["order_ref"]
        refs[ref] = [user, 0, False]
        return web.json_response(answer, headers={"X-Order-Ref": ref})

    def owner(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    async def order_state(request: web.Request) -> web.Response:
        entry = refs.get(request.match_info["ref"])
        if entry is None or entry[0] != owner(request):
            return web.json_response({"code": 404, "msg": "no such order"})
        entry[1] += 1  # the order settles on the second look, as an async pipeline would
        state = "PAID" if entry[2] else "DONE" if entry[1] >= 2 else "PENDING"
        return web.json_response({"code": 0, "data": {"state": state}})

    async def pay(request: web.Request) -> web.Response:
        entry = refs.get(request.match_info["ref"])
        user = sessions.get(request.cookies.get("sid", ""))
        if entry is None or user is None or entry[0] != user:
            return web.json_response(BAD_TOKEN)  # the session cookie is what pays
        entry[2] = True
        return web.json_response({"code": 0, "data": {"paid": True}})

    async def open_order(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sku, qty, user = str(body["sku"]), int(body["qty"]), str(body["user_id"])
            client_ref = str(body["order_id"])
        except (ValueError, KeyError, TypeError):
            answer: dict[str, Any] = {"code": 400, "msg": "bad body"}
        else:
            answer = await place(sku, qty, user, client_ref)
        return web.json_response(answer, status=HTTP_STATUS[answer["code"]])

    async def admin_stock(_: web.Request) -> web.Response:
        return web.json_response({"code": 0, "data": {"items": await store.listing()}})

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/api/v1/login", login)
    app.router.add_post("/api/v1/seckill/{sku}/order", seckill)
    app.router.add_get("/api/v1/admin/stock", admin_stock)
    app.router.add_get("/api/v1/orders/{ref}", order_state)
    app.router.add_post("/api/v1/orders/{ref}/pay", pay)
    if config.open_orders:
        app.router.add_post("/api/v1/open/order", open_order)
    return app


@contextmanager
def running_shop(config: ShopConfig, store: Store) -> Iterator[str]:
    """The shop served on 127.0.0.1 (a free port) in a thread of its own; yields its base URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> web.AppRunner:
        runner = web.AppRunner(make_app(config, store), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["port"] = runner.addresses[0][1]
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["runner"] = loop.run_until_complete(start())
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="test-shop", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
