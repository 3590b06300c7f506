"""The flash-sale flow around the order: login, product page, clock, admission, reserve → pay.

:class:`Flow` holds what the one-step storefront does not need: issued tokens, the token bucket
and waiting room, the sale's opening time and the sweeper task that expires holds. Its handlers
serve ``POST /login``, ``GET /products/{sku}``, ``GET /time``, ``GET /orders/{id}``,
``POST /orders/{id}/pay`` and ``POST /orders/{id}/cancel``; when any part of the flow is
configured, ``POST /orders`` goes through :meth:`Flow.post_order` instead of the fast handler.

A reservation's id is its order id (the client's idempotency key): ``/orders/{order_id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import hdrs, web

from simulator.storefront.admission import TokenBucket, WaitingRoom, retry_after
from simulator.storefront.backends import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    PAID,
    TAKEN,
    OrderState,
    Reservation,
)
from simulator.storefront.backends.base import cancel_until_done
from simulator.storefront.protocol import error_body
from simulator.storefront.validate import (
    MAX_ID_LENGTH,
    InvalidInput,
    is_json_content_type,
    load_json,
    parse_order,
    reject_duplicate_keys,
)

if TYPE_CHECKING:
    from simulator.storefront.app import Storefront

JSON = "application/json"
_log = logging.getLogger(__name__)
#: the longest pause between two sweeps of due holds
MAX_SWEEP_S = 1.0
#: the shortest
MIN_SWEEP_S = 0.01


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)


def _error(status: int, error: str, field: str, **extra: object) -> web.Response:
    return web.Response(body=error_body(error, field, **extra), status=status, content_type=JSON)


def _refused(status: int, error: str, field: str, wait_s: float, **extra: object) -> web.Response:
    response = _error(status, error, field, retry_after_s=round(wait_s, 3), **extra)
    response.headers[hdrs.RETRY_AFTER] = retry_after(wait_s)
    return response


def sweep_interval_s(ttl_s: float) -> float:
    """How often the sweeper looks for due holds: a tenth of the TTL, within [10 ms, 1 s]."""
    return min(max(ttl_s / 10.0, MIN_SWEEP_S), MAX_SWEEP_S)


class Flow:
    """Tokens, admission, the sale's opening and the sweeper of one storefront."""

    def __init__(self, shop: Storefront) -> None:
        settings = shop.settings
        self.shop = shop
        self.clock = time.time
        self.opens_at = self.clock() + settings.sale_start_s
        self.ttl_s = settings.reservation_ttl_s
        self.require_token = settings.require_token
        self._tokens: dict[str, str] = {}  # token → buyer
        self._token_of: dict[str, str] = {}  # buyer → token
        self.bucket: TokenBucket | None = None
        if settings.admit_per_s:
            burst = settings.burst or max(1, round(settings.admit_per_s))
            self.bucket = TokenBucket(settings.admit_per_s, burst, self.clock)
        self.room: WaitingRoom | None = None
        if settings.max_active:
            self.room = WaitingRoom(
                settings.max_active,
                settings.session_s,
                settings.room_order,
                self.clock,
                self.opens_at if settings.sale_start_s else 0.0,
                settings.seed,
            )
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sweeper (reservation mode only): one task for all holds."""
        self.opens_at = self.clock() + self.shop.settings.sale_start_s
        if self.ttl_s is not None:
            self._stopping = asyncio.Event()
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(self.ttl_s, self._stopping)
            )

    async def stop(self) -> None:
        """Stop the sweeper before the backend closes.

        The sweeper is told to stop (it checks between sweeps) and cancelled, again until it
        has ended: a store client can lose a cancellation that arrives mid-command (redis-py
        8.2 turns some into a retried command), and a sweeper that missed it would sweep on
        forever and this would never return.
        """
        task, self._sweeper = self._sweeper, None
        if task is None:
            return
        self._stopping.set()
        await cancel_until_done([task])
        if not task.cancelled() and task.exception() is not None:
            _log.error("the sweeper failed", exc_info=task.exception())

    async def _sweep(self, ttl_s: float, stopping: asyncio.Event) -> None:
        pause_s = sweep_interval_s(ttl_s)
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), pause_s)
            if stopping.is_set():
                return
            try:
                await self.shop.backend.expire_due()
            except Exception:  # a store hiccup: log it and sweep again next time
                _log.exception("expiring due reservations failed")

    # -- tokens ---------------------------------------------------------------------------

    async def post_login(self, request: web.Request) -> web.Response:
        """Issue the buyer's token (the same one again on a repeat login)."""
        try:
            raw = await self.shop._read_body(request)
            if not is_json_content_type(request.headers.get(hdrs.CONTENT_TYPE)):
                raise InvalidInput(400, "content type must be application/json", "content-type")
            body = load_json(raw)
            reject_duplicate_keys(raw)
            if type(body) is not dict:
                raise InvalidInput(400, "body must be a JSON object", "body")
            for name in body:
                if name != "user_id":
                    raise InvalidInput(422, "unexpected field", str(name)[:64])
            user_id = body.get("user_id")
            if type(user_id) is not str or not 0 < len(user_id) <= MAX_ID_LENGTH:
                error = f"must be a string of 1–{MAX_ID_LENGTH} characters"
                raise InvalidInput(422, error, "user_id")
        except InvalidInput as exc:
            return await self.shop._refusal(request, exc)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body over {self.shop.settings.client_max_size} bytes", "body")
        token = self._token_of.get(user_id)
        if token is None:
            token = self._token_of[user_id] = secrets.token_urlsafe(18)
            self._tokens[token] = user_id
        return _json({"token": token, "user_id": user_id})

    def buyer(self, request: web.Request) -> str | web.Response | None:
        """The token's buyer; a 401 answer when a token is required and missing or unknown.

        None when no token is required and none (or an unknown one) was given.
        """
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, token = header.partition(" ")
        buyer = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if buyer is not None or not self.require_token:
            return buyer
        error = "a bearer token from POST /login is required"
        if header:
            error = "unknown or malformed bearer token (log in again with POST /login)"
        response = _error(401, error, "authorization")
        response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="flashsale"'
        return response

    # -- pages ----------------------------------------------------------------------------

    async def get_time(self, request: web.Request) -> web.Response:
        """The server's clock and the sale's opening, for a countdown."""
        now = self.clock()
        return _json({"now": now, "sale_start": self.opens_at, "open": now >= self.opens_at})

    async def get_product(self, request: web.Request) -> web.Response:
        """The page buyers refresh: stock left, price and the sale's opening."""
        sku = request.match_info["sku"]
        if sku not in self.shop.backend.limits:
            return _error(404, f"no such product {sku[:64]!r}", "sku")
        try:
            left = await self.shop.backend.stock_left(sku)
        except Exception as exc:
            return self.shop._store_error(exc)
        return _json(
            {
                "sku": sku,
                "price": self.shop.settings.prices.get(sku, 0.0),
                "stock_left": max(left, 0),
                "per_buyer_limit": self.shop.backend.limits[sku],
                "sale_start": self.opens_at,
                "now": self.clock(),
            }
        )

    # -- orders ---------------------------------------------------------------------------

    async def post_order(self, request: web.Request) -> web.Response:
        """``POST /orders`` with tokens, sale opening and admission in front of the backend."""
        shop, stats = self.shop, self.shop.stats
        buyer = self.buyer(request)
        if isinstance(buyer, web.Response):
            stats.by_status[401] += 1
            return buyer
        try:
            if not is_json_content_type(request.headers.get(hdrs.CONTENT_TYPE)):
                raise InvalidInput(400, "content type must be application/json", "content-type")
            raw = await shop._read_body(request)
            order_id, sku, qty, user_id = parse_order(raw, shop.backend.limits)
        except InvalidInput as exc:
            stats.by_status[exc.status] += 1
            return await shop._refusal(request, exc)
        except web.HTTPRequestEntityTooLarge:
            stats.by_status[413] += 1
            return _error(413, f"body over {shop.settings.client_max_size} bytes", "body")
        if buyer is not None and buyer != user_id:
            stats.by_status[403] += 1
            return _error(403, "the token belongs to another buyer", "user_id")
        refusal = self._admit(user_id)
        if refusal is not None:
            stats.by_status[refusal.status] += 1
            return refusal
        if shop._max_in_flight and stats.in_flight >= shop._max_in_flight:
            stats.by_status[429] += 1
            return _error(429, "too many orders in flight, try again", "max_concurrency")
        stats.in_flight += 1
        try:
            if shop._slow:
                result = await shop._reserve_slowly(order_id, sku, qty, user_id)
            else:
                result = await shop.backend.reserve(order_id, sku, qty, user_id)
        except Exception as exc:
            return shop._store_error(exc)
        finally:
            stats.in_flight -= 1
        if self.ttl_s is not None and result.outcome == TAKEN:
            return self._held(order_id, result)
        return shop._answer(order_id, result)

    def _admit(self, buyer: str) -> web.Response | None:
        """None when the buyer may order now, else the 503 (waiting room), 429 or 403 answer."""
        if self.room is not None:
            wait_s, place = self.room.enter(buyer)
            if wait_s > 0:
                return _refused(
                    503, "in the waiting room, try again later", "admission", wait_s, place=place
                )
        now = self.clock()
        if now < self.opens_at:
            return _refused(403, "the sale has not started", "sale_start", self.opens_at - now)
        if self.bucket is not None:
            wait_s = self.bucket.take()
            if wait_s > 0:
                return _refused(429, "admission rate exceeded, try again", "admission", wait_s)
        return None

    def _held(self, order_id: str, r: Reservation) -> web.Response:
        stats = self.shop.stats
        headers = None
        if r.replayed:
            stats.replays += 1
            headers = {"Idempotent-Replayed": "true"}
        stats.by_status[201] += 1
        body = {
            "order_id": order_id,
            "reservation_id": order_id,
            "status": "held",
            "sku": r.sku,
            "qty": r.qty,
            "remaining": r.remaining,
            "expires_at": r.expires_at,
            "ttl_s": self.ttl_s,
        }
        return _json(body, 201, headers)

    async def _owned(self, request: web.Request) -> OrderState | web.Response:
        """The order of the path, if the caller may see it; else the 401/403/404 answer."""
        buyer = self.buyer(request)
        if isinstance(buyer, web.Response):
            return buyer
        order_id = request.match_info["order_id"]
        try:
            state = await self.shop.backend.order(order_id)
        except Exception as exc:
            return self.shop._store_error(exc)
        return self._visible(order_id, state, buyer)

    @staticmethod
    def _visible(
        order_id: str, state: OrderState | None, buyer: str | None
    ) -> OrderState | web.Response:
        if state is None:
            return _error(404, f"no such order {order_id[:64]!r}", "order_id")
        if buyer is not None and state.user_id and state.user_id != buyer:
            return _error(403, "the order belongs to another buyer", "order_id")
        return state

    @staticmethod
    def render(state: OrderState) -> dict[str, object]:
        """An order's JSON: its status and what it holds (expires_at null without a TTL)."""
        return {
            "order_id": state.order_id,
            "reservation_id": state.order_id,
            "status": state.status,
            "sku": state.sku,
            "qty": state.qty,
            "user_id": state.user_id or None,
            "expires_at": state.expires_at or None,
        }

    async def get_order(self, request: web.Request) -> web.Response:
        """Poll an order: held, paid, expired, cancelled (or confirmed / refused)."""
        state = await self._owned(request)
        if isinstance(state, web.Response):
            return state
        return _json(self.render(state))

    async def post_pay(self, request: web.Request) -> web.Response:
        """Pay a held reservation (200); 410 when it expired, 409 when it cannot be paid."""
        return await self._end(request, pay=True)

    async def post_cancel(self, request: web.Request) -> web.Response:
        """Cancel a held reservation, its stock back (200); 410 expired, 409 paid or refused."""
        return await self._end(request, pay=False)

    async def _end(self, request: web.Request, pay: bool) -> web.Response:
        seen = await self._owned(request)
        if isinstance(seen, web.Response):
            return seen
        backend = self.shop.backend
        try:
            state = await (backend.pay(seen.order_id) if pay else backend.cancel(seen.order_id))
        except Exception as exc:
            return self.shop._store_error(exc)
        if state is None:  # gone meanwhile (a reset)
            return _error(404, f"no such order {seen.order_id[:64]!r}", "order_id")
        body = self.render(state)
        done = (PAID, CONFIRMED) if pay else (CANCELLED,)
        if state.status in done:
            return _json(body)
        if state.status == EXPIRED:
            return _error(410, "the reservation expired; its stock went back on sale", "order_id")
        what = "paid" if pay else "cancelled"
        return _error(409, f"a {state.status} order cannot be {what}", "order_id", order=body)
