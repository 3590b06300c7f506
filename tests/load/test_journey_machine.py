"""The journey state machine under any mix of answers (hypothesis): every journey ends once.

The transport here is an in-process stand-in that answers each step's request from a script
drawn by hypothesis (ok, sold out, throttled with Retry-After, a server error, no answer at all,
an answer missing the value a later step needs, a poll that stays pending); the engine's run is
the real one. Whatever the answers, the counts must add up: journeys started = ended = rows,
orders by outcome = rows, each step's requests = what the transport saw.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections import Counter
from typing import Any

import orjson
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.load.engine import EngineConfig
from simulator.load.journey import JourneyRun, make_run, step_rules
from simulator.load.transport import parse_endpoint
from simulator.outcomes import CONFIRMED, OUTCOME_NAMES, R_TIMEOUT, TIMEOUT
from simulator.retry import Retry
from simulator.scenario.journey import requests_of
from simulator.scenario.reader import parse_scenario
from simulator.schedule import FLAG_RETRIES
from tests.load.conftest import constant_rows

JOURNEY = """
name = "machine"
seed = 3
duration_s = 1.0
[[products]]
id = "a"
stock = 100
[[products]]
id = "b"
stock = 100
[demand]
baseline_per_s = 10.0
[journey]
order_step = "order"
[[journey.steps]]
name = "login"
path = "/login"
body = '{"user_id":"{user_id}"}'
extract = { token = { json = "token" } }
[[journey.steps]]
name = "order"
path = "/order"
headers = { Authorization = "Bearer {token}" }
extract = { ref = { json = "ref" } }
[[journey.steps]]
name = "poll"
method = "GET"
path = "/poll/{ref}"
poll = { json = "state", until = ["DONE"], every_s = 0.005, max = 3 }
[[journey.steps]]
name = "pay"
path = "/pay/{ref}"
probability = 0.5
think_s = [0.0, 0.01]
"""
STEPS = ("login", "order", "poll", "pay")
BEHAVIOURS = ("ok", "sold_out", "throttle", "error", "drop", "missing", "pending")
TIMEOUT_S = 0.05


class FakeChannel:
    def __init__(self, pool: FakeTransport) -> None:
        self.pool = pool
        self.alive = True
        self.attempt = -1
        self.sent_ns = 0

    def send(self, attempt: int, payload: bytes, now_ns: int) -> None:
        self.attempt, self.sent_ns = attempt, now_ns
        path = payload.split(b" ", 2)[1].decode()
        name = path.split("/")[1]
        self.pool.seen[name] += 1
        script = self.pool.script[name]
        behaviour = script[(self.pool.seen[name] - 1) % len(script)]
        if behaviour == "drop":
            return  # no answer: the sweep times it out
        if behaviour == "throttle_once":  # 429 to an order's first request only
            body = payload.partition(b"\r\n\r\n")[2]
            behaviour = "ok" if body in self.pool.throttled else "throttle"
            self.pool.throttled.add(body)
        status, headers, body = answer(name, behaviour)
        loop = asyncio.get_running_loop()
        loop.call_later(0.001, self.pool.deliver, self, attempt, status, headers, body)


def answer(name: str, behaviour: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    if behaviour == "sold_out":
        return 409, [], b"{}"
    if behaviour == "throttle":
        return 429, [(b"retry-after", b"0")], b"{}"
    if behaviour == "error":
        return 500, [], b"{}"
    if behaviour == "missing":
        return 200, [], b"{}"
    state = "PENDING" if behaviour == "pending" else "DONE"
    return 200, [], orjson.dumps({"token": "t0", "ref": "r/1", "state": state})


class FakeTransport:
    def __init__(self, script: dict[str, list[str]], n: int = 4, timeout_s: float = 0.05) -> None:
        self.script = script
        self.timeout_ns = round(timeout_s * 1e9)
        self.n = n
        self.seen: Counter[str] = Counter()
        self.throttled: set[bytes] = set()
        self.reason_labels: dict[int, str] = {}
        self.channels: list[FakeChannel] = []
        self.closing = False
        self.sink: Any = None

    def deliver_answers(self) -> None:
        pass

    def build(self, sku: int, order: int, qty: int, buyer: int) -> bytes:
        raise AssertionError("a journey renders its own requests")

    async def start(self, sink: Any, now_ns: int) -> int:
        self.sink = sink
        self.channels = [FakeChannel(self) for _ in range(self.n)]
        for ch in self.channels:
            sink.on_ready(ch)
        return self.n

    def deliver(self, ch: FakeChannel, attempt: int, status: int, headers: Any, body: bytes):
        if self.closing or ch.attempt != attempt:
            return
        ch.attempt = -1
        self.sink.on_answer(ch, attempt, status, headers, body)

    def sweep(self, now_ns: int) -> None:
        for ch in self.channels:
            if ch.attempt >= 0 and ch.sent_ns < now_ns - self.timeout_ns:
                attempt, ch.attempt = ch.attempt, -1
                self.sink.on_failure(ch, attempt, TIMEOUT, R_TIMEOUT)
                self.sink.on_ready(ch)

    async def close(self) -> None:
        self.closing = True


def run_machine(
    script: dict[str, list[str]],
    n_rows: int,
    retry: bool,
    stop_after_s: float | None = None,
    timeout_s: float = TIMEOUT_S,
) -> tuple[Any, Any]:
    scenario = parse_scenario(tomllib.loads(JOURNEY), "machine.toml")
    assert scenario.journey is not None
    rows = constant_rows(n_rows, 2_000_000, flags=FLAG_RETRIES if retry else 0)
    transport = FakeTransport(script, timeout_s=timeout_s)
    config = EngineConfig(
        timeout_s=timeout_s,
        drain_s=0.05,
        retry=Retry(share=1.0, max_attempts=2, backoff_s=0.002),
        fine_timer=False,
        sweep_s=0.002,
    )
    run = make_run(
        rows,
        transport,  # type: ignore[arg-type]
        config,
        None,
        scenario,
        parse_endpoint("http://127.0.0.1:9"),
    )
    assert isinstance(run, JourneyRun)

    async def go() -> Any:
        if stop_after_s is not None:  # Ctrl-C part way
            asyncio.get_running_loop().call_later(stop_after_s, run.stop)
        return await run.execute()

    result = uvloop.run(go())
    return result, transport


scripts = st.fixed_dictionaries(
    {name: st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=4) for name in STEPS}
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts, n_rows=st.integers(1, 30), retry=st.booleans())
def test_every_journey_ends_exactly_once(script: dict[str, list[str]], n_rows: int, retry: bool):
    result, transport = run_machine(script, n_rows, retry)
    tally = result.tally
    jt = tally.journey
    assert jt.started == n_rows
    assert jt.ended() == n_rows  # one terminal state each, whatever the answers
    assert tally.scheduled == n_rows
    assert int(tally.row_outcomes.sum()) == n_rows  # every order decided once
    for k, name in enumerate(STEPS):
        assert jt.steps[k].sent == transport.seen[name]  # every request counted, once
        assert jt.steps[k].attempts >= jt.steps[k].sent  # (and those that waited in vain)
    terminals = jt.terminals()
    assert terminals["completed"] <= int(tally.row_outcomes[CONFIRMED])
    # no journey is left for the end of the run to stop: nothing was cut short
    assert terminals["stopped"] == 0
    orders = {OUTCOME_NAMES[i]: int(n) for i, n in enumerate(tally.row_outcomes)}
    assert orders["not_sent"] == 0


def test_all_ok_completes_every_journey_and_half_pay() -> None:
    result, transport = run_machine({name: ["ok"] for name in STEPS}, 200, False, timeout_s=2.0)
    jt = result.tally.journey
    assert jt.terminals()["completed"] == 200 == int(result.tally.row_outcomes[CONFIRMED])
    assert transport.seen["login"] == transport.seen["order"] == transport.seen["poll"] == 200
    assert 60 < transport.seen["pay"] < 140  # probability 0.5, drawn per row


def test_a_missing_value_ends_the_journey_before_the_order_is_sent() -> None:
    script = {name: ["ok"] for name in STEPS} | {"login": ["missing"]}
    result, transport = run_machine(script, 20, False, timeout_s=2.0)
    t = result.tally
    assert transport.seen["order"] == 0  # no token: the order was never sent
    assert t.journey.terminals()["missing_value"] == 20
    assert int(t.row_outcomes[OUTCOME_NAMES.index("error")]) == 20
    assert t.reason_counts() == {"error": {"journey ended at order": 20}}


def test_a_throttled_order_is_retried_after_retry_after() -> None:
    script = {name: ["ok"] for name in STEPS} | {"order": ["throttle_once"]}
    result, transport = run_machine(script, 10, True, timeout_s=2.0)
    t = result.tally
    assert transport.seen["order"] == 20 and t.retries == 10
    assert int(t.row_outcomes[CONFIRMED]) == 10 and t.journey.terminals()["completed"] == 10


def test_a_poll_that_never_settles_stops_at_its_limit() -> None:
    script = {name: ["ok"] for name in STEPS} | {"poll": ["pending"]}
    result, transport = run_machine(script, 10, False, timeout_s=2.0)
    jt = result.tally.journey
    assert transport.seen["poll"] == 30  # max = 3 each
    assert jt.terminals()["poll_limit"] == 10 and transport.seen["pay"] == 0
    assert int(result.tally.row_outcomes[CONFIRMED]) == 10  # the order itself was confirmed


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=scripts,
    n_rows=st.integers(1, 40),
    retry=st.booleans(),
    stop_ms=st.integers(0, 80),
)
def test_a_stop_part_way_still_ends_every_journey_once(
    script: dict[str, list[str]], n_rows: int, retry: bool, stop_ms: int
) -> None:
    result, transport = run_machine(script, n_rows, retry, stop_after_s=stop_ms / 1000)
    tally, jt = result.tally, result.tally.journey
    assert jt.started == jt.ended() <= n_rows  # rows never reached start no journey
    assert tally.scheduled == n_rows and int(tally.row_outcomes.sum()) == n_rows
    for k, name in enumerate(STEPS):
        assert jt.steps[k].sent == transport.seen[name]


def test_a_steps_own_reason_codes_are_named_in_the_runs_tally() -> None:
    """A step whose rule reads words from the body (not the target's rule): the run's tally
    names its reason codes as users mode's feed does, not as bare numbers."""
    text = JOURNEY.replace(
        'extract = { ref = { json = "ref" } }',
        'extract = { ref = { json = "ref" } }\n'
        "[journey.steps.outcome]\n"
        'path = "code"\n'
        'values = { "OK" = "confirmed", "SOLD_OUT" = "sold_out" }',
    )
    scenario = parse_scenario(tomllib.loads(text), "machine.toml")
    assert scenario.journey is not None
    run = make_run(
        constant_rows(4, 2_000_000),
        FakeTransport({name: ["ok"] for name in STEPS}),  # type: ignore[arg-type]
        EngineConfig(fine_timer=False),
        None,
        scenario,
        parse_endpoint("http://127.0.0.1:9"),
    )
    order = step_rules(requests_of(scenario.journey, ()))[scenario.journey.order_step]
    assert order.labels and "SOLD_OUT" in " ".join(order.labels.values())
    assert order.labels.items() <= run.tally.reason_labels.items()
