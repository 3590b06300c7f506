"""The lean transport: HTTP/1.1 keep-alive connections on asyncio.Protocol, parsed by httptools.

One :class:`_Conn` per TCP connection carries one request at a time (no pipelining). A response
completes when httptools says so (Content-Length, chunked or close-delimited bodies); the
scenario's :class:`~simulator.outcomes.OutcomeRule` turns it into an outcome and a reason for the
engine. Bodies are kept only when the rule reads them (:class:`_BodyConn`): a scenario without a
body rule never collects or parses one. A connection that closes, resets or speaks garbage fails
its request with an error (its reason: closed, reset, bad response …) and is replaced by a new
one; a request that outlives the timeout is failed by :meth:`LeanTransport.sweep` and its
connection aborted (its answer could not be told apart from the next one's).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import ssl
import time
from collections.abc import Sequence

import httptools

from simulator.load.transport import Endpoint, Sink, outcome_rule
from simulator.load.transport.template import RequestTemplate
from simulator.outcomes import (
    ERROR,
    R_BAD_RESPONSE,
    R_CLOSED,
    R_RESET,
    R_SOCKET,
    R_TIMEOUT,
    R_TLS,
    TIMEOUT,
)
from simulator.scenario import Product, Target
from simulator.scenario.buyerdata import BuyerData


def failure_reason(exc: BaseException | None) -> int:
    """The reason code of a connection lost with ``exc`` (None: closed by the peer)."""
    if exc is None:
        return R_CLOSED
    if isinstance(exc, ssl.SSLError):
        return R_TLS
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return R_RESET
    return R_SOCKET


class _Conn(asyncio.Protocol):
    """One keep-alive connection; also the httptools callback object for its responses."""

    __slots__ = (
        "alive",
        "attempt",
        "bad",
        "parser",
        "pool",
        "respond",
        "retry_after_s",
        "sent_ns",
        "table",
        "transport",
    )

    def __init__(self, pool: LeanTransport) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.attempt = -1  # the attempt in flight, −1 when idle
        self.sent_ns = 0
        self.alive = False
        self.bad = False  # aborted on garbage: the in-flight attempt's reason is a bad response
        self.retry_after_s = -1.0  # the last answer's Retry-After in seconds (−1: none, or unread)
        self.table = pool.table  # the outcome rule's status map, and the sink's on_response:
        self.respond = pool.sink.on_response  # looked up once, used on every answer

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.pool._closing:
            transport.close()
            return
        self.alive = True
        self.pool.conns.add(self)
        self.pool.sink.on_ready(self)  # here, not after create_connection: uvloop calls this later

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._drop()

    def eof_received(self) -> bool:
        with contextlib.suppress(httptools.HttpParserError):
            self.parser.feed_data(b"")  # completes a close-delimited body, if any
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_alive = self.alive
        self.alive = False
        attempt, self.attempt = self.attempt, -1
        pool = self.pool
        if attempt >= 0:
            reason = R_BAD_RESPONSE if self.bad else failure_reason(exc)
            pool.sink.on_failure(self, attempt, ERROR, reason)
        if was_alive:
            pool.sink.on_lost(self)
        pool.replace(self)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_complete(self) -> None:
        attempt, self.attempt = self.attempt, -1
        if attempt < 0:  # an answer nobody asked for
            self._drop()
            return
        parser = self.parser
        status = parser.get_status_code()
        outcome = self.table[status]  # the rule's of_status inline (status: 3 digits)
        if parser.should_keep_alive():  # _answer's usual case inline (one call less an answer)
            self.respond(self, attempt, status, outcome, status)
        else:
            self._answer(attempt, status, outcome, status)

    def _answer(self, attempt: int, status: int, outcome: int, reason: int) -> None:
        if not self.parser.should_keep_alive():
            self.alive = False
            self.respond(self, attempt, status, outcome, reason)
            self.pool.sink.on_lost(self)
            if self.transport is not None:
                self.transport.close()
            return
        self.respond(self, attempt, status, outcome, reason)

    # -- used by the engine --------------------------------------------------------------------

    def send(self, attempt: int, payload: bytes, now_ns: int) -> None:
        """Write one request; the connection must be idle and alive."""
        self.attempt = attempt
        self.sent_ns = now_ns
        self.transport.write(payload)  # type: ignore[union-attr]

    def _drop(self) -> None:
        """Abort on garbage: the in-flight attempt fails from connection_lost."""
        self.bad = True
        if self.transport is not None:
            self.transport.abort()


class _BodyConn(_Conn):
    """A connection that keeps each answer's body, for a rule that reads outcomes from it."""

    __slots__ = ("chunks",)

    def __init__(self, pool: LeanTransport) -> None:
        self.chunks: list[bytes] = []
        super().__init__(pool)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        attempt, self.attempt = self.attempt, -1
        chunks, self.chunks = self.chunks, []
        if attempt < 0:
            self._drop()
            return
        status = self.parser.get_status_code()
        rule = self.pool.rule
        if rule.reads_body(status):
            outcome, reason = rule.of_body(status, b"".join(chunks))
        else:
            outcome, reason = rule.of_status(status)
        self._answer(attempt, status, outcome, reason)


class _RetryAfterConn(_Conn):
    """A connection that reads each answer's ``Retry-After`` (retrying buyers honour it)."""

    __slots__ = ()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after_s = retry_after_seconds(value)

    def on_message_begin(self) -> None:
        self.retry_after_s = -1.0


class _RetryAfterBodyConn(_BodyConn):
    """:class:`_BodyConn` that reads ``Retry-After`` too."""

    __slots__ = ()

    on_header = _RetryAfterConn.on_header
    on_message_begin = _RetryAfterConn.on_message_begin


class _AnswerConn(_Conn):
    """A connection that hands the whole answer (status, headers, body) to the sink's
    ``on_answer``: a journey classifies it by its step's rule and takes values from it."""

    __slots__ = ("chunks", "headers")

    def __init__(self, pool: LeanTransport) -> None:
        self.chunks: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        super().__init__(pool)

    def on_message_begin(self) -> None:
        self.chunks = []
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        attempt, self.attempt = self.attempt, -1
        chunks, headers = self.chunks, self.headers
        if attempt < 0:
            self._drop()
            return
        status = self.parser.get_status_code()
        sink = self.pool.sink
        body = b"".join(chunks)
        if not self.parser.should_keep_alive():
            self.alive = False
            sink.on_answer(self, attempt, status, headers, body)  # type: ignore[attr-defined]
            sink.on_lost(self)
            if self.transport is not None:
                self.transport.close()
            return
        sink.on_answer(self, attempt, status, headers, body)  # type: ignore[attr-defined]


def retry_after_seconds(value: bytes) -> float:
    """A ``Retry-After`` value in seconds from now: delay-seconds or an HTTP date; −1 when it
    is neither (RFC 9110 §10.2.3)."""
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return -1.0
    if when.tzinfo is None:
        return -1.0
    return max(0.0, when.timestamp() - time.time())


class LeanTransport:
    """A pool of ``connections`` lean keep-alive connections to one HTTP or HTTPS target."""

    __slots__ = (
        "_closing",
        "_conn_class",
        "_reconnects",
        "_ssl",
        "build",
        "connect_timeout_s",
        "conns",
        "endpoint",
        "n",
        "reason_labels",
        "rule",
        "sink",
        "table",
        "template",
        "timeout_ns",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        target: Target,
        skus: Sequence[str] | Sequence[Product],
        connections: int,
        timeout_s: float,
        connect_timeout_s: float,
        data: BuyerData | None = None,
        *,
        retry_after: bool = False,
    ) -> None:
        self.endpoint = endpoint
        path = endpoint.base_path + target.orders_path
        self.template = RequestTemplate(target, skus, endpoint.host_header, path, data)
        self.build = self.template.render  # the request bytes of one order
        self.rule = outcome_rule(target)
        # the status map over every status llhttp can parse (three digits: 0…999), unmapped ones
        # errors as the rule's own map has them: an answer's outcome is one list index
        self.table = self.rule.table + [ERROR] * (1000 - len(self.rule.table))
        self.reason_labels = dict(self.rule.labels)
        body = self.rule.has_body_rule
        self._conn_class: type[_Conn]
        if retry_after:  # retrying buyers wait at least what a 429/503 asks
            self._conn_class = _RetryAfterBodyConn if body else _RetryAfterConn
        else:
            self._conn_class = _BodyConn if body else _Conn
        self.n = connections
        self.timeout_ns = round(timeout_s * 1e9)
        self.connect_timeout_s = connect_timeout_s
        self.conns: set[_Conn] = set()
        self._reconnects: set[asyncio.Task[None]] = set()
        self._closing = False
        self._ssl = endpoint.ssl_context()  # None: plain HTTP
        self.sink: Sink

    def deliver_answers(self) -> None:
        """Hand every whole answer to the sink's ``on_answer(channel, attempt, status, headers,
        body)`` instead of classifying it here (a journey's steps have rules of their own);
        before :meth:`start`."""
        self._conn_class = _AnswerConn

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: self._conn_class(self),
                self.endpoint.host,
                self.endpoint.port,
                ssl=self._ssl,
            ),
            self.connect_timeout_s,
        )
        return conn

    async def start(self, sink: Sink, now_ns: int) -> int:
        """Open the connections in parallel; those that fail are retried in the background."""
        self.sink = sink
        results = await asyncio.gather(
            *(self._open() for _ in range(self.n)), return_exceptions=True
        )
        opened = 0
        for r in results:
            if isinstance(r, _Conn):
                opened += 1
            elif isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        if opened:
            for _ in range(self.n - opened):
                self._spawn_reconnect()
        return opened

    def replace(self, conn: _Conn) -> None:
        """A connection closed: open another in its place (unless the pool is closing)."""
        self.conns.discard(conn)
        if not self._closing:
            self._spawn_reconnect()

    def _spawn_reconnect(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reconnect())
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _reconnect(self) -> None:
        delay_s = 0.01
        while not self._closing:
            try:
                await self._open()  # the connection announces itself in connection_made
            except (OSError, TimeoutError):
                if self._closing:
                    return
                self.sink.on_connect_failed()
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 0.25)
                continue
            return

    def sweep(self, now_ns: int) -> None:
        """Fail requests in flight for longer than the timeout and abort their connections."""
        limit = now_ns - self.timeout_ns
        for conn in [c for c in self.conns if c.attempt >= 0 and c.sent_ns < limit]:
            attempt, conn.attempt = conn.attempt, -1
            self.sink.on_failure(conn, attempt, TIMEOUT, R_TIMEOUT)
            conn._drop()

    async def close(self) -> None:
        """Abort every connection and stop reconnecting."""
        self._closing = True
        for task in list(self._reconnects):
            task.cancel()
        for conn in list(self.conns):
            conn.alive = False
            conn.attempt = -1
            if conn.transport is not None:
                conn.transport.abort()
        self.conns.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run before the loop closes
