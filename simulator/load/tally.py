"""A run's numbers as mergeable histograms and counters: what a worker hands back, of any length.

:class:`Tally` takes finished attempts in NumPy batches (:meth:`Tally.fold`, never one Python
call per order) and keeps, for the whole run, one :class:`~simulator.histogram.Histogram` per
latency kind and outcome (``intended``, ``service``, ``dispatch_lag``, ``queue_wait``, ``order``;
0.098 % resolution from 1 µs on), per-second counts (due, sent, answered, outcomes), per-second
histograms of the intended-time latency (by second due) and service time (by second sent), and
the confirmed orders (order id, product, units, time: bounded by the stock, they make the
audit's client view exact). Failed orders' ids are kept for the ledger check (lost vs phantom).
Attempts are also counted per (outcome, reason code) (:func:`simulator.outcomes.reason_name`),
so that a report says why its errors happened.
Its size grows with the seconds of a run (a few kB each), not with its orders; two tallies merge
by adding counts (:meth:`Tally.merge`), exactly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.histogram import LIVE, Histogram, Scale
from simulator.load.recorder import Recorder
from simulator.outcomes import CONFIRMED, ERROR, NOT_SENT, OUTCOME_NAMES, TIMEOUT, reason_name

I64 = npt.NDArray[np.int64]
NS_PER_S = 1_000_000_000
KINDS = ("intended", "service", "dispatch_lag", "queue_wait", "order")
N_OUTCOMES = len(OUTCOME_NAMES)
#: pending per-second keys are consolidated when this many have piled up
CONSOLIDATE_AT = 1 << 16


def _grow(a: I64, n: int) -> I64:
    """``a`` extended with zeros to at least ``n`` entries along its last axis."""
    if a.shape[-1] >= n:
        return a
    out = np.zeros((*a.shape[:-1], max(n, 2 * a.shape[-1])), dtype=a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def _bump(a: I64, seconds: I64) -> I64:
    """Count each second in ``a`` (grown as needed); returns the (possibly new) array."""
    if len(seconds) == 0:
        return a
    counts = np.bincount(seconds)
    a = _grow(a, len(counts))
    a[: len(counts)] += counts
    return a


#: a spilled second's record: its second and number of buckets, then the bucket indexes
#: (uint16) and their counts (int64)
_RECORD = np.dtype([("second", "<i8"), ("n", "<i8")])


@dataclass(slots=True, weakref_slot=True)
class SecondHistograms:
    """One sparse histogram per second (bucket index, count), with exact per-second max and min.

    Values arrive in batches as (second, value) pairs; their bucket keys pile up and are
    consolidated per second now and then. A second's histogram holds only its non-empty buckets.

    With ``hold_s`` > 0 (the engine's runs) memory holds only the seconds near the newest one:
    older seconds are spilled to a temporary file as they are consolidated (10 bytes a bucket),
    so a run's memory does not grow with its length; a late value for a spilled second is
    another record of it, added up when read. The file goes with the object (pickled by path,
    to a process on the same machine) and is deleted with the last one holding it, or when
    merged into another.
    """

    scale: Scale = LIVE
    per_second: dict[int, tuple[I64, I64]] = field(default_factory=dict)
    pending: list[I64] = field(default_factory=list)
    n_pending: int = 0
    max_ns: I64 = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))
    min_ns: I64 = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))
    hold_s: int = 0  # seconds kept in memory behind the newest; 0: never spill
    newest_s: int = -1
    spill_path: str | None = None
    _cleanup: Any = None

    def add(self, seconds: I64, values_ns: I64) -> None:
        """Count ``values_ns[i]`` in second ``seconds[i]`` (seconds ≥ 0)."""
        if len(seconds) == 0:
            return
        v = np.maximum(values_ns, 0)
        self.pending.append(seconds * self.scale.n_buckets + self.scale.index(v))
        self.n_pending += len(seconds)
        n = int(seconds.max()) + 1
        self.newest_s = max(self.newest_s, n - 1)
        if len(self.max_ns) < n:
            self.max_ns = _grow_fill(self.max_ns, n)
            self.min_ns = _grow_fill(self.min_ns, n)
        np.maximum.at(self.max_ns, seconds, v)
        big = np.iinfo(np.int64).max
        lo = np.where(self.min_ns < 0, big, self.min_ns)
        np.minimum.at(lo, seconds, v)
        self.min_ns = np.where(lo == big, -1, lo)
        if self.n_pending >= CONSOLIDATE_AT:
            self.consolidate()

    def consolidate(self) -> None:
        """Fold the pending keys into the per-second histograms (and spill old seconds)."""
        if self.pending:
            keys = np.concatenate(self.pending)
            self.pending, self.n_pending = [], 0
            lo = int(keys.min())
            span = int(keys.max()) - lo + 1
            if span <= 4 * len(keys):  # a few seconds' buckets: counted, not sorted (~10×)
                per = np.bincount(keys - lo)
                at = np.flatnonzero(per)
                keys, counts = at + lo, per[at]
            else:
                keys, counts = np.unique(keys, return_counts=True)
            self._merge_keys(keys, counts.astype(np.int64))
        self._spill()

    def _merge_keys(self, keys: I64, counts: I64) -> None:
        nb = self.scale.n_buckets
        sec = keys // nb
        cuts = np.flatnonzero(np.diff(sec)) + 1
        for ks, cs in zip(np.split(keys, cuts), np.split(counts, cuts), strict=True):
            s = int(ks[0] // nb)
            self._add_second(s, ks - s * nb, cs)

    def _add_second(self, s: int, idx: I64, cs: I64) -> None:
        old = self.per_second.get(s)
        if old is not None:
            idx, inv = np.unique(np.concatenate([old[0], idx]), return_inverse=True)
            cs = np.bincount(inv, weights=np.concatenate([old[1], cs])).astype(np.int64)
        self.per_second[s] = (idx.astype(np.int64), cs.astype(np.int64))

    # -- spilling ------------------------------------------------------------------------------

    def _spill(self) -> None:
        """Write the seconds older than ``hold_s`` behind the newest to the file (records)."""
        if self.hold_s <= 0 or len(self.per_second) <= self.hold_s:
            return
        cut = self.newest_s - self.hold_s
        old = sorted(s for s in self.per_second if s < cut)
        if not old:
            return
        with open(self._file(), "ab") as f:
            for s in old:
                idx, cs = self.per_second.pop(s)
                head = np.array([(s, len(idx))], dtype=_RECORD)
                f.write(head.tobytes() + idx.astype("<u2").tobytes() + cs.astype("<i8").tobytes())

    def _file(self) -> str:
        if self.spill_path is None:
            fd, path = tempfile.mkstemp(prefix="flashsale-seconds-", suffix=".bin")
            os.close(fd)
            self.spill_path = path
            self._cleanup = weakref.finalize(self, _unlink, path)
        return self.spill_path

    def _index(self) -> dict[int, list[tuple[int, int]]]:
        """Second → (file offset, buckets) of each of its spilled records (headers only)."""
        out: dict[int, list[tuple[int, int]]] = {}
        if self.spill_path is None:
            return out
        head = _RECORD.itemsize
        with open(self.spill_path, "rb") as f:
            at = 0
            while True:
                raw = f.read(head)
                if len(raw) < head:
                    return out
                rec = np.frombuffer(raw, dtype=_RECORD)[0]
                s, n = int(rec["second"]), int(rec["n"])
                out.setdefault(s, []).append((at + head, n))
                at += head + 10 * n
                f.seek(at)

    def seconds(self) -> Iterator[tuple[int, I64, I64]]:
        """Every second's histogram (bucket indexes, counts), in second order, spilled ones
        included: read back one second at a time (memory holds one second, not the file)."""
        self.consolidate()
        index = self._index()
        path = self.spill_path
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(path, "rb")) if index and path is not None else None
            for s in sorted(set(index) | set(self.per_second)):
                parts: list[tuple[I64, I64]] = []
                for at, n in index.get(s, ()):
                    assert f is not None
                    f.seek(at)
                    idx = np.frombuffer(f.read(2 * n), dtype="<u2").astype(np.int64)
                    cs = np.frombuffer(f.read(8 * n), dtype="<i8").astype(np.int64)
                    parts.append((idx, cs))
                if s in self.per_second:
                    parts.append(self.per_second[s])
                if len(parts) == 1:
                    yield s, parts[0][0], parts[0][1]
                    continue
                idx, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
                cs = np.bincount(inv, weights=np.concatenate([p[1] for p in parts]))
                yield s, idx, cs.astype(np.int64)

    def discard(self) -> None:
        """Forget the spilled seconds (their file is deleted)."""
        if self._cleanup is not None:
            self._cleanup()
        self._cleanup = None
        self.spill_path = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its file's path: the receiver (on this machine) owns the file now."""
        self.consolidate()
        if self._cleanup is not None:
            self._cleanup.detach()
            self._cleanup = None
        return {
            name: getattr(self, name)
            for name in self.__slots__
            if name not in ("_cleanup", "__weakref__")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._cleanup = None
        if self.spill_path is not None:
            self._cleanup = weakref.finalize(self, _unlink, self.spill_path)

    def nbytes(self) -> int:
        """Memory held by the seconds in memory (the spilled ones are on disk)."""
        self.consolidate()
        return sum(a.nbytes + b.nbytes for a, b in self.per_second.values())

    # -- merging and reading -------------------------------------------------------------------

    def merge(self, other: SecondHistograms) -> None:
        """Add another's counts (same scale); its spilled seconds are read and its file deleted."""
        other.consolidate()
        self.hold_s = self.hold_s or other.hold_s  # a spilling part's merge spills too
        for s, idx, cs in other.seconds():
            self._add_second(s, idx, cs)
            self.newest_s = max(self.newest_s, s)
            self._spill()
        other.discard()
        n = len(other.max_ns)
        self.max_ns = _grow_fill(self.max_ns, n)
        self.min_ns = _grow_fill(self.min_ns, n)
        self.max_ns[:n] = np.maximum(self.max_ns[:n], other.max_ns)
        both = (self.min_ns[:n] >= 0) & (other.min_ns >= 0)
        self.min_ns[:n] = np.where(
            both,
            np.minimum(self.min_ns[:n], other.min_ns),
            np.maximum(self.min_ns[:n], other.min_ns),
        )

    def quantiles(self, n: int, qs: tuple[float, ...]) -> list[list[float | None]]:
        """Per second 0…n−1, each quantile (0…1; 1.0 is the exact max) in ms; None when empty."""
        out: list[list[float | None]] = [[None] * n for _ in qs]
        for s, idx, cs in self.seconds():
            if not 0 <= s < n:
                continue
            order = np.argsort(idx)
            idx, cum = idx[order], np.cumsum(cs[order])
            total = int(cum[-1])
            lo, hi = int(self.min_ns[s]), int(self.max_ns[s])
            for k, q in enumerate(qs):
                if q >= 1.0:
                    v = float(hi)
                else:  # lower nearest rank, as the exact per-second quantiles were
                    rank = int(np.floor(q * (total - 1))) + 1
                    b = int(np.searchsorted(cum, rank, side="left"))
                    v = min(max(float(self.scale.mid(idx[b : b + 1])[0]), lo), hi)
                out[k][s] = round(v / 1e6, 4)
        return out


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _grow_fill(a: I64, n: int) -> I64:
    if len(a) >= n:
        return a
    out = np.full(n, -1, dtype=np.int64)
    out[: len(a)] = a
    return out


@dataclass(slots=True, repr=False)
class Tally:
    """Counts and histograms of a run (or a worker's share, or a part of it); see the module."""

    scale: Scale = LIVE
    scheduled: int = 0  # schedule rows (orders)
    attempts: int = 0
    retries: int = 0
    sent: int = 0
    row_outcomes: I64 = field(default_factory=lambda: np.zeros(N_OUTCOMES, dtype=np.int64))
    attempt_outcomes: I64 = field(default_factory=lambda: np.zeros(N_OUTCOMES, dtype=np.int64))
    hists: dict[tuple[str, int], Histogram] = field(default_factory=dict)
    intended_per_s: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sent_per_s: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    done_per_s: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outcomes_per_s: I64 = field(default_factory=lambda: np.zeros((N_OUTCOMES, 0), dtype=np.int64))
    latency_s: SecondHistograms = field(default_factory=SecondHistograms)
    service_s: SecondHistograms = field(default_factory=SecondHistograms)
    # confirmed attempts (bounded by the stock): order id, product index, units, done time
    c_order: list[I64] = field(default_factory=list)
    c_product: list[I64] = field(default_factory=list)
    c_qty: list[I64] = field(default_factory=list)
    c_done: list[I64] = field(default_factory=list)
    failed_orders: list[I64] = field(default_factory=list)  # final timeouts and errors
    last_ns: int = 0  # latest time anything happened (intended or done)
    reasons: dict[tuple[int, int], int] = field(default_factory=dict)  # (outcome, reason) → n
    reason_labels: dict[int, str] = field(default_factory=dict)  # the outcome rule's own names
    # a journey's steps and ends (simulator.load.journey.JourneyTally); None without a journey
    journey: Any = None

    def __repr__(self) -> str:
        # short: asyncio's runner formats the finished task, result included, at the end of a
        # run (signal.getsignal); the dataclass's repr printed every array (tens of ms)
        return (
            f"Tally(scheduled={self.scheduled}, attempts={self.attempts}, "
            f"retries={self.retries}, sent={self.sent})"
        )

    def hist(self, kind: str, outcome: int) -> Histogram:
        """The histogram of one kind and outcome (created empty on first use)."""
        h = self.hists.get((kind, outcome))
        if h is None:
            h = self.hists[(kind, outcome)] = Histogram.empty(self.scale)
        return h

    def combined(self, kind: str) -> Histogram:
        """One kind's histogram over all outcomes."""
        out = Histogram.empty(self.scale)
        for (k, _), h in sorted(self.hists.items()):
            if k == kind:
                out.merge(h)
        return out

    def _add_by_outcome(self, kind: str, outcome: npt.NDArray[np.uint8], values: I64) -> None:
        if len(outcome) == 0:
            return
        first = int(outcome[0])
        if (outcome == first).all():  # the usual batch: one outcome (no sort, no masks)
            self.hist(kind, first).add(values)
            return
        for code in np.flatnonzero(np.bincount(outcome)).tolist():
            self.hist(kind, code).add(values[outcome == code])

    def fold(
        self,
        *,
        intended_ns: I64,
        dispatched_ns: I64,
        sent_ns: I64,
        done_ns: I64,
        outcome: npt.NDArray[np.uint8],
        final: npt.NDArray[np.bool_],
        first_ns: I64,
        retry: npt.NDArray[np.bool_],
        order: I64,
        product: I64,
        qty: I64,
        reason: npt.NDArray[np.int32] | None = None,
    ) -> None:
        """Count a batch of attempts whose story is over (answered, failed or never sent).

        ``final``: the attempt decided its order (no retry followed); ``first_ns``: its order's
        first intended time (the order's whole wait runs from there); ``retry``: not a first
        attempt. ``order``/``product``/``qty``: the schedule row's (for confirmations);
        ``reason``: each attempt's reason code (none: not counted by reason).
        """
        n = len(intended_ns)
        if n == 0:
            return
        if reason is not None:
            self.count_reasons(outcome, reason)
        n_retry = int(np.count_nonzero(retry))
        self.attempts += n
        self.retries += n_retry
        self.scheduled += n - n_retry
        self.attempt_outcomes += np.bincount(outcome, minlength=N_OUTCOMES)[:N_OUTCOMES]
        self.row_outcomes += np.bincount(outcome[final], minlength=N_OUTCOMES)[:N_OUTCOMES]
        answered = done_ns >= 0
        was_sent = sent_ns >= 0
        took = dispatched_ns >= 0
        self.sent += int(np.count_nonzero(was_sent))
        self.last_ns = max(self.last_ns, int(intended_ns.max()), int(done_ns.max()))
        lat = done_ns[answered] - intended_ns[answered]
        self._add_by_outcome("intended", outcome[answered], lat)
        served = answered & was_sent
        svc = done_ns[served] - sent_ns[served]
        self._add_by_outcome("service", outcome[served], svc)
        self._add_by_outcome("dispatch_lag", outcome[took], dispatched_ns[took] - intended_ns[took])
        self._add_by_outcome(
            "queue_wait", outcome[was_sent], sent_ns[was_sent] - dispatched_ns[was_sent]
        )
        decided = final & answered
        self._add_by_outcome("order", outcome[decided], done_ns[decided] - first_ns[decided])
        self.intended_per_s = _bump(self.intended_per_s, intended_ns[intended_ns >= 0] // NS_PER_S)
        self.sent_per_s = _bump(self.sent_per_s, sent_ns[was_sent] // NS_PER_S)
        done_s = done_ns[answered] // NS_PER_S
        self.done_per_s = _bump(self.done_per_s, done_s)
        if len(done_s):
            flat = outcome[answered].astype(np.int64) * (int(done_s.max()) + 1) + done_s
            per = np.bincount(flat, minlength=N_OUTCOMES * (int(done_s.max()) + 1))
            per = per.reshape(N_OUTCOMES, -1)
            self.outcomes_per_s = _grow(self.outcomes_per_s, per.shape[1])
            self.outcomes_per_s[:, : per.shape[1]] += per
        self.latency_s.add(intended_ns[answered] // NS_PER_S, lat)
        self.service_s.add(sent_ns[served] // NS_PER_S, svc)
        ok = outcome == CONFIRMED
        if ok.any():
            self.c_order.append(order[ok].astype(np.int64))
            self.c_product.append(product[ok].astype(np.int64))
            self.c_qty.append(qty[ok].astype(np.int64))
            self.c_done.append(done_ns[ok].astype(np.int64))
        bad = final & ((outcome == TIMEOUT) | (outcome == ERROR))
        if bad.any():
            self.failed_orders.append(order[bad].astype(np.int64))

    def fold_batch(self, b: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """:meth:`fold` of a batch of per-attempt fields named as in :mod:`simulator.records`
        (the engine's slots, ``first_ns`` added): the engine's one call per batch."""
        self.fold(
            intended_ns=np.asarray(b["intended_ns"], dtype=np.int64),
            dispatched_ns=np.asarray(b["dispatched_ns"], dtype=np.int64),
            sent_ns=np.asarray(b["sent_ns"], dtype=np.int64),
            done_ns=np.asarray(b["done_ns"], dtype=np.int64),
            outcome=np.asarray(b["outcome"], dtype=np.uint8),
            final=np.asarray(b["final"], dtype=np.bool_),
            first_ns=np.asarray(b["first_ns"], dtype=np.int64),
            retry=np.asarray(b["try"]) > 1,
            order=np.asarray(b["order"], dtype=np.int64),
            product=np.asarray(b["sku"], dtype=np.int64),
            qty=np.asarray(b["qty"], dtype=np.int64),
            reason=np.asarray(b["reason"], dtype=np.int32) if "reason" in b else None,
        )

    def count_reasons(self, outcome: npt.NDArray[np.uint8], reason: npt.NDArray[np.int32]) -> None:
        """Count attempts per (outcome, reason code); attempts never sent are not counted."""
        sent = outcome != NOT_SENT
        key = (outcome[sent].astype(np.int64) << 32) | (reason[sent].astype(np.int64) & 0xFFFFFFFF)
        keys, counts = np.unique(key, return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            pair = (k >> 32, int(np.int32(np.uint32(k & 0xFFFFFFFF))))
            self.reasons[pair] = self.reasons.get(pair, 0) + c

    def reason_counts(self) -> dict[str, dict[str, int]]:
        """Attempts by outcome name, then by reason as reports write it ("status 409"),
        most frequent first."""
        out: dict[str, dict[str, int]] = {}
        for (o, r), n in sorted(self.reasons.items(), key=lambda kv: (kv[0][0], -kv[1])):
            by = out.setdefault(OUTCOME_NAMES[o], {})
            label = reason_name(r, self.reason_labels)
            by[label] = by.get(label, 0) + n
        return out

    def add_unsent_rows(self, intended_ns: I64) -> None:
        """Schedule rows never dispatched (a stopped run): they count as not sent."""
        n = len(intended_ns)
        if n == 0:
            return
        self.scheduled += n
        self.attempts += n
        self.row_outcomes[0] += n
        self.attempt_outcomes[0] += n
        self.intended_per_s = _bump(self.intended_per_s, intended_ns // NS_PER_S)
        self.last_ns = max(self.last_ns, int(intended_ns.max()))

    def add_dropped_retry(self, outcome: int, first_ns: int, done_ns: int) -> None:
        """A retry that was due but dropped (a stop): its order ends on the previous answer."""
        self.row_outcomes[outcome] += 1
        if done_ns >= 0:
            self.hist("order", outcome).add(np.array([done_ns - first_ns], dtype=np.int64))

    def confirmed(self) -> tuple[I64, I64, I64, I64]:
        """Every confirmed attempt: (order id, product index, units, done ns), concatenated."""
        if len(self.c_order) > 1:  # keep one array each: cheap to call again
            self.c_order = [np.concatenate(self.c_order)]
            self.c_product = [np.concatenate(self.c_product)]
            self.c_qty = [np.concatenate(self.c_qty)]
            self.c_done = [np.concatenate(self.c_done)]
        if not self.c_order:
            e = np.zeros(0, dtype=np.int64)
            return e, e, e, e
        return self.c_order[0], self.c_product[0], self.c_qty[0], self.c_done[0]

    def failed(self) -> I64:
        """Order ids whose final attempt timed out or failed."""
        if not self.failed_orders:
            return np.zeros(0, dtype=np.int64)
        if len(self.failed_orders) > 1:
            self.failed_orders = [np.concatenate(self.failed_orders)]
        return self.failed_orders[0]

    def merge(self, other: Tally) -> None:
        """Add another tally (another worker's, or a later part of the same run)."""
        self.scheduled += other.scheduled
        self.attempts += other.attempts
        self.retries += other.retries
        self.sent += other.sent
        self.row_outcomes += other.row_outcomes
        self.attempt_outcomes += other.attempt_outcomes
        for key, h in other.hists.items():
            self.hist(*key).merge(h)
        for name in ("intended_per_s", "sent_per_s", "done_per_s", "outcomes_per_s"):
            mine, theirs = getattr(self, name), getattr(other, name)
            mine = _grow(mine, theirs.shape[-1])
            mine[..., : theirs.shape[-1]] += theirs
            setattr(self, name, mine)
        self.latency_s.merge(other.latency_s)
        self.service_s.merge(other.service_s)
        for name in ("c_order", "c_product", "c_qty", "c_done", "failed_orders"):
            getattr(self, name).extend(getattr(other, name))
        self.last_ns = max(self.last_ns, other.last_ns)
        for pair, n in other.reasons.items():
            self.reasons[pair] = self.reasons.get(pair, 0) + n
        self.reason_labels.update(other.reason_labels)
        if other.journey is not None:
            if self.journey is None:
                o = other.journey
                self.journey = type(o)(o.names, o.order_step, o.stream_names, o.implicit)
            self.journey.merge(other.journey)

    def nbytes(self) -> int:
        """Memory held by the counts (what a worker sends back)."""
        n = sum(h.counts.nbytes for h in self.hists.values())
        n += self.latency_s.nbytes() + self.service_s.nbytes()
        c = self.confirmed()
        return n + sum(a.nbytes for a in c) + self.failed().nbytes + self.outcomes_per_s.nbytes


def tally_of_recorder(rows: npt.NDArray[np.void], rec: Recorder) -> Tally:
    """The tally of a whole recorder at once (the Locust adapter, tests, offline checks)."""
    t = Tally()
    m = rec.n_attempts
    row = rec.row_of_attempt()
    final = np.zeros(m, dtype=bool)
    final[rec.final_attempt()] = True
    retry = np.zeros(m, dtype=bool)
    retry[rec.n_rows :] = True
    t.fold(
        intended_ns=rec.intended_ns[:m],
        dispatched_ns=rec.dispatched_ns[:m],
        sent_ns=rec.sent_ns[:m],
        done_ns=rec.done_ns[:m],
        outcome=rec.outcome[:m],
        final=final,
        first_ns=rec.intended_ns[row],
        retry=retry,
        order=rows["order"][row].astype(np.int64),
        product=rows["product"][row].astype(np.int64),
        qty=rows["qty"][row].astype(np.int64),
        reason=rec.reasons()[:m],
    )
    t.reason_labels.update(rec.reason_labels)
    return t


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The confirmed orders of a tally, each order id once (its first confirmation in time)."""

    order: I64
    product: I64
    qty: I64
    done_ns: I64

    def units_per_product(self, n_products: int) -> I64:
        """Units confirmed per product index 0…n_products−1."""
        keep = (self.product >= 0) & (self.product < n_products)
        units = np.bincount(self.product[keep], weights=self.qty[keep], minlength=n_products)
        return units.astype(np.int64)[:n_products]

    def orders_per_product(self, n_products: int) -> I64:
        """Order ids confirmed per product index 0…n_products−1."""
        keep = (self.product >= 0) & (self.product < n_products)
        return np.bincount(self.product[keep], minlength=n_products).astype(np.int64)[:n_products]

    def units(self) -> int:
        """All units confirmed."""
        return int(self.qty.sum())

    def units_per_s(self, skus: Sequence[str], n_seconds: int) -> dict[str, list[int]]:
        """Units confirmed per second answered, per SKU (later ones land in the last second)."""
        n = max(1, n_seconds)
        second = np.minimum(self.done_ns // NS_PER_S, n - 1)
        inside = (self.product >= 0) & (self.product < len(skus))
        flat = self.product[inside] * n + second[inside]
        units = np.bincount(flat, weights=self.qty[inside], minlength=len(skus) * n)
        table = units.reshape(len(skus), n).astype(np.int64)
        return {sku: [int(x) for x in table[i]] for i, sku in enumerate(skus)}


def first_confirmed(order: I64, product: I64, qty: I64, done_ns: I64) -> Confirmed:
    """Confirmed attempts → confirmed orders: each order id once, at its first confirmation in
    time (a double click the server did not deduplicate counts once, as the server's stock
    does). The one rule behind every count of confirmed units: the report, the audit's client
    view, the engine's live progress and the Locust live view."""
    by_time = np.argsort(done_ns, kind="stable")
    _, first = np.unique(order[by_time], return_index=True)
    pick = by_time[np.sort(first)]
    return Confirmed(order[pick], product[pick], qty[pick], done_ns[pick])
