"""The aiohttp transport: aiohttp's client for what the lean transport lacks (TLS, proxies,
servers that need a full client). About 15× the CPU per request of the lean one (BENCH-NOTES).

Each of ``connections`` slots carries one request at a time through one shared
``ClientSession`` whose connector holds at most ``connections`` connections.
"""

from __future__ import annotations

import asyncio

import aiohttp

from simulator.load.transport import Endpoint, Sink
from simulator.load.transport.template import BodyTemplate
from simulator.outcomes import ERROR, TIMEOUT
from simulator.scenario import Target


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
        "body",
        "closing",
        "connect_timeout_s",
        "headers",
        "method",
        "n",
        "session",
        "sink",
        "ssl",
        "tasks",
        "timeout_s",
        "url",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        target: Target,
        skus: tuple[str, ...],
        connections: int,
        timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.url = endpoint.url_for(target.orders_path)
        self.method = target.method
        self.body = BodyTemplate(target, skus)
        self.headers = {"Content-Type": target.content_type}
        self.n = connections
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.session: aiohttp.ClientSession | None = None
        self.ssl = endpoint.ssl_context()
        self.sink: Sink

    def build(self, sku: int, order: int, qty: int, buyer: int) -> bytes:
        """The body bytes of one order."""
        return self.body.render(sku, order, qty, buyer)

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
        try:
            async with self.session.request(
                self.method, self.url, data=payload, headers=self.headers
            ) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            self._fail(slot, attempt, TIMEOUT)
            return
        except (aiohttp.ClientError, OSError, ValueError):
            self._fail(slot, attempt, ERROR)
            return
        if not self.closing:
            self.sink.on_response(slot, attempt, status)

    def _fail(self, slot: _Slot, attempt: int, outcome: int) -> None:
        if not self.closing:
            self.sink.on_failure(slot, attempt, outcome)
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
