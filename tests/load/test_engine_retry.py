"""The engine's retries follow the one retry rule with its own seeded draws."""

from __future__ import annotations

import numpy as np
import uvloop

from simulator.load.engine import EngineConfig, Run, retry_capacity
from simulator.load.transport import parse_endpoint
from simulator.load.transport.lean import LeanTransport
from simulator.records import MemoryRecords
from simulator.retry import Retry
from simulator.scenario import Target

from .conftest import constant_rows


def test_engine_backoffs_are_the_rule_applied_to_its_seeded_draws(fake_store) -> None:
    url, _ = fake_store("throttle", ("a=1000", "b=1000"))
    rows = constant_rows(120, 1_000_000, flags=2)  # FLAG_RETRIES on every order
    retry = Retry(share=1.0, max_attempts=2, backoff_s=0.01, backoff_factor=3.0, jitter=0.8)
    cfg = EngineConfig(timeout_s=2.0, drain_s=2.0, retry=retry, seed=11, worker=2)
    t = LeanTransport(parse_endpoint(url), Target(), ("a", "b"), 8, 2.0, 1.0)
    records = MemoryRecords()
    result = uvloop.run(Run(rows, t, cfg, records).execute())
    rec = records.arrays(("a", "b"))
    assert result.tally.attempts == 240  # every order throttled once, then confirmed
    first, again = rec["try"] == 1, rec["try"] == 2
    done_first = rec["done_ns"][first][np.argsort(rec["row"][first])]
    # worker k's record numbers are the schedule's rows: k, k + N, … (here N = 1)
    gaps = rec["intended_ns"][again] - done_first[rec["row"][again] - cfg.worker]
    # throttled answers take draws in the order they come back: compare as multisets
    cap = retry_capacity(rows, retry)
    u = np.random.default_rng([11, 2, 0x5E7]).random(cap)[:120]
    expected = [retry.delay_ns(1, float(x)) for x in u]
    assert sorted(gaps.tolist()) == sorted(expected)
    assert retry.delay_ns(np.ones(120, np.int64), u).tolist() == expected  # as the model asks


def test_a_retry_waits_at_least_what_retry_after_asks(fake_store) -> None:
    url, _ = fake_store("throttle-wait", ("a=1000", "b=1000"))
    rows = constant_rows(40, 5_000_000, flags=2)
    retry = Retry(share=1.0, max_attempts=2, backoff_s=0.01, jitter=0.5)  # 10–15 ms by the rule
    cfg = EngineConfig(timeout_s=2.0, drain_s=3.0, retry=retry)
    t = LeanTransport(parse_endpoint(url), Target(), ("a", "b"), 8, 2.0, 1.0, retry_after=True)
    records = MemoryRecords()
    result = uvloop.run(Run(rows, t, cfg, records).execute())
    rec = records.arrays(("a", "b"))
    assert result.tally.attempts == 80 and int(result.tally.row_outcomes[1]) == 40
    first, again = rec["try"] == 1, rec["try"] == 2
    done_first = rec["done_ns"][first][np.argsort(rec["row"][first])]
    gaps = rec["intended_ns"][again] - done_first[rec["row"][again]]
    assert (gaps >= 1_000_000_000).all() and (gaps < 1_100_000_000).all()  # Retry-After: 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    import email.utils
    import time

    from simulator.load.transport.lean import retry_after_seconds

    assert retry_after_seconds(b"2") == 2.0 and retry_after_seconds(b" 0 ") == 0.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True).encode()
    assert 28 < retry_after_seconds(soon) <= 30
    assert retry_after_seconds(b"soon") == -1.0 and retry_after_seconds(b"-3") == -1.0
