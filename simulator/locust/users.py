"""The Locust users of the open model: each takes the next order due and sends it on time.

A user is not a buyer in a closed loop (think, click, wait for the answer, think again): it is a
sender in a pool. It claims the next order of its worker's slice, sleeps until the order's
intended time, sends it, records it and claims the next one. The pool only has to be large
enough (see :func:`simulator.locust.plan.users_at`); when it is not, orders go out late and the
"order (intended)" latency shows it, as it should.

Two entries reach Locust's statistics per order: ``order (service)`` (from the actual send, as
Locust measures it) and ``order (intended)`` (from the intended send time: what a buyer waits).
Sold out is a success (a correct answer); throttled, rejected, errors and timeouts are failures.

With a journey or background streams the users work through a
:class:`~simulator.locust.journey_feed.JourneyFeed` instead: what they claim is a row (a journey's
start, a stream's request) or a step of a journey under way, and the feed decides from each
answer what comes next, by the engine's rules. Each step and stream has its two entries
(``<step> (intended)``, ``<step> (service)``); the order step keeps the orders' names.
"""

from __future__ import annotations

import ssl
import time

import gevent
from locust import FastHttpUser, constant, task

from simulator.load.transport.template import SplitRequest, split_request
from simulator.locust.feed import Claim, SliceFeed, retry_uniform
from simulator.locust.journey_feed import JourneyFeed, Send, Start
from simulator.locust.slice_state import SliceState, current
from simulator.locust.stats import INTENDED, SERVICE
from simulator.outcomes import (
    CONFIRMED,
    ERROR,
    R_CONNECT,
    R_RESET,
    R_SOCKET,
    R_TIMEOUT,
    R_TLS,
    R_UNANSWERED,
    SOLD_OUT,
    THROTTLED,
    TIMEOUT,
)
from simulator.schedule import FLAG_RETRIES

_IDLE_S = 0.05  # how long a user with nothing to send waits before looking again


class ScheduleUser(FastHttpUser):
    """One sender of the pool; sends the worker's orders at their intended times."""

    wait_time = constant(0)
    # the scenario's [run] timeouts are copied here when the locustfile loads a scenario
    network_timeout = 5.0
    connection_timeout = 2.0

    def on_start(self) -> None:
        """No cookie jar of the sender's own: cookies belong to buyers (a journey keeps each
        buyer's and sends them itself), and a user sends for many buyers."""
        self.client.cookiejar = None  # type: ignore[assignment]
        self.client.client.cookiejar = None

    @task
    def send_next(self) -> None:
        """Claim what is due next, wait for its time, send it: an order (retrying if the buyer
        would), or a journey's request or a stream's."""
        st = current(self.environment)
        feed = st.feed if st is not None else None
        if isinstance(feed, JourneyFeed):
            assert st is not None
            self._journey_next(st, feed)
            return
        claim = feed.claim() if feed is not None else None
        if st is None or feed is None or claim is None:
            gevent.sleep(_IDLE_S)
            return
        due_ns = st.t0_ns + claim.t_ns
        _wait_until(feed, claim, due_ns)
        try:
            send_order(self, st, feed, claim, due_ns)
        finally:
            feed.release()

    def _journey_next(self, st: SliceState, feed: JourneyFeed) -> None:
        claim = feed.claim()
        if claim is None:
            gevent.sleep(_IDLE_S)
            return
        _wait_until(feed, claim, st.t0_ns + claim.t_ns)
        try:
            send_journey(self, st, feed, claim)
        finally:
            feed.release()


def _wait_until(feed: SliceFeed | JourneyFeed, claim: Claim | Start | Send, due_ns: int) -> None:
    """Sleep until ``due_ns``; a user stopped while waiting gives its claim back (still to
    send)."""
    try:
        delay_s = (due_ns - time.perf_counter_ns()) / 1e9
        if delay_s > 0:
            gevent.sleep(delay_s)
    except BaseException:
        feed.give_back(claim)  # type: ignore[arg-type]  # a claim goes back where it came from
        raise


def send_order(
    user: FastHttpUser, st: SliceState, feed: SliceFeed, claim: Claim, due_ns: int
) -> None:
    """Send the claimed order now and record it in its slot as the engine does (retries are
    attempts in slots of their own).

    Times are ns from the slice's sale start: dispatched = sent = when the user sends (a user
    takes and sends at once), done = when the answer is read. The request is the one ``flashsale
    run`` sends (the scenario's :class:`~simulator.load.transport.template.RequestTemplate`) and
    its answer is classified by the same :class:`~simulator.outcomes.OutcomeRule`.
    """
    t0 = st.t0_ns
    ring = feed.ring
    request = st.template.split(claim.product, claim.order, claim.qty, claim.buyer)
    attempt = claim.slot
    if ring.sent_ns[attempt] >= 0:  # the feed handed this row out twice: an integrity failure
        feed.rows_sent_twice += 1
    while True:
        sent_ns = time.perf_counter_ns()
        ring.dispatched_ns[attempt] = ring.sent_ns[attempt] = sent_ns - t0
        try:
            status, code, reason, length = _request(user, st, request)
        except BaseException:  # stopped mid-request: the answer is never read (as a timeout)
            ring.done_ns[attempt] = time.perf_counter_ns() - t0
            ring.outcome[attempt] = TIMEOUT
            ring.reason[attempt] = R_UNANSWERED
            raise
        done_ns = time.perf_counter_ns()
        ring.status[attempt] = status
        ring.outcome[attempt] = code
        ring.reason[attempt] = reason
        ring.done_ns[attempt] = done_ns - t0
        user.environment.events.request.fire(
            request_type=st.method,
            name=INTENDED,
            response_time=(done_ns - due_ns) / 1e6,
            response_length=length,
            response=None,
            context={},
            exception=None if code in (CONFIRMED, SOLD_OUT) else st.failure(code, reason),
            url=request.target,
        )
        r = st.retry
        tries = int(ring.tries[attempt])
        if code != THROTTLED or not claim.flags & FLAG_RETRIES or tries >= r.max_attempts:
            return
        u = retry_uniform(st.seed, claim.order, claim.flags, tries)
        due_ns = done_ns + r.delay_ns(tries, u)
        of = feed.retry_of(attempt)
        try:
            gevent.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / 1e9))
        except BaseException:  # stopped while backing off: the order ends on this answer
            feed.drop_retry(of)
            raise
        attempt = feed.add_retry(of, due_ns - t0)
        ring = feed.ring  # the ring may have grown (new arrays)


def send_journey(
    user: FastHttpUser, st: SliceState, feed: JourneyFeed, claim: Start | Send
) -> None:
    """Send the claimed row or step now, and what its journey makes due at once after it
    (the next step without think time); a step due later stays in the feed for any user.

    A stream's row is its one request; a buyer's row starts its journey (its first step may
    be due later). The feed decides everything from the answers (:mod:`simulator.locust.
    journey_feed`); this sends, times and reports each request to Locust's statistics.
    """
    clock = time.perf_counter_ns
    t0 = st.t0_ns
    send: Send | None
    if isinstance(claim, Start):
        if claim.stream:
            attempt, payload = feed.stream_request(claim)
            _exchange(user, st, feed, attempt, payload)
            return
        send = feed.start(claim, clock() - t0)
    else:
        send = claim
    while send is not None:
        got = feed.request(send, clock() - t0)
        if got is None:  # a value it needs is missing: the journey ended there
            return
        send = _exchange(user, st, feed, *got)


def _exchange(
    user: FastHttpUser, st: SliceState, feed: JourneyFeed, attempt: int, payload: bytes
) -> Send | None:
    """One request of a journey or a stream, recorded in its slot like the engine's attempts
    and reported to Locust under its step's names; the journey's next request, if due now."""
    clock = time.perf_counter_ns
    t0 = st.t0_ns
    ring = feed.ring
    k = int(ring.step[attempt])
    intended_name, service_name = feed.stat_names[k]
    method = feed.methods[k]
    request = split_request(payload)
    sent_ns = clock() - t0
    ring.dispatched_ns[attempt] = ring.sent_ns[attempt] = sent_ns
    nxt: Send | None = None
    try:
        with user.client.request(
            method,
            request.target,
            data=request.body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=request.headers,
            name=service_name,
            catch_response=True,
        ) as resp:
            status = resp.status_code or 0
            done_ns = clock() - t0
            body = resp.content or b"" if status else b""
            if 0 < status < 600:
                headers = [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in (resp.headers.iterlower() if resp.headers else ())
                ]
                code, reason, nxt = feed.answered(attempt, status, headers, body, done_ns)
            else:
                code, reason = failure_of(resp.error)
                feed.failed(attempt, code, reason, done_ns)
            if code in (CONFIRMED, SOLD_OUT):
                resp.success()
            else:
                resp.failure(st.failure(code, reason))
    except BaseException:  # stopped mid-request: the answer is never read
        feed.interrupted(attempt, clock() - t0)
        raise
    user.environment.events.request.fire(
        request_type=method,
        name=intended_name,
        response_time=(done_ns - int(ring.intended_ns[attempt])) / 1e6,
        response_length=len(body),
        response=None,
        context={},
        exception=None if code in (CONFIRMED, SOLD_OUT) else st.failure(code, reason),
        url=request.target,
    )
    return nxt


def _request(
    user: FastHttpUser, st: SliceState, request: SplitRequest
) -> tuple[int, int, int, int]:
    """One HTTP request of an order: (status, outcome code, reason code, response length)."""
    with user.client.request(
        st.method,
        request.target,
        data=request.body,  # type: ignore[arg-type]  # bytes are sent as they are
        headers=request.headers,
        name=SERVICE,
        catch_response=True,
    ) as resp:
        status = resp.status_code or 0
        rule = st.rule
        if 0 < status < 600:
            if rule.reads_body(status):
                code, reason = rule.of_body(status, resp.content or b"")
            else:
                code, reason = rule.of_status(status)
        else:
            code, reason = failure_of(resp.error)
        if code in (CONFIRMED, SOLD_OUT):
            resp.success()
        else:
            resp.failure(st.failure(code, reason))
        return status, code, reason, len(resp.content or b"") if status else 0


def failure_of(error: BaseException | None) -> tuple[int, int]:
    """(outcome, reason) of a request that got no answer, from the client's exception."""
    if isinstance(error, TimeoutError):
        return TIMEOUT, R_TIMEOUT
    if isinstance(error, ConnectionRefusedError):
        return ERROR, R_CONNECT
    if isinstance(error, ConnectionResetError):
        return ERROR, R_RESET
    if isinstance(error, ssl.SSLError):
        return ERROR, R_TLS
    return ERROR, R_SOCKET
