"""Service times and other per-order random draws, as pure functions of the order.

Every draw is a hash of (seed, order number, attempt, double-click bit): counter-based, so a
result never depends on how the stream was cut into chunks or windows, and needs no generator
state. ``splitmix64`` (Steele et al., 2014) mixes the key; its top 16 bits index a table of
2¹⁶ service-time quantiles taken at the bin midpoints (i + ½)/2¹⁶. For a lognormal with median
m and shape σ the table is m·exp(σ·Φ⁻¹((i + ½)/2¹⁶)); for an empirical distribution it is the
samples' quantiles. The table caps the tail at the 1 − 7.6·10⁻⁶ quantile (z ≈ 4.3).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from simulator.scenario.model import normal_quantile

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

TABLE_BITS = 16
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


#: elements a block of a chain of elementwise passes (:func:`splitmix64`, the flow's ends):
#: its passes over a block (128 KB of 64-bit words) and the scratch stay in the L2 cache
#: (splitmix64: 3.3x faster on a 93k-element window than over the whole array, whose
#: passes each stream it from memory: 285 vs 925 µs, 2026-12-06 05:47 UTC, shared host)
BLOCK = 16384


def splitmix64(x: U64, out: U64 | None = None, salt: np.uint64 | None = None) -> U64:
    """The splitmix64 finaliser of ``x + golden``: a bijective, well-mixed 64-bit hash
    (of ``x ^ salt`` when a salt is given).

    In place in ``out`` when given (it may be ``x``), with one scratch array: the hash runs on
    every request, and each array it allocates is another pass over fresh memory. Long arrays
    are hashed a block at a time (:data:`BLOCK`).
    """
    z = np.empty_like(x) if out is None else out
    t = np.empty(min(len(x), BLOCK), dtype=np.uint64)
    for a in range(0, len(x), BLOCK):
        b = min(a + BLOCK, len(x))
        block = z[a:b]
        if salt is None:
            np.add(x[a:b], _GOLDEN, out=block)
        else:
            np.bitwise_xor(x[a:b], salt, out=block)
            block += _GOLDEN
        _mix(block, t[: b - a])
    return z


def _mix(z: U64, t: U64) -> U64:
    """splitmix64's mixing of ``z`` (golden already added), in place; ``t``: scratch."""
    np.right_shift(z, np.uint64(30), out=t)
    z ^= t
    z *= _M1
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= _M2
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    return z


def order_key(
    order: I64, attempt: npt.NDArray[np.integer], duplicate: npt.NDArray[np.bool_]
) -> U64:
    """One 64-bit key per request: order·32 + attempt·2 + double-click bit."""
    key = order.view(np.uint64) << np.uint64(5)  # order numbers are ≥ 0
    if attempt.any():
        key |= attempt.astype(np.uint64) << np.uint64(1)
    np.bitwise_or(key, duplicate, out=key, casting="unsafe")
    return key


def uniforms(key: U64, seed: int, stream: int, out: U64 | None = None) -> U64:
    """Hashed 64-bit words for ``key`` in an independent ``stream`` (0 = service, 1 = jitter …);
    into ``out`` when given."""
    salt = np.uint64((seed * 0x100000001B3 + stream * 0xD6E8FEB86659FD93) & (2**64 - 1))
    return splitmix64(key, out=out, salt=salt)


def _midpoints() -> F64:
    n = 1 << TABLE_BITS
    return (np.arange(n) + 0.5) / n


def lognormal_table(median_ms: float, sigma: float) -> I64:
    """2¹⁶ service-time quantiles (ns, ≥ 1) of a lognormal with this median and shape."""
    if not (median_ms > 0 and math.isfinite(median_ms)):
        raise ValueError(f"service median must be > 0 ms, got {median_ms}")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"service sigma must be ≥ 0, got {sigma}")
    ns = median_ms * 1e6 * np.exp(sigma * normal_quantile(_midpoints()))
    return np.maximum(np.rint(ns), 1).astype(np.int64)


def empirical_table(samples_ms: npt.ArrayLike) -> I64:
    """2¹⁶ service-time quantiles (ns, ≥ 1) of measured samples (linear interpolation)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) < 2:
        raise ValueError("an empirical service-time distribution needs ≥ 2 positive samples")
    ns = np.quantile(x, _midpoints()) * 1e6
    return np.maximum(np.rint(ns), 1).astype(np.int64)


def table_index(words: U64) -> npt.NDArray[np.intp]:
    """The table entry of each hashed word: its top 16 bits."""
    idx: npt.NDArray[np.intp] = (words >> np.uint64(64 - TABLE_BITS)).view(np.intp)  # < 2¹⁶
    return idx


def draw(table: I64, words: U64) -> I64:
    """Service times (ns) for hashed words: the table entry of each word's top 16 bits."""
    return table.take(table_index(words))


def unit(words: U64) -> F64:
    """Hashed words as uniforms in [0, 1) (53 bits)."""
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def shard_of(buyer: I64, shards: int, seed: int, out: I64 | None = None) -> I64:
    """The shard of each buyer: a hash of the buyer number, so a buyer always hits one shard
    (into ``out`` when given)."""
    if shards == 1:
        if out is None:
            return np.zeros(len(buyer), dtype=np.int64)
        out[:] = 0
        return out
    # buyer numbers are ≥ 0
    h = uniforms(buyer.view(np.uint64), seed, 7, None if out is None else out.view(np.uint64))
    if shards & (shards - 1) == 0:  # a power of two: a mask, far cheaper than a uint64 modulo
        h &= np.uint64(shards - 1)
    else:
        h %= np.uint64(shards)
    return h.view(np.int64)  # < shards: the same bits
