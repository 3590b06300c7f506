"""The storefront's HTTP layer: an aiohttp application around one inventory backend.

:func:`make_app` builds it; :class:`Storefront` holds its state (backend, counters, knobs) and
its handlers. The app owns the backend's life: it starts it on startup and closes it on cleanup.
Every refusal is a JSON ``{"error": ..., "field": ...}`` with a 4xx status and changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping

import orjson
from aiohttp import hdrs, web

from simulator import __version__
from simulator.storefront import metrics
from simulator.storefront.backends import (
    OUT_OF_STOCK,
    TAKEN,
    Backend,
    Reservation,
    create_backend,
)
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.flow import Flow, sweep_interval_s
from simulator.storefront.history import Sampler, StockHistory
from simulator.storefront.openapi import PATHS, openapi_document
from simulator.storefront.protocol import error_body
from simulator.storefront.validate import (
    InvalidInput,
    is_json_content_type,
    parse_order,
    parse_reset,
)

JSON = "application/json"
_REPLAYED = {"Idempotent-Replayed": "true"}


def error_response(status: int, error: str, field: str, **extra: object) -> web.Response:
    """A JSON error answer in the contract's shape."""
    return web.Response(body=error_body(error, field, **extra), status=status, content_type=JSON)


class Storefront:
    """One storefront: the backend, order counters, realism knobs and the route handlers."""

    def __init__(self, settings: StorefrontSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.stats = metrics.OrderStats()
        self.registry, self._collector = metrics.new_registry(
            self.stats, backend.name, lifecycle=settings.reservation_ttl_s is not None
        )
        self._max_in_flight = settings.max_concurrency
        self._max_body = settings.client_max_size
        self._read_timeout_s = settings.read_timeout_s
        self._rng = random.Random(settings.seed)
        median_ms = settings.service_time_median_ms
        self._service_mu = math.log(median_ms / 1000.0) if median_ms > 0 else None
        self._service_sigma = settings.service_time_sigma
        self._hot_row = settings.hot_row
        self._slow = self._hot_row or self._service_mu is not None
        # a backend that decides without I/O (memory) is called without a coroutine: less work
        # per order on the hot path (measured by bench/storefront_vs_bare.py)
        fast = not self._slow and getattr(backend, "synchronous", False)
        self._confirm_now: Callable[[str, str, int, str], int] | None = None
        self._reserve_now: Callable[[str, str, int, str], Reservation] = self._no_reserve_now
        if fast:
            self._confirm_now = getattr(backend, "confirm_now")  # noqa: B009 (not in Backend)
            self._reserve_now = getattr(backend, "reserve_now")  # noqa: B009
        self._row_locks: dict[str, asyncio.Lock] = {}
        self._openapi = orjson.dumps(openapi_document(__version__))
        self.flow = Flow(self)
        self.history = StockHistory()
        self.sampler = Sampler(backend, self.history, self.flow.clock)

    # -- POST /orders: the hot path --------------------------------------------------------

    async def post_order(self, request: web.Request) -> web.Response:
        """Validate an order, take stock through the backend, answer with the outcome."""
        stats = self.stats
        if self._max_in_flight and stats.in_flight >= self._max_in_flight:
            stats.by_status[429] += 1
            return error_response(429, "too many orders in flight, try again", "max_concurrency")
        try:
            content_type = request.headers.get(hdrs.CONTENT_TYPE)
            if content_type != JSON and not is_json_content_type(content_type):
                raise InvalidInput(400, "content type must be application/json", "content-type")
            content = request.content
            if content.is_eof():
                # the whole body came with the headers (an order does): take it as it lies,
                # without read()'s two awaits and copy (measured by bench/storefront_vs_bare.py);
                # aiohttp's size limit is checked here then
                raw = content.read_nowait()
                if len(raw) > self._max_body:
                    raise InvalidInput(413, f"body over {self._max_body} bytes", "body")
            else:
                raw = await self._read_body(request)
            order_id, sku, qty, user_id = parse_order(raw, self.backend.limits)
        except InvalidInput as exc:
            stats.by_status[exc.status] += 1
            return await self._refusal(request, exc)
        except web.HTTPRequestEntityTooLarge:
            stats.by_status[413] += 1
            return error_response(413, f"body over {self._max_body} bytes", "body")
        confirm_now = self._confirm_now
        if confirm_now is not None:
            # no await from here to the answer, so in_flight would be back where it was before
            # anything could read it: the synchronous path skips counting it (bench_hotpath.py)
            try:
                remaining = confirm_now(order_id, sku, qty, user_id)
                if remaining >= 0:  # a new order confirmed: the common case, inlined
                    stats.by_status[201] += 1
                    body = orjson.dumps(
                        {"order_id": order_id, "sku": sku, "qty": qty, "remaining": remaining}
                    )
                    return web.Response(body=body, status=201, content_type=JSON)
                result = self._reserve_now(order_id, sku, qty, user_id)
            except Exception as exc:  # a bug, not a store: still an answer, not a dropped line
                return self._store_error(exc)
            return self._answer(order_id, result)
        stats.in_flight += 1
        try:
            if self._slow:
                result = await self._reserve_slowly(order_id, sku, qty, user_id)
            else:
                result = await self.backend.reserve(order_id, sku, qty, user_id)
        except Exception as exc:  # the store failed: an error answer, not a dropped connection
            return self._store_error(exc)
        finally:
            stats.in_flight -= 1
        return self._answer(order_id, result)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body that did not come with the headers, within the read timeout (else 408)."""
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await request.read()
        except TimeoutError:
            error = f"request body not received within {self._read_timeout_s:g} s"
            raise InvalidInput(408, error, "body") from None

    @staticmethod
    async def _refusal(request: web.Request, exc: InvalidInput) -> web.Response:
        response = error_response(exc.status, exc.error, exc.field)
        if exc.status == 408:
            # send it and hang up now: aiohttp would otherwise linger (10 s) reading the rest
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            if request.protocol is not None:
                request.protocol.force_close()
        return response

    @staticmethod
    def _no_reserve_now(order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        raise AssertionError("only a synchronous backend is called without a coroutine")

    def _store_error(self, exc: Exception) -> web.Response:
        self.stats.by_status[500] += 1
        return error_response(500, f"store error: {type(exc).__name__}: {exc}", "store")

    def _answer(self, order_id: str, r: Reservation) -> web.Response:
        headers = None
        if r.replayed:
            self.stats.replays += 1
            headers = _REPLAYED
        if r.outcome == TAKEN:
            self.stats.by_status[201] += 1
            body = orjson.dumps(
                {"order_id": order_id, "sku": r.sku, "qty": r.qty, "remaining": r.remaining}
            )
            return web.Response(body=body, status=201, content_type=JSON, headers=headers)
        if r.outcome == OUT_OF_STOCK:
            status, error, field = 409, "sold out", "sku"
        else:
            status, error, field = 422, "over the per-buyer limit for this SKU", "qty"
        self.stats.by_status[status] += 1
        body = orjson.dumps(
            {
                "error": error,
                "field": field,
                "order_id": order_id,
                "sku": r.sku,
                "qty": r.qty,
                "remaining": r.remaining,
            }
        )
        return web.Response(body=body, status=status, content_type=JSON, headers=headers)

    async def _reserve_slowly(self, order_id: str, sku: str, qty: int, user_id: str) -> Reservation:
        """Reserve after the simulated service time; in hot-row mode, one order per SKU at once."""
        if self._hot_row:
            lock = self._row_locks.get(sku)
            if lock is None:
                lock = self._row_locks[sku] = asyncio.Lock()
            async with lock:
                await self._service_time()
                return await self.backend.reserve(order_id, sku, qty, user_id)
        await self._service_time()
        return await self.backend.reserve(order_id, sku, qty, user_id)

    async def _service_time(self) -> None:
        if self._service_mu is not None:
            await asyncio.sleep(self._rng.lognormvariate(self._service_mu, self._service_sigma))

    # -- the other routes -----------------------------------------------------------------

    async def get_inventory(self, request: web.Request) -> web.Response:
        """Per-SKU initial, sold, ledger units/orders and remaining (and holds, with a TTL).

        With a TTL, ``holds`` states the storefront's clock, its sweep interval and the grace
        (two sweep intervals: one to reach the next sweep, one for it to finish), and each SKU
        its ``overdue_units``/``overdue_holds``: units still held by reservations whose expiry
        is more than the grace before now, which the sweeper should have given back (the
        audit's undersell), with ``overdue_max_s``, how late the oldest of them is.
        """
        snapshot = await self.backend.snapshot()
        skus: dict[str, dict[str, int | float]] = {
            sku: {
                "initial": s.initial,
                "sold": s.sold,
                "ledger_units": s.ledger_units,
                "ledger_orders": s.ledger_orders,
                "remaining": s.remaining,
            }
            for sku, s in sorted(snapshot.items())
        }
        doc: dict[str, object] = {"backend": self.backend.name, "skus": skus}
        ttl_s = self.settings.reservation_ttl_s
        if ttl_s is not None:
            now = self.flow.clock()
            grace_s = 2 * sweep_interval_s(ttl_s)
            overdue = await self.backend.overdue_holds(now - grace_s)
            for sku, numbers in skus.items():
                s = snapshot[sku]
                late = overdue.get(sku)
                numbers.update(
                    paid=s.paid,
                    held=s.held,
                    free=s.remaining,
                    reserved=s.reserved,
                    returned=s.returned,
                    double_returns=s.double_returns,
                    paid_after_expiry=s.paid_after_expiry,
                    overdue_units=0 if late is None else late.units,
                    overdue_holds=0 if late is None else late.holds,
                    overdue_max_s=0.0 if late is None else round(now - late.oldest_expires_at, 3),
                )
            doc["holds"] = {
                "now": now,
                "reservation_ttl_s": ttl_s,
                "sweep_interval_s": sweep_interval_s(ttl_s),
                "grace_s": grace_s,
            }
        return web.Response(body=orjson.dumps(doc), content_type=JSON)

    async def get_inventory_history(self, request: web.Request) -> web.Response:
        """Free, held and sold units about once a second since the start or the last reset."""
        return web.Response(body=orjson.dumps(self.history.to_json()), content_type=JSON)

    async def get_ledger(self, request: web.Request) -> web.Response:
        """Every confirmed ledger entry as [order_id, sku, qty, user_id]."""
        body = orjson.dumps({"orders": await self.backend.ledger()})
        return web.Response(body=body, content_type=JSON)

    async def post_reset(self, request: web.Request) -> web.Response:
        """Restore the configured stock, overridden by the body's ``stock``; forget all orders."""
        try:
            raw = await self._read_body(request)
            if raw.strip() and not is_json_content_type(request.headers.get(hdrs.CONTENT_TYPE)):
                raise InvalidInput(400, "content type must be application/json", "content-type")
            given = parse_reset(raw)
        except InvalidInput as exc:
            return await self._refusal(request, exc)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"body over {self.settings.client_max_size} bytes", "body")
        stocks: Mapping[str, int] = {**self.settings.stocks, **(given or {})}
        await self.backend.reset(stocks)
        self.stats.clear()
        await self.sampler.restart(stocks)
        return web.Response(body=orjson.dumps({"ok": True, "stock": stocks}), content_type=JSON)

    async def get_healthz(self, request: web.Request) -> web.Response:
        """Always ``{"ok": true}`` while the app serves."""
        return web.Response(body=b'{"ok":true}', content_type=JSON)

    async def get_metrics(self, request: web.Request) -> web.Response:
        """Order counters and per-SKU stock in Prometheus text format."""
        self._collector.snapshot = await self.backend.snapshot()
        body = metrics.render(self.registry)
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: metrics.CONTENT_TYPE})

    async def get_openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of this contract."""
        return web.Response(body=self._openapi, content_type=JSON)

    async def method_not_allowed(self, request: web.Request) -> web.Response:
        """405 for a known path with the wrong method, listing the right one."""
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        allowed = ", ".join(m.upper() for m in PATHS[path])
        response = error_response(405, f"method {request.method} not allowed", "method")
        response.headers[hdrs.ALLOW] = allowed
        return response

    async def not_found(self, request: web.Request) -> web.Response:
        """404 for a path that is not in the contract."""
        return error_response(404, f"no such path {request.path[:100]!r}", "path")

    # -- life -----------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        """Connect the backend, load its initial stock; start the clock, sweeper and sampler."""
        await self.backend.start()
        self.flow.start()
        self.history.clear(self.flow.clock(), self.settings.stocks)
        self.sampler.start()

    async def on_cleanup(self, app: web.Application) -> None:
        """Stop the sweeper and the stock sampler, close the backend's connections."""
        await self.flow.stop()
        await self.sampler.stop()
        await self.backend.close()


#: the app's state in ``app[STOREFRONT_KEY]``, for tests and embedding
STOREFRONT_KEY: web.AppKey[Storefront] = web.AppKey("storefront", Storefront)


def make_app(settings: StorefrontSettings, backend: Backend | None = None) -> web.Application:
    """The storefront app for ``settings`` (with a backend built from them unless given).

    The app starts the backend on startup and closes it on cleanup, so a store that cannot
    be reached fails the app's startup (``AppRunner.setup``) with ``StoreUnavailableError``.
    """
    if backend is None:
        backend = create_backend(
            settings.backend, settings.stocks, settings.limits, settings.backend_options()
        )
    shop = Storefront(settings, backend)
    app = web.Application(client_max_size=settings.client_max_size)
    app[STOREFRONT_KEY] = shop
    flow = shop.flow
    handlers = {
        ("post", "/orders"): flow.post_order if settings.flow else shop.post_order,
        ("get", "/orders/{order_id}"): flow.get_order,
        ("post", "/orders/{order_id}/pay"): flow.post_pay,
        ("post", "/orders/{order_id}/cancel"): flow.post_cancel,
        ("post", "/login"): flow.post_login,
        ("get", "/products/{sku}"): flow.get_product,
        ("get", "/time"): flow.get_time,
        ("get", "/inventory"): shop.get_inventory,
        ("get", "/inventory/history"): shop.get_inventory_history,
        ("get", "/ledger"): shop.get_ledger,
        ("post", "/reset"): shop.post_reset,
        ("get", "/healthz"): shop.get_healthz,
        ("get", "/metrics"): shop.get_metrics,
        ("get", "/openapi.json"): shop.get_openapi,
    }
    router = app.router
    for (method, path), handler in handlers.items():
        router.add_route(method.upper(), path, handler)
        router.add_route(hdrs.METH_ANY, path, shop.method_not_allowed)
    router.add_route(hdrs.METH_ANY, "/{tail:.*}", shop.not_found)
    app.on_startup.append(shop.on_startup)
    app.on_cleanup.append(shop.on_cleanup)
    return app
