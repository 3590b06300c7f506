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

Per-buyer limits (the storefront checks them before stock): an order is refused when the units
its buyer already holds of the SKU plus its quantity exceed the limit. Only buyers who order more
than once can get there (orders over the limit on their own are refused on arrival, in
``sim``); the schedule flags their orders. Per batch those rows are grouped by buyer and, as if
every order within the limit were confirmed, take-if-fits against limit − units held finds the
groups where a limit binds; only those groups are decided with the limit (limit first, then
stock; one order at a time where the stock runs out in the batch), the others as above. Units
held carry over in a ring indexed by buyer number (= the order number of the buyer's first
order), for every flagged buyer who bought (units add up: two orders under the limit and a
third may pass it together).

Units coming back (the flow's cancelled and expired holds, :mod:`simulator.model.flow`) are
free for the orders of their group completing after them. Where a group's stock covers its
batch anyway they are simply added after it; otherwise the group's orders and returns are
merged in time order and decided by :func:`take_with_returns` (runs of orders that fit and runs
that fail, found a chunk at a time), or one order at a time where a per-buyer limit binds.
A group may then sell out, come back and sell out again: each time is logged (``_log``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.model.kernels import (
    lex_order,
    rows_of,
    seg_cumsum,
    seg_lengths,
    seg_starts,
    segments,
)
from simulator.outcomes import CONFIRMED, SOLD_OUT

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

INF = np.iinfo(np.int64).max
#: sold-out intervals kept per (product, shard) with their times (all are counted)
SPANS = 4
Returned = tuple[I64, I64, I64]  # (time, group, units) of stock coming back
Unjoined = tuple[I64, I64]  # a chunk of returns as kept: (time, group·2¹⁶ + units)
#: a ring code, not an outcome: over the buyer's per-SKU limit (the storefront's 422), which
#: the model reports as REJECTED; 3 (THROTTLED's number) so that it fits the idempotency ring's
#: two outcome bits beside CONFIRMED (1) and SOLD_OUT (2)
RING_OVER_LIMIT = 3


def sum_by(key: npt.NDArray[np.integer], weights: npt.NDArray[np.integer], size: int) -> I64:
    """Per key (0 ≤ key < size), the sum of its rows' integer ``weights``: exact int64.

    ``np.add.at`` on an int64 array: several times faster than ``np.bincount`` with weights,
    which converts them to float64 and takes a slow path.
    """
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, key, weights)
    return out


def split_stock(stock: I64, shards: int) -> I64:
    """Units per (product, shard), product-major: shape (products·shards,)."""
    base = stock[:, None] // shards
    extra = (np.arange(shards)[None, :] < (stock % shards)[:, None]).astype(np.int64)
    return (base + extra).reshape(-1)


def fits_in_order(starts: I64, seg: I64, q: I64, room: I64) -> Bool:
    """Take if fits, per segment in order: which rows fit their segment's ``room``.

    Rows are sorted by segment, then in the order they take. With quantity 1 that is
    ``cumsum ≤ room``; with larger ones each further pass confirms, among the later rows asking
    ≤ what is left, those whose running sum stays within it (≤ max qty passes: exact).
    """
    conf = seg_cumsum(q, starts, seg) <= room[seg]
    if not conf.all() and int(q.max()) > 1:
        while True:
            taken = sum_by(seg, q * conf, len(starts))
            r = room - taken
            more = np.flatnonzero(~conf & (q <= r[seg]))
            if not len(more):
                break
            ms, mseg, _ = segments(seg[more])
            ok = seg_cumsum(q[more], ms, mseg) <= r[seg[more]]
            if not ok.any():
                break
            conf[more[ok]] = True
    return conf


def take_with_returns(starts: I64, q: I64, back: Bool, room: I64) -> tuple[Bool, I64]:
    """Take if fits with units coming back, per segment in sequence order.

    Rows are sorted by segment, then in sequence order; a ``back`` row brings its ``q`` units
    back, any other row is an order that takes ``q`` if that many are free (``room`` free at
    each segment's start). Returns which orders are confirmed and the free units after each
    row. A segment alternates between runs of orders that all fit (free + cumsum ≥ 0 up to the
    first that does not) and runs that all fail (until one fits what came back): each pass
    looks at the next chunk of every segment's current run, the chunk doubling while the run
    goes on, so the passes are bounded by log(rows) plus the times a segment switches.
    """
    n = len(q)
    conf = np.zeros(n, dtype=bool)
    free = np.empty(n, dtype=np.int64)
    if n == 0:
        return conf, free
    ends = np.append(starts[1:], n)
    signed = np.where(back, q, -q)
    gain = np.where(back, q, 0)
    pos = starts.astype(np.int64)
    f = room.astype(np.int64)
    refusing = np.zeros(len(starts), dtype=bool)
    step = np.full(len(starts), 16, dtype=np.int64)
    act = np.flatnonzero(pos < ends)
    while len(act):
        p = pos[act]
        size = np.minimum(step[act], ends[act] - p)
        k = np.repeat(np.arange(len(act)), size)
        cstart = np.cumsum(size) - size
        off = np.arange(len(k), dtype=np.int64) - cstart[k]
        rows = p[k] + off
        rk = refusing[act][k]
        cs = seg_cumsum(np.where(rk, gain[rows], signed[rows]), cstart, k)
        cs += f[act][k]
        is_order = ~back[rows]
        # a run ends at an order that does not fit (fitting run) or that fits (failing run)
        stop = is_order & np.where(rk, q[rows] <= cs, cs < 0)
        first = size.copy()
        si = np.flatnonzero(stop)
        if len(si):
            ks = k[si]
            head = np.concatenate(([True], ks[1:] != ks[:-1]))
            first[ks[head]] = off[si[head]]
        before = off < first[k]
        rb = rows[before]
        free[rb] = cs[before]
        conf[rb] = ~rk[before] & is_order[before]
        hit = first < size
        h = np.flatnonzero(hit)
        if len(h):
            r = p[h] + first[h]
            at = cs[cstart[h] + first[h]]
            was_refusing = refusing[act[h]]
            # a failing run's stop takes its units; a fitting run's stop is refused
            after = np.where(was_refusing, at - q[r], at + q[r])
            free[r] = after
            conf[r] = was_refusing
            f[act[h]] = after
            pos[act[h]] = r + 1
            refusing[act[h]] = ~was_refusing
            step[act[h]] = 16
        m = np.flatnonzero(~hit)
        if len(m):
            last = cstart[m] + size[m] - 1
            f[act[m]] = cs[last]
            pos[act[m]] += size[m]
            step[act[m]] = np.minimum(step[act[m]] * 2, 1 << 20)
        act = act[pos[act] < ends[act]]
    return conf, free


@dataclass(frozen=True, slots=True)
class _Chains:
    """The rows of buyers who may meet their limit in a batch, sorted by buyer (a buyer's rows
    ascending) with their quantities: segment starts (a segment per buyer), each segment's
    buyer and the units it held before, and the groups where a limit binds."""

    rows: npt.NDArray[np.intp]
    qty: I64
    starts: I64
    buyer: I64
    held: I64
    binding: I64
    ok: Bool  # per row: within the limit, were every earlier order of its buyer confirmed


class Outages:
    """Sold-out intervals of some stock units (the (product, shard) groups, or the SKUs):
    ``outages`` counts each one's sold-out intervals, ``out_ns`` adds up the ended ones,
    ``out_since`` says since when it is out now (INF: it has stock), ``first_back_ns`` when
    it first had stock again, ``spans`` keeps the first :data:`SPANS` as [start, end) (INF:
    not ended)."""

    def __init__(self, out_at_start: Bool) -> None:
        n = len(out_at_start)
        self.out_since = np.where(out_at_start, 0, INF).astype(np.int64)
        self.outages = out_at_start.astype(np.int64)
        self.out_ns = np.zeros(n, dtype=np.int64)
        self.first_back_ns = np.full(n, INF, dtype=np.int64)
        self.spans = np.full((n, SPANS, 2), INF, dtype=np.int64)
        self.spans[out_at_start, 0, 0] = 0

    def log(self, unit: I64, t: I64, back: Bool) -> None:
        """Sold-out (``back`` False) and back-in-stock events, sorted by (unit, time); per
        unit they alternate, starting from the unit's state."""
        if not len(unit):
            return
        starts, seg, _ = segments(unit, ranks=False)
        is_out = ~back
        n_out = seg_cumsum(is_out.astype(np.int64), starts, seg)  # outs so far, this one too
        idx = self.outages[unit] + n_out - 1  # the interval each event opens or closes
        first = np.zeros(len(unit), dtype=bool)
        first[starts] = True
        prev = np.concatenate(([0], t[:-1]))
        start = np.where(first, self.out_since[unit], prev)
        b = np.flatnonzero(back)
        if len(b):
            np.add.at(self.out_ns, unit[b], t[b] - start[b])
            bf = np.full(len(starts), INF, dtype=np.int64)
            bf[seg[b][::-1]] = t[b][::-1]  # the first back event per unit
            su = unit[starts]
            self.first_back_ns[su] = np.minimum(self.first_back_ns[su], bf)
        keep = idx < SPANS
        self.spans[unit[keep], idx[keep], back[keep].astype(np.intp)] = t[keep]
        self.outages += np.bincount(unit[is_out], minlength=len(self.outages))
        ends = np.append(starts[1:], len(unit)) - 1
        self.out_since[unit[ends]] = np.where(back[ends], INF, t[ends])


class StockBook:
    """Stock left per group, zero and first-sold-out times, the idempotency ring.

    With units coming back (the flow's cancelled and expired holds), a group can sell out,
    get stock again and sell out again: ``groups`` logs its sold-out intervals
    (:class:`Outages`; ``outages``, ``out_ns``, ``out_since``, ``first_back_ns`` and ``spans``
    are its arrays). A SKU is sold out while all its shards are: ``skus`` logs those
    intervals, from the groups' events merged in time order once a batch is done
    (:meth:`log_skus`; with one shard a SKU's intervals are its group's).
    """

    def __init__(
        self,
        stock: I64,
        shards: int,
        ring_bits: int,
        limits: I64 | None = None,
    ) -> None:
        self.shards = shards
        self.n_products = len(stock)
        self.initial = split_stock(np.asarray(stock, dtype=np.int64), shards)
        self.left = self.initial.copy()
        # a shard that starts empty is empty from time 0
        self.zero_ns = np.where(self.initial == 0, 0, INF).astype(np.int64)
        self.first_sold_out_ns = np.full(len(self.left), INF, dtype=np.int64)
        self.groups = Outages(self.initial == 0)
        g = self.groups  # its arrays, updated in place
        self.out_since, self.outages, self.out_ns = g.out_since, g.outages, g.out_ns
        self.first_back_ns, self.spans = g.first_back_ns, g.spans
        # per SKU: shards out of stock now, and the events of the batch not yet merged
        empty = (self.initial == 0).reshape(self.n_products, shards)
        self._shards_out = empty.sum(axis=1)
        self.skus = Outages(empty.all(axis=1)) if shards > 1 else self.groups
        self._events: list[tuple[I64, I64, Bool]] = []
        self.bits = ring_bits
        self.mask = (1 << ring_bits) - 1
        # slot = order mod 2ᵇ holds ((order ≫ b) + 1)·4 + outcome (0 = decided later in this
        # batch); 0 = empty, so np.zeros can map the ring lazily (untouched pages cost nothing)
        self.ring: npt.NDArray[np.integer] = np.zeros(1 << ring_bits, np.uint8)
        self._ring_top = 255  # the largest word the ring's slots hold
        self._id_range = (0, -1)  # the lowest and highest id of the batch (_fit_ring)
        # per-buyer limits: units each buyer holds, in a ring like the idempotency one, indexed
        # by the buyer number (the order number of the buyer's first order); a slot holds
        # ((buyer ≫ b) + 1) ≪ shift | units, written for the buyers who order more than once
        # and bought, read only for their orders (see resolve)
        self.limits = limits
        self.all_limited = limits is not None and bool((limits > 0).all())
        self.units_shift = 8 if limits is None or int(limits.max()) < 255 else 32
        # two bytes a slot while the tags fit (widened as ids grow, as the idempotency ring):
        # the first writes map the ring's pages, and fewer bytes are fewer pages
        dtype = np.uint16 if self.units_shift == 8 else np.uint64
        self.held: npt.NDArray[np.unsignedinteger] = np.zeros(
            1 << ring_bits if limits is not None else 0, dtype
        )

    def _words(self, order: I64, outcome: U8 | None = None) -> I64:
        """Ring words of these ids (outcome 0: not decided yet)."""
        w = order >> self.bits
        w += 1
        w <<= 2
        if outcome is not None:
            w |= outcome
        return w

    def _remember(self, order: I64, outcome: U8) -> None:
        """Write these ids' words into the ring. A window's ids are close together: where they
        share one tag (order ≫ b, the usual case) the words are that tag | outcome, in the
        ring's own width (no int64 word per row)."""
        slot = order & self.mask
        lo, hi = self._id_range
        if lo >> self.bits == hi >> self.bits:
            tag = self.ring.dtype.type(((lo >> self.bits) + 1) << 2)
            word = outcome.astype(self.ring.dtype)
            word |= tag
            self.ring[slot] = word
        else:
            self.ring[slot] = self._words(order, outcome)

    def _fit_ring(self, order: I64) -> None:
        """Widen the ring's slots when the largest id's word does not fit (values unchanged);
        notes the ids' range (:meth:`_remember`)."""
        lo, hi = int(order.min()), int(order.max())
        self._id_range = (lo, hi)
        top = ((hi >> self.bits) + 1) << 2 | 3
        if top <= self._ring_top:
            return
        for dt in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)):
            if top <= np.iinfo(dt).max:
                if dt.itemsize > self.ring.itemsize:
                    self.ring = self.ring.astype(dt)
                    self._ring_top = int(np.iinfo(dt).max)
                return
        if self.ring.dtype != np.int64:
            self.ring = self.ring.astype(np.int64)
            self._ring_top = int(np.iinfo(np.int64).max)

    def resolve(
        self,
        group: I64,
        done: I64,
        qty: I64,
        order: I64,
        candidate: Bool,
        sub: I64 | None = None,
        buyers: tuple[I64, I64, Bool] | None = None,
        returns: Returned | None = None,
        demand: I64 | None = None,
    ) -> tuple[U8, Bool, tuple[npt.NDArray[np.intp], Bool]]:
        """Decide a batch of requests: outcomes, replayed, and the rows answered sold out with
        which of them were false.

        Rows may come in any order: within a group, completion order is (``done``, ``sub``
        (the server, when a group has several), position). ``candidate`` marks requests that
        may repeat an id already decided (double clicks and retries); first attempts always
        decide, and a candidate whose first attempt is in the same batch replays it (with one
        server per shard the first attempt, sent earlier to the same FIFO server, completes
        earlier; with c > 1 it may not, and it still decides). A sold-out answer is *false*
        when another shard of the product still held stock then.

        With per-buyer limits, ``buyers`` is (product, buyer, check) of each row: ``check``
        marks the orders of buyers who order more than once (only they can meet a limit; the
        schedule flags them). An order that would take its buyer past the SKU's limit is
        refused (RING_OVER_LIMIT) before stock is looked at, as the storefront does.

        ``returns``: units coming back (time, group, units) among this batch's completions;
        a return at r is free for the group's orders completing after r (strictly), so the
        caller passes only returns that precede a completion of their group here (a group
        whose orders in this batch all came before r gets it in a later batch, or from
        :meth:`give_back`).

        ``demand``: the units asked per group by all these rows, when the caller has them.
        """
        n = len(group)
        outcome = np.zeros(n, dtype=np.uint8)
        replayed = np.zeros(n, dtype=bool)
        cand = np.flatnonzero(candidate)
        in_batch = first_row = src = src_of = np.empty(0, dtype=np.int64)
        self._id_range = (0, -1)  # no ids: the tag of no row matters
        if n:
            self._fit_ring(order)
        if len(cand):
            # the ring holds every id decided in earlier batches (with its outcome)
            oc = order[cand]
            word = self.ring[oc & self.mask].astype(np.int64)
            known = (word | 3) == (self._words(oc) | 3)
            known &= (word & 3) != 0
            outcome[cand[known]] = (word[known] & 3).astype(np.uint8)
            replayed[cand[known]] = True
            free = cand[~known]
            if len(free):  # those whose first attempt is decided in this batch replay it
                inb, first_row = _first_attempts(order, candidate, free)
                in_batch, free = free[inb], free[~inb]
                replayed[in_batch] = True
            src, src_of = self._first_of_each_id(order, done, sub, free, replayed)
        skip = replayed if len(cand) else None
        has_ret = None
        if returns is not None and len(returns[0]):
            has_ret = np.zeros(len(self.left), dtype=bool)
            has_ret[returns[1]] = True
        limited = chains = None
        narrowed = False  # rows taken out of ``limited`` since the chains were found
        if self.limits is not None and buyers is not None:
            if self.all_limited:
                limited = np.ones(n, dtype=bool) if skip is None else ~skip
            else:
                limited = self.limits[buyers[0]] > 0
                if skip is not None:
                    limited &= ~skip
            chains = self._chains(limited, group, done, qty, sub, buyers)
            if chains is not None and len(chains.binding):
                # groups where a limit binds: where the stock covers every order within the
                # limit (the usual case) those over it are refused and the rest decided as
                # usual; the others ("contended") here, limit first, then stock
                bad = chains.rows[~chains.ok]
                outcome[bad] = RING_OVER_LIMIT
                full = np.zeros(len(self.left), dtype=bool)
                full[chains.binding] = True
                if sub is None:
                    if demand is None:
                        demand = sum_by(group, qty, len(self.left))
                    fit = self._fit_within_limits(chains.binding, group, qty, skip, bad, demand)
                    if has_ret is not None:
                        fit &= ~has_ret[chains.binding]
                    full[chains.binding[fit]] = False
                skip = _with(skip, bad, n)
                if full.any():
                    in_full = limited & full[group]
                    ret = None
                    if has_ret is not None and returns is not None:
                        ret = _pick(returns, full[returns[1]])
                        has_ret &= ~full
                    self._decide_limited(
                        np.flatnonzero(in_full), group, done, qty, sub, buyers, outcome, ret
                    )
                    limited &= ~in_full
                    narrowed = True
                    skip |= in_full
        later = None
        if has_ret is not None and has_ret.any():
            assert returns is not None
            # where the stock covers every order here, returns change no answer: after them
            r = np.flatnonzero(has_ret[group] if skip is None else has_ret[group] & ~skip)
            total = sum_by(group[r], qty[r], len(self.left))
            easy = has_ret & (self.left > total)
            if easy.any():
                later = _pick(returns, easy[returns[1]])
                has_ret &= ~easy
        if has_ret is not None and has_ret.any():
            assert returns is not None
            in_ret = has_ret[group]
            rows = np.flatnonzero(in_ret if skip is None else in_ret & ~skip)
            ret = _pick(returns, has_ret[returns[1]])
            outcome[rows] = self._take_returning(rows, group, done, qty, sub, ret)
            skip = in_ret if skip is None else skip | in_ret
        self._take(group, done, qty, sub, skip, outcome, demand)
        if later is not None:
            self.give_back(*later)
        if chains is not None:
            self._hold_confirmed(limited if narrowed else None, outcome, chains)
        outcome[src_of] = outcome[src]
        outcome[in_batch] = outcome[first_row]
        # every row now has its id's outcome: replays write the word their id has already
        self._remember(order, outcome)
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
        f = free[lex_order((*keys, order[free]))]
        same = np.concatenate(([False], order[f[1:]] == order[f[:-1]]))
        head = np.maximum.accumulate(np.where(same, 0, np.arange(len(f))))
        replayed[f[same]] = True
        return f[head[same]], f[same]

    def _take(
        self,
        group: I64,
        done: I64,
        qty: I64,
        sub: I64 | None,
        skip: Bool | None,
        outcome: U8,
        demand: I64 | None = None,
    ) -> None:
        """Take if fits, in completion order, for every row but the ``skip`` ones (replays,
        whose outcome is left as it is).

        Order matters only in a group whose requests this batch exceed its stock while some
        is left ("contended", once per group in a run): every other group confirms all its
        requests (enough stock) or none (none left; quantities are ≥ 1), so only the
        contended groups' rows are sorted into completion order. ``demand``: the units
        every row asks per group (skipped ones too), when known.
        """
        if not len(group):
            return
        room = self.left
        if len(room) > 8 * len(group):  # few rows for many groups: sort the rows instead
            ci = np.arange(len(group)) if skip is None else np.flatnonzero(~skip)
            self._decide_in_order(group, done, qty, sub, ci, outcome)
            return
        total = sum_by(group, qty, len(room)) if demand is None else demand.copy()
        if skip is not None:  # replays take nothing
            sk = np.flatnonzero(skip)
            np.subtract.at(total, group[sk], qty[sk])
        fits = total <= room
        # every group's requests fit (the usual case while stock lasts): all confirmed, and
        # none of the passes over the groups and rows that sort out the others
        every = bool(fits.all())
        emptied = total == room
        emptied &= total > 0
        if not every:
            emptied &= fits
        if emptied.any():  # zero time: the last (latest) completion of the group's orders
            m = self._rows(emptied[group], skip)
            last = np.full(len(room), np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(last, group[m], done[m])
            out = np.flatnonzero(emptied)
            self._went_out(out, last[out])
        if every:
            self.left -= total
            row: U8 | int = CONFIRMED
        else:
            row = self._take_some(group, done, qty, sub, skip, total, fits)
        if skip is None:
            outcome[:] = row
        else:
            np.copyto(outcome, row, where=~skip)

    def _take_some(
        self,
        group: I64,
        done: I64,
        qty: I64,
        sub: I64 | None,
        skip: Bool | None,
        total: I64,
        fits: Bool,
    ) -> U8:
        """:meth:`_take` where some group's requests do not all fit (``total``: the units they
        ask per group, ``fits``: where they do): the outcome of each row."""
        room = self.left
        if int(qty.min()) >= 1:
            empty = ~fits & (room == 0)
            contended = ~fits & (room > 0)
        else:  # a zero quantity fits anywhere: decide every short group in order
            empty = np.zeros(len(room), dtype=bool)
            contended = ~fits
        # CONFIRMED (1) where it all fits, SOLD_OUT (2) where nothing is left
        code = np.subtract(SOLD_OUT, fits, dtype=np.uint8)
        row = code[group]
        np.subtract(room, total, out=room, where=fits)
        first_out = empty & (self.first_sold_out_ns == INF)
        if first_out.any():  # first sold-out answer: the earliest completion
            m = self._rows(first_out[group], skip)
            np.minimum.at(self.first_sold_out_ns, group[m], done[m])
        if contended.any():
            self._decide_in_order(group, done, qty, sub, self._rows(contended[group], skip), row)
        return row

    def _decide_in_order(
        self, group: I64, done: I64, qty: I64, sub: I64 | None, rows: npt.NDArray[np.intp], out: U8
    ) -> None:
        """Take if fits for ``rows``, sorted into (group, completion) order; outcomes to out."""
        # rows ascend: lex_order's stability keeps their order among ties
        keys = (done[rows],) if sub is None else (sub[rows], done[rows])
        rows = rows[lex_order((*keys, group[rows]))]
        conf = self._take_in_order(group[rows], done[rows], qty[rows])
        out[rows] = np.subtract(SOLD_OUT, conf, dtype=np.uint8)

    @staticmethod
    def _rows(mask: Bool, skip: Bool | None) -> npt.NDArray[np.intp]:
        return np.flatnonzero(mask if skip is None else mask & ~skip)

    def _take_in_order(self, g: I64, d: I64, q: I64) -> Bool:
        """Take if fits for rows sorted by (group, completion): which are confirmed."""
        starts, seg, _ = segments(g)
        seg_g = g[starts]
        conf = fits_in_order(starts, seg, q, self.left[seg_g])
        taken = sum_by(seg, q * conf, len(starts))
        self.left[seg_g] -= taken
        # zero time: the completion of the last confirmed order of a group that ran out
        emptied = (self.left[seg_g] == 0) & (taken > 0)
        if emptied.any():
            ci = np.flatnonzero(conf)
            last = np.zeros(len(starts), dtype=np.int64)
            last[seg[ci]] = d[ci]  # ascending order: the last write per group wins
            self._went_out(seg_g[emptied], last[emptied])
        si = np.flatnonzero(~conf)
        if len(si):
            first = np.full(len(starts), INF, dtype=np.int64)
            first[seg[si][::-1]] = d[si][::-1]  # reversed: the first write wins
            self.first_sold_out_ns[seg_g] = np.minimum(self.first_sold_out_ns[seg_g], first)
        return conf

    def _chains(
        self,
        limited: Bool,
        group: I64,
        done: I64,
        qty: I64,
        sub: I64 | None,
        buyers: tuple[I64, I64, Bool],
    ) -> _Chains | None:
        """The rows of buyers who order more than once, and the groups where a limit binds.

        Only such a buyer (``check``: the schedule marks all their orders) can meet the limit.
        Per buyer, take-if-fits against limit − units held, as if every order within the limit
        were confirmed: where all fit, the limit binds nowhere in the group (confirming fewer
        leaves more room) and the usual stock decision stands.
        """
        assert self.limits is not None
        product, buyer, check = buyers
        rows = rows_of(limited & check)
        if not len(rows):
            return None
        rows = rows[lex_order((buyer[rows],))]  # stable: a buyer's rows stay ascending
        b = buyer[rows]
        starts = seg_starts(b)
        b = b[starts]
        held = self._held(b)
        room = self.limits[product[rows[starts]]] - held
        q = qty[rows]
        ok = np.ones(len(rows), dtype=bool)
        # a chain asking no more than its room fits whole; only the others (a few) need
        # their orders in completion order, take if fits
        over = np.flatnonzero(np.add.reduceat(q, starts) > room)
        if not len(over):
            return _Chains(rows, q, starts, b, held, np.empty(0, dtype=np.int64), ok)
        lengths = seg_lengths(starts, len(rows))[over]
        at = np.cumsum(lengths) - lengths  # where each of them starts among their rows
        chain = np.repeat(np.arange(len(over)), lengths)
        sel = np.repeat(starts[over] - at, lengths) + np.arange(len(chain))
        keys = (done[rows[sel]],) if sub is None else (sub[rows[sel]], done[rows[sel]])
        o = lex_order((*keys, chain))  # each chain's rows stay where they were; ties too
        sel, chain = sel[o], chain[o]
        ok[sel] = fits_in_order(at, chain, q[sel], room[over])
        binding = np.unique(group[rows[~ok]])
        return _Chains(rows, q, starts, b, held, binding, ok)

    def _fit_within_limits(
        self,
        binding: I64,
        group: I64,
        qty: I64,
        skip: Bool | None,
        bad: npt.NDArray[np.intp],
        demand: I64,
    ) -> Bool:
        """Of the groups where a limit binds, which have stock for every order within the
        limit (``bad``: the orders over it, were the others confirmed); ``demand``: the units
        every row asks per group. Those groups' other orders all fit: they are decided as
        usual, as :meth:`_decide_limited` would (a buyer's orders all name one product, the
        schedule's repeat buyers copy their first order's, so the chains are per
        (buyer, product))."""
        asked = demand[binding]
        if skip is not None:  # replays take nothing
            sk = np.flatnonzero(skip)
            asked -= sum_by(group[sk], qty[sk], len(self.left))[binding]
        asked -= sum_by(group[bad], qty[bad], len(self.left))[binding]
        left = self.left[binding]
        fit: Bool = (asked <= left) & (left > 0)
        return fit

    def _hold_confirmed(self, limited: Bool | None, outcome: U8, c: _Chains) -> None:
        """Keep the units each buyer who orders again holds now (outside the binding groups,
        which keep their own): units held before plus those confirmed here. ``limited``:
        the rows still to count, where some were taken out since the chains were found."""
        conf = outcome[c.rows] == CONFIRMED
        if limited is not None:
            conf &= limited[c.rows]
        bought = np.add.reduceat(np.where(conf, c.qty, 0), c.starts)
        units = c.held + bought
        keep = bought > 0
        if keep.any():
            self._hold(c.buyer[keep], units[keep])

    def _decide_limited(
        self,
        rows: npt.NDArray[np.intp],
        group: I64,
        done: I64,
        qty: I64,
        sub: I64 | None,
        buyers: tuple[I64, I64, Bool],
        outcome: U8,
        returns: Returned | None = None,
    ) -> None:
        """Decide the rows of products with a per-buyer limit: limit first, then stock.

        Rows go in (group, completion) order; a buyer's orders of a product share its group.
        Per buyer, take-if-fits against limit − units held gives the orders within the limit if
        all of them were confirmed. A group whose orders within the limit all fit confirms
        them; a group with no stock left confirms none (then only units held before count);
        a group in between ("contended", about once per group in a run), or one with units
        coming back among its orders (``returns``), is decided one order at a time.
        """
        assert self.limits is not None
        product, buyer, check = buyers
        keys = (done[rows],) if sub is None else (sub[rows], done[rows])  # rows ascend
        rows = rows[lex_order((*keys, group[rows]))]
        g, d, q, b = group[rows], done[rows], qty[rows], buyer[rows]
        lim = self.limits[product[rows]]
        n = len(rows)
        # each buyer's orders in completion order: chains
        bo = lex_order((b,))  # stable: a buyer's orders stay in completion order
        starts, seg, _ = segments(b[bo])
        need = check[rows][bo]  # only flagged buyers (returning ones) can hold units
        held = np.zeros(n, dtype=np.int64)
        if need.any():
            held[need] = self._held(b[bo][need])
        chain_held = np.maximum.reduceat(held, starts)
        room = lim[bo][starts] - chain_held
        ok = np.empty(n, dtype=bool)
        ok[bo] = fits_in_order(starts, seg, q[bo], room)
        prior = np.empty(n, dtype=np.int64)
        prior[bo] = chain_held[seg]
        # groups: all fit, none left, or contended
        gs, gseg, _ = segments(g, ranks=False)
        gid = g[gs]
        left = self.left[gid]
        total = sum_by(gseg, q * ok, len(gs))
        fits = total <= left
        back: dict[int, tuple[list[int], list[int]]] = {}
        if returns is not None and len(returns[0]):
            rt, rg, rq = returns
            ro = lex_order((rt, rg))
            k_of = np.searchsorted(gid, rg[ro])  # the caller passes returns of these groups
            for k, t, u in zip(k_of.tolist(), rt[ro].tolist(), rq[ro].tolist(), strict=True):
                ts, us = back.setdefault(k, ([], []))
                ts.append(t)
                us.append(u)
        seq = np.zeros(len(gs), dtype=bool)
        seq[list(back)] = True
        out = np.where(ok, CONFIRMED, RING_OVER_LIMIT).astype(np.uint8)
        empty = ~fits & (left == 0) & ~seq
        if empty.any():
            e = empty[gseg]
            out[e] = np.where(prior[e] + q[e] > lim[e], RING_OVER_LIMIT, SOLD_OUT)
        returned = np.zeros(len(gs), dtype=np.int64)
        events: list[tuple[int, int, bool]] = []  # (group, time, back) where units come back
        for k in np.flatnonzero((~fits & (left > 0)) | seq).tolist():
            a = int(gs[k])
            z = int(gs[k + 1]) if k + 1 < len(gs) else n
            ts, us = back.get(k, ([], []))
            ev: list[tuple[int, bool]] | None = [] if k in back else None
            out[a:z] = _in_order(
                int(left[k]), q[a:z], lim[a:z], b[a:z], prior[a:z], d[a:z], ts, us, ev
            )
            returned[k] = sum(us)
            if ev:
                events += [(int(gid[k]), t, up) for t, up in ev]
        conf = out == CONFIRMED
        taken = sum_by(gseg, q * conf, len(gs))
        self.left[gid] += returned - taken
        emptied = (self.left[gid] == 0) & (taken > 0) & ~seq
        if emptied.any():  # zero time: the last confirmed completion (rows in completion order)
            last = np.zeros(len(gs), dtype=np.int64)
            ci = np.flatnonzero(conf)
            last[gseg[ci]] = d[ci]
            self._went_out(gid[emptied], last[emptied])
        if events:  # groups with returns: their own sold-out and back events, in order
            eg, et, eb = (np.array(c) for c in zip(*events, strict=True))
            outs = ~eb.astype(bool)
            # a group may sell out more than once here: its earliest (an indexed assignment
            # would keep the last of repeated groups)
            np.minimum.at(self.zero_ns, eg[outs], et[outs].astype(np.int64))
            self._log(eg.astype(np.int64), et.astype(np.int64), eb.astype(bool))
        so = np.flatnonzero(out == SOLD_OUT)
        if len(so):
            first = np.full(len(gs), INF, dtype=np.int64)
            first[gseg[so][::-1]] = d[so][::-1]  # reversed: the first write wins
            self.first_sold_out_ns[gid] = np.minimum(self.first_sold_out_ns[gid], first)
        outcome[rows] = out
        # units now held by each buyer who bought here, kept for those who order again
        bought = sum_by(seg, (q * conf)[bo], len(starts))
        units = chain_held + bought
        keep = (bought > 0) & need[starts]
        if keep.any():
            self._hold(b[bo][starts][keep], units[keep])

    def _take_returning(
        self,
        rows: npt.NDArray[np.intp],
        group: I64,
        done: I64,
        qty: I64,
        sub: I64 | None,
        returns: Returned,
    ) -> U8:
        """Decide ``rows`` (groups with units coming back among them) with those returns, in
        completion order; an order completing at the very time of a return comes first.
        Returns their outcomes (CONFIRMED or SOLD_OUT)."""
        rt, rg, rq = returns
        nr, nb = len(rows), len(rt)
        eg = np.concatenate((group[rows], rg))
        et = np.concatenate((done[rows], rt))
        kind = np.concatenate((np.zeros(nr, dtype=np.int64), np.ones(nb, dtype=np.int64)))
        es = kind if sub is None else np.concatenate((sub[rows], np.zeros(nb, np.int64)))
        o = lex_order((es, kind, et, eg))
        g, t, q = eg[o], et[o], np.concatenate((qty[rows], rq))[o]
        back = o >= nr
        starts, seg, _ = segments(g, ranks=False)
        seg_g = g[starts]
        conf, free = take_with_returns(starts, q, back, self.left[seg_g])
        ends = np.append(starts[1:], len(g)) - 1
        self.left[seg_g] = free[ends]
        is_order = ~back
        result = np.empty(nr, dtype=np.uint8)
        result[o[is_order]] = np.where(conf[is_order], CONFIRMED, SOLD_OUT)
        refused = np.flatnonzero(is_order & ~conf)
        if len(refused):
            first = np.full(len(starts), INF, dtype=np.int64)
            first[seg[refused][::-1]] = t[refused][::-1]  # reversed: the first write wins
            self.first_sold_out_ns[seg_g] = np.minimum(self.first_sold_out_ns[seg_g], first)
        # sold out: an order took the last unit; back: units came to a group that had none
        out = conf & (free == 0)
        if out.any():
            zero = np.full(len(starts), INF, dtype=np.int64)
            zero[seg[out][::-1]] = t[out][::-1]  # reversed: the first write wins
            self.zero_ns[seg_g] = np.minimum(self.zero_ns[seg_g], zero)
        came = back & (free == q) & (q > 0)
        ev = np.flatnonzero(out | came)
        if len(ev):
            self._log(g[ev], t[ev], came[ev])
        return result

    def give_back(self, t: I64, group: I64, qty: I64) -> None:
        """Units coming back to groups with no order left to decide before them."""
        if not len(t):
            return
        empty = self.left == 0  # only groups out of stock log a return
        if empty.any() and (empty[group] & (qty > 0)).any():
            out = np.flatnonzero(self.left[group] == 0)
            o = out[lex_order((t[out], group[out]))]
            g, tt, q = group[o], t[o], qty[o]
            starts, seg, _ = segments(g, ranks=False)
            before = seg_cumsum(q, starts, seg) - q
            came = (before == 0) & (q > 0)
            if came.any():
                self._log(g[came], tt[came], came[came])
        np.add.at(self.left, group, qty)

    def give_back_chunks(self, chunks: list[Unjoined]) -> None:
        """:meth:`give_back` of chunks of returns as kept (time, group·2¹⁶ + units); where no
        group is out of stock (no return to log) their times are not even joined."""
        if not chunks:
            return
        if (self.left == 0).any():
            self.give_back(*joined(chunks))
            return
        packed = chunks[0][1] if len(chunks) == 1 else np.concatenate([c[1] for c in chunks])
        np.add.at(self.left, *unpack(packed))

    def _went_out(self, group: I64, t: I64) -> None:
        """These groups (each once, sorted) sold out at ``t``."""
        self.zero_ns[group] = np.minimum(self.zero_ns[group], t)
        was_in = self.out_since[group] == INF  # a guard: events alternate per group
        group, t = group[was_in], t[was_in]
        self._log(group, t, np.zeros(len(group), dtype=bool))

    def _log(self, group: I64, t: I64, back: Bool) -> None:
        """Sold-out (``back`` False) and back-in-stock events, sorted by (group, time); per
        group they alternate, starting from the group's state."""
        self.groups.log(group, t, back)
        if self.shards > 1 and len(group):
            self._events.append((group, t, back))

    def log_skus(self, before: int = INF) -> None:
        """Merge the groups' events before ``before`` into the SKUs' (the caller's bound: no
        event still to come is earlier). A SKU is out while all its shards are; events at one
        time count together (no zero-length intervals). Later events wait for a later call."""
        if not self._events:
            return
        group, t, back = (np.concatenate(c) for c in zip(*self._events, strict=True))
        self._events = []
        if before < INF and (t >= before).any():
            wait = t >= before
            self._events.append((group[wait], t[wait], back[wait]))
            now = np.flatnonzero(~wait)
            group, t, back = group[now], t[now], back[now]
            if not len(group):
                return
        product = group // self.shards
        o = lex_order((t, product))
        product, t = product[o], t[o]
        starts, seg, _ = segments(product, ranks=False)
        out_now = self._shards_out[product] + seg_cumsum(np.where(back[o], -1, 1), starts, seg)
        # the shards out after each (SKU, time), and before it
        last = np.flatnonzero(np.append((product[1:] != product[:-1]) | (t[1:] != t[:-1]), True))
        after = out_now[last]
        prior = np.concatenate(([0], after[:-1]))
        first = np.append(True, product[last][1:] != product[last][:-1])
        prior[first] = self._shards_out[product[last][first]]
        k = self.shards
        went = (prior < k) & (after == k)
        came = (prior == k) & (after < k)
        ev = np.flatnonzero(went | came)
        pl = product[last]
        self.skus.log(pl[ev], t[last][ev], came[ev])
        end = np.append(pl[1:] != pl[:-1], True)  # each SKU's last time: its count now
        self._shards_out[pl[end]] = after[end]

    def _held(self, buyer: I64) -> I64:
        """Units the buyers held after earlier batches (0 where nothing is kept)."""
        word = self.held[buyer & self.mask].astype(np.int64)
        tag = (buyer >> self.bits) + 1
        units = word & ((1 << self.units_shift) - 1)
        held: I64 = np.where(word >> self.units_shift == tag, units, 0)
        return held

    def _hold(self, buyer: I64, units: I64) -> None:
        """Keep the units these buyers now hold (saturating at the slot's width)."""
        top = (1 << self.units_shift) - 1
        tag = (buyer >> self.bits) + 1
        if len(tag):
            word_max = (int(tag.max()) << self.units_shift) | top
            if word_max > np.iinfo(self.held.dtype).max:
                self.held = self.held.astype(np.uint32 if word_max < 1 << 32 else np.uint64)
        self.held[buyer & self.mask] = (tag << self.units_shift) | np.minimum(units, top)

    def _false_sold_out(
        self, group: I64, done: I64, outcome: U8
    ) -> tuple[npt.NDArray[np.intp], Bool]:
        """The rows answered sold out, and which of them were false (another shard of the
        product still had stock then)."""
        so = np.flatnonzero(outcome == SOLD_OUT)
        if self.shards == 1 or not len(so):
            return so, np.zeros(len(so), dtype=bool)
        z = self.zero_ns.reshape(self.n_products, self.shards)
        top = z.argmax(axis=1)
        rows = np.arange(self.n_products)
        max1 = z[rows, top]
        z2 = z.copy()
        z2[rows, top] = np.iinfo(np.int64).min
        max2 = z2.max(axis=1)
        other = np.repeat(max1, self.shards).reshape(self.n_products, self.shards)
        other[rows, top] = max2
        false: Bool = done[so] < other.reshape(-1)[group[so]]
        return so, false


def _in_order(
    left: int,
    q: I64,
    lim: I64,
    buyer: I64,
    prior: I64,
    done: I64 | None = None,
    back_t: list[int] | None = None,
    back_units: list[int] | None = None,
    events: list[tuple[int, bool]] | None = None,
) -> U8:
    """One contended group, one order at a time: the storefront's decision, sequentially.

    ``back_t``/``back_units``: units coming back (sorted by time), free for the orders
    completing (``done``) after them. ``events``: where to note (time, back) when the
    group sells out (False) and when units come back to it empty (True).
    """
    out = np.empty(len(q), dtype=np.uint8)
    units: dict[int, int] = {}
    bt, bu = back_t or [], back_units or []
    nb, j = len(bt), 0
    ds = done.tolist() if done is not None else [0] * len(q)
    for i, (qi, li, bi, pi) in enumerate(
        zip(q.tolist(), lim.tolist(), buyer.tolist(), prior.tolist(), strict=True)
    ):
        while j < nb and bt[j] < ds[i]:
            if events is not None and left == 0 and bu[j]:
                events.append((bt[j], True))
            left += bu[j]
            j += 1
        held = units.get(bi, pi)
        if held + qi > li:
            out[i] = RING_OVER_LIMIT
        elif left < qi:
            out[i] = SOLD_OUT
        else:
            out[i] = CONFIRMED
            left -= qi
            units[bi] = held + qi
            if events is not None and left == 0:
                events.append((ds[i], False))
    while j < nb:  # after the group's last order here
        if events is not None and left == 0 and bu[j]:
            events.append((bt[j], True))
        left += bu[j]
        j += 1
    return out


def _first_attempts(
    order: I64, candidate: Bool, free: npt.NDArray[np.intp]
) -> tuple[Bool, npt.NDArray[np.intp]]:
    """Of the rows ``free`` (candidates whose id no earlier batch decided), which have a first
    attempt of their id (a row not a candidate) among these rows, and those first rows.

    The ids of ``free`` are marked in a table over their range (a gather per row), or found by
    binary search where that range is wide.
    """
    ids = order[free]
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo <= 4 * len(order) + (1 << 16):
        mark = np.zeros(hi - lo + 3, dtype=bool)  # 0 and the last: out of range
        mark[ids - (lo - 1)] = True
        # ids outside the range clip to its ends, out of range (take clips as it gathers)
        hit = mark.take(order - (lo - 1), mode="clip")
    else:
        u = np.unique(ids)
        j = np.minimum(np.searchsorted(u, order), len(u) - 1)
        hit = u[j] == order
    np.greater(hit, candidate, out=hit)  # and not a candidate itself
    f = np.flatnonzero(hit)  # first attempts of those ids (one per id)
    if not len(f):
        return np.zeros(len(free), dtype=bool), f
    fo = np.argsort(order[f], kind="stable")
    fid = order[f][fo]
    j = np.minimum(np.searchsorted(fid, ids), len(fid) - 1)
    inb: Bool = fid[j] == ids
    return inb, f[fo[j[inb]]]


def _with(mask: Bool | None, rows: npt.NDArray[np.intp], n: int) -> Bool:
    """``mask`` (None: all False) with ``rows`` set."""
    out = np.zeros(n, dtype=bool) if mask is None else mask.copy()
    out[rows] = True
    return out


def _pick(r: Returned, mask: Bool) -> Returned:
    return r[0][mask], r[1][mask], r[2][mask]


def pack(group: I64, qty: I64) -> I64:
    """Group·2¹⁶ + units: a return's group and units in one word (quantities are < 2¹⁶)."""
    packed = group << 16
    packed |= qty
    return packed


def unpack(packed: I64) -> tuple[I64, I64]:
    """:func:`pack`'s words as (group, units)."""
    return packed >> 16, packed & 0xFFFF


def joined(chunks: list[Unjoined]) -> Returned:
    """Chunks of returns as kept (:class:`~simulator.model.flow.Returns`) as one
    (t, group, units)."""
    if not chunks:
        e = np.empty(0, dtype=np.int64)
        return e, e, e
    if len(chunks) == 1:
        t, packed = chunks[0]
    else:
        t = np.concatenate([c[0] for c in chunks])
        packed = np.concatenate([c[1] for c in chunks])
    return t, *unpack(packed)
