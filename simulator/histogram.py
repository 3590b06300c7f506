"""Mergeable log-linear latency histograms (HdrHistogram-style), shared by the model and the engine.

A value x ≥ 1 ns falls in bucket (e, s): x ∈ [2ᵉ(1 + s/2ᵇ), 2ᵉ(1 + (s+1)/2ᵇ)) for ``b`` sub-bucket
bits, found from the bits of float64(x) — the exponent and top ``b`` mantissa bits are
``bits >> (52 − b)`` — so a bucket index costs three integer operations on a whole array. A
bucket's midpoint is within 1/2ᵇ⁺¹ of any value in it, which bounds the relative error of every
reported percentile: b = 7 (the offline model, 0.39 %), b = 9 (live runs, 0.098 %). Histograms
add: merging per-window or per-worker counts gives exactly the whole run's percentiles.

The functions work on plain count arrays (the model keeps its own); :class:`Histogram` adds
the exact count, sum, minimum and maximum that a report also needs, and a bounded range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: the offline model's resolution (0.39 %); live runs use :data:`FINE_BITS`
SUB_BITS = 7
#: sub-bucket bits of live runs: relative error 1/1024 (≤ 0.1 %)
FINE_BITS = 9
N_BUCKETS = 64 << SUB_BITS  # exponents 0…63
RELATIVE_ERROR = 1.0 / (2 << SUB_BITS)


def relative_error(sub_bits: int = SUB_BITS) -> float:
    """Largest relative distance from a bucket's midpoint to a value in it."""
    return 1.0 / (2 << sub_bits)


def bucket_of(x_ns: I64, sub_bits: int = SUB_BITS, positive: bool = False) -> I64:
    """Bucket index of each value (values < 1 ns go to bucket 0); ``positive``: the caller
    knows every value is ≥ 1 (no clamp: a pass fewer)."""
    bits = (x_ns if positive else np.maximum(x_ns, 1)).astype(np.float64).view(np.int64)
    idx = np.right_shift(bits, 52 - sub_bits, out=bits)  # bits is a new array: in place
    idx -= 1023 << sub_bits
    return idx


def bucket_mid(idx: I64 | npt.NDArray[np.intp], sub_bits: int = SUB_BITS) -> F64:
    """The midpoint (ns) of each bucket."""
    e = np.asarray(idx) >> sub_bits
    s = np.asarray(idx) & ((1 << sub_bits) - 1)
    return np.ldexp(1.0 + (s + 0.5) / (1 << sub_bits), e.astype(np.int32))


def percentiles(
    counts: I64,
    qs: tuple[float, ...],
    lo_ns: float | None = None,
    hi_ns: float | None = None,
    sub_bits: int = SUB_BITS,
    offset: int = 0,
) -> F64:
    """Percentiles (ns) from bucket counts along the last axis; NaN where there is no value.

    The q-th percentile is the midpoint of the bucket holding the ⌈q/100 · N⌉-th smallest value,
    clamped to the observed minimum and maximum (``lo_ns``, ``hi_ns``) when given: a midpoint
    can lie beyond the values in its bucket, and no percentile may exceed the maximum.
    ``offset``: the bucket index of ``counts[..., 0]`` (a histogram over a bounded range).
    """
    counts = np.asarray(counts)
    c = np.cumsum(counts, axis=-1)
    total = c[..., -1:]
    n = counts.shape[-1]
    out = np.full((*counts.shape[:-1], len(qs)), np.nan)
    for k, q in enumerate(qs):
        rank = np.maximum(np.ceil(q / 100.0 * total), 1)
        idx = (c < rank).sum(axis=-1)
        val = bucket_mid(np.minimum(idx, n - 1) + offset, sub_bits)
        out[..., k] = np.where(total[..., 0] > 0, val, np.nan)
    if lo_ns is not None or hi_ns is not None:
        np.clip(out, lo_ns, hi_ns, out=out)  # NaN stays NaN
    return out


@dataclass(frozen=True, slots=True)
class Scale:
    """The bucket range of a bounded histogram: ``sub_bits`` and exponents [lo_exp, hi_exp).

    Values below 2^lo_exp ns land in the first bucket and values from 2^hi_exp ns on in the
    last (the exact minimum and maximum are kept beside the counts, and percentiles are clamped
    to them). The live default spans 1.02 µs (2¹⁰ ns) to 18 min (2⁴⁰ ns) at 0.098 %.
    """

    sub_bits: int = FINE_BITS
    lo_exp: int = 10
    hi_exp: int = 40

    def __post_init__(self) -> None:
        if not 0 <= self.sub_bits <= 16:
            raise ValueError(f"sub_bits must be in 0…16, got {self.sub_bits}")
        if not 0 <= self.lo_exp < self.hi_exp <= 63:
            raise ValueError(
                f"exponents must satisfy 0 ≤ lo < hi ≤ 63, got {self.lo_exp}, {self.hi_exp}"
            )

    @property
    def n_buckets(self) -> int:
        """Buckets in a histogram of this scale."""
        return (self.hi_exp - self.lo_exp) << self.sub_bits

    @property
    def offset(self) -> int:
        """The global bucket index (:func:`bucket_of`) of this scale's first bucket."""
        return self.lo_exp << self.sub_bits

    def index(self, x_ns: I64) -> I64:
        """Bucket index of each value within this scale (clamped to its range)."""
        idx = bucket_of(x_ns, self.sub_bits)
        idx -= self.offset
        np.clip(idx, 0, self.n_buckets - 1, out=idx)
        return idx

    def mid(self, idx: I64) -> F64:
        """The midpoint (ns) of each bucket of this scale."""
        return bucket_mid(np.asarray(idx, dtype=np.int64) + self.offset, self.sub_bits)


#: the live runs' scale
LIVE = Scale()


@dataclass(slots=True)
class Histogram:
    """Counts over a :class:`Scale` plus the exact count, sum, minimum and maximum (ns).

    :meth:`add` takes a whole array at once (one ``bincount``); :meth:`merge` adds another
    histogram's counts, which is exact: the merged percentiles are those of all the values.
    """

    counts: I64
    total: int = 0
    sum_ns: int = 0
    min_ns: int = -1  # −1: no value yet
    max_ns: int = -1
    scale: Scale = LIVE

    @classmethod
    def empty(cls, scale: Scale = LIVE) -> Histogram:
        """A histogram with no values."""
        return cls(np.zeros(scale.n_buckets, dtype=np.int64), scale=scale)

    def add(self, values_ns: I64) -> None:
        """Count every value (ns; negative values count as 0)."""
        n = len(values_ns)
        if n == 0:
            return
        v = np.maximum(np.asarray(values_ns, dtype=np.int64), 0)
        idx = self.scale.index(v)
        lo = int(idx.min())  # counted over the batch's own span of buckets: a live batch spans
        idx -= lo  # a few hundred of the scale's 15,360, and a full-length bincount cost more
        per = np.bincount(idx)
        self.counts[lo : lo + len(per)] += per
        self._extend(n, int(v.sum()), int(v.min()), int(v.max()))

    def _extend(self, n: int, total_ns: int, lo: int, hi: int) -> None:
        self.total += n
        self.sum_ns += total_ns
        self.min_ns = lo if self.min_ns < 0 else min(self.min_ns, lo)
        self.max_ns = max(self.max_ns, hi)

    def merge(self, other: Histogram) -> None:
        """Add another histogram of the same scale."""
        if other.scale != self.scale:
            raise ValueError(f"cannot merge histograms of scales {self.scale} and {other.scale}")
        if other.total == 0:
            return
        self.counts += other.counts
        self._extend(other.total, other.sum_ns, other.min_ns, other.max_ns)

    def percentiles(self, qs: tuple[float, ...]) -> F64:
        """The percentiles (ns), within the scale's relative error, clamped to [min, max]."""
        if self.total == 0:
            return np.full(len(qs), np.nan)
        out = percentiles(
            self.counts, qs, self.min_ns, self.max_ns, self.scale.sub_bits, self.scale.offset
        )
        return np.asarray(out, dtype=np.float64)

    def mean_ns(self) -> float:
        """The exact mean (NaN when empty)."""
        return self.sum_ns / self.total if self.total else float("nan")
