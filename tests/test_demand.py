"""Demand curves: closed-form integrals agree with the rates, parameters are validated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.demand import Baseline, Bursts, Countdown, Curve, Spike, Waves

pos = st.floats(min_value=0.0, max_value=1e5, allow_nan=False)
time_s = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
life = st.floats(min_value=0.05, max_value=50.0, allow_nan=False)


def _numeric_integral(
    curve: Curve | Baseline | Countdown | Spike | Waves, t_end: float
) -> tuple[float, float]:
    """Trapezoid integral, and its error bound from jumps (a jump costs ≤ its height × step)."""
    t = np.linspace(0.0, t_end, 200_001)
    r = curve.rate(t)
    jumps = np.abs(np.diff(r)).max(initial=0.0)
    return float(np.sum((r[1:] + r[:-1]) / 2 * np.diff(t))), float(jumps * (t[1] - t[0]))


components = st.one_of(
    st.builds(Baseline, pos),
    st.builds(
        lambda a, span, f, to: Countdown(a, a + span, f, to),
        time_s,
        st.floats(min_value=0.5, max_value=50.0),
        pos,
        pos,
    ),
    st.builds(Spike, time_s, pos, life),
    st.builds(
        Waves, time_s, st.floats(min_value=1.0, max_value=30.0), st.integers(1, 4), pos, life
    ),
)


@settings(max_examples=60, deadline=None)
@given(components, st.floats(min_value=1.0, max_value=150.0))
def test_cumulative_is_the_integral_of_the_rate(component, t_end):
    closed = float(component.cumulative(np.array([t_end]))[0])
    numeric, jump_error = _numeric_integral(component, t_end)
    assert closed == pytest.approx(numeric, rel=2e-3, abs=jump_error + 1e-3 * max(1.0, numeric))


@settings(max_examples=40, deadline=None)
@given(st.lists(components, min_size=1, max_size=4), st.floats(min_value=0.01, max_value=5.0))
def test_curve_sums_components_and_scales(parts, factor):
    curve = Curve(tuple(parts))
    t = np.linspace(0.0, 120.0, 97)
    expected = sum(c.rate(t) for c in parts)
    np.testing.assert_allclose(curve.rate(t), expected)
    np.testing.assert_allclose(curve.scaled(factor).cumulative(t), curve.cumulative(t) * factor)
    assert np.all(np.diff(curve.cumulative(t)) >= -1e-6)  # Λ never decreases


@pytest.mark.parametrize(
    ("component", "t", "rate"),
    [
        (Baseline(10.0), 3.0, 10.0),
        (Countdown(0.0, 10.0, 0.0, 100.0), 5.0, 50.0),
        (Countdown(0.0, 10.0, 0.0, 100.0), 10.0, 0.0),  # over once the drop comes
        (Countdown(2.0, 10.0, 10.0, 100.0), 1.0, 0.0),
        (Spike(10.0, 1000.0, 5.0), 9.999, 0.0),
        (Spike(10.0, 1000.0, 5.0), 10.0, 1000.0),
        (Spike(10.0, 1000.0, 5.0), 15.0, 500.0),  # one half-life later
        (Spike(10.0, 1000.0, 5.0), 20.0, 250.0),
        (Waves(0.0, 10.0, 2, 100.0, 1.0), 10.0, 100.0 + 100.0 * 2**-10),
        (Waves(0.0, 10.0, 2, 100.0, 1.0), 20.0, 100.0 * 2**-20 + 100.0 * 2**-10),
    ],
)
def test_rate_table(component, t, rate):
    assert float(component.rate(np.array([t]))[0]) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Baseline(-1.0), "must be ≥ 0"),
        (lambda: Countdown(5.0, 5.0, 0.0, 1.0), "end_s must be > start_s"),
        (lambda: Countdown(-1.0, 5.0, 0.0, 1.0), "start_s must be ≥ 0"),
        (lambda: Spike(0.0, 10.0, 0.0), "half_life_s must be > 0"),
        (lambda: Spike(0.0, -10.0, 1.0), "peak_per_s must be ≥ 0"),
        (lambda: Waves(0.0, 0.0, 1, 1.0, 1.0), "period_s must be > 0"),
        (lambda: Waves(0.0, 1.0, 0, 1.0, 1.0), "count must be ≥ 1"),
        (lambda: Bursts(1.0, 1.0), "branching_ratio must be in [0, 1)"),
        (lambda: Bursts(0.5, 0.0), "decay_s must be > 0"),
    ],
)
def test_bad_parameters_are_rejected_where_built(build, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        build()


@settings(max_examples=30, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=0.9),
    st.floats(min_value=0.01, max_value=2.0),
    st.floats(min_value=1.0, max_value=1000.0),
)
def test_bursts_expected_total_approaches_one_over_one_minus_eta(eta, tau, rate):
    # long constant immigration: the stationary intensity is μ/(1 − η)
    bins = np.full(20_000, rate * 0.01)
    out = Bursts(eta, tau).expected_bins(bins, 0.01)
    assert out[-1] == pytest.approx(rate * 0.01 / (1 - eta), rel=1e-3)
    assert np.all(out >= bins - 1e-12)


def test_pure_functions_of_time():
    curve = Curve((Baseline(5.0), Spike(1.0, 100.0, 2.0)))
    t = np.array([0.5, 1.5, 3.0])
    assert np.array_equal(curve.rate(t), curve.rate(t.copy()))
    assert np.array_equal(curve.cumulative(t), curve.cumulative(t.copy()))


@settings(max_examples=60, deadline=None)
@given(
    base=st.floats(0, 1e4),
    peak=st.floats(0, 1e5),
    half=st.floats(0.01, 100),
    period=st.floats(0.01, 100),
    count=st.integers(1, 50),
    ramp=st.tuples(st.floats(0, 1e4), st.floats(0, 1e4)),
)
def test_peak_rate_bounds_the_curve_everywhere(base, peak, half, period, count, ramp):
    curve = Curve(
        (
            Baseline(base),
            Countdown(0.0, 5.0, ramp[0], ramp[1]),
            Spike(2.0, peak, half),
            Waves(1.0, period, count, peak, half),
        ),
        multiplier=0.5,
    )
    t = np.linspace(0.0, 1.0 + period * count + 10 * half, 20_001)
    assert curve.rate(t).max() <= curve.peak_rate() * (1 + 1e-9) + 1e-9


def test_total_is_the_cumulative_at_the_end():
    curve = Curve((Baseline(10.0), Spike(1.0, 100.0, 2.0)))
    assert curve.total(10.0) == pytest.approx(float(curve.cumulative(np.array([10.0]))[0]))
    assert Curve((Baseline(3.0),)).total(2.0) == pytest.approx(6.0)


def test_many_waves_cost_one_array_of_memory():
    waves = Waves(0.0, 1.0, 1000, 10.0, 0.5)
    t = np.linspace(0, 1100, 10_001)
    out = waves.cumulative(t)
    assert out.shape == t.shape and out[-1] == pytest.approx(1000 * 10.0 * 0.5 / np.log(2), 1e-6)
