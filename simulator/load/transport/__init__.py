"""How an order becomes bytes on a socket and an HTTP answer becomes a status.

The engine talks to a transport through two small interfaces: a :class:`Channel` carries one
request at a time (a keep-alive connection, or a slot of a client's connection pool), and the
engine is the :class:`Sink` every channel reports to. Two transports implement them:
:mod:`simulator.load.transport.lean` (asyncio.Protocol + httptools, the hot path; plain HTTP or TLS)
and :mod:`simulator.load.transport.aio` (aiohttp's client, for proxies and unusual servers).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import urlsplit

from simulator.errors import UsageError
from simulator.outcomes import OutcomeRule
from simulator.scenario import Target

TRANSPORTS = ("lean", "aiohttp")


class Channel(Protocol):
    """Carries one request at a time to the target; ``alive`` is False once it cannot."""

    alive: bool

    def send(self, attempt: int, payload: bytes, now_ns: int) -> None:
        """Send ``payload`` (from :meth:`Transport.build`) as attempt ``attempt``."""


class Sink(Protocol):
    """Receives what channels report; implemented by the engine's run."""

    def on_response(
        self, channel: Channel, attempt: int, status: int, outcome: int, reason: int
    ) -> None:
        """A complete answer arrived: its status, and the outcome and reason code the
        scenario's :class:`~simulator.outcomes.OutcomeRule` gave it; the channel is free again
        if alive."""

    def on_failure(self, channel: Channel, attempt: int, outcome: int, reason: int) -> None:
        """The attempt failed (error or timeout, with its reason code: reset, closed …);
        the channel reports on_ready/on_lost after."""

    def on_ready(self, channel: Channel) -> None:
        """The channel (new or recovered) can take a request."""

    def on_lost(self, channel: Channel) -> None:
        """The channel is gone (its in-flight attempt, if any, was reported first)."""

    def on_connect_failed(self) -> None:
        """A connection attempt failed: the target may be down."""


class Transport(Protocol):
    """A pool of channels to one target.

    ``reason_labels`` names the reason codes only its outcome rule knows (listed non-numeric
    body values); every other code names itself (:func:`simulator.outcomes.reason_name`).
    """

    reason_labels: dict[int, str]
    #: the payload of one order from (the product index, order number, quantity, buyer): the
    #: template's own renderer, called directly on the hot path
    build: Callable[[int, int, int, int], bytes]

    async def start(self, sink: Sink, now_ns: int) -> int:
        """Open the channels and announce each with ``sink.on_ready``; return how many opened."""

    def sweep(self, now_ns: int) -> None:
        """Time out requests in flight longer than the timeout (called every few ms)."""

    async def close(self) -> None:
        """Close every channel; no callbacks after this returns."""


def outcome_rule(target: Target) -> OutcomeRule:
    """The target's compiled outcome rule: its status map, and its body rule if it has one."""
    body = target.outcome
    if body is None:
        return OutcomeRule(target.status)
    return OutcomeRule(target.status, body.path, body.statuses, body.values, body.other)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A target URL split for the transports."""

    url: str
    scheme: str
    host: str
    port: int
    base_path: str  # path prefix before the scenario's paths, without a trailing "/"
    ca_file: str | None = None  # https: trust the CAs in this PEM file, not the system's
    verify: bool = True  # https: check the certificate and the host name

    def unverified(self) -> Endpoint:
        """The same target, its TLS certificate not checked (as Locust's FastHttpUser does)."""
        return replace(self, verify=False) if self.scheme == "https" else self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for an https target; None for plain HTTP."""
        if self.scheme != "https":
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise UsageError(
                f"CA file {self.ca_file!r}: cannot load it: {reason}", "ca_file"
            ) from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def host_header(self) -> str:
        """The Host header value."""
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        """Absolute URL of a path of the target (e.g. ``/inventory``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}{path}"


def parse_endpoint(
    url: str,
    what: str = "target URL",
    ca_file: str | None = None,
    verify: bool = True,
    subject: str = "target_url",
) -> Endpoint:
    """Split and check a target URL; a bad one is a usage error naming ``what`` it is (its
    ``subject`` is ``subject``, for the command to name its flag).

    ``ca_file`` (a CA bundle to trust) and ``verify=False`` (no certificate check) are for
    https targets only.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{what} {url!r}: bad URL: {exc}", subject) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} {url!r}: bad URL: want http://HOST[:PORT][/PREFIX]", subject)
    if parts.query or parts.fragment:
        raise UsageError(f"{what} {url!r}: bad URL: no query or fragment, please", subject)
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if parts.scheme != "https" and (ca_file is not None or not verify):
        setting = "a CA file" if ca_file is not None else "skipping the certificate check"
        raise UsageError(
            f"{setting} is only for an https:// target, not {url!r}",
            "ca_file" if ca_file is not None else "insecure",
        )
    endpoint = Endpoint(
        url, parts.scheme, parts.hostname, port, parts.path.rstrip("/"), ca_file, verify
    )
    endpoint.ssl_context()  # a CA file that cannot be loaded is a usage error now, not mid-run
    return endpoint
