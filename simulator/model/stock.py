"""Stock, idempotency and sold-out bookkeeping, applied in completion order.

A product's stock is split across the K shards (shard k gets ⌊S/K⌋ plus one of the S mod K
leftover units if k < S mod K), as sharded counters do; an order only sees its buyer's shard.
Within one (product, shard) *group* an order is confirmed iff its quantity still fits when it
completes ("take if fits", the storefront's check-and-decrement). With quantity 1 that is
``cumsum(qty) ≤ stock``; with larger quantities a prefix pass leaves r < max qty units and each
further pass confirms, among the later orders asking ≤ r, those whose running sum stays ≤ r —
r strictly falls every pass, so ≤ max qty passes give the exact sequential result.

Idempotency (the order id is the key): the first *completion* of an order id decides it; a later
request with the same id (a double click, or a retry) replays that outcome and takes no stock.
A ring of 2ᵇ slots indexed by order number mod 2ᵇ remembers decided ids; it is sized so ids do
not wrap within the horizon of double clicks and retries (see ``Model``). A slot holds the rest
of the id (order ≫ b, plus 1 so that 0 means empty) and the outcome, in as few bytes as the ids
seen so far need: one byte up to 2ᵇ⁺⁶ orders, widened (exactly) as they grow — the ring is
touched by every order, and its pages cost more than the rest of a window's work.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulator.model.kernels import seg_cumsum, segments

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

INF = np.iinfo(np.int64).max
CONFIRMED = 1  # same codes as simulator.recorder
SOLD_OUT = 2


def split_stock(stock: I64, shards: int) -> I64:
    """Units per (product, shard), product-major: shape (products·shards,)."""
    base = stock[:, None] // shards
    extra = (np.arange(shards)[None, :] < (stock % shards)[:, None]).astype(np.int64)
    return (base + extra).reshape(-1)


class StockBook:
    """Stock left per group, zero and first-sold-out times, the idempotency ring."""

    def __init__(self, stock: I64, shards: int, ring_bits: int) -> None:
        self.shards = shards
        self.n_products = len(stock)
        self.initial = split_stock(np.asarray(stock, dtype=np.int64), shards)
        self.left = self.initial.copy()
        # a shard that starts empty is empty from time 0
        self.zero_ns = np.where(self.initial == 0, 0, INF).astype(np.int64)
        self.first_sold_out_ns = np.full(len(self.left), INF, dtype=np.int64)
        self.bits = ring_bits
        self.mask = (1 << ring_bits) - 1
        # slot = order mod 2ᵇ holds ((order ≫ b) + 1)·4 + outcome (0 = decided later in this
        # batch); 0 = empty, so np.zeros can map the ring lazily (untouched pages cost nothing)
        self.ring: npt.NDArray[np.integer] = np.zeros(1 << ring_bits, np.uint8)

    def _words(self, order: I64, outcome: U8 | None = None) -> I64:
        """Ring words of these ids (outcome 0: not decided yet)."""
        w = order >> self.bits
        w += 1
        w <<= 2
        if outcome is not None:
            w |= outcome
        return w

    def _fit_ring(self, order: I64) -> None:
        """Widen the ring's slots when the largest id's word does not fit (values unchanged)."""
        top = ((int(order.max()) >> self.bits) + 1) << 2 | 3
        for dt in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)):
            if top <= np.iinfo(dt).max:
                if dt.itemsize > self.ring.itemsize:
                    self.ring = self.ring.astype(dt)
                return
        if self.ring.dtype != np.int64:
            self.ring = self.ring.astype(np.int64)

    def resolve(
        self,
        group: I64,
        done: I64,
        qty: I64,
        order: I64,
        candidate: Bool,
        sub: I64 | None = None,
    ) -> tuple[U8, Bool, Bool]:
        """Decide a batch of requests: outcomes, replayed, false sold-out.

        Rows may come in any order: within a group, completion order is (``done``, ``sub``
        (the server, when a group has several), position). ``candidate`` marks requests that
        may repeat an id already decided (double clicks and retries); first attempts always
        decide, and a candidate whose first attempt is in the same batch replays it (with one
        server per shard the first attempt, sent earlier to the same FIFO server, completes
        earlier; with c > 1 it may not, and it still decides). A sold-out answer is *false*
        when another shard of the product still held stock then.
        """
        n = len(group)
        outcome = np.zeros(n, dtype=np.uint8)
        replayed = np.zeros(n, dtype=bool)
        cand = np.flatnonzero(candidate)
        in_batch = src = src_of = np.empty(0, dtype=np.int64)
        dec: npt.NDArray[np.intp] | None = None  # deciding rows; None: all of them
        if n:
            self._fit_ring(order)
        if len(cand):
            first = order[~candidate]
            self.ring[first & self.mask] = self._words(first)
            oc = order[cand]
            word = self.ring[oc & self.mask].astype(np.int64)
            hit = (word | 3) == (self._words(oc) | 3)
            known = hit & ((word & 3) != 0)
            outcome[cand[known]] = (word[known] & 3).astype(np.uint8)
            replayed[cand[hit]] = True
            in_batch = cand[hit & ~known]  # their first attempt is decided in this batch
            src, src_of = self._first_of_each_id(order, done, sub, cand[~hit], replayed)
            dec = np.flatnonzero(~replayed)
        self._take(group, done, qty, sub, None if dec is None else replayed, outcome)
        outcome[src_of] = outcome[src]
        od, oo = (order, outcome) if dec is None else (order[dec], outcome[dec])
        self.ring[od & self.mask] = self._words(od, oo)
        if len(in_batch):  # now the ring holds their first attempt's outcome
            outcome[in_batch] = (self.ring[order[in_batch] & self.mask] & 3).astype(np.uint8)
        return outcome, replayed, self._false_sold_out(group, done, outcome)

    @staticmethod
    def _first_of_each_id(
        order: I64, done: I64, sub: I64 | None, free: I64, replayed: Bool
    ) -> tuple[I64, I64]:
        """Among requests of an id not decided before, the first (in completion order) decides
        and the others replay it: (decider, replayer) index pairs; marks the replayers."""
        if len(free) < 2:
            e = np.empty(0, dtype=np.int64)
            return e, e
        keys = (free, done[free]) if sub is None else (free, sub[free], done[free])
        f = free[np.lexsort((*keys, order[free]))]
        same = np.concatenate(([False], order[f[1:]] == order[f[:-1]]))
        head = np.maximum.accumulate(np.where(same, 0, np.arange(len(f))))
        replayed[f[same]] = True
        return f[head[same]], f[same]

    def _take(
        self, group: I64, done: I64, qty: I64, sub: I64 | None, skip: Bool | None, outcome: U8
    ) -> None:
        """Take if fits, in completion order, for every row but the ``skip`` ones (replays,
        whose outcome is left as it is).

        Order matters only in a group whose requests this batch exceed its stock while some
        is left ("contended", once per group in a run): every other group confirms all its
        requests (enough stock) or none (none left; quantities are ≥ 1), so only the
        contended groups' rows are sorted into completion order.
        """
        if not len(group):
            return
        room = self.left
        if len(room) > 8 * len(group):  # few rows for many groups: sort the rows instead
            ci = np.arange(len(group)) if skip is None else np.flatnonzero(~skip)
            self._decide_in_order(group, done, qty, sub, ci, outcome)
            return
        total = np.bincount(group, weights=qty, minlength=len(room))  # float64: exact < 2**53
        if skip is not None:
            sk = np.flatnonzero(skip)
            total -= np.bincount(group[sk], weights=qty[sk], minlength=len(room))
        fits = total <= room
        if int(qty.min()) >= 1:
            empty = ~fits & (room == 0)
            contended = ~fits & (room > 0)
        else:  # a zero quantity fits anywhere: decide every short group in order
            empty = np.zeros(len(room), dtype=bool)
            contended = ~fits
        # CONFIRMED (1) where it all fits, SOLD_OUT (2) where nothing is left
        code = np.subtract(SOLD_OUT, fits, dtype=np.uint8)
        row = code[group]
        emptied = fits & (total == room) & (total > 0)
        if emptied.any():  # zero time: the last (latest) completion of the group's orders
            m = self._rows(emptied[group], skip)
            self.zero_ns[emptied] = np.iinfo(np.int64).min
            np.maximum.at(self.zero_ns, group[m], done[m])
        self.left -= (total * fits).astype(np.int64)
        first_out = empty & (self.first_sold_out_ns == INF)
        if first_out.any():  # first sold-out answer: the earliest completion
            m = self._rows(first_out[group], skip)
            np.minimum.at(self.first_sold_out_ns, group[m], done[m])
        if contended.any():
            self._decide_in_order(group, done, qty, sub, self._rows(contended[group], skip), row)
        if skip is None:
            outcome[:] = row
        else:
            np.copyto(outcome, row, where=~skip)

    def _decide_in_order(
        self, group: I64, done: I64, qty: I64, sub: I64 | None, rows: npt.NDArray[np.intp], out: U8
    ) -> None:
        """Take if fits for ``rows``, sorted into (group, completion) order; outcomes to out."""
        keys = (rows, done[rows]) if sub is None else (rows, sub[rows], done[rows])
        rows = rows[np.lexsort((*keys, group[rows]))]
        conf = self._take_in_order(group[rows], done[rows], qty[rows])
        out[rows] = np.subtract(SOLD_OUT, conf, dtype=np.uint8)

    @staticmethod
    def _rows(mask: Bool, skip: Bool | None) -> npt.NDArray[np.intp]:
        return np.flatnonzero(mask if skip is None else mask & ~skip)

    def _take_in_order(self, g: I64, d: I64, q: I64) -> Bool:
        """Take if fits for rows sorted by (group, completion): which are confirmed."""
        starts, seg, _ = segments(g)
        seg_g = g[starts]
        room = self.left[seg_g]
        conf = seg_cumsum(q, starts, seg) <= room[seg]
        if not conf.all() and int(q.max()) > 1:
            while True:
                taken = np.bincount(seg, weights=q * conf, minlength=len(starts)).astype(np.int64)
                r = room - taken
                more = np.flatnonzero(~conf & (q <= r[seg]))
                if not len(more):
                    break
                ms, mseg, _ = segments(seg[more])
                ok = seg_cumsum(q[more], ms, mseg) <= r[seg[more]]
                if not ok.any():
                    break
                conf[more[ok]] = True
        taken = np.bincount(seg, weights=q * conf, minlength=len(starts)).astype(np.int64)
        self.left[seg_g] -= taken
        # zero time: the completion of the last confirmed order of a group that ran out
        emptied = (self.left[seg_g] == 0) & (self.zero_ns[seg_g] == INF)
        if emptied.any():
            ci = np.flatnonzero(conf)
            last = np.zeros(len(starts), dtype=np.int64)
            last[seg[ci]] = d[ci]  # ascending order: the last write per group wins
            self.zero_ns[seg_g[emptied]] = last[emptied]
        si = np.flatnonzero(~conf)
        if len(si):
            first = np.full(len(starts), INF, dtype=np.int64)
            first[seg[si][::-1]] = d[si][::-1]  # reversed: the first write wins
            self.first_sold_out_ns[seg_g] = np.minimum(self.first_sold_out_ns[seg_g], first)
        return conf

    def _false_sold_out(self, group: I64, done: I64, outcome: U8) -> Bool:
        false = np.zeros(len(group), dtype=bool)
        so = np.flatnonzero(outcome == SOLD_OUT)
        if self.shards == 1 or not len(so):
            return false
        z = self.zero_ns.reshape(self.n_products, self.shards)
        top = z.argmax(axis=1)
        rows = np.arange(self.n_products)
        max1 = z[rows, top]
        z2 = z.copy()
        z2[rows, top] = np.iinfo(np.int64).min
        max2 = z2.max(axis=1)
        other = np.repeat(max1, self.shards).reshape(self.n_products, self.shards)
        other[rows, top] = max2
        false[so] = done[so] < other.reshape(-1)[group[so]]
        return false
