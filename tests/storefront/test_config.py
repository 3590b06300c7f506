"""Storefront settings: their ranges, and the JSON they cross a process boundary as."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import UsageError
from simulator.storefront.config import StorefrontSettings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"read_timeout_s": 0.0}, "read_timeout_s: must be a number of seconds in (0, 86400]"),
        ({"read_timeout_s": math.inf}, "read_timeout_s"),
        ({"read_timeout_s": math.nan}, "read_timeout_s"),
        ({"keepalive_timeout_s": -1.0}, "keepalive_timeout_s"),
        ({"keepalive_timeout_s": 1e12}, "keepalive_timeout_s"),
        ({"backend": "sqlite"}, "unknown backend 'sqlite'"),
    ],
)
def test_out_of_range_settings_are_one_usage_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        StorefrontSettings(stocks={"a": 1}, **change)
    assert message in str(err.value)


_skus = st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**63), max_size=5)


@given(
    _skus,
    _skus,
    st.sampled_from(["memory", "memory-racy", "redis"]),
    st.floats(0, 1e3),
    st.one_of(st.none(), st.integers(0, 2**70)),
    st.floats(0.001, 86_400),
    st.booleans(),
)
def test_settings_survive_their_json(
    stocks: dict[str, int],
    limits: dict[str, int],
    backend: str,
    median_ms: float,
    seed: int | None,
    timeout_s: float,
    hot_row: bool,
) -> None:
    import json

    settings = StorefrontSettings(
        stocks=stocks,
        limits=limits,
        backend=backend,
        service_time_median_ms=median_ms,
        seed=seed,
        read_timeout_s=timeout_s,
        hot_row=hot_row,
    )
    assert StorefrontSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stocks": {"a": 1}, "colour": "red"}, "unknown field 'colour'"),
        ({}, "missing 1 required positional argument: 'stocks'"),
        ({"stocks": {"a": "1"}}, "stock a: must be an integer"),
    ],
)
def test_bad_settings_json_is_one_usage_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        StorefrontSettings.from_json(data)
    assert message in str(err.value)


def test_serve_takes_the_scenarios_flow_and_its_flags_override_it(tmp_path) -> None:
    import argparse

    from simulator.commands.serve import build_settings, configure

    scenario = tmp_path / "flow.toml"
    scenario.write_text(
        'name = "f"\nseed = 1\nduration_s = 1.0\n[[products]]\nid = "a"\nstock = 5\n'
        "[demand]\nbaseline_per_s = 1.0\n"
        '[storefront]\nreservation_ttl_s = 300.0\nrequire_token = true\nroom_order = "shuffle"\n'
    )
    parser = argparse.ArgumentParser()
    configure(parser)
    settings = build_settings(parser.parse_args(["--scenario", str(scenario)]))
    assert (settings.reservation_ttl_s, settings.require_token, settings.room_order) == (
        300.0,
        True,
        "shuffle",
    )
    flagged = build_settings(
        parser.parse_args(["--scenario", str(scenario), "--reservation-ttl", "5"])
    )
    assert flagged.reservation_ttl_s == 5.0 and flagged.require_token is True
