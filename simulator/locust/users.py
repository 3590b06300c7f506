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

import random
import time
from typing import TYPE_CHECKING, Any

import gevent
from locust import FastHttpUser, constant, task

from simulator.locust.results import (
    CANCELLED,
    CONFIRMED,
    ERROR,
    OUTCOMES,
    SOLD_OUT,
    THROTTLED,
    TIMEOUT,
)
from simulator.schedule import FLAG_RETRIES

if TYPE_CHECKING:
    from simulator.locust.run import SliceState

#: request names in Locust's statistics
INTENDED = "order (intended)"
SERVICE = "order (service)"
_IDLE_S = 0.05  # how long a user with nothing to send waits before looking again


class OrderFailed(Exception):
    """An order's outcome that Locust should count as a failure (e.g. "throttled (429)")."""


def state_of(environment: Any) -> SliceState | None:
    """The running slice of this process, if a run is on (set by the locustfile's events)."""
    run = getattr(environment, "flashsale_run", None)
    return run.slice if run is not None else None


class ScheduleUser(FastHttpUser):
    """One sender of the pool; sends the worker's orders at their intended times."""

    wait_time = constant(0)
    # the scenario's [run] timeouts are copied here when the locustfile loads a scenario
    network_timeout = 5.0
    connection_timeout = 2.0

    @task
    def send_next(self) -> None:
        """Claim the next order, wait for its time, send it (retrying if the buyer would)."""
        st = state_of(self.environment)
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
    """Send row ``i`` of the slice now, record its outcome and report both latencies."""
    book, rec = st.book, st.recorder
    body = book.body(i)
    sent_ns = time.perf_counter_ns()
    attempts = 0
    status = 0
    code = ERROR
    length = 0
    try:
        while True:
            attempts += 1
            rec.sends += 1
            with user.client.request(
                st.method,
                st.path,
                data=body,  # type: ignore[arg-type]  # bytes are sent as they are
                headers=st.headers,
                name=SERVICE,
                catch_response=True,
            ) as resp:
                status = resp.status_code or 0
                if status:
                    code = st.code_of.get(status, ERROR)
                else:
                    code = TIMEOUT if isinstance(resp.error, TimeoutError) else ERROR
                length = len(resp.content or b"") if status else 0
                if code in (CONFIRMED, SOLD_OUT):
                    resp.success()
                else:
                    resp.failure(OrderFailed(f"{OUTCOMES[code]} ({status})"))
            if code != THROTTLED or not book.flags[i] & FLAG_RETRIES:
                break
            if attempts >= st.retry.max_attempts:
                break
            r = st.retry
            backoff = r.backoff_s * r.backoff_factor ** (attempts - 1)
            gevent.sleep(backoff * (1 + r.jitter * (2 * random.random() - 1)))
    except BaseException:  # stopped mid-request: the answer will never be read
        rec.record(i, sent_ns - st.t0_ns, time.perf_counter_ns() - st.t0_ns, 0, CANCELLED, attempts)
        raise
    done_ns = time.perf_counter_ns()
    rec.record(i, sent_ns - st.t0_ns, done_ns - st.t0_ns, status, code, attempts)
    if code == CONFIRMED:
        rec.confirm(book.order[i], book.product[i], book.qty[i])
    user.environment.events.request.fire(
        request_type=st.method,
        name=INTENDED,
        response_time=(done_ns - due_ns) / 1e6,
        response_length=length,
        response=None,
        context={},
        exception=None
        if code in (CONFIRMED, SOLD_OUT)
        else OrderFailed(f"{OUTCOMES[code]} ({status})"),
        url=st.path,
    )
