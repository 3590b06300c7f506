"""The range every number in a scenario may take, and why its upper end is where it is.

A value outside its range is refused where it is parsed (a scenario key or a command-line flag),
so that nothing later allocates, overflows or waits on it. The upper ends are generous for a real
sale (Alibaba's 11.11 peak was 583,000 orders/s in 2020) and small enough that every derived size
(order counts, nanosecond timestamps, array lengths) stays within what the code can hold; the
size of the work as a whole (orders over the duration, memory) is checked by
:mod:`simulator.schedule` before a schedule is generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the largest integer the stores (Redis, PostgreSQL bigint) and NumPy int64 arrays hold
MAX_INT64 = 2**63 - 1
#: the longest sale or run: a day, as 11.11 itself (arrays per 10 ms of the sale stay < 100 MB)
MAX_DURATION_S = 24 * 3600.0
#: the most SKUs a scenario may list or generate (each costs memory in every array per SKU)
MAX_SKUS = 100_000
#: the most products with a demand curve of their own (each is drawn separately every second)
MAX_CURVED_PRODUCTS = 1_000


def _fmt(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True, slots=True)
class Range:
    """The closed range [lo, hi] of one kind of number (lo excluded when ``lo_open``).

    ``why`` says where ``hi`` comes from; it is part of the message when a value is too big.
    """

    lo: float
    hi: float
    lo_open: bool = False
    why: str = ""

    def problem(self, value: float) -> str | None:
        """None when ``value`` is in range, else what is wrong with it ("must be …, got …")."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.lo_open and value <= self.lo:
            return f"must be > {_fmt(self.lo)}, got {_fmt(value)}"
        if value < self.lo:
            return f"must be ≥ {_fmt(self.lo)}, got {_fmt(value)}"
        if value > self.hi:
            why = f" ({self.why})" if self.why else ""
            return f"must be ≤ {_fmt(self.hi)}{why}, got {_fmt(value)}"
        return None


_DAY = "one day"
SEED = Range(0, MAX_INT64, why="2**63 - 1, a signed 64-bit integer")
DURATION_S = Range(0.0, MAX_DURATION_S, lo_open=True, why=_DAY)
TIME_S = Range(0.0, MAX_DURATION_S, why=_DAY)
SPAN_S = Range(0.0, MAX_DURATION_S, lo_open=True, why=_DAY)
SCALE = Range(0.0, 1000.0, lo_open=True, why="a thousand times the file's own sale")
RATE_PER_S = Range(0.0, 1e7, why="17 times the largest sale on record, 583,000 orders/s")
STOCK = Range(0, MAX_INT64, why="2**63 - 1, what Redis and PostgreSQL hold")
PER_BUYER_LIMIT = Range(0, MAX_INT64, why="2**63 - 1")
PRICE = Range(0.0, 1e12)
WEIGHT = Range(0.0, 1e12)
WAVES_COUNT = Range(1, 1000)
CATALOG_COUNT = Range(1, MAX_SKUS, why="the most SKUs a scenario may have")
ZIPF_S = Range(0.0, 10.0)
QTY = Range(1, 65535, why="a 16-bit quantity")
QTY_VALUES = Range(1, 1000, why="distinct quantities")
SHARE = Range(0.0, 1.0)
#: any finite number here: demand.Bursts says "must be in [0, 1)" itself
BRANCHING = Range(0.0, math.inf)
DELAY_S = Range(0.0, 3600.0, why="one hour")
MAX_ATTEMPTS = Range(1, 100)
BACKOFF_S = Range(0.0, 3600.0, why="one hour")
BACKOFF_FACTOR = Range(1.0, 10.0)
CONNECTIONS = Range(1, 100_000)
TIMEOUT_S = Range(0.0, 3600.0, lo_open=True, why="one hour")
DRAIN_S = Range(0.0, 3600.0, why="one hour")
WORKERS = Range(1, 1024)
SERVICE_TIME_MS = Range(0.0, 60_000.0, why="one minute")
SIGMA = Range(0.0, 10.0)
MAX_CONCURRENCY = Range(0, 1_000_000)
RESERVATION_TTL_S = Range(0.0, MAX_DURATION_S, lo_open=True, why=_DAY)
ADMITTED = Range(0, 10_000_000, why="buyers")
SESSION_S = Range(0.0, MAX_DURATION_S, lo_open=True, why=_DAY)
#: a journey: its steps, a step's think time, a polling step's interval and requests
JOURNEY_STEPS = Range(1, 32, why="steps per journey")
THINK_S = Range(0.0, 3600.0, why="one hour")
POLL_EVERY_S = Range(0.0, 3600.0, lo_open=True, why="one hour")
POLL_MAX = Range(1, 10_000, why="requests per polling step")
#: background streams of a scenario (each is drawn every second of the sale)
STREAMS = Range(0, 16, why="streams per scenario")
