"""The hot path, one operation each (group ``frequent``): what one order costs in Python.

Encode a request, parse a response, record a result, reserve stock. Sampling a chunk of the
schedule is in ``bench_schedule.py``. Each benchmark checks the result of what it timed.
Run: ``make bench`` or ``.venv/bin/python -m pytest bench/bench_hotpath.py -o
python_files='bench_*.py' --benchmark-only``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import harness
import numpy as np
import pytest

from simulator.load.engine import EngineConfig, Run
from simulator.load.slots import REGION, SlotRing
from simulator.load.transport import parse_endpoint
from simulator.load.transport.lean import LeanTransport, _Conn
from simulator.load.transport.template import RequestTemplate
from simulator.outcomes import (
    CONFIRMED,
    DEFAULT_STATUS,
    ERROR,
    SOLD_OUT,
    THROTTLED,
    status_table,
)
from simulator.scenario import Target
from simulator.schedule import ORDER_DTYPE
from simulator.storefront.backends import OUT_OF_STOCK, TAKEN, create_backend

SKUS = ("durian-musang-king", "durian-d24")

#: what the bundled storefront (aiohttp) answers to a confirmed order, byte for byte in shape
RESPONSE_201 = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 79\r\n"
    b"Date: Fri, 27 Nov 2026 21:00:00 GMT\r\n"
    b"Server: Python/3.11 aiohttp/3.11.10\r\n"
    b"\r\n"
    b'{"order_id":"123456","sku":"durian-d24","qty":2,"remaining":4875,"status":"ok"}'
)


@pytest.mark.benchmark(group="frequent")
def test_encode_a_request(benchmark):
    """One order as HTTP/1.1 bytes from the template encoded once per scenario."""
    template = RequestTemplate(Target(), SKUS, "127.0.0.1:8080", "/orders")
    body = b'{"order_id":"123456","sku":"durian-d24","qty":2,"user_id":"98765"}'
    expected = (
        b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    assert benchmark(template.render, 1, 123456, 2, 98765) == expected


@pytest.mark.benchmark(group="frequent")
def test_encode_a_templated_request(benchmark):
    """One order of the seckill shape: path variable, Bearer token from the buyer's data row."""
    from simulator.scenario import Product
    from simulator.scenario.buyerdata import BuyerData

    target = Target(
        orders_path="/api/v1/seckill/{goods_id}/order",
        headers=(("Authorization", "Bearer {token}"),),
        body='{"qty":{qty}}',
    )
    products = [
        Product(sku, "", 1, 0.0, vars=(("goods_id", str(i)),)) for i, sku in enumerate(SKUS)
    ]
    data = BuyerData("b", ("token",), tuple((f"{k:032x}",) for k in range(100_000)))
    template = RequestTemplate(target, products, "127.0.0.1:8080", target.orders_path, data)
    out = benchmark(template.render, 1, 123456, 2, 98765)
    assert out.startswith(b"POST /api/v1/seckill/1/order HTTP/1.1\r\n")
    assert f"Authorization: Bearer {98765:032x}\r\n".encode() in out
    assert out.endswith(b'{"qty":2}')


class _Sink:
    """Counts what the connection reports, as the engine's run would receive it."""

    __slots__ = ("answers", "last")

    def __init__(self) -> None:
        self.answers = 0
        self.last = (-1, 0)

    def on_response(
        self, channel: object, attempt: int, status: int, outcome: int, reason: int
    ) -> None:
        self.answers += 1
        self.last = (attempt, status)


@pytest.mark.benchmark(group="frequent")
def test_parse_a_response(benchmark):
    """One storefront answer through the lean transport's real parse path (httptools)."""
    assert len(RESPONSE_201.split(b"\r\n\r\n", 1)[1]) == 79
    sink = _Sink()
    table = status_table(DEFAULT_STATUS)
    conn = _Conn(SimpleNamespace(sink=sink, _closing=False, table=table))  # no socket

    def parse() -> None:
        conn.attempt = 7
        conn.data_received(RESPONSE_201)

    benchmark(parse)
    assert sink.last == (7, 201) and sink.answers >= 1
    assert conn.attempt == -1  # the response completed and freed the connection
    # a response split across reads completes once, when its last byte arrives
    before = sink.answers
    conn.attempt = 8
    conn.data_received(RESPONSE_201[:50])
    assert sink.answers == before
    conn.data_received(RESPONSE_201[50:])
    assert sink.last == (8, 201) and sink.answers == before + 1


@pytest.mark.benchmark(group="frequent")
def test_record_a_result(benchmark):
    """The engine's on_response: an answer written into its attempt slots (per 10k)."""
    n = 10_000
    rows = np.zeros(n, dtype=ORDER_DTYPE)
    rows["t_ns"] = np.arange(n) * 100_000
    rows["order"] = rows["buyer"] = np.arange(n)
    rows["qty"] = 1
    transport = LeanTransport(parse_endpoint("http://127.0.0.1:9"), Target(), SKUS, 1, 5.0, 1.0)
    run = Run(rows, transport, EngineConfig())
    run.slots = SlotRing(regions=-(-n // REGION))  # room for n attempts (regions of REGION)
    channel = SimpleNamespace(alive=True)
    statuses = [(201, 201, 201, 409, 429, 500)[i % 6] for i in range(n)]
    table = status_table(DEFAULT_STATUS)
    answers = [(attempt, s, table[s]) for attempt, s in enumerate(statuses)]
    on_response, free = run.on_response, run._free

    def record() -> None:
        for attempt, status, outcome in answers:
            on_response(channel, attempt, status, outcome, status)
        free.clear()  # every answer handed the channel back to the free list

    benchmark(record)
    slots = run.slots.arrays  # the first n slots: the attempts answered
    outcome_of = {201: CONFIRMED, 409: SOLD_OUT, 429: THROTTLED, 500: ERROR}
    expected = np.bincount([outcome_of[s] for s in statuses], minlength=7)
    assert (np.bincount(slots["outcome"][:n], minlength=7) == expected).all()
    assert (slots["done_ns"][:n] != -1).all() and (slots["status"][:n] == statuses).all()
    assert (slots["reason"][:n] == statuses).all()  # the status decided: its reason code
    harness.record_rate(benchmark, n, "answers_per_s")


@pytest.mark.benchmark(group="frequent")
def test_reserve_stock(benchmark):
    """The memory backend's check-and-decrement (reserve_now, what the HTTP layer calls)."""
    n, stock = 10_000, 9_000
    ids = [f"o{i}" for i in range(n)]
    users = [f"u{i}" for i in range(n)]

    def setup():
        backend = create_backend("memory", {"durian": stock}, {"durian": 2})
        return (backend,), {}

    def reserve_all(backend) -> tuple[object, int]:
        reserve = backend.reserve_now
        confirmed = 0
        for order_id, user in zip(ids, users, strict=True):
            confirmed += reserve(order_id, "durian", 1, user).outcome == TAKEN
        return backend, confirmed

    rounds = harness.sized(30, 1)
    backend, confirmed = benchmark.pedantic(reserve_all, setup=setup, rounds=rounds)
    assert backend.synchronous and confirmed == stock
    assert backend.reserve_now("o1", "durian", 1, "u1").replayed  # idempotent: no second take
    assert backend.reserve_now(f"o{n}", "durian", 1, "x").outcome == OUT_OF_STOCK
    snap = asyncio.run(backend.snapshot())["durian"]
    assert (snap.remaining, snap.sold, snap.ledger_units, snap.initial) == (0, stock, stock, stock)
    harness.record_rate(benchmark, n, "orders_per_s")


@pytest.mark.benchmark(group="frequent")
def test_memory_kept_per_order(benchmark):
    """What the memory backend keeps per confirmed order (idempotency, ledger), in bytes.

    Orders come in as the storefront gets them (strings fresh from orjson); tracemalloc counts
    what stays allocated after they are taken, so the figure is exact, not an RSS estimate.
    """
    import tracemalloc

    import orjson

    n = harness.sized(200_000, 20_000)
    bodies = [
        orjson.dumps(
            {"order_id": f"3f2a9c1e7b4d-{i}", "sku": "durian", "qty": 1, "user_id": f"u{i}"}
        )
        for i in range(n)
    ]

    def keep_all() -> tuple[object, int]:
        backend = create_backend("memory", {"durian": 10**9}, {})
        confirm = backend.confirm_now
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for raw in bodies:
            o = orjson.loads(raw)
            confirm(o["order_id"], o["sku"], o["qty"], o["user_id"])
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return backend, kept

    backend, kept = benchmark.pedantic(keep_all, rounds=1)
    per_order = kept / n
    print(f"\nmemory backend keeps {per_order:.0f} bytes per confirmed order ({n:,} orders)")
    benchmark.extra_info["bytes_per_order"] = round(per_order)
    assert len(asyncio.run(backend.ledger())) == n
    assert 100 < per_order < 400  # order id, user id, a dict entry, log slots: not a record object
