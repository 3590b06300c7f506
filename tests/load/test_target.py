"""The target client: reachability (TLS at a plain URL, plain HTTP at https, silence), the reset
and the server's state, each with a short stated timeout; ``flashsale run`` against a silent
target ends near its duration and says why."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.load.target import Target, TargetError
from simulator.load.transport import parse_endpoint

from .test_run_command import flashsale


def _listener(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server whose accepted connections go to ``serve``; its http URL."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stopped = threading.Event()

    def loop() -> None:
        while not stopped.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            serve(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stopped.set()
        srv.close()
        for c in held:
            c.close()
        thread.join(2)


@pytest.fixture
def silent_target() -> Iterator[str]:
    """Accepts connections and never answers (e.g. a frozen storefront)."""
    yield from _listener(lambda conn: None)


@pytest.fixture
def babbling_target() -> Iterator[str]:
    """Answers anything with bytes that are not HTTP, then closes."""

    def serve(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    yield from _listener(serve)


def _target(url: str, **kw: float) -> Target:
    return Target(parse_endpoint(url).unverified(), **kw)


def test_plain_http_at_a_tls_port_says_use_https(fake_store, tls_cert: tuple[Path, Path]) -> None:
    url, _ = fake_store("ok", ("a=10", "b=5"), tls=tls_cert)
    plain = url.replace("https://", "http://")
    with pytest.raises(TargetError, match=r"answered in TLS: use https://127\.0\.0\.1:\d+"):
        _target(plain).check_reachable()
    assert _target(url).check_reachable() is None  # the same port as https: fine


def test_https_at_a_plain_port_says_use_http(fake_store) -> None:
    url, _ = fake_store("ok", ("a=10", "b=5"))
    https = url.replace("http://", "https://")
    with pytest.raises(TargetError, match=r"plain HTTP: use http://") as info:
        _target(https).check_reachable()
    assert not info.value.untrusted


def test_an_untrusted_certificate_is_marked_so(fake_store, tls_cert: tuple[Path, Path]) -> None:
    url, _ = fake_store("ok", ("a=10", "b=5"), tls=tls_cert)
    with pytest.raises(TargetError) as info:
        Target(parse_endpoint(url)).check_reachable()
    assert info.value.untrusted and "--" not in str(info.value)  # no flag names in the library
    trusted = Target(parse_endpoint(url, ca_file=str(tls_cert[0])))
    assert trusted.check_reachable() is None
    assert trusted.reset("/reset").ok  # TLS settings come from the endpoint for every call
    assert trusted.server_state("/inventory", "/ledger").errors == ()


def test_nothing_listening_and_not_http_are_errors(babbling_target: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TargetError, match=r"cannot reach the target .*: Connection refused"):
        _target(closed).check_reachable()
    with pytest.raises(TargetError, match=r"not HTTP \(it began b'SSH-2.0"):
        _target(babbling_target).check_reachable()


def test_a_silent_target_costs_one_short_timeout_each_and_says_so(silent_target: str) -> None:
    t = _target(silent_target, answer_timeout_s=0.3)
    note = t.check_reachable()
    assert note is not None and "sent no answer within 0.3 s" in note
    reset = t.reset("/reset")
    assert not reset.ok and reset.note.startswith("reset: no answer within 0.3 s")
    state = t.server_state("/inventory", "/ledger")
    assert state.inventory is None and state.ledger is None
    assert "/inventory: no answer within 0.3 s" in state.errors[0]
    assert "not asked" in state.errors[1]  # the ledger is not waited for a second time


def test_reset_and_state_of_a_working_target(fake_store) -> None:
    url, _ = fake_store("ok", ("a=10", "b=5"))
    t = _target(url)
    assert t.reset("/reset") == t.reset("/reset")
    assert t.reset("/reset").note == "reset: 200"
    missing = t.reset("/no-such-reset")
    assert not missing.ok and missing.note.startswith("reset: 404 (not supported")
    state = t.server_state("/inventory", "/ledger")
    assert state.inventory is not None and state.inventory["skus"]["a"]["initial"] == 10
    assert state.ledger == [] and state.errors == ()
    bad = t.server_state("/ledger", "/inventory")  # each document where the other is expected
    assert bad.inventory is None and bad.ledger is None
    assert [e.split(": ", 1)[1] for e in bad.errors] == [
        "not an inventory document",
        "not a ledger document",
    ]


def test_run_at_plain_http_on_a_tls_port_is_one_line(
    fake_store, scenario_file, tls_cert: tuple[Path, Path]
) -> None:
    url, _ = fake_store("ok", ("a=100", "b=50"), tls=tls_cert)
    path = str(scenario_file(rate=100, duration=0.5))
    r = flashsale(path, "--target", url.replace("https://", "http://"), "--json")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.count("\n") == 1 and "answered in TLS: use https://" in r.stderr


def test_run_against_a_silent_target_ends_and_says_why(silent_target: str, scenario_file) -> None:
    path = str(scenario_file(rate=20, duration=0.5))  # [run] timeout_s = drain_s = 2
    r = flashsale(path, "--target", silent_target, "--json", timeout_s=40)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    notes = report["run"]["notes"]
    assert any("sent no answer within 3 s" in n for n in notes), notes
    assert any(n.startswith("reset: not asked") for n in notes), notes
    assert "warning: the target at" in r.stderr  # not only in the report
    outcomes = report["orders"]["outcomes"]
    assert outcomes["timeout"] == report["orders"]["scheduled"] > 0
    assert not report["audit"]["available"]
    assert any("not asked" in p for p in report["audit"]["problems"])
