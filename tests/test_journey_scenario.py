"""Reading a scenario's ``[journey]``: what it builds, and one clear error per mistake."""

from __future__ import annotations

import tomllib
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import ScenarioError
from simulator.load.journey import row_uniforms, takes, think_ns
from simulator.scenario.model import Think
from simulator.scenario.reader import parse_scenario

BASE = """
name = "j"
seed = 1
duration_s = 1.0
[[products]]
id = "a"
stock = 5
vars = { goods_id = "77" }
[demand]
baseline_per_s = 5.0
"""

GOOD = """
[journey]
order_step = "order"
[[journey.steps]]
name = "login"
path = "/login"
body = '{"user_id":"{user_id}"}'
extract = { token = { json = "data.token" }, sid = { cookie = "sid" } }
[[journey.steps]]
name = "order"
path = "/seckill/{goods_id}?u={user_id}"
headers = { Authorization = "Bearer {token}" }
extract = { ref = { header = "Location" }, n = { regex = "n=(\\\\d+)" } }
[journey.steps.outcome]
path = "code"
values = { "0" = "confirmed", "1001" = "sold_out" }
[[journey.steps]]
name = "poll"
method = "GET"
path = "/orders/{ref}"
poll = { json = "state", until = ["done", 3, true], every_s = 0.1, max = 4 }
[[journey.steps]]
name = "pay"
path = "/orders/{ref}/pay"
probability = 0.7
think_s = { median = 2.0, sigma = 0.5 }
status = { 410 = "rejected" }
"""


def read(extra: str):
    return parse_scenario(tomllib.loads(BASE + extra), "j.toml")


def test_a_journey_reads_as_written() -> None:
    j = read(GOOD).journey
    assert j is not None and j.names() == ("login", "order", "poll", "pay")
    assert j.order_step == 1 and j.variables() == ("token", "sid", "ref", "n")
    order, poll, pay = j.steps[1], j.steps[2], j.steps[3]
    assert order.body.startswith('{"order_id"')  # the order step's default body
    assert order.outcome is not None and order.outcome.path == ("code",)
    assert poll.poll is not None and poll.poll.until == ("done", "3", "true")
    assert poll.body == "" and poll.method == "GET"
    assert pay.probability == 0.7 and pay.think.kind == "lognormal"
    assert dict(pay.status)[410] == "rejected" and dict(pay.status)[409] == "sold_out"


def test_a_scenario_without_a_journey_has_none() -> None:
    assert read("").journey is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('"Bearer {token}"', '"Bearer {tokn}"'),
            "journey.steps[1].headers.Authorization: unknown variable {tokn}",
        ),
        (
            ('path = "/orders/{ref}"\npoll', 'path = "/orders/{refx}"\npoll'),
            "journey.steps[2].path: unknown variable {refx}",
        ),
        (
            ('body = \'{"user_id":"{user_id}"}\'', 'body = \'{"u":"{ref}"}\''),
            "journey.steps[0].body: {ref} is extracted by step 'order', which does not come before",
        ),
        (('order_step = "order"', 'order_step = "buy"'), "order_step: no step is named 'buy'"),
        (
            ('name = "poll"', 'name = "login"'),
            "journey.steps[2].name: 'login' is the name of an earlier step too",
        ),
        (("probability = 0.7", "probability = 1.7"), "journey.steps[3].probability: must be ≤ 1"),
        (("{ median = 2.0, sigma = 0.5 }", "[3.0, 1.0]"), "think_s: [a, b] needs a ≤ b"),
        (("{ median = 2.0, sigma = 0.5 }", "{ sigma = 1.0 }"), "think_s: a table needs mean"),
        (
            ('{ json = "data.token" }', '{ json = "data.token", header = "X" }'),
            "extract.token: give exactly one of json, header, cookie, regex",
        ),
        (('"n=(\\\\d+)"', '"n=(("'), "extract.n.regex: not a regular expression"),
        (("sid = {", "user_id = {"), "extract.user_id: {user_id} is a built-in"),
        (("every_s = 0.1", "every_s = 0"), "poll.every_s: must be > 0"),
        (('until = ["done", 3, true]', "until = []"), "poll.until: must be a non-empty list"),
        (('method = "GET"', 'method = "FETCH"'), "journey.steps[2].method: must be one of GET"),
        (('path = "/login"', 'path = "login"'), "journey.steps[0].path: must start with '/'"),
        (('"Bearer {token}"', '"Bearer\\r\\nX: {token}"'), "must not hold control characters"),
    ],
)
def test_each_mistake_is_one_error_naming_its_key(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD, old
    with pytest.raises(ScenarioError) as exc:
        read(GOOD.replace(old, new, 1))
    assert message in str(exc.value)
    assert str(exc.value).startswith("j.toml: ")


def test_the_order_step_is_every_buyers_and_never_polls() -> None:
    text = GOOD.replace('name = "pay"', 'name = "pay2"').replace('"order"\n[[', '"pay2"\n[[', 1)
    with pytest.raises(ScenarioError, match=r"steps\[3\].probability: the order step is taken"):
        read(text)
    with pytest.raises(ScenarioError, match=r"steps\[2\].poll: the order step is not a polling"):
        read(GOOD.replace('order_step = "order"', 'order_step = "poll"'))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    rows=st.lists(st.integers(0, 10**9), min_size=1, max_size=50, unique=True),
)
def test_draws_depend_on_seed_and_row_only(seed: int, rows: list[int]) -> None:
    a = np.array(rows, dtype=np.int64)
    u = row_uniforms(seed, a, 4, 1)
    assert ((u > 0) & (u < 1)).all()
    # the same row gets the same draws alone or among others (workers split rows any way)
    for i, r in enumerate(rows[:5]):
        one = row_uniforms(seed, np.array([r], dtype=np.int64), 4, 1)
        assert np.array_equal(one[0], u[i])


@settings(max_examples=50, deadline=None)
@given(
    a=st.floats(0, 100),
    b=st.floats(0, 100),
    u=st.lists(st.floats(1e-9, 1 - 1e-9), min_size=1, max_size=20),
)
def test_think_draws_stay_in_their_support(a: float, b: float, u: list[float]) -> None:
    lo, hi = min(a, b), max(a, b)
    x = np.array(u)
    assert (Think("constant", lo).draw(x, x) == lo).all()
    d = Think("uniform", lo, hi).draw(x, x)
    assert ((d >= lo - 1e-9) & (d <= hi + 1e-9)).all()
    assert (Think("exponential", lo).draw(x, x) >= 0).all()
    assert (Think("lognormal", lo, 0.5).draw(x, x[::-1]) >= 0).all()


def test_draws_follow_the_distributions() -> None:
    j = read(GOOD).journey
    assert j is not None
    rows = np.arange(200_000, dtype=np.int64)
    t = think_ns(j, 1, rows)
    pay = t[:, 3] / 1e9
    assert abs(np.median(pay) - 2.0) < 0.03  # lognormal median 2 s
    assert abs(np.std(np.log(pay)) - 0.5) < 0.01
    assert (t[:, :3] == 0).all()
    took = takes(j, 1, rows)
    assert took[:, :3].all() and abs(took[:, 3].mean() - 0.7) < 0.005


def test_unless_makes_steps_exclusive() -> None:
    text = (
        GOOD
        + """
[[journey.steps]]
name = "cancel"
path = "/orders/{ref}/cancel"
probability = 0.5
unless = "pay"
"""
    )
    j = read(text).journey
    assert j is not None and j.steps[4].unless == "pay"
    took = takes(j, 3, np.arange(100_000, dtype=np.int64))
    pay, cancel = took[:, 3], took[:, 4]
    assert not (pay & cancel).any()  # nobody both pays and cancels
    assert abs(cancel.mean() - 0.3 * 0.5) < 0.005  # half of the 30 % who did not pay
    with pytest.raises(ScenarioError, match=r"steps\[4\].unless: names no earlier step: 'pai'"):
        read(text.replace('unless = "pay"', 'unless = "pai"'))


def test_steps_can_read_the_buyers_flow_keys() -> None:
    flow = """
[buyers]
pay_share = 0.6
pay_delay_s = [1.0, 3.0]
abandon_share = 0.25
"""
    text = GOOD.replace("probability = 0.7", 'probability = "buyers.pay_share"').replace(
        "think_s = { median = 2.0, sigma = 0.5 }", 'think_s = "buyers.pay_delay_s"'
    )
    text += """
[[journey.steps]]
name = "cancel"
path = "/orders/{ref}/cancel"
probability = "1 - buyers.abandon_share"
unless = "pay"
"""
    j = read(flow + text).journey
    assert j is not None
    assert j.steps[3].probability == 0.6 and j.steps[3].think == Think("uniform", 1.0, 3.0)
    assert j.steps[4].probability == 0.75
    with pytest.raises(ScenarioError, match=r"steps\[3\].probability: a share or one of"):
        read(flow + text.replace('"buyers.pay_share"', '"buyers.pay"'))
    with pytest.raises(ScenarioError, match=r"steps\[3\].think_s: the only name it takes"):
        read(flow + text.replace('"buyers.pay_delay_s"', '"pay_delay"'))


@pytest.mark.parametrize(
    ("pay_delay", "think"),
    [
        ("{ median = 2.0, sigma = 0.8, min = 0.5 }", Think("lognormal", 2.0, 0.8, 0.5)),
        ("{ mean = 1.5, min = 0.25 }", Think("exponential", 1.5, 0.0, 0.25)),
        ("1.25", Think("constant", 1.25)),
    ],
)
def test_a_step_naming_the_pay_delay_draws_from_its_distribution(pay_delay, think) -> None:
    """``think_s = "buyers.pay_delay_s"``: the step's think time *is* the buyers' pay delay
    (one Think), its draws follow it and never go below its ``min``."""
    text = GOOD.replace("think_s = { median = 2.0, sigma = 0.5 }", 'think_s = "buyers.pay_delay_s"')
    sc = read(f"[buyers]\npay_delay_s = {pay_delay}\n" + text)
    j = sc.journey
    assert j is not None
    assert j.steps[3].think == think == sc.buyers.pay_delay_s
    pay = think_ns(j, 1, np.arange(100_000, dtype=np.int64))[:, 3] / 1e9
    assert pay.min() >= think.lowest - 1e-9
    if think.kind == "lognormal":  # the median (above min): as the distribution's
        assert abs(np.median(pay) - 2.0) < 0.05
        assert abs((pay == 0.5).mean() - NormalDist().cdf(np.log(0.5 / 2.0) / 0.8)) < 0.01
    elif think.kind == "exponential":  # min + the mass below it raised: mean + min·P(x < min)
        want = 1.5 * np.exp(-0.25 / 1.5) + 0.25
        assert abs(pay.mean() - want) < 0.02
    else:
        assert (pay == 1.25).all()


def test_think_s_takes_a_min_too() -> None:
    text = GOOD.replace(
        "think_s = { median = 2.0, sigma = 0.5 }",
        "think_s = { median = 2.0, sigma = 0.5, min = 1 }",
    )
    j = read(text).journey
    assert j is not None and j.steps[3].think == Think("lognormal", 2.0, 0.5, 1.0)
    assert (think_ns(j, 1, np.arange(10_000, dtype=np.int64))[:, 3] >= 1_000_000_000).all()
    with pytest.raises(ScenarioError, match=r"steps\[3\].think_s: min must be ≤ the median"):
        read(text.replace("min = 1 ", "min = 3 "))
