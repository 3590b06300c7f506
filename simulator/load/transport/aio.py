"""The aiohttp transport: aiohttp's client for what the lean transport lacks (TLS, proxies,
servers that need a full client). About 15× the CPU per request of the lean one (BENCH-NOTES).

Each of ``connections`` slots carries one request at a time through one shared
``ClientSession`` whose connector holds at most ``connections`` connections. Requests are
rendered by the same :class:`~simulator.load.transport.template.RequestTemplate` as the lean
transport's and split back into target, headers and body, so both send the same request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aiohttp
from yarl import URL

from simulator.load.transport import Endpoint, Sink, outcome_rule
from simulator.load.transport.template import RequestTemplate
from simulator.outcomes import (
    ERROR,
    R_BAD_RESPONSE,
    R_CLOSED,
    R_CONNECT,
    R_RESET,
    R_SOCKET,
    R_TIMEOUT,
    R_TLS,
    TIMEOUT,
)
from simulator.scenario import Product, Target
from simulator.scenario.buyerdata import BuyerData

#: headers aiohttp writes itself from the URL and the body
_OWN_HEADERS = (b"host", b"content-length")


def failure_reason(exc: BaseException) -> int:
    """The reason code of a failed aiohttp request."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return R_TLS if isinstance(exc, aiohttp.ClientSSLError) else R_CONNECT
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return R_CLOSED
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError | ValueError):
        return R_BAD_RESPONSE
    if isinstance(exc, ssl.SSLError):
        return R_TLS
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, ConnectionResetError)
    ):
        return R_RESET
    return R_SOCKET


def split_request(payload: bytes) -> tuple[str, str, dict[str, str], bytes]:
    """A rendered HTTP/1.1 request as (method, target, headers without Host and
    Content-Length, body)."""
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() not in _OWN_HEADERS:
            headers[name.decode("latin-1")] = value.strip().decode("latin-1")
    return method.decode("ascii"), target.decode("ascii"), headers, body


class _Slot:
    """One request at a time through the shared session."""

    __slots__ = ("alive", "pool")

    def __init__(self, pool: AiohttpTransport) -> None:
        self.pool = pool
        self.alive = True

    def send(self, attempt: int, payload: bytes, now_ns: int) -> None:
        """Start the request as a task; it reports to the sink when done."""
        pool = self.pool
        task = asyncio.get_running_loop().create_task(pool.post(self, attempt, payload))
        pool.tasks.add(task)
        task.add_done_callback(pool.tasks.discard)


class AiohttpTransport:
    """A pool of request slots on one aiohttp ``ClientSession``."""

    __slots__ = (
        "build",
        "closing",
        "connect_timeout_s",
        "n",
        "origin",
        "reason_labels",
        "rule",
        "session",
        "sink",
        "ssl",
        "tasks",
        "template",
        "timeout_s",
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
    ) -> None:
        path = endpoint.base_path + target.orders_path
        self.template = RequestTemplate(target, skus, endpoint.host_header, path, data)
        self.build = self.template.render  # the request bytes of one order (split again when sent)
        self.origin = endpoint.url_for("")[: -len(endpoint.base_path) or None]
        self.rule = outcome_rule(target)
        self.reason_labels = dict(self.rule.labels)
        self.n = connections
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.session: aiohttp.ClientSession | None = None
        self.ssl = endpoint.ssl_context()
        self.sink: Sink

    async def start(self, sink: Sink, now_ns: int) -> int:
        """Open the session and check that the target answers at all; announce the slots."""
        self.sink = sink
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, connect=self.connect_timeout_s)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.n, ssl=self.ssl or True),
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=True,  # proxies from the environment: one reason to use this transport
        )
        for _ in range(self.n):
            sink.on_ready(_Slot(self))
        return self.n

    async def post(self, slot: _Slot, attempt: int, payload: bytes) -> None:
        """One request; reports its status, or a timeout or error."""
        assert self.session is not None
        method, target, headers, body = split_request(payload)
        try:
            async with self.session.request(
                method, URL(self.origin + target, encoded=True), data=body, headers=headers
            ) as resp:
                answer = await resp.read()
                status = resp.status
        except TimeoutError:
            self._fail(slot, attempt, TIMEOUT, R_TIMEOUT)
            return
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self._fail(slot, attempt, ERROR, failure_reason(exc))
            return
        rule = self.rule
        if rule.reads_body(status):
            outcome, reason = rule.of_body(status, answer)
        else:
            outcome, reason = rule.of_status(status)
        if not self.closing:
            self.sink.on_response(slot, attempt, status, outcome, reason)

    def _fail(self, slot: _Slot, attempt: int, outcome: int, reason: int) -> None:
        if not self.closing:
            self.sink.on_failure(slot, attempt, outcome, reason)
            self.sink.on_lost(slot)  # the slot itself recovers at once
            self.sink.on_ready(slot)

    def sweep(self, now_ns: int) -> None:
        """Nothing to do: aiohttp enforces the timeout per request."""

    async def close(self) -> None:
        """Cancel requests in flight and close the session."""
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
