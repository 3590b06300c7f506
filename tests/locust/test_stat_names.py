"""What a request is called in Locust's statistics, in both modes: the orders under flashsale's
two names with the method they go out with, every other journey step and stream by its name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simulator.locust.stats import INTENDED, SERVICE, order_request, request_names
from simulator.scenario import load_scenario
from simulator.scenario.journey import order_journey, requests_of

ROOT = Path(__file__).resolve().parents[2]


def test_a_journeys_steps_and_streams_are_named_by_their_own_names() -> None:
    sc = load_scenario(ROOT / "scenarios" / "seckill-journey.toml")
    assert sc.journey is not None and sc.streams
    requests = requests_of(sc.journey, sc.streams)
    names = request_names(requests, sc.journey.order_step)
    assert [r.name for r in requests] == [s.name for s in sc.journey.steps] + [
        x.name for x in sc.streams
    ]
    assert [r.name for r in requests][-2:] == ["product_page", "countdown"]
    assert names[sc.journey.order_step] == (INTENDED, SERVICE)
    assert names[0] == ("login (intended)", "login (service)")
    assert names[-1] == ("countdown (intended)", "countdown (service)")


def test_the_orders_method_is_the_order_steps() -> None:
    """A journey whose order step is a PUT: the orders' entries are PUT ones (the live view
    looked them up under the target's POST and found nothing)."""
    sc = load_scenario(ROOT / "scenarios" / "seckill-journey.toml")
    assert sc.journey is not None and sc.target.method == "POST"
    steps = list(sc.journey.steps)
    k = sc.journey.order_step
    steps[k] = dataclasses.replace(steps[k], method="PUT")
    put = dataclasses.replace(sc, journey=dataclasses.replace(sc.journey, steps=tuple(steps)))
    assert order_request(put).method == "PUT"
    assert order_request(sc).method == "POST"
    plain = dataclasses.replace(sc, journey=None, streams=())
    plain = dataclasses.replace(plain, target=dataclasses.replace(plain.target, method="PATCH"))
    assert order_request(plain).method == "PATCH"
    one = order_journey(plain.target)
    assert request_names(requests_of(one, ()), one.order_step) == [(INTENDED, SERVICE)]
