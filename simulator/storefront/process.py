"""A storefront in a child process of its own, tied to its parent: the run's bundled target.

The parent (:func:`storefront_process`) starts ``python -m simulator.storefront`` with one end
of a socket pair as its channel. Over it the parent sends one JSON line (the settings, host,
port) and the child answers one JSON line: ``{"url": ..., "port": ...}`` once it listens, or
``{"error": ...}`` when it cannot start (a store that cannot be reached, a port in use, bad
settings); the parent raises :class:`StorefrontStartError` with that reason. No stdout is read.

The child must not outlive its parent, even one killed with SIGKILL: on Linux it asks the kernel
for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``, only when started from the parent's main
thread: the signal follows the thread that forked), and everywhere it stops when the channel
reaches end of file, which happens when the parent closes it or dies. It runs in a session of
its own, so a Ctrl-C meant for the run reaches the run, which stops the child after its audit.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from simulator.errors import FlashsaleError
from simulator.storefront.config import StorefrontSettings

#: how long the parent waits for the child to say it listens (imports, a store's connection)
DEFAULT_START_TIMEOUT_S = 30.0
#: how long a stopping child may take before it is killed
STOP_TIMEOUT_S = 5.0
#: the largest handshake line (settings of a big catalogue included)
_MAX_LINE = 64 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


class StorefrontStartError(FlashsaleError):
    """The bundled storefront did not start; the message says why (in the child's words)."""


@contextlib.contextmanager
def storefront_process(
    settings: StorefrontSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> Iterator[str]:
    """Start a storefront in a child process, yield its URL, stop it on the way out.

    Raises :class:`StorefrontStartError` when it does not start within ``start_timeout_s``;
    nothing is left running then.
    """
    parent_end, child_end = socket.socketpair()
    request = {
        "settings": settings.to_json(),
        "host": host,
        "port": port,
        "parent_pid": os.getpid(),
        # PDEATHSIG follows the forking *thread*: from any other, it could fire while we live
        "pdeathsig": threading.current_thread() is threading.main_thread(),
    }
    cmd = [sys.executable, "-m", "simulator.storefront", "--channel-fd", str(child_end.fileno())]
    # stderr goes to a file: a pipe nobody reads during the run could fill and block the child
    with tempfile.TemporaryFile("w+", prefix="flashsale-storefront-") as log, parent_end:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,  # Ctrl-C goes to the run, which stops this itself
            )
        finally:
            child_end.close()
        try:
            url = _handshake(proc, parent_end, request, start_timeout_s, log)
            yield url
        finally:
            parent_end.close()  # the child's signal to stop
            _stop(proc, STOP_TIMEOUT_S)


def _handshake(
    proc: subprocess.Popen[bytes],
    channel: socket.socket,
    request: dict[str, Any],
    timeout_s: float,
    log: IO[str],
) -> str:
    """Send the request, wait for the child's answer; its URL, or StorefrontStartError."""
    deadline = time.monotonic() + timeout_s
    answer: dict[str, Any] | None = None
    try:
        channel.settimeout(timeout_s)
        channel.sendall(json.dumps(request).encode() + b"\n")
        answer = _read_answer(channel, deadline)
    except (OSError, ValueError):
        answer = None  # the child died or garbled its line: its stderr tells why
    if answer is not None and isinstance(answer.get("url"), str):
        return str(answer["url"])
    _stop(proc, 0.0)
    if answer is not None and isinstance(answer.get("error"), str):
        reason = answer["error"]
    elif time.monotonic() >= deadline and proc.returncode in (None, -signal.SIGTERM):
        reason = f"not listening after {timeout_s:g} s"
    else:
        log.seek(0)
        tail = " | ".join(log.read().strip().splitlines()[-3:])
        reason = tail or f"it exited with status {proc.returncode} before listening"
    raise StorefrontStartError(f"the bundled storefront did not start: {reason}")


def _read_answer(channel: socket.socket, deadline: float) -> dict[str, Any] | None:
    """The child's one JSON line, or None when the channel closes or the deadline passes."""
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(channel, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                return None
            chunk = channel.recv(65536)
            if not chunk:
                return None
            buf += chunk
    answer = json.loads(buf.partition(b"\n")[0])
    return answer if isinstance(answer, dict) else None


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stop the child: ``grace_s`` to go by itself (the channel closed), then SIGTERM, SIGKILL."""
    if grace_s > 0:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the child ------------------------------------------------------------------------------


def die_with_parent(parent_pid: int, pdeathsig: bool) -> bool:
    """Ask Linux for SIGTERM when the parent dies; False when the parent is already gone.

    Where prctl is not available (not Linux) only the channel's end of file stops the child.
    """
    if pdeathsig and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # the parent may have died before prctl: then we were re-parented already
    return os.getppid() == parent_pid


def child_main(channel_fd: int) -> int:
    """The child's life: read the request, serve, answer the handshake, stop on EOF or signal."""
    channel = socket.socket(fileno=channel_fd)
    try:
        request = _read_request(channel)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"flashsale storefront: no start request from the parent: {exc}\n")
        return 2
    if not die_with_parent(int(request.get("parent_pid", -1)), bool(request.get("pdeathsig"))):
        return 0
    try:
        settings = StorefrontSettings.from_json(request["settings"])
    except FlashsaleError as exc:
        _send(channel, {"error": str(exc)})
        return 2
    import asyncio

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve_child(channel, settings, str(request["host"]), request["port"]))


def _read_request(channel: socket.socket) -> dict[str, Any]:
    buf = b""
    while b"\n" not in buf:
        chunk = channel.recv(65536)
        if not chunk:
            raise ValueError("the channel closed")
        buf += chunk
        if len(buf) > _MAX_LINE:
            raise ValueError("request line too long")
    request = json.loads(buf.partition(b"\n")[0])
    if not isinstance(request, dict):
        raise ValueError("request is not a JSON object")
    return request


def _send(channel: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a parent gone meanwhile: nobody to tell
        channel.sendall(json.dumps(message).encode() + b"\n")


async def _serve_child(
    channel: socket.socket, settings: StorefrontSettings, host: str, port: int
) -> int:
    import asyncio

    from simulator.storefront.server import RunningStorefront, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    channel.setblocking(False)

    def on_channel() -> None:
        # the parent writes nothing after its request: readable means it closed or died
        with contextlib.suppress(BlockingIOError):
            if not channel.recv(4096):
                stop.set()

    def announce(running: RunningStorefront) -> None:
        _send(channel, {"url": running.url, "host": running.host, "port": running.port})

    loop.add_reader(channel.fileno(), on_channel)
    try:
        await serve(settings, host, port, announce, stop=stop)
    except FlashsaleError as exc:
        _send(channel, {"error": str(exc)})
        return 2
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(channel.fileno())
    return 0
