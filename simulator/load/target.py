"""One client for the target's own endpoints: is it there, reset it, read its inventory and ledger.

``flashsale run`` (:mod:`simulator.load.runner`) and the Locust adapter both talk to the target
outside the orders themselves, always through :class:`Target`: TLS comes from the
:class:`~simulator.load.transport.Endpoint` (its CA file, whether the certificate is checked),
and every call has a short, stated timeout, so that a target that accepts connections and never
answers costs seconds, not minutes, and says so. Errors name values (the URL, what came back),
never command-line flags: the commands add their flag hints (e.g. to
:attr:`TargetError.untrusted`).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from simulator.audit import ServerState
from simulator.errors import FlashsaleError
from simulator.load.transport import Endpoint

log = logging.getLogger("flashsale")

#: how long the probe, the reset and the inventory may take to answer
ANSWER_TIMEOUT_S = 3.0
#: how long the ledger may take (it lists every order of the run)
LEDGER_TIMEOUT_S = 10.0
_TLS_RECORD = (0x15, 0x16)  # first byte of a TLS alert / handshake record


class TargetError(FlashsaleError):
    """The target cannot be used: it is not there, its TLS failed, or it speaks something else.

    ``url`` is the target's URL and ``reason`` what went wrong; ``untrusted`` is True when the
    TLS handshake failed on the certificate check (a command can say how to trust it).
    """

    def __init__(self, url: str, reason: str, *, untrusted: bool = False) -> None:
        super().__init__(f"cannot reach the target {url}: {reason}")
        self.url = url
        self.reason = reason
        self.untrusted = untrusted


@dataclass(frozen=True, slots=True)
class Reset:
    """What the reset did: a note for the report, and whether the audit can rely on it."""

    note: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Target:
    """The target's endpoint with the timeouts of the calls outside the orders."""

    endpoint: Endpoint
    connect_timeout_s: float = 2.0
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    ledger_timeout_s: float = LEDGER_TIMEOUT_S
    _tls: ssl.SSLContext | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # built once: the live view reads the inventory every second
        object.__setattr__(self, "_tls", self.endpoint.ssl_context())

    @property
    def url(self) -> str:
        """The target's URL as given."""
        return self.endpoint.url

    # -- reachability ------------------------------------------------------------------------

    def check_reachable(self) -> str | None:
        """Connect (and for https shake hands), then send a HEAD and read the answer's first bytes.

        Raises :class:`TargetError` if there is no connection, TLS fails, or the answer is not
        HTTP (a TLS answer to plain HTTP says to use https://). Returns a note when the target
        accepted the connection but did not answer within :attr:`answer_timeout_s` (the run can
        still go on: a frozen target shows in the latencies), else None.
        """
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise TargetError(self.url, exc.strerror or type(exc).__name__) from None
        try:
            if self._tls is not None:
                sock = self._handshake(sock, self._tls)
            first = self._first_bytes(sock)
        finally:
            sock.close()
        if first is None:
            return (
                f"the target at {self.url} accepted the connection but sent no answer "
                f"within {self.answer_timeout_s:g} s"
            )
        if first.startswith(b"HTTP/"):
            return None
        tls_reply = bool(first) and first[0] in _TLS_RECORD
        if self._tls is None and (tls_reply or self._speaks_tls()):
            raise TargetError(
                self.url, f"it answered in TLS: use https://{self.url.partition('://')[2]}"
            )
        if not first:
            raise TargetError(self.url, "it closed the connection without an HTTP answer")
        raise TargetError(self.url, f"its answer is not HTTP (it began {first[:16]!r})")

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> socket.socket:
        try:
            return context.wrap_socket(sock, server_hostname=self.endpoint.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            reason = f"TLS: {exc.verify_message or exc.reason}"
            raise TargetError(self.url, reason, untrusted=True) from None
        except ssl.SSLError as exc:
            sock.close()
            reason = f"TLS: {exc.reason}"
            if exc.reason == "WRONG_VERSION_NUMBER":  # the classic plain-HTTP-at-https case
                reason += f": it answered in plain HTTP: use http://{self.url.partition('://')[2]}"
            raise TargetError(self.url, reason) from None
        except OSError as exc:
            sock.close()
            raise TargetError(self.url, f"TLS: {exc.strerror or type(exc).__name__}") from None

    def _first_bytes(self, sock: socket.socket) -> bytes | None:
        """Send a HEAD of the base path; the answer's first bytes, b"" if closed, None if silent."""
        ep = self.endpoint
        request = f"HEAD {ep.base_path}/ HTTP/1.1\r\nHost: {ep.host_header}\r\n"
        request += "Connection: close\r\n\r\n"
        sock.settimeout(self.answer_timeout_s)
        try:
            sock.sendall(request.encode("ascii"))
            return sock.recv(16)
        except TimeoutError:
            return None
        except OSError:  # reset by the peer (e.g. a TLS server refusing plain bytes)
            return b""

    def _speaks_tls(self) -> bool:
        """Whether a TLS handshake (certificate not checked) succeeds at the target's port."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        ep = self.endpoint
        try:
            with (
                socket.create_connection((ep.host, ep.port), timeout=self.connect_timeout_s) as s,
                context.wrap_socket(s, server_hostname=ep.host),
            ):
                return True
        except OSError:  # ssl.SSLError is an OSError
            return False

    # -- the storefront's own endpoints --------------------------------------------------------

    def reset(self, path: str) -> Reset:
        """POST the reset path so that the audit starts from the initial stock."""
        url = self.endpoint.url_for(path)
        req = urllib.request.Request(url, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.answer_timeout_s, context=self._tls) as r:
                return Reset(f"reset: {r.status}", ok=True)
        except urllib.error.HTTPError as exc:
            note = f"reset: {exc.code} (not supported; the audit compares against its inventory)"
            return Reset(note, ok=False)
        except (urllib.error.URLError, OSError) as exc:
            if _timed_out(exc):
                note = f"reset: no answer within {self.answer_timeout_s:g} s"
            else:
                note = f"reset: failed ({_reason(exc)})"
            return Reset(note + "; the audit compares against the inventory as found", ok=False)

    def get_json(self, path: str, timeout_s: float | None = None) -> Any:
        """GET a path and parse its JSON; OSError (incl. timeouts) or ValueError on failure."""
        return self.fetch_json(self.endpoint.url_for(path), timeout_s)

    def fetch_json(self, url: str, timeout_s: float | None = None) -> Any:
        """GET an absolute URL (the target's TLS settings apply) and parse its JSON.

        For the storefront's own endpoints elsewhere (e.g. an admin API on another port);
        OSError (incl. timeouts) or ValueError on failure.
        """
        timeout = self.answer_timeout_s if timeout_s is None else timeout_s
        tls = self._tls if url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=timeout, context=tls) as resp:
            return json.loads(resp.read())

    def server_state(self, inventory_path: str, ledger_path: str) -> ServerState:
        """The inventory and the ledger after a run; what could not be read is noted.

        The ledger is not asked for when the inventory did not answer in time: a target that
        does not answer costs one timeout, not two.
        """
        errors: list[str] = []
        inventory = ledger = None
        silent = False
        url = self.endpoint.url_for(inventory_path)
        try:
            data = self.get_json(inventory_path)
            if isinstance(data, dict) and isinstance(data.get("skus"), dict):
                inventory = data
            else:
                errors.append(f"{url}: not an inventory document")
        except (OSError, ValueError) as exc:
            silent = _timed_out(exc)
            why = f"no answer within {self.answer_timeout_s:g} s" if silent else _reason(exc)
            errors.append(f"{url}: {why}")
        url = self.endpoint.url_for(ledger_path)
        if silent:
            errors.append(f"{url}: not asked (the inventory did not answer)")
            return ServerState(inventory, ledger, tuple(errors))
        try:
            data = self.get_json(ledger_path, self.ledger_timeout_s)
            if isinstance(data, dict) and isinstance(data.get("orders"), list):
                ledger = data["orders"]
            else:
                errors.append(f"{url}: not a ledger document")
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {_reason(exc)}")
        return ServerState(inventory, ledger, tuple(errors))


def _timed_out(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, TimeoutError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        r = exc.reason
        return r.strerror or str(r) if isinstance(r, OSError) else str(r)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
