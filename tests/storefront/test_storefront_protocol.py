"""The storefront's connections on raw sockets: JSON for aiohttp's own refusals, read timeouts.

These also guard the aiohttp internals ``simulator.storefront.protocol`` leans on: a new aiohttp
that moves them fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from simulator.storefront.protocol import StorefrontSite

STOCK = {"durian": 10}
ORDER = b'{"order_id":"o1","sku":"durian","qty":1,"user_id":"u1"}'
#: how long a test waits for the server to close a connection it should close (a bound, not
#: a measurement: the timeouts under test are a fraction of it)
PATIENCE_S = 20.0


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one HTTP/1.x response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, orjson.loads(body)


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` at once, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), PATIENCE_S)
    finally:
        writer.close()


GET = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
POST = b"POST /orders HTTP/1.1\r\nHost: t\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))
MALFORMED = [
    # (case, bytes sent) — refused by aiohttp's parser before any storefront code runs
    ("nul in method", b"GE\x00T / HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("tls hello at http", TLS_HELLO + b"\r\n\r\n"),
    ("bad version", b"GET /healthz HTTP/9.x\r\nHost: t\r\n\r\n"),
    ("header without colon", GET + b"Broken\r\n\r\n"),
    ("space before colon", b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n"),
    ("header line too long", GET + b"X: " + b"a" * 9000 + b"\r\n\r\n"),
    ("too many headers", GET + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"),
    ("bad content-length", POST + b"Content-Length: ten\r\n\r\n"),
    ("bad chunk size", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    (
        "length and chunked",
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    ("no host in 1.1", b"GET /healthz HTTP/1.1\r\n\r\n"),
]


@pytest.mark.parametrize(("case", "data"), MALFORMED, ids=[c for c, _ in MALFORMED])
async def test_a_malformed_request_gets_the_json_error(case: str, data: bytes, start: Any) -> None:
    sf = await start("memory", STOCK)
    status, headers, body = _parse(await _exchange(sf.port, data))
    assert status == 400, case
    assert headers["content-type"] == "application/json", case
    assert body["field"] == "request" and body["error"].startswith("malformed HTTP request: ")
    assert "\n" not in body["error"] and len(body["error"]) < 300
    _validate_documented("post", "/orders", 400, body)
    assert sf.storefront.stats.by_status[201] == 0


async def test_a_handler_crash_is_a_json_500() -> None:
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application()
    app.router.add_get("/", crash)
    runner = web.AppRunner(app)
    await runner.setup()
    site = StorefrontSite(runner, "127.0.0.1", 0, read_timeout_s=5.0, keepalive_timeout_s=5.0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        status, headers, body = _parse(await _exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert (status, headers["content-type"]) == (500, "application/json")
        assert body == {"error": "internal server error", "field": "request"}
    finally:
        await runner.cleanup()


async def _drip(port: int, data: bytes, every_s: float) -> tuple[bytes, int]:
    """Send ``data`` a byte at a time; (what the server answered, bytes sent before it closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        answer = asyncio.ensure_future(reader.read())
        for byte in data:
            if answer.done():
                break
            writer.write(bytes([byte]))
            sent += 1
            await asyncio.sleep(every_s)
        return await asyncio.wait_for(answer, PATIENCE_S), sent
    finally:
        writer.close()


async def test_slow_drip_headers_are_cut_off_with_a_408(start: Any) -> None:
    sf = await start("memory", STOCK, read_timeout_s=0.3)
    # each byte comes well within the timeout, the whole head would take ~10 s: the clock runs
    # from the first byte, so none of these clients holds its connection
    head = _post(ORDER)[:100]
    results = await asyncio.gather(*(_drip(sf.port, head, 0.1) for _ in range(20)))
    for answer, sent in results:
        status, headers, body = _parse(answer)
        assert (status, headers["connection"], body["field"]) == (408, "close", "headers")
        assert sent < len(head)
    assert sf.storefront.stats.by_status[201] == 0


async def test_a_slow_body_is_cut_off_with_a_408(start: Any) -> None:
    sf = await start("memory", STOCK, read_timeout_s=0.3)
    request = _post(ORDER)
    head_len = request.index(b"\r\n\r\n") + 4
    reader, writer = await asyncio.open_connection("127.0.0.1", sf.port)
    try:
        writer.write(request[: head_len + 5])  # the head and five bytes of body, then nothing
        status, _, body = _parse(await asyncio.wait_for(reader.read(), PATIENCE_S))
    finally:
        writer.close()
    assert (status, body["field"]) == (408, "body")
    assert sf.storefront.stats.by_status[408] == 1
    _validate_documented("post", "/orders", 408, body)


def _validate_documented(method: str, path: str, status: int, body: Any) -> None:
    import jsonschema

    from simulator import __version__
    from simulator.storefront.openapi import openapi_document

    doc = openapi_document(__version__)
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": doc["components"]})


async def test_an_idle_connection_is_closed(start: Any) -> None:
    sf = await start("memory", STOCK, keepalive_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", sf.port)
    try:
        assert await asyncio.wait_for(reader.read(), PATIENCE_S) == b""  # never a byte sent
        reader, writer = await asyncio.open_connection("127.0.0.1", sf.port)
        writer.write(_post(ORDER))
        answer = await asyncio.wait_for(reader.read(), PATIENCE_S)  # answered, then idle
    finally:
        writer.close()
    assert _parse(answer)[0] == 201


async def test_keep_alive_and_pipelining_within_the_timeouts(start: Any, http: Any) -> None:
    sf = await start("memory", STOCK, read_timeout_s=2.0, keepalive_timeout_s=2.0)
    for i in range(3):  # one pooled connection, reused after short pauses
        status, _ = await http.order(sf.url, f"o{i}", "durian")
        assert status == 201
        await asyncio.sleep(0.2)
    pipelined = b"".join(
        _post(ORDER.replace(b'"o1"', b'"p%d"' % i), b"Connection: close\r\n" if i == 2 else b"")
        for i in range(3)
    )
    answers = (await _exchange(sf.port, pipelined)).count(b"HTTP/1.1 201 Created")
    assert answers == 3
