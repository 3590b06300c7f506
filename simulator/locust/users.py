"""The Locust users of the open model: each takes the next order due and sends it on time.

A user is not a buyer in a closed loop (think, click, wait for the answer, think again): it is a
sender in a pool. It claims the next order of its worker's slice, sleeps until the order's
intended time, sends it, records it and claims the next one. The pool only has to be large
enough (see :func:`simulator.locust.plan.users_at`); when it is not, orders go out late and the
"order (intended)" latency shows it, as it should.

Two entries reach Locust's statistics per order: ``order (service)`` (from the actual send, as
Locust measures it) and ``order (intended)`` (from the intended send time: what a buyer waits).
Sold out is a success (a correct answer); throttled, rejected, errors and timeouts are failures.
"""

from __future__ import annotations

import ssl
import time

import gevent
import numpy as np
from locust import FastHttpUser, constant, task

from simulator.load.transport.template import SplitRequest
from simulator.locust.feed import Claim, SliceFeed
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

    @task
    def send_next(self) -> None:
        """Claim the next order, wait for its time, send it (retrying if the buyer would)."""
        st = current(self.environment)
        feed = st.feed if st is not None else None
        claim = feed.claim() if feed is not None else None
        if st is None or feed is None or claim is None:
            gevent.sleep(_IDLE_S)
            return
        due_ns = st.t0_ns + claim.t_ns
        try:
            delay_s = (due_ns - time.perf_counter_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
        except BaseException:  # stopped while waiting: the order is still to send
            feed.give_back(claim)
            raise
        try:
            send_order(self, st, feed, claim, due_ns)
        finally:
            feed.release()


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
        # the same scenario and seed give the same delays: a draw per (order, flags, retry)
        u = np.random.default_rng([st.seed, claim.order, claim.flags, tries]).random()
        due_ns = done_ns + r.delay_ns(tries, u)
        of = feed.retry_of(attempt)
        try:
            gevent.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / 1e9))
        except BaseException:  # stopped while backing off: the order ends on this answer
            feed.drop_retry(of)
            raise
        attempt = feed.add_retry(of, due_ns - t0)
        ring = feed.ring  # the ring may have grown (new arrays)


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
