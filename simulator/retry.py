"""How buyers retry a throttled order: the one owner of the retry rule.

The live engine, the Locust users and the offline model all ask :meth:`Retry.delay_ns` for the
wait before a retry; each brings its own seeded uniform draw (the engine a seeded array, the
Locust users a generator seeded from the scenario seed and the order, the model a counter-based
hash of the order), so the rule is written once and every run stays reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Ints = npt.NDArray[np.integer]
Floats = npt.NDArray[np.floating]

_NS = 1e9


@dataclass(frozen=True, slots=True)
class Retry:
    """How buyers react to a throttled (429/503) answer: try again after a backoff.

    Retry k (k = 1 … max_attempts − 1; the first attempt is not a retry) waits
    backoff_s·backoff_factor^(k−1), multiplied by a uniform factor in [1 − jitter, 1 + jitter]:
    for a uniform draw u ∈ [0, 1) the factor is 1 + jitter·(2u − 1).
    """

    share: float = 0.0  # share of buyers who retry at all
    max_attempts: int = 3  # attempts in all, the first included
    backoff_s: float = 0.2
    backoff_factor: float = 2.0
    jitter: float = 0.5

    @overload
    def delay_s(self, k: int, u: float) -> float: ...
    @overload
    def delay_s(self, k: Ints | int, u: Floats) -> F64: ...
    @overload
    def delay_s(self, k: Ints, u: Floats | float) -> F64: ...

    def delay_s(self, k: Ints | int, u: Floats | float) -> F64 | float:
        """The wait (s) before retry ``k`` (≥ 1) for the uniform draw ``u`` ∈ [0, 1).

        Scalars give a float; arrays (broadcast together) give an array equal element for
        element to the scalar rule: the powers of the factor are the scalar ones, looked up, so
        callers with one draw at a time and callers with many get the very same delays.
        """
        if isinstance(k, int) and isinstance(u, float | int):
            if k < 1:
                raise ValueError(f"retry number must be ≥ 1, got {k}")
            return self.backoff_s * self.backoff_factor ** (k - 1) * (1 + self.jitter * (2 * u - 1))
        ks = np.asarray(k, dtype=np.int64)
        if ks.size and int(ks.min()) < 1:
            raise ValueError(f"retry number must be ≥ 1, got {int(ks.min())}")
        top = int(ks.max()) if ks.size else 1
        base = np.array([self.backoff_s * self.backoff_factor**j for j in range(top)])
        jit = 2 * np.asarray(u, dtype=np.float64) - 1
        jit *= self.jitter
        jit += 1
        out: F64 = base[ks - 1] * jit
        return out

    @overload
    def delay_ns(self, k: int, u: float) -> int: ...
    @overload
    def delay_ns(self, k: Ints | int, u: Floats) -> I64: ...
    @overload
    def delay_ns(self, k: Ints, u: Floats | float) -> I64: ...

    def delay_ns(self, k: Ints | int, u: Floats | float) -> I64 | int:
        """:meth:`delay_s` in whole nanoseconds (rounded half to even, as ``round``/``rint``)."""
        d = self.delay_s(k, u)
        if isinstance(d, float):
            return round(d * _NS)
        out: I64 = np.rint(d * _NS).astype(np.int64)
        return out

    def retries(self) -> int:
        """Retries a retrying order can make at most (0 when nobody retries)."""
        return max(0, self.max_attempts - 1) if self.share > 0 else 0

    def capacity(self, retrying_orders: int) -> int:
        """Most retries ``retrying_orders`` orders (those of retrying buyers) can need: every
        one throttled on every attempt. Sizes the recorders of the live runs."""
        return retrying_orders * self.retries()

    def shortest_s(self) -> float:
        """The shortest possible wait before any retry (0 when nobody retries)."""
        n = self.retries()
        if n == 0:
            return 0.0
        return min(self.delay_s(k, 0.0) for k in range(1, n + 1))

    def longest_total_s(self) -> float:
        """The longest an order can spend in backoffs over all its retries."""
        return sum(self.delay_s(k, 1.0) for k in range(1, self.retries() + 1))
