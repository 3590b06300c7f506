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

import time

import gevent
import numpy as np
from locust import FastHttpUser, constant, task

from simulator.locust.slice_state import SliceState, current
from simulator.locust.stats import INTENDED, SERVICE, OrderFailed
from simulator.outcomes import CONFIRMED, ERROR, OUTCOME_NAMES, SOLD_OUT, THROTTLED, TIMEOUT
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
        i = st.dispatcher.claim() if st is not None else -1
        if st is None or i < 0:
            gevent.sleep(_IDLE_S)
            return
        due_ns = st.t0_ns + st.book.t_ns[i]
        try:
            delay_s = (due_ns - time.perf_counter_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
        except BaseException:  # stopped while waiting: the order is still to send
            st.dispatcher.give_back(i)
            raise
        send_order(self, st, i, due_ns)


def send_order(user: FastHttpUser, st: SliceState, i: int, due_ns: int) -> None:
    """Send row ``i`` of the slice now and record it as the engine does (retries are attempts).

    Times go into the recorder as ns from the slice's sale start: dispatched = sent = when the
    user sends (a user takes and sends at once), done = when the answer is read.
    """
    rec, t0 = st.recorder, st.t0_ns
    body = st.book.body(i)
    if rec.sent_ns[i] >= 0:  # the dispatcher handed this row out twice: an integrity failure
        st.rows_sent_twice += 1
    attempt = i
    while True:
        sent_ns = time.perf_counter_ns()
        rec.dispatched_ns[attempt] = rec.sent_ns[attempt] = sent_ns - t0
        try:
            status, code, length = _request(user, st, body)
        except BaseException:  # stopped mid-request: the answer is never read (as a timeout)
            rec.done_ns[attempt] = time.perf_counter_ns() - t0
            rec.outcome[attempt] = TIMEOUT
            raise
        done_ns = time.perf_counter_ns()
        rec.done_ns[attempt] = done_ns - t0
        rec.status[attempt] = status
        rec.outcome[attempt] = code
        user.environment.events.request.fire(
            request_type=st.method,
            name=INTENDED,
            response_time=(done_ns - due_ns) / 1e6,
            response_length=length,
            response=None,
            context={},
            exception=None if code in (CONFIRMED, SOLD_OUT) else _failure(code, status),
            url=st.path,
        )
        r = st.retry
        tries = int(rec.tries[attempt])
        if code != THROTTLED or not st.book.flags[i] & FLAG_RETRIES or tries >= r.max_attempts:
            return
        # the same scenario and seed give the same delays: a draw per (order, flags, retry)
        u = np.random.default_rng([st.seed, st.book.order[i], st.book.flags[i], tries]).random()
        due_ns = done_ns + r.delay_ns(tries, u)
        gevent.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / 1e9))
        attempt = rec.add_retry(attempt, due_ns - t0)
        if attempt < 0:
            return


def _request(user: FastHttpUser, st: SliceState, body: bytes) -> tuple[int, int, int]:
    """One HTTP request of an order: (status, outcome code, response length)."""
    with user.client.request(
        st.method,
        st.path,
        data=body,  # type: ignore[arg-type]  # bytes are sent as they are
        headers=st.headers,
        name=SERVICE,
        catch_response=True,
    ) as resp:
        status = resp.status_code or 0
        if 0 < status < 600:
            code = st.table[status]
        else:
            code = TIMEOUT if isinstance(resp.error, TimeoutError) else ERROR
        if code in (CONFIRMED, SOLD_OUT):
            resp.success()
        else:
            resp.failure(_failure(code, status))
        return status, code, len(resp.content or b"") if status else 0


def _failure(code: int, status: int) -> OrderFailed:
    return OrderFailed(f"{OUTCOME_NAMES[code]} ({status})")
