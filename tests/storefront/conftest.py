"""Fixtures for storefront tests: start storefronts on loopback, on any backend, and clean up.

Redis and PostgreSQL backends get a fresh namespace (key prefix / schema) per test, removed at
teardown; they use the ``redis_url``/``postgres_dsn`` fixtures, so they skip without the
server and fail under FLASHSALE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest

from simulator.storefront.config import StorefrontSettings
from simulator.storefront.server import RunningStorefront, start_storefront

#: the ``start`` fixture: ``await start(backend, stocks, limits=None, **settings)``
StartStorefront = Callable[..., Awaitable[RunningStorefront]]


async def _drop_namespace(backend: str, namespace: str, url: str) -> None:
    if backend.startswith("redis"):
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
    elif backend.startswith("postgres"):
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def start(request: pytest.FixtureRequest) -> AsyncIterator[StartStorefront]:
    """``await start(backend, stocks, limits=None, **settings)`` → a running storefront."""
    running: list[RunningStorefront] = []
    namespaces: list[tuple[str, str, str]] = []

    async def _start(
        backend: str,
        stocks: Mapping[str, int],
        limits: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> RunningStorefront:
        store: dict[str, Any] = {}
        if backend.startswith("redis"):
            store["redis_url"] = url = request.getfixturevalue("redis_url")
        elif backend.startswith("postgres"):
            store["postgres_dsn"] = url = request.getfixturevalue("postgres_dsn")
        else:
            url = ""
        namespace = f"fs_test_{uuid.uuid4().hex[:12]}"
        namespaces.append((backend, namespace, url))
        settings = StorefrontSettings(
            stocks=stocks,
            limits=limits or {},
            backend=backend,
            namespace=namespace,
            **store,
            **kwargs,
        )
        sf = await start_storefront(settings)
        running.append(sf)
        return sf

    yield _start
    for sf in running:
        await sf.stop()
    for backend, namespace, url in namespaces:
        await _drop_namespace(backend, namespace, url)


class Client:
    """An aiohttp session with the few calls the storefront tests make."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def order(
        self, url: str, order_id: str, sku: str, qty: int = 1, user_id: str = "u"
    ) -> tuple[int, dict[str, Any]]:
        """POST one order; (status, JSON body)."""
        body = {"order_id": order_id, "sku": sku, "qty": qty, "user_id": user_id}
        async with self.session.post(url + "/orders", json=body) as resp:
            return resp.status, await resp.json()

    async def post(self, url: str, json: Any = None) -> tuple[int, Any]:
        """POST a JSON body (none when ``json`` is None); (status, JSON body)."""
        async with self.session.post(url, json=json) as resp:
            return resp.status, await resp.json()

    async def get(self, url: str) -> Any:
        """GET a JSON document that must answer 200."""
        async with self.session.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.fixture
async def http() -> AsyncIterator[Client]:
    """A client allowing a few hundred connections at once."""
    connector = aiohttp.TCPConnector(limit=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(session)
