"""Demand curves λ(t): how many orders a second buyers send, as pure functions of time.

Every component is a frozen dataclass with two vectorised methods that take a NumPy array of
times in seconds from the start of the run (they never read a clock):

* ``rate(t)``: the intensity λ(t) in orders per second;
* ``cumulative(t)``: Λ(t) = ∫₀ᵗ λ(s) ds, in closed form, so that bin counts have exactly the
  mean the curve says.

A :class:`Curve` is a sum of components, plus optional self-exciting :class:`Bursts` (a Hawkes
process in cluster form) that multiply it. Parameters are validated where they are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_LN2 = math.log(2.0)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _decay_integral(t: FloatArray, start_s: float, peak: float, half_life_s: float) -> FloatArray:
    """∫₀ᵗ peak·2^(−(s−start)/h) ds over s ≥ start = peak·h/ln2·(1 − 2^(−(t−start)/h))."""
    dt = np.maximum(t - start_s, 0.0)
    return peak * half_life_s / _LN2 * -np.expm1(-_LN2 * dt / half_life_s)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Steady background demand: λ(t) = rate_per_s, Λ(t) = rate_per_s·t."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _check(self.rate_per_s >= 0, f"must be ≥ 0, got {self.rate_per_s}")

    def rate(self, t: FloatArray) -> FloatArray:
        return np.full_like(t, self.rate_per_s, dtype=np.float64)

    def cumulative(self, t: FloatArray) -> FloatArray:
        return self.rate_per_s * np.maximum(t, 0.0)

    def peak_rate(self) -> float:
        """The highest λ(t): the rate itself."""
        return self.rate_per_s


@dataclass(frozen=True, slots=True)
class Countdown:
    """Buyers gathering before the drop: a linear ramp, zero outside [start_s, end_s).

    λ(t) = from + (to − from)·(t − start)/(end − start) for start ≤ t < end, else 0;
    Λ(t) = from·u + (to − from)·u²/(2·(end − start)) with u = clip(t − start, 0, end − start).
    """

    start_s: float
    end_s: float
    from_per_s: float
    to_per_s: float

    def __post_init__(self) -> None:
        _check(self.start_s >= 0, f"start_s must be ≥ 0, got {self.start_s}")
        _check(self.end_s > self.start_s, f"end_s must be > start_s, got {self.end_s}")
        _check(self.from_per_s >= 0, f"from_per_s must be ≥ 0, got {self.from_per_s}")
        _check(self.to_per_s >= 0, f"to_per_s must be ≥ 0, got {self.to_per_s}")

    def rate(self, t: FloatArray) -> FloatArray:
        span = self.end_s - self.start_s
        frac = (t - self.start_s) / span
        inside = (t >= self.start_s) & (t < self.end_s)
        return np.where(inside, self.from_per_s + (self.to_per_s - self.from_per_s) * frac, 0.0)

    def cumulative(self, t: FloatArray) -> FloatArray:
        span = self.end_s - self.start_s
        u = np.clip(t - self.start_s, 0.0, span)
        return self.from_per_s * u + (self.to_per_s - self.from_per_s) * u * u / (2.0 * span)

    def peak_rate(self) -> float:
        """The highest λ(t): the higher end of the ramp."""
        return max(self.from_per_s, self.to_per_s)


@dataclass(frozen=True, slots=True)
class Spike:
    """The midnight drop: a jump to peak_per_s at at_s, then exponential decay.

    λ(t) = peak·2^(−(t − at)/half_life) for t ≥ at, else 0;
    Λ(t) = peak·half_life/ln2·(1 − 2^(−(t − at)/half_life)) for t ≥ at.
    """

    at_s: float
    peak_per_s: float
    half_life_s: float

    def __post_init__(self) -> None:
        _check(self.at_s >= 0, f"at_s must be ≥ 0, got {self.at_s}")
        _check(self.peak_per_s >= 0, f"peak_per_s must be ≥ 0, got {self.peak_per_s}")
        _check(self.half_life_s > 0, f"half_life_s must be > 0, got {self.half_life_s}")

    def rate(self, t: FloatArray) -> FloatArray:
        dt = t - self.at_s
        decayed = self.peak_per_s * np.exp2(-np.maximum(dt, 0.0) / self.half_life_s)
        return np.where(dt >= 0, decayed, 0.0)

    def cumulative(self, t: FloatArray) -> FloatArray:
        return _decay_integral(t, self.at_s, self.peak_per_s, self.half_life_s)

    def peak_rate(self) -> float:
        """The highest λ(t): the peak, at the drop."""
        return self.peak_per_s


@dataclass(frozen=True, slots=True)
class Waves:
    """Periodic re-drops: ``count`` spikes at first_s + k·period_s, k = 0 … count − 1.

    λ(t) = Σₖ peak·2^(−(t − tₖ)/half_life)·[t ≥ tₖ]; Λ(t) is the sum of the spikes' integrals.
    """

    first_s: float
    period_s: float
    count: int
    peak_per_s: float
    half_life_s: float

    def __post_init__(self) -> None:
        _check(self.first_s >= 0, f"first_s must be ≥ 0, got {self.first_s}")
        _check(self.period_s > 0, f"period_s must be > 0, got {self.period_s}")
        _check(self.count >= 1, f"count must be ≥ 1, got {self.count}")
        _check(self.peak_per_s >= 0, f"peak_per_s must be ≥ 0, got {self.peak_per_s}")
        _check(self.half_life_s > 0, f"half_life_s must be > 0, got {self.half_life_s}")

    def _spikes(self) -> list[Spike]:
        return [
            Spike(self.first_s + k * self.period_s, self.peak_per_s, self.half_life_s)
            for k in range(self.count)
        ]

    def rate(self, t: FloatArray) -> FloatArray:
        out = np.zeros(np.shape(t))
        for s in self._spikes():  # one spike at a time: memory of one array, whatever count is
            out += s.rate(t)
        return out

    def cumulative(self, t: FloatArray) -> FloatArray:
        out = np.zeros(np.shape(t))
        for s in self._spikes():
            out += s.cumulative(t)
        return out

    def peak_rate(self) -> float:
        """An upper bound of λ(t): a spike's peak plus what is left of all the earlier ones."""
        left = math.exp2(-self.period_s / self.half_life_s)
        if left >= 1.0:  # period_s far below half_life_s: nothing decays between spikes
            return self.peak_per_s * self.count
        return self.peak_per_s * (1.0 - left**self.count) / (1.0 - left)


@dataclass(frozen=True, slots=True)
class Bursts:
    """Self-exciting bursts: a Hawkes process in cluster form over the rest of the curve.

    Every order (from the other components, the "immigrants", or from a burst) makes
    Poisson(branching_ratio) further orders for the same product, each after an Exp(decay_s)
    delay: buyers who see a sale take off join it. The excitation kernel is
    g(s) = branching_ratio/decay_s·e^(−s/decay_s); the expected intensity m(t) solves
    m = μ + g ∗ m, so over a long window demand grows by 1/(1 − branching_ratio).
    """

    branching_ratio: float
    decay_s: float

    def __post_init__(self) -> None:
        _check(
            0 <= self.branching_ratio < 1,
            f"branching_ratio must be in [0, 1), got {self.branching_ratio}",
        )
        _check(self.decay_s > 0, f"decay_s must be > 0, got {self.decay_s}")

    def kernel(self, s: FloatArray) -> FloatArray:
        """The excitation kernel g(s), orders per second per earlier order."""
        g = self.branching_ratio / self.decay_s * np.exp(-np.maximum(s, 0.0) / self.decay_s)
        return np.where(s >= 0, g, 0.0)

    def expected_bins(self, immigrants_per_bin: FloatArray, bin_s: float) -> FloatArray:
        """Expected orders per bin, immigrants plus all their descendants, given immigrant means.

        Exact for immigrants spread uniformly within each bin: with the kernel state
        y(t) = ∫ e^(−(t−s)/τ) m(s) ds, y' = μ − (1 − η)/τ·y, integrated bin by bin.
        """
        eta, tau = self.branching_ratio, self.decay_s
        a = (1.0 - eta) / tau
        decay = math.exp(-a * bin_s)
        out = np.empty_like(immigrants_per_bin)
        y = 0.0
        for k, mu_k in enumerate(immigrants_per_bin.tolist()):
            mu_rate = mu_k / bin_s
            # ∫ over the bin of m = μ + (η/τ)·y, with y(t) = y0·e^(−a t) + μ/a·(1 − e^(−a t))
            y_int = y * (1 - decay) / a + mu_rate / a * (bin_s - (1 - decay) / a)
            out[k] = mu_k + eta / tau * y_int
            y = y * decay + mu_rate / a * (1 - decay)
        return out


Component = Baseline | Countdown | Spike | Waves


@dataclass(frozen=True, slots=True)
class Curve:
    """A demand curve: the sum of its components, optionally self-exciting (bursts)."""

    components: tuple[Component, ...] = ()
    bursts: Bursts | None = None
    multiplier: float = field(default=1.0)

    def rate(self, t: FloatArray) -> FloatArray:
        """The immigrant intensity μ(t) (bursts excluded), orders per second."""
        t = np.asarray(t, dtype=np.float64)
        total = np.zeros_like(t)
        for c in self.components:
            total += c.rate(t)
        return total * self.multiplier

    def cumulative(self, t: FloatArray) -> FloatArray:
        """∫₀ᵗ μ(s) ds in closed form (bursts excluded)."""
        t = np.asarray(t, dtype=np.float64)
        total = np.zeros_like(t)
        for c in self.components:
            total += c.cumulative(t)
        return total * self.multiplier

    def peak_rate(self) -> float:
        """An upper bound of the immigrant intensity μ(t) (bursts excluded), orders per second.

        The sum of the components' highest rates: what one second of the sale can hold at most
        on average, for size checks before anything is drawn.
        """
        return sum(c.peak_rate() for c in self.components) * self.multiplier

    def total(self, duration_s: float) -> float:
        """Expected immigrant orders over [0, duration_s] (bursts excluded): Λ(duration_s)."""
        return float(self.cumulative(np.array([0.0, duration_s]))[1])

    def scaled(self, factor: float) -> Curve:
        """The same shape with every rate multiplied by ``factor``."""
        return Curve(self.components, self.bursts, self.multiplier * factor)

    @property
    def is_empty(self) -> bool:
        return not self.components or self.multiplier == 0.0
