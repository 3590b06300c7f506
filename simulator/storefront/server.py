"""Running a storefront on a socket: in-process for the engine and tests, or until a signal.

:func:`start_storefront` starts one on the current event loop and returns a
:class:`RunningStorefront` (an async context manager) with its URL; :func:`serve` is what
``flashsale serve`` and the embedded storefront's child process run: start, announce the URL,
stop cleanly on SIGINT/SIGTERM (or when told to).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from simulator.errors import FlashsaleError
from simulator.storefront.app import STOREFRONT_KEY, Storefront, make_app
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.protocol import StorefrontSite


class ListenError(FlashsaleError):
    """The storefront cannot bind its host and port."""


@dataclass(slots=True)
class RunningStorefront:
    """A storefront serving on ``url`` until :meth:`stop` (or the end of ``async with``)."""

    url: str
    host: str
    port: int
    app: web.Application
    runner: web.AppRunner

    @property
    def storefront(self) -> Storefront:
        """The app's state: backend, counters, settings."""
        return self.app[STOREFRONT_KEY]

    async def stop(self) -> None:
        """Stop listening, finish the requests in flight briefly, close the backend."""
        await self.runner.cleanup()

    async def __aenter__(self) -> RunningStorefront:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_storefront(
    settings: StorefrontSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = 4096,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningStorefront:
    """Start a storefront on this event loop; ``port=0`` picks a free port (see ``.url``).

    With ``ssl_context`` it serves HTTPS (and its URL says ``https://``).

    Raises ``StoreUnavailableError`` when its Redis/PostgreSQL cannot be reached and
    :class:`ListenError` when the address cannot be bound; nothing is left running then.
    """
    app = make_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = StorefrontSite(
        runner,
        host,
        port,
        read_timeout_s=settings.read_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        backlog=backlog,
        ssl_context=ssl_context,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    scheme = "https" if ssl_context is not None else "http"
    return RunningStorefront(
        f"{scheme}://{shown}:{bound_port}", bound_host, bound_port, app, runner
    )


async def serve(
    settings: StorefrontSettings,
    host: str,
    port: int,
    announce: Callable[[RunningStorefront], None],
    ssl_context: ssl.SSLContext | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT, SIGTERM or ``stop`` is set; ``announce`` is called once, when ready.

    Start errors (``StoreUnavailableError``, :class:`ListenError`) are raised before
    ``announce``, with nothing left running.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_storefront(settings, host, port, ssl_context=ssl_context)
        # the heap so far (imports, app, backend) lives as long as the process: freezing it
        # spares every full collection from walking it again (bench/storefront_vs_bare.py)
        gc.freeze()
        try:
            announce(running)
            await stop.wait()
        finally:
            await running.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
