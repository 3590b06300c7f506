"""What happened to every order of a run, in preallocated NumPy arrays (no per-order objects).

An *attempt* is one HTTP request. Attempt ``i < n_rows`` is the first attempt of schedule row
``i``; retries of throttled orders get attempt numbers from ``n_rows`` on, up to a capacity
fixed before the run (the retrying rows times ``max_attempts − 1``). Each attempt stores its
intended, dispatched (taken by the dispatcher), sent (written to a connection) and done times
(ns from the run's start; −1 = never), the HTTP status (0 = none), its outcome code, the
reason code of that outcome (:func:`simulator.outcomes.reason_name`: "status 409", "body code
1001", "connection reset"…), and ``next_attempt`` links an attempt to its retry (−1 = none).
Per order that is 8·4 + 2 + 1 + 4 + 1 + 4 = 44 bytes, plus 48 bytes per possible retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass(slots=True)
class Recorder:
    """The per-attempt arrays of one run (or of several merged runs)."""

    n_rows: int
    intended_ns: I64
    dispatched_ns: I64
    sent_ns: I64
    done_ns: I64
    status: npt.NDArray[np.int16]
    outcome: npt.NDArray[np.uint8]
    tries: npt.NDArray[np.uint8]  # 1 for a first attempt, k for the k-th
    next_attempt: I32
    row_of_retry: I32  # retry attempt (n_rows + j) → its row, at index j
    n_attempts: int  # attempts used so far (first attempts count from the start)
    reason: I32 = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # per attempt
    reason_labels: dict[int, str] = field(default_factory=dict)  # the outcome rule's own names

    @classmethod
    def allocate(cls, intended_ns: I64, retry_capacity: int) -> Recorder:
        """Arrays for the rows with these intended times and room for ``retry_capacity`` retries."""
        n = len(intended_ns)
        cap = n + retry_capacity
        intended = np.full(cap, -1, dtype=np.int64)
        intended[:n] = intended_ns
        return cls(
            n_rows=n,
            intended_ns=intended,
            dispatched_ns=np.full(cap, -1, dtype=np.int64),
            sent_ns=np.full(cap, -1, dtype=np.int64),
            done_ns=np.full(cap, -1, dtype=np.int64),
            status=np.zeros(cap, dtype=np.int16),
            outcome=np.zeros(cap, dtype=np.uint8),
            tries=np.ones(cap, dtype=np.uint8),
            next_attempt=np.full(cap, -1, dtype=np.int32),
            row_of_retry=np.full(retry_capacity, -1, dtype=np.int32),
            n_attempts=n,
            reason=np.zeros(cap, dtype=np.int32),
        )

    @property
    def capacity(self) -> int:
        """Attempts the arrays can hold."""
        return len(self.intended_ns)

    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return sum(
            a.nbytes
            for a in (
                self.intended_ns,
                self.dispatched_ns,
                self.sent_ns,
                self.done_ns,
                self.status,
                self.outcome,
                self.tries,
                self.next_attempt,
                self.row_of_retry,
                self.reason,
            )
        )

    def trimmed(self) -> Recorder:
        """A copy without the unused retry capacity (what workers send back)."""
        m = self.n_attempts
        return Recorder(
            n_rows=self.n_rows,
            intended_ns=self.intended_ns[:m].copy(),
            dispatched_ns=self.dispatched_ns[:m].copy(),
            sent_ns=self.sent_ns[:m].copy(),
            done_ns=self.done_ns[:m].copy(),
            status=self.status[:m].copy(),
            outcome=self.outcome[:m].copy(),
            tries=self.tries[:m].copy(),
            next_attempt=self.next_attempt[:m].copy(),
            row_of_retry=self.row_of_retry[: m - self.n_rows].copy(),
            n_attempts=m,
            reason=self.reasons()[:m].copy(),
            reason_labels=dict(self.reason_labels),
        )

    def reasons(self) -> I32:
        """The per-attempt reason codes (zeros for a recorder built without them, e.g. from
        records saved before reasons were recorded)."""
        if len(self.reason) < self.capacity:
            self.reason = np.zeros(self.capacity, dtype=np.int32)
        return self.reason

    def add_retry(self, previous: int, intended_ns: int) -> int:
        """A new attempt retrying attempt ``previous``, due at ``intended_ns``; its number.

        Used by the engine and by the Locust adapter's users; −1 when the capacity is used up
        (cannot happen when it was sized by :func:`simulator.load.engine.retry_capacity`).
        """
        attempt = self.n_attempts
        if attempt >= self.capacity:
            return -1
        self.n_attempts += 1
        n = self.n_rows
        row = previous if previous < n else int(self.row_of_retry[previous - n])
        self.row_of_retry[attempt - n] = row
        self.intended_ns[attempt] = intended_ns
        self.tries[attempt] = self.tries[previous] + 1
        self.next_attempt[previous] = attempt
        return attempt

    def final_attempt(self) -> I64:
        """For every row, the attempt that decided it (its last retry, or itself)."""
        final = np.arange(self.n_rows, dtype=np.int64)
        nxt = self.next_attempt[: self.n_attempts]
        while True:  # one vectorised step per retry generation (≤ max_attempts)
            step = nxt[final]
            more = step >= 0
            if not more.any():
                return final
            final[more] = step[more]

    def row_outcomes(self) -> npt.NDArray[np.uint8]:
        """The outcome of every row: its final attempt's."""
        return self.outcome[self.final_attempt()]

    def row_of_attempt(self) -> I64:
        """For every used attempt, the schedule row it belongs to."""
        rows = np.arange(self.n_attempts, dtype=np.int64)
        rows[self.n_rows :] = self.row_of_retry[: self.n_attempts - self.n_rows]
        return rows


def merge(parts: list[Recorder]) -> Recorder:
    """Concatenate the recorders of several workers into one (rows first, then all retries).

    Row indices of the result follow the concatenation of the workers' rows; the caller
    concatenates their schedule rows in the same order.
    """
    parts = [p.trimmed() for p in parts]
    n_rows = sum(p.n_rows for p in parts)
    row_base = np.cumsum([0] + [p.n_rows for p in parts])
    retry_base = n_rows + np.cumsum([0] + [p.n_attempts - p.n_rows for p in parts])

    def remap(p: Recorder, k: int, attempt: I32) -> I32:
        """Attempt numbers of part k in the merged numbering (−1 stays −1)."""
        a = attempt.astype(np.int64)
        out = np.where(a < p.n_rows, a + row_base[k], a - p.n_rows + retry_base[k])
        return np.where(a < 0, -1, out).astype(np.int32)

    def cat(name: str) -> npt.NDArray[np.generic]:
        firsts = [getattr(p, name)[: p.n_rows] for p in parts]
        retries = [getattr(p, name)[p.n_rows :] for p in parts]
        return np.concatenate(firsts + retries)

    nxt = np.concatenate(
        [remap(p, k, p.next_attempt[: p.n_rows]) for k, p in enumerate(parts)]
        + [remap(p, k, p.next_attempt[p.n_rows :]) for k, p in enumerate(parts)]
    )
    row_of_retry = np.concatenate(
        [(p.row_of_retry + row_base[k]).astype(np.int32) for k, p in enumerate(parts)]
        or [np.empty(0, np.int32)]
    )
    return Recorder(
        n_rows=n_rows,
        intended_ns=cat("intended_ns").astype(np.int64),
        dispatched_ns=cat("dispatched_ns").astype(np.int64),
        sent_ns=cat("sent_ns").astype(np.int64),
        done_ns=cat("done_ns").astype(np.int64),
        status=cat("status").astype(np.int16),
        outcome=cat("outcome").astype(np.uint8),
        tries=cat("tries").astype(np.uint8),
        next_attempt=nxt,
        row_of_retry=row_of_retry,
        n_attempts=len(nxt),
        reason=cat("reason").astype(np.int32),
        reason_labels={k: v for p in parts for k, v in p.reason_labels.items()},
    )
