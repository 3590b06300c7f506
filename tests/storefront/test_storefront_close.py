"""Closing a storefront or a backend with work pending: it returns promptly, callers get errors.

A close that waits on a call that will never be answered, or a sweeper that misses its
cancellation, hangs whoever closes (the test suite's teardown, a CLI run's exit). Every wait
here is bounded with ``asyncio.wait_for`` so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from aiohttp import web

from simulator.storefront.app import STOREFRONT_KEY, make_app
from simulator.storefront.backends import (
    BackendOptions,
    Reservation,
    StoreUnavailableError,
    create_backend,
)
from simulator.storefront.backends.memory import MemoryBackend
from simulator.storefront.config import StorefrontSettings
from tests.storefront.conftest import _drop_namespace

BOUND_S = 10.0  # far above a prompt close; only a hang reaches it


async def _redis_backend(request: pytest.FixtureRequest, namespace: str) -> Any:
    url = request.getfixturevalue("redis_url")
    options = BackendOptions(namespace=namespace, redis_url=url, reservation_ttl_s=5.0)
    backend = create_backend("redis", {"durian": 1000}, {}, options)
    await backend.start()
    return backend, url


@pytest.mark.parametrize("turns", [0, 1, 2], ids=["queued", "batch-created", "batch-sending"])
async def test_closing_redis_fails_pending_reserves(
    turns: int, request: pytest.FixtureRequest
) -> None:
    """Reserves queued for the next pipeline fail; those in one under way end either way."""
    namespace = f"fs_close_{uuid.uuid4().hex[:12]}"
    backend, url = await _redis_backend(request, namespace)
    try:
        calls = [
            asyncio.ensure_future(backend.reserve(f"o{i}", "durian", 1, f"u{i}")) for i in range(50)
        ]
        await asyncio.sleep(0)  # every call has queued its script for the next batch
        for _ in range(turns):
            await asyncio.sleep(0)  # the batch is handed to its task, then starts sending
        await asyncio.wait_for(backend.close(), BOUND_S)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), BOUND_S)
        errors = [r for r in results if isinstance(r, BaseException)]
        if turns == 0:  # nothing was sent: every caller is told the store closed
            assert len(errors) == len(calls), results
            assert all(isinstance(e, StoreUnavailableError) for e in errors), errors
            assert all("closed" in str(e) for e in errors), errors
        else:  # sent: each caller has its answer, or an error if the close cut it off
            assert all(c.done() for c in calls)
            assert all(isinstance(r, (Reservation, Exception)) for r in results), results
        with pytest.raises(StoreUnavailableError, match="closed"):
            await backend.reserve("late", "durian", 1, "ann")
    finally:
        await backend.close()
        await _drop_namespace("redis", namespace, url)


class LosesCancels(MemoryBackend):
    """A memory store whose sweep swallows a cancellation, as redis-py 8.2 now and then does."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sweeping = asyncio.Event()

    async def expire_due(self) -> int:
        self.sweeping.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost: the sweep goes on
            await asyncio.sleep(0.05)
        return await super().expire_due()


async def test_stopping_the_sweeper_survives_a_lost_cancellation() -> None:
    """The app's cleanup stops a sweeper whose store call swallowed the cancel."""
    settings = StorefrontSettings(stocks={"durian": 3}, reservation_ttl_s=0.1)
    backend = LosesCancels(settings.stocks, {}, settings.backend_options())
    app = make_app(settings, backend)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    shop = app[STOREFRONT_KEY]
    assert (await shop.backend.reserve("a", "durian", 1, "ann")).remaining == 2
    await asyncio.wait_for(backend.sweeping.wait(), BOUND_S)  # the cancel lands mid-sweep
    await asyncio.wait_for(runner.cleanup(), BOUND_S)
    assert shop.flow._sweeper is None


async def test_closing_postgres_cuts_calls_under_way(request: pytest.FixtureRequest) -> None:
    """A call stuck in PostgreSQL does not hold ``close``: its connection is cut, it errs."""
    dsn = request.getfixturevalue("postgres_dsn")
    namespace = f"fs_close_{uuid.uuid4().hex[:12]}"
    options = BackendOptions(namespace=namespace, postgres_dsn=dsn, reservation_ttl_s=5.0)
    backend = create_backend("postgres", {"durian": 3}, {}, options)
    await backend.start()
    pool = backend._pool  # type: ignore[attr-defined]
    try:
        stuck = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(60)"))
        await asyncio.sleep(0.2)  # the sleep is under way in the server
        await asyncio.wait_for(backend.close(), BOUND_S)
        with pytest.raises(Exception) as caught:  # asyncpg's own error for a cut connection
            await asyncio.wait_for(stuck, BOUND_S)
        assert not isinstance(caught.value, TimeoutError)
    finally:
        await backend.close()
        await _drop_namespace("postgres", namespace, dsn)
