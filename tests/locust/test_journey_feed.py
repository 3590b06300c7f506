"""The users' journey feed as plain code (no Locust process): a virtual sender works through the
seckill journey's slice (with its background streams) against answers drawn at random — errors,
throttles with Retry-After, sold out, missing values, polls that never settle, users stopped
mid-request or while waiting, a run cut short — and whatever happens, every started journey
ends exactly once, each step's tally holds exactly the requests sent for it, the rows all count
once in the orders' tally, and items are handed out in due order."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.locust.journey_feed import JourneyFeed, Send, Start
from simulator.locust.live import SliceCounts
from simulator.locust.plan import RunPlan, SliceDigest, digesting, slice_chunks
from simulator.locust.slice_state import journey_feed
from simulator.outcomes import ERROR, NOT_SENT, R_CONNECT
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
#: the seckill journey with retrying buyers (429 and 503: a new attempt after a backoff, or the
#: answer's Retry-After) and a poll that gives up after 2 looks
_TEXT = (ROOT / "scenarios" / "seckill-journey.toml").read_text().replace("max = 10", "max = 2")
_TEXT += "\n[buyers.retry]\nshare = 0.6\nmax_attempts = 3\nbackoff_s = 0.05\n"
with tempfile.TemporaryDirectory() as _d:
    (Path(_d) / "s.toml").write_text(_TEXT)
    SCENARIO = load_scenario(Path(_d) / "s.toml")
DURATION_S = 1.5

#: answers per step name: (status, body, headers), drawn at random (status 0: no answer)
ANSWERS: dict[str, list[tuple[int, bytes, list[tuple[bytes, bytes]]]]] = {
    "login": [(200, b'{"token":"t1"}', [(b"set-cookie", b"sid=abc; Path=/")])] * 6
    + [(200, b"{}", []), (500, b"", []), (0, b"", []), (429, b"", [(b"retry-after", b"1")])],
    "reserve": [(201, b'{"reservation_id":"r9"}', [])] * 6
    + [(409, b"", []), (429, b"", []), (201, b"{}", [])],
    "poll": [(200, b'{"status":"held"}', [])] * 3 + [(200, b'{"status":"pending"}', [])] * 2,
    "pay": [(200, b"{}", []), (410, b"", [])],
    "cancel": [(200, b"{}", []), (410, b"", [])],
}
STREAM_ANSWERS = [(200, b"{}", []), (503, b"", [])]


def _feed(k: int, slices: int) -> tuple[JourneyFeed, SliceDigest]:
    plan = RunPlan(1, slices, SCENARIO.scale, DURATION_S, "x")
    digest = SliceDigest()
    source = digesting(slice_chunks(SCENARIO, plan, k), digest)
    return journey_feed(SCENARIO, plan, k, source, SliceCounts(), None), digest


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    stop_s=st.one_of(st.none(), st.floats(0.2, DURATION_S + 2.0)),
    slices=st.integers(1, 3),
    fold_every=st.integers(1, 400),
)
def test_every_journey_ends_once_and_every_request_counts_once(
    seed: int, stop_s: float | None, slices: int, fold_every: int
) -> None:
    rnd = random.Random(seed)
    feed, digest = _feed(slices - 1, slices)
    names = SCENARIO.journey.names() if SCENARIO.journey else ()
    made = [0] * (len(names) + len(SCENARIO.streams))
    started = claims = interrupted = 0
    now = 0
    last_due = -1
    stop_ns = None if stop_s is None else round(stop_s * 1e9)
    while True:
        claim = feed.claim()
        if claim is None or (stop_ns is not None and now >= stop_ns):
            if claim is not None:
                feed.give_back(claim)  # its user stopped while waiting
            break
        claims += 1
        if claims % fold_every == 0:
            feed.fold(now)
        assert claim.t_ns >= last_due  # handed out in due order
        last_due = claim.t_ns
        if rnd.random() < 0.02:  # stopped while waiting: handed out again first
            feed.give_back(claim)
            assert feed.claim() == claim
        now = max(now, claim.t_ns)
        send: Send | None
        if isinstance(claim, Start):
            if claim.stream:
                attempt, payload = feed.stream_request(claim)
                made[int(feed.ring.step[attempt])] += 1
                feed.ring.dispatched_ns[attempt] = feed.ring.sent_ns[attempt] = now
                status, body, headers = rnd.choice(STREAM_ANSWERS)
                now += rnd.randrange(1, 5_000_000)
                feed.answered(attempt, status, headers, body, now)
                feed.release()
                continue
            started += 1
            send = feed.start(claim, now)
        else:
            send = claim
        while send is not None:
            got = feed.request(send, now)
            if got is None:
                break
            attempt, payload = got
            k = int(feed.ring.step[attempt])
            assert payload.startswith(SCENARIO.journey.steps[k].method.encode())  # type: ignore[union-attr]
            made[k] += 1
            feed.ring.dispatched_ns[attempt] = feed.ring.sent_ns[attempt] = now
            now += rnd.randrange(1, 20_000_000)
            if rnd.random() < 0.01:  # its user stopped mid-request
                feed.interrupted(attempt, now)
                interrupted += 1
                send = None
                break
            status, body, headers = rnd.choice(ANSWERS[names[k]])
            if status == 0:
                feed.failed(attempt, ERROR, R_CONNECT, now)
                send = None
            else:
                send = feed.answered(attempt, status, headers, body, now)[2]
        feed.release()
    feed.finish(now)
    j, tally = feed.journeys, feed.tally
    rows = digest.rows  # (finish took the rest of the slice through the digest)
    assert feed.busy == 0 and feed.live == 0
    # every started journey ended once, in one terminal state
    assert j.started == started == j.ended() == sum(j.terminals().values())
    # each step's and stream's tally holds exactly the requests sent for it
    per = [*j.steps, *j.streams]
    for k, t in enumerate(per):
        assert t.sent == t.attempts == made[k] == int(t.attempt_outcomes.sum()), names
    # every buyer row of the slice counts once in the orders, decided or not sent
    assert tally.scheduled == rows == int(tally.row_outcomes.sum())
    assert int(feed.counts.outcomes.sum()) == rows
    if stop_ns is None:  # nothing stopped but the journeys whose user was
        assert j.terminals()["stopped"] == interrupted
    else:
        assert j.terminals()["stopped"] >= interrupted
    assert tally.row_outcomes[NOT_SENT] >= 0


def test_a_slice_takes_its_rows_and_the_same_draws_as_the_engine() -> None:
    """Worker k's rows carry the think times and step choices of their global row numbers."""
    from simulator.load.journey import takes, think_ns

    feed, _ = _feed(1, 2)
    assert SCENARIO.journey is not None
    seen = []
    while (claim := feed.claim()) is not None:
        if isinstance(claim, Start) and claim.stream == 0:
            seen.append(claim)
        feed.release()
    rows = np.array([c.row for c in seen], dtype=np.int64)
    assert (rows == 1 + 2 * np.arange(len(rows))).all()
    assert [c.think for c in seen] == think_ns(SCENARIO.journey, SCENARIO.seed, rows).tolist()
    assert [c.take for c in seen] == takes(SCENARIO.journey, SCENARIO.seed, rows).tolist()
