"""How buyers retry a throttled order: the one owner of the retry rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retry:
    """How buyers react to a throttled (429/503) answer: try again after a backoff.

    Attempt k (k = 1 … max_attempts − 1) waits backoff_s·backoff_factor^(k−1), multiplied by a
    uniform factor in [1 − jitter, 1 + jitter].
    """

    share: float = 0.0  # share of buyers who retry at all
    max_attempts: int = 3  # attempts in all, the first included
    backoff_s: float = 0.2
    backoff_factor: float = 2.0
    jitter: float = 0.5
