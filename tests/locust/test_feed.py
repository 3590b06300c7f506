"""The users' feed (no Locust process): each row of the slice handed out once, in time order,
block by block; attempts kept in recycled slots and folded into the tally, so what a worker
holds does not grow with the length of the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.load.slots import SlotRing
from simulator.locust.feed import SliceFeed
from simulator.locust.live import SliceCounts
from simulator.locust.plan import RunPlan, SliceDigest, digesting, slice_chunks
from simulator.outcomes import CONFIRMED, NOT_SENT, SOLD_OUT, THROTTLED
from simulator.scenario import load_scenario
from simulator.schedule import build_schedule

FLAT = """
name = "flat"
seed = 3
duration_s = {seconds}
[[products]]
id = "a"
stock = 1000000
[demand]
baseline_per_s = {rate}
[run]
drain_s = 1.0
"""


def _feed(tmp_path: Path, seconds: float, rate: float = 200.0, slices: int = 1, k: int = 0):
    path = tmp_path / f"flat-{seconds}.toml"
    path.write_text(FLAT.format(seconds=seconds, rate=rate))
    scenario = load_scenario(path)
    plan = RunPlan(1, slices, scenario.scale, None, "x")
    digest = SliceDigest()
    feed = SliceFeed(
        digesting(slice_chunks(scenario, plan, k), digest), k, slices, SliceCounts(), None
    )
    return scenario, feed, digest


def _answer(feed: SliceFeed, slot: int, t_ns: int, outcome: int = SOLD_OUT) -> None:
    ring = feed.ring
    ring.dispatched_ns[slot] = ring.sent_ns[slot] = t_ns
    ring.outcome[slot] = outcome
    ring.status[slot] = 201 if outcome == CONFIRMED else 409
    ring.done_ns[slot] = t_ns + 1_000_000


def test_rows_are_handed_out_once_in_time_order_given_back_first(tmp_path: Path) -> None:
    scenario, feed, digest = _feed(tmp_path, 3.0, slices=2, k=1)
    whole = build_schedule(scenario).materialize()[1::2]
    first = feed.claim()
    second = feed.claim()
    assert first is not None and second is not None
    feed.give_back(first)
    again = feed.claim()
    assert again == first  # handed out again before any other
    feed.release()
    feed.release()
    claims = [first, second]
    while (c := feed.claim()) is not None:
        claims.append(c)
        feed.release()
    assert feed.exhausted and feed.settled
    assert [c.order for c in claims] == whole["order"].tolist()
    assert [c.t_ns for c in claims] == whole["t_ns"].tolist()
    assert digest.rows == len(whole)
    # the slots of the ring hold the rows' global numbers (worker 1 of 2: 1, 3, 5, …)
    ring = feed.ring
    assert ring.arrays["row"][claims[1].slot] == 3


def test_a_run_cut_short_counts_every_row_of_the_slice(tmp_path: Path) -> None:
    _, feed, digest = _feed(tmp_path, 5.0)
    n_sent = 0
    while n_sent < 100 and (c := feed.claim()) is not None:
        _answer(feed, c.slot, c.t_ns)
        feed.release()
        n_sent += 1
    held = feed.claim()  # a user holds this one when the run stops: never sent
    assert held is not None
    feed.give_back(held)
    feed.finish(10**12)
    t = feed.tally
    assert t.scheduled == digest.rows > 100  # the rest of the slice was taken, as never sent
    assert t.row_outcomes[SOLD_OUT] == 100
    assert t.row_outcomes[NOT_SENT] == digest.rows - 100
    assert feed.counts.outcomes[NOT_SENT] == digest.rows - 100


def test_a_retry_is_its_own_attempt_and_a_dropped_one_ends_its_order(tmp_path: Path) -> None:
    _, feed, _ = _feed(tmp_path, 1.0, rate=50.0)
    a, b = feed.claim(), feed.claim()
    assert a is not None and b is not None
    _answer(feed, a.slot, a.t_ns, THROTTLED)
    of = feed.retry_of(a.slot)
    retry = feed.add_retry(of, a.t_ns + 5_000_000)
    _answer(feed, retry, a.t_ns + 5_000_000, CONFIRMED)
    _answer(feed, b.slot, b.t_ns, THROTTLED)
    feed.drop_retry(feed.retry_of(b.slot))  # its user was stopped while backing off
    while (c := feed.claim()) is not None:
        _answer(feed, c.slot, c.t_ns)
    feed.finish(10**12)
    t = feed.tally
    assert t.retries == 1 and t.attempts == t.scheduled + 1
    assert t.row_outcomes[CONFIRMED] == 1 and t.row_outcomes[THROTTLED] == 1
    assert int(t.row_outcomes.sum()) == t.scheduled
    assert t.hist("order", CONFIRMED).total == 1
    assert t.hist("order", CONFIRMED).max_ns == 6_000_000  # the buyer's whole wait


def _drive(feed: SliceFeed) -> int:
    """Send and answer every row at its time, folding as the node's greenlet does (every
    0.25 s of the sale); the most slots the ring held."""
    most = 0
    next_fold = 0
    while (c := feed.claim()) is not None:
        _answer(feed, c.slot, c.t_ns)
        feed.release()
        if c.t_ns >= next_fold:
            feed.fold(c.t_ns + 1_000_000)
            next_fold = c.t_ns + 250_000_000
            most = max(most, feed.ring.nbytes())
    feed.finish(10**13)
    return max(most, feed.ring.nbytes())


def test_what_a_worker_holds_does_not_grow_with_the_run(tmp_path: Path) -> None:
    _, short, _ = _feed(tmp_path, 10.0, rate=3000.0)
    _, long, _ = _feed(tmp_path, 60.0, rate=3000.0)
    short_slots, long_slots = _drive(short), _drive(long)
    assert long.tally.scheduled > 5 * short.tally.scheduled
    # the same recycled slots for 30,000 or 180,000 orders: the ring never grew
    assert long_slots == short_slots == SlotRing().nbytes()
    # the tally grows with the seconds (per-second counts), not with the orders
    assert np.count_nonzero(long.tally.intended_per_s) == 60
