"""The storefront's connections: aiohttp's HTTP/1.1 handler with JSON errors and read timeouts.

aiohttp answers what its parser refuses (a bad request line, a bad header, headers too long,
bad chunking, …) itself, as ``text/plain``, before any application code runs, and it has no
timeout for a request whose headers trickle in. :class:`StorefrontProtocol` answers those
refusals in the storefront's JSON error shape and closes a connection whose request headers have
not all arrived ``read_timeout_s`` after its first byte (408); :class:`StorefrontSite` listens
with it. aiohttp (3.14) offers no supported hook for either (aio-libs/aiohttp#3287 is open), so
this subclasses its ``RequestHandler`` and ``TCPSite`` and reads two of their attributes
(``_waiter``: the future of the next request; the site's address fields); the tests in
``tests/storefront/test_storefront_protocol.py`` break if a new aiohttp moves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

JSON = "application/json"
#: the longest piece of aiohttp's parser message that reaches the client
_MAX_DETAIL = 200


def error_body(error: str, field: str, **extra: object) -> bytes:
    """The JSON of a refusal in the contract's shape: ``{"error": ..., "field": ...}``."""
    return orjson.dumps({"error": error, "field": field, **extra})


def _one_line(message: str) -> str:
    """aiohttp's parser messages span lines (a caret under the bad byte): one short line."""
    text = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class StorefrontProtocol(web.RequestHandler):
    """One client connection: aiohttp's handler, with JSON errors and a header-read timeout."""

    __slots__ = ("_header_timer", "_read_timeout_s")

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        read_timeout_s: float,
        **kw: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kw)
        self._read_timeout_s = read_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        """Parse as aiohttp does; time a request whose headers are not complete yet."""
        super().data_received(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            # bytes came while waiting for a request, and still no whole request head
            if self._header_timer is None:
                self._header_timer = self._loop.call_later(
                    self._read_timeout_s, self._headers_too_late
                )
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        waiter = self._waiter
        transport = self.transport
        if waiter is None or waiter.done() or transport is None or transport.is_closing():
            return
        error = f"request headers not received within {self._read_timeout_s:g} s"
        body = error_body(error, "headers")
        head = (
            "HTTP/1.1 408 Request Timeout\r\n"
            f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        transport.write(head.encode("ascii") + body)
        self.force_close()  # closing the transport sends what it holds first

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the header timer with the connection."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's last-resort answer (parser refusals, handler crashes) as a JSON error."""
        if request.writer.output_size > 0:
            # part of a response went out already: the connection is beyond repair (as aiohttp)
            raise ConnectionError("response already started, cannot send an error instead")
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            error = HTTPStatus(status).phrase.lower()
        else:
            # a client's malformed HTTP: its answer is the report, no server log line
            self.log_debug("Refused a malformed request", exc_info=exc)
            detail = _one_line(message or (str(exc) if exc else "") or HTTPStatus(status).phrase)
            error = f"malformed HTTP request: {detail}"
        response = web.Response(body=error_body(error, "request"), status=status, content_type=JSON)
        response.force_close()
        return response


class StorefrontSite(web.TCPSite):
    """A TCP site whose connections are :class:`StorefrontProtocol` (``TCPSite`` otherwise)."""

    __slots__ = ("_protocol_factory",)

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        read_timeout_s: float,
        keepalive_timeout_s: float,
        backlog: int = 128,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, ssl_context=ssl_context)
        server = runner.server
        assert server is not None  # TCPSite's constructor checked it
        loop = asyncio.get_running_loop()

        def factory() -> StorefrontProtocol:
            # no access log: one log line per order would cost more than the order itself
            return StorefrontProtocol(
                server,
                loop=loop,
                read_timeout_s=read_timeout_s,
                keepalive_timeout=keepalive_timeout_s,
                access_log=None,
            )

        self._protocol_factory: Callable[[], StorefrontProtocol] = factory

    async def start(self) -> None:
        """Listen, as ``TCPSite.start`` does, with the storefront's connection handler."""
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )
