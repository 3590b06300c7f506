"""The flash-sale flow in the model: the stock kernel with returns against a plain reference,
holds ending exactly once, conservation, the token bucket, and ``simulate`` with the keys."""

from __future__ import annotations

import dataclasses
import itertools
import json
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main as cli_main
from simulator.model import Model, build_report, config_for
from simulator.model.flow import CANCELLED, EXPIRED, PAID, FlowSettings
from simulator.model.kernels import admit_fifo, segments
from simulator.model.stock import INF, Outages, StockBook, take_with_returns
from simulator.outcomes import CONFIRMED, SOLD_OUT
from simulator.scenario import Scenario, parse_scenario
from simulator.scenario.model import Think, normal_quantile
from simulator.storefront.admission import TokenBucket

# -- the kernel against one event at a time ---------------------------------------------------


def reference_take(
    seg: list[int], q: list[int], back: list[bool], room: list[int]
) -> tuple[list[bool], list[int]]:
    """Events in sequence: a return adds its units, an order takes its units if they fit."""
    free = dict(enumerate(room))
    conf, after = [], []
    for s, qi, bi in zip(seg, q, back, strict=True):
        ok = False
        if bi:
            free[s] += qi
        elif qi <= free[s]:
            free[s] -= qi
            ok = True
        conf.append(ok)
        after.append(free[s])
    return conf, after


events = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 4), st.booleans()), min_size=0, max_size=300
)


@settings(max_examples=300, deadline=None)
@given(events, st.lists(st.integers(0, 12), min_size=5, max_size=5))
def test_take_with_returns_matches_one_event_at_a_time(ev, rooms):
    ev = sorted(ev, key=lambda e: e[0])  # stable: the sequence within a segment is kept
    seg = np.array([e[0] for e in ev], dtype=np.int64)
    q = np.array([e[1] for e in ev], dtype=np.int64)
    back = np.array([e[2] for e in ev], dtype=bool)
    starts, sg, _ = segments(seg)
    room = np.array([rooms[int(seg[s])] for s in starts], dtype=np.int64)
    conf, free = take_with_returns(starts, q, back, room)
    ref_conf, ref_free = reference_take(sg.tolist(), q.tolist(), back.tolist(), room.tolist())
    assert conf.tolist() == ref_conf and free.tolist() == ref_free
    assert (free >= 0).all()  # never negative stock
    # conservation per segment: start + returned − taken = what is left
    for k, s in enumerate(starts.tolist()):
        e = int(starts[k + 1]) if k + 1 < len(starts) else len(seg)
        taken = int((q[s:e] * conf[s:e]).sum())
        returned = int((q[s:e] * back[s:e]).sum())
        assert room[k] + returned - taken == free[e - 1]


def reference_book(
    stock: list[int], orders: list[tuple[int, int, int]], returns: list[tuple[int, int, int]]
) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """One group per product (one shard), orders (group, done, qty) by completion, returns
    (group, t, qty) free for orders completing after t. Outcomes, stock left, sold-out
    counts and the [start, end) of each sold-out interval."""
    free = list(stock)
    outs = [1 if s == 0 else 0 for s in stock]
    spans: list[list[int]] = [[0] if s == 0 else [] for s in stock]
    ev = [(d, 0, i, g, q) for i, (g, d, q) in enumerate(orders)]
    ev += [(t, 1, i, g, q) for i, (g, t, q) in enumerate(returns)]
    result = [0] * len(orders)
    for t, kind, i, g, q in sorted(ev):
        if kind == 1:
            if free[g] == 0 and q:
                spans[g].append(t)
            free[g] += q
        elif q <= free[g]:
            free[g] -= q
            result[i] = CONFIRMED
            if free[g] == 0:
                outs[g] += 1
                spans[g].append(t)
        else:
            result[i] = SOLD_OUT
    return result, free, outs, spans


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400), st.integers(1, 3)), max_size=120),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400), st.integers(1, 3)), max_size=40),
)
def test_stock_book_with_returns_matches_the_reference(stock, orders, returns):
    n = len(stock)
    orders = [(g % n, d * 2, q) for g, d, q in orders]  # even times for orders,
    returns = [(g % n, t * 2 + 1, q) for g, t, q in returns]  # odd for returns: no ties
    book = StockBook(np.array(stock, dtype=np.int64), 1, 12)
    g = np.array([o[0] for o in orders], dtype=np.int64)
    d = np.array([o[1] for o in orders], dtype=np.int64)
    q = np.array([o[2] for o in orders], dtype=np.int64)
    ids = np.arange(len(orders), dtype=np.int64)
    rt = np.array([r[1] for r in returns], dtype=np.int64)
    rg = np.array([r[0] for r in returns], dtype=np.int64)
    rq = np.array([r[2] for r in returns], dtype=np.int64)
    # as the driver does: returns before a later order of their group are merged, the
    # others come back after the batch
    gmax = np.full(n, -1, dtype=np.int64)
    np.maximum.at(gmax, g, d)
    merge = rt < gmax[rg]
    outcome, _, _ = book.resolve(
        g, d, q, ids, np.zeros(len(g), dtype=bool), returns=(rt[merge], rg[merge], rq[merge])
    )
    book.give_back(rt[~merge], rg[~merge], rq[~merge])
    want, free, outs, spans = reference_book(stock, orders, returns)
    assert outcome.tolist() == want
    assert book.left.tolist() == free
    assert book.outages.tolist() == outs
    for j in range(n):
        got = [int(x) for x in book.spans[j].ravel() if x != INF]
        assert got == spans[j][: len(got)] and len(got) == min(len(spans[j]), 8)
    # conservation: initial + returned = taken + free
    taken = int((q * (outcome == CONFIRMED)).sum())
    assert sum(stock) + int(rq.sum()) == taken + int(book.left.sum())


# -- holds end once; the token bucket ----------------------------------------------------------


def test_each_hold_ends_exactly_once_as_its_draws_say():
    delay = Think("uniform", 1e-6, 2e-5)  # 1 000 … 20 000 ns
    flow = FlowSettings(ttl_ns=10_000, pay_share=0.5, pay_delay=delay, abandon_share=0.5)
    order = np.arange(20_000, dtype=np.int64)
    done = np.full(len(order), 5_000, dtype=np.int64)
    end, at = flow.ends(order, done, seed=3)
    assert set(np.unique(end).tolist()) == {PAID, CANCELLED, EXPIRED}
    assert (at[end == EXPIRED] == done[end == EXPIRED] + 10_000).all()
    assert (at[end != EXPIRED] - done[end != EXPIRED] < 10_000).all()  # paid/cancelled in time
    # pays ≈ half of the holders, of whom those with a delay under the TTL (~9/19) pay in time
    assert abs((end == PAID).mean() - 0.5 * 9 / 19) < 0.02
    end2, at2 = flow.ends(order, done, seed=3)
    assert (end2 == end).all() and (at2 == at).all()  # a pure function of the order


def test_the_normal_quantile_is_accurate_and_monotone_on_the_model_grid():
    u = (np.arange(1 << 21, dtype=np.float64) + 0.5) / (1 << 21)  # the model's delay grid
    z = normal_quantile(u)
    assert (np.diff(z) > 0).all()
    for x in [1e-6, 0.001, 0.02425, 0.1, 0.3, 0.5, 0.77, 0.97575, 0.999, 1 - 1e-6]:
        assert abs(float(normal_quantile(np.array([x]))[0]) - NormalDist().inv_cdf(x)) < 1e-8


delays = st.one_of(
    st.tuples(st.just("uniform"), st.integers(1, 5_000), st.integers(0, 40_000)).map(
        lambda x: Think("uniform", x[1] * 1e-6, (x[1] + x[2]) * 1e-6)
    ),
    st.integers(1, 40_000).map(lambda a: Think("constant", a * 1e-6)),
    st.tuples(st.integers(1, 20_000), st.floats(0.0, 3.0), st.integers(1, 20_000)).map(
        lambda x: Think("lognormal", max(x) * 1e-6, x[1], min(x[0], x[2]) * 1e-6)
    ),
    st.tuples(st.integers(1, 20_000), st.integers(1, 20_000)).map(
        lambda x: Think("exponential", max(x) * 1e-6, 0.0, min(x) * 1e-6)
    ),
)


@settings(max_examples=150, deadline=None)
@given(delays, st.integers(1_000, 30_000), st.integers(0, 2**31))
def test_delays_are_bounded_below_and_in_time_means_before_the_ttl(delay, ttl, seed):
    """Every delay ≥ the distribution's lowest value (the windows' bound); a buyer who pays
    (everyone here) pays in time exactly when the delay is < the TTL."""
    flow = FlowSettings(ttl_ns=ttl, pay_share=1.0, pay_delay=delay, abandon_share=0.0)
    order = np.arange(3_000, dtype=np.int64)
    end, w = flow.draw(order, seed)
    d = flow.delay(w)
    lowest = round(delay.lowest * 1e9)
    assert (d >= lowest).all() and flow.min_lag_ns() == ttl
    assert ((end == PAID) == (d < ttl)).all()
    cancels = FlowSettings(ttl_ns=ttl, pay_share=0.5, pay_delay=delay, abandon_share=0.5)
    assert cancels.min_lag_ns() == min(ttl, lowest)
    end, at = cancels.ends(order, np.zeros(len(order), dtype=np.int64), seed)
    assert (at[end != EXPIRED] >= cancels.min_lag_ns()).all()
    assert (at[end != EXPIRED] < ttl).all() and (at[end == EXPIRED] == ttl).all()


@pytest.mark.parametrize(
    ("delay", "check"),
    [
        (Think("lognormal", 2.0, 0.8, 0.5), lambda s: abs(np.median(s) - 2.0) < 0.02),
        (
            Think("exponential", 1.5, 0.0, 0.25),
            lambda s: abs(s.mean() - 1.5 * np.exp(-1 / 6) - 0.25) < 0.02,
        ),
        (Think("uniform", 1.0, 3.0), lambda s: abs(s.mean() - 2.0) < 0.01),
    ],
    ids=["lognormal", "exponential", "uniform"],
)
def test_the_models_delays_follow_the_distribution(delay, check):
    flow = FlowSettings(ttl_ns=100 * 10**9, pay_share=1.0, pay_delay=delay)
    _, w = flow.draw(np.arange(200_000, dtype=np.int64), 11)
    s = flow.delay(w) / 1e9
    assert check(s) and s.min() >= delay.lowest
    # the journey's draws (Box–Muller for a lognormal) have the same quartiles
    rng = np.random.default_rng(2)
    j = delay.draw(rng.random(200_000), rng.random(200_000))
    assert np.allclose(
        np.quantile(s, [0.25, 0.5, 0.75]), np.quantile(j, [0.25, 0.5, 0.75]), rtol=0.02
    )


def test_a_delay_that_can_reach_zero_is_refused_when_buyers_cancel():
    with pytest.raises(ValueError, match="can be 0: give a lowest delay"):
        FlowSettings(
            ttl_ns=10**9, pay_share=0.5, pay_delay=Think("exponential", 1.0), abandon_share=0.5
        )
    FlowSettings(ttl_ns=10**9, pay_share=0.5, pay_delay=Think("exponential", 1.0))  # all leave


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2_000), min_size=1, max_size=200),
    st.sampled_from([1, 2, 4, 8]),  # a token every 2^k ticks: the bucket's floats are exact
    st.integers(1, 6),
)
def test_token_bucket_is_the_admission_kernel(arrivals, per_token, burst):
    """GCRA on the FIFO admission kernel against the storefront's own TokenBucket."""
    t = np.sort(np.array(arrivals, dtype=np.int64))
    now = [0.0]
    bucket = TokenBucket(1.0 / per_token, burst, lambda: now[0])
    want = []
    for a in t.tolist():
        now[0] = float(a)
        want.append(bucket.take() == 0.0)
    tail = np.full((1, burst), -(1 << 62), dtype=np.int64)
    adm, _, _ = admit_fifo(
        np.zeros(len(t), dtype=np.int64), t, np.full(len(t), per_token, np.int64), tail
    )
    assert adm.tolist() == want


# -- the model with the flow ------------------------------------------------------------------


def flow_scenario(ttl: float | None = 2.0, **buyers: Any) -> Scenario:
    storefront: dict[str, Any] = {} if ttl is None else {"reservation_ttl_s": ttl}
    data: dict[str, Any] = {
        "name": "flow",
        "seed": 5,
        "duration_s": 8.0,
        "products": [
            {"id": "a", "stock": 300, "weight": 3.0},
            {"id": "b", "stock": 100, "weight": 1.0, "per_buyer_limit": 2},
        ],
        "demand": {
            "baseline_per_s": 300.0,
            "spike": {"at_s": 0.5, "peak_per_s": 1500.0, "half_life_s": 0.5},
        },
        "buyers": {
            "qty_values": [1, 2],
            "qty_weights": [0.7, 0.3],
            "duplicate_share": 0.05,
            "repeat_share": 0.2,
            "retry": {"share": 0.5, "max_attempts": 3, "backoff_s": 0.05},
            "pay_share": 0.5,
            "pay_delay_s": [0.2, 3.0],
            "abandon_share": 0.5,
            **buyers,
        },
        "storefront": storefront,
    }
    return parse_scenario(data, "flow.toml")


@pytest.mark.parametrize("shards", [1, 3])
def test_model_flow_conserves_stock_and_sells_returns_again(shards):
    sc = flow_scenario()
    result = Model(sc, config_for(sc, shards=shards)).run()
    report = build_report(result)
    flow = report["flow"]
    assert result.holds is not None
    assert (
        flow["reserved_units"]
        == flow["paid_units"] + flow["cancelled_units"] + flow["expired_units"]
    )
    assert flow["cancelled_units"] > 0 and flow["expired_units"] > 0
    assert flow["reserved_units"] > 400  # returned units sold again: more than the stock
    for p in sc.products:
        s = report["skus"][p.id]
        # every hold ended (the model settles them): initial = paid + free
        assert s["stock"] == s["paid_units"] + s["free_units"]
        assert s["sold_units"] == s["paid_units"]
    a = report["skus"]["a"]
    if shards == 1:
        assert a["sold_out_intervals"] >= 2 and a["first_available_again_s"] is not None
        start, end = a["sold_out_spans"][0]
        assert start < end == a["first_available_again_s"]
    assert report["audit"]["oversell_units"] == 0
    assert sum(report["orders"]["outcomes"].values()) == report["orders"]["scheduled"]


def test_everyone_paying_in_time_is_the_model_without_the_flow():
    """No hold comes back: the same answers as when orders are final."""
    sc = flow_scenario(ttl=5.0, pay_share=1.0, pay_delay_s=[0.1, 1.0])
    with_flow = build_report(Model(sc, config_for(sc)).run())
    plain = build_report(Model(sc, config_for(sc).replace(reservation_ttl_s=None)).run())
    assert with_flow["orders"] == plain["orders"]
    assert with_flow["flow"]["paid_units"] == with_flow["orders"]["confirmed_units"]
    assert "flow" not in plain


@pytest.mark.parametrize(
    "pay_delay",
    [[0.2, 3.0], {"median": 0.8, "sigma": 1.0, "min": 0.05}, {"mean": 1.0, "min": 0.04}],
    ids=["uniform", "lognormal", "exponential"],
)
def test_results_do_not_depend_on_the_window(pay_delay):
    sc = flow_scenario(pay_delay_s=pay_delay)
    cfg = config_for(sc)
    a = build_report(Model(sc, cfg).run())
    b = build_report(Model(sc, cfg.replace(window_s=0.013)).run())
    assert a["orders"] == b["orders"] and a["flow"] == b["flow"]
    assert a["skus"] == b["skus"]


def test_a_shard_sells_out_when_its_first_sold_out_interval_starts_whatever_the_window():
    """durian-1111 on 8 shards with 2 s holds: shards sell out, get units back and sell out
    again, often several times in one window where the per-buyer limit binds (decided one
    order at a time). A shard's sell-out time is the start of its first sold-out interval,
    and neither depends on the window (it kept the last of a window's sell-outs)."""
    from pathlib import Path

    from simulator.scenario import load_scenario

    sc = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "durian-1111.toml")
    buyers = {"pay_share": 0.7, "pay_delay_s": Think("uniform", 0.5, 5.0), "abandon_share": 0.5}
    sc = dataclasses.replace(sc, buyers=dataclasses.replace(sc.buyers, **buyers))
    cfg = config_for(sc, shards=8, service_median_ms=0.2, reservation_ttl_s=2.0)
    books, reports = [], []
    for w in (0.1, 0.5):
        result = Model(sc, cfg.replace(window_s=w), 20.0).run()
        books.append(result.stock)
        reports.append(build_report(result))
    for book in books:
        assert (book.outages > 1).any()  # sold out again after units came back
        assert (book.zero_ns == book.spans[:, 0, 0]).all()
    assert (books[0].zero_ns == books[1].zero_ns).all()
    assert reports[0]["skus"] == reports[1]["skus"]
    assert reports[0]["orders"] == reports[1]["orders"]


def test_token_bucket_throttles_and_buyers_retry():
    sc = flow_scenario(ttl=None)
    sc = dataclasses.replace(sc, storefront=dataclasses.replace(sc.storefront, admit_per_s=200.0))
    report = build_report(Model(sc, config_for(sc)).run())
    flow = report["flow"]
    assert flow["admission_throttled"] > 0 and flow["burst"] == 0
    assert report["orders"]["attempt_outcomes"]["throttled"] == flow["admission_throttled"]
    assert report["orders"]["retries"] > 0
    # no more admitted than the bucket gives: a second's worth at the start, then the rate
    admitted = report["orders"]["attempts"] - flow["admission_throttled"]
    assert admitted <= 200 + 200 * (report["scenario"]["duration_s"] + 2)


# -- the command line -------------------------------------------------------------------------

FLOW_TOML = """
name = "cli-flow"
seed = 3
duration_s = 6.0
[[products]]
id = "a"
stock = 200
[demand]
baseline_per_s = 200.0
spike = {{ at_s = 0.5, peak_per_s = 800.0, half_life_s = 0.5 }}
[buyers]
pay_share = {pay_share}
pay_delay_s = {pay_delay_s}
abandon_share = 0.3
[storefront]
reservation_ttl_s = {ttl}
admit_per_s = 500.0
burst = 50
"""


def test_cli_simulates_the_flow(tmp_path, capsys):
    path = tmp_path / "flow.toml"
    path.write_text(FLOW_TOML.format(pay_share=0.4, pay_delay_s="[0.5, 4.0]", ttl=1.5))
    assert cli_main(["simulate", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    flow = report["flow"]
    assert flow["reservation_ttl_s"] == 1.5 and flow["pay_share"] == 0.4
    assert flow["pay_delay_s"] == [0.5, 4.0] and flow["abandon_share"] == 0.3
    assert flow["reserved_units"] > 200 and flow["admission_throttled"] > 0
    sku = report["skus"]["a"]
    assert sku["stock"] == sku["paid_units"] + sku["free_units"]
    assert sku["sold_out_intervals"] >= 1
    assert cli_main(["simulate", str(path)]) == 0
    text = capsys.readouterr().out
    assert "flow       TTL 1.5 s:" in text and "token bucket 500/s:" in text


def test_cli_simulates_a_lognormal_pay_delay(tmp_path, capsys):
    path = tmp_path / "flow.toml"
    delay = "{ median = 1.0, sigma = 0.7, min = 0.1 }"
    path.write_text(FLOW_TOML.format(pay_share=0.4, pay_delay_s=delay, ttl=1.5))
    assert cli_main(["simulate", str(path), "--json"]) == 0
    flow = json.loads(capsys.readouterr().out)["flow"]
    assert flow["pay_delay_s"] == {"median": 1.0, "sigma": 0.7, "min": 0.1}
    assert (
        flow["reserved_units"]
        == flow["paid_units"] + flow["cancelled_units"] + flow["expired_units"]
    )
    assert flow["paid_units"] > 0 and flow["cancelled_units"] > 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pay_share": 1.5}, "flow.toml: buyers.pay_share: must be ≤ 1, got 1.5"),
        ({"pay_delay_s": "[0, 2]"}, "flow.toml: buyers.pay_delay_s: every entry must be ≥ 0.001"),
        ({"pay_delay_s": "[3, 2]"}, "flow.toml: buyers.pay_delay_s: [a, b] needs a ≤ b"),
        ({"pay_delay_s": "{ mean = 2.0 }"}, "flow.toml: buyers.pay_delay_s: an exponential delay"),
        ({"pay_delay_s": "{ median = 1, min = 0 }"}, "buyers.pay_delay_s.min: must be ≥ 0.001"),
        ({"ttl": "0.0005"}, "reservation_ttl_s must be ≥ 0.001 s in the model"),
        ({"ttl": "-1"}, "flow.toml: storefront.reservation_ttl_s: must be > 0, got -1"),
    ],
)
def test_cli_refuses_bad_flow_values_in_one_line(tmp_path, capsys, values, message):
    fields = {"pay_share": 0.5, "pay_delay_s": "[0.5, 4.0]", "ttl": 1.5, **values}
    path = tmp_path / "flow.toml"
    path.write_text(FLOW_TOML.format(**fields))
    assert cli_main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_overload_decided_early_keeps_the_flow_exact():
    """Servers far behind: queued orders are decided at once, in slices no longer than the
    shortest hold, so every return still lands among the orders after it (one server per
    shard: the same answers, holds and stock as when nothing is decided early)."""
    sc = flow_scenario(ttl=0.5)
    cfg = config_for(sc, shards=2, service_median_ms=2.5, service_sigma=0.5, timeout_s=30.0)
    kept = Model(sc, cfg).run()
    early = Model(sc, cfg).run(backlog_rows=50)
    a, b = build_report(kept), build_report(early)
    assert b["overload"]["decided_early"] > 0 and a["overload"]["decided_early"] == 0
    assert a["orders"]["outcomes"]["sold_out"] > 0
    assert a["orders"]["outcomes"] == b["orders"]["outcomes"] and a["flow"] == b["flow"]
    assert kept.stock.left.tolist() == early.stock.left.tolist()
    assert [s["sold_out_intervals"] for s in a["skus"].values()] == [
        s["sold_out_intervals"] for s in b["skus"].values()
    ]


def _intervals(events: list[tuple[int, bool]], out_at_start: bool) -> list[list[int]]:
    """[start, end) sold-out intervals from one unit's alternating events (end INF: open)."""
    spans: list[list[int]] = [[0, INF]] if out_at_start else []
    for t, back in sorted(events):
        if back:
            spans[-1][1] = t
        else:
            spans.append([t, INF])
    return spans


def _all_out(per_shard: list[list[list[int]]]) -> list[list[int]]:
    """Times every shard is out at once, as [start, end) intervals (none of zero length)."""
    edges = sorted({x for spans in per_shard for span in spans for x in span})
    out: list[list[int]] = []
    for a, b in itertools.pairwise(edges):
        if all(any(s <= a and b <= e for s, e in spans) for spans in per_shard):
            if out and out[-1][1] == a:
                out[-1][1] = b
            else:
                out.append([a, b])
    return out


@pytest.mark.parametrize(
    ("shards", "service_ms", "backlog_rows"), [(3, 1.0, 1 << 20), (2, 2.5, 50)]
)
def test_a_sku_is_sold_out_while_all_its_shards_are(shards, service_ms, backlog_rows):
    """The SKU's sold-out intervals are the intersection of its shards' (every shard's events
    recorded as they are logged), also when an overload decides orders early and out of
    time order across shards."""
    sc = flow_scenario(ttl=0.5)
    cfg = config_for(sc, shards=shards, service_median_ms=service_ms, timeout_s=30.0)
    model = Model(sc, cfg)
    seen: dict[int, list[tuple[int, bool]]] = {}
    log = Outages.log

    def record(self: Outages, unit: np.ndarray, t: np.ndarray, back: np.ndarray) -> None:
        if self.spans.shape[0] == len(sc.products) * shards:  # the groups' log
            for u, ti, b in zip(unit.tolist(), t.tolist(), back.tolist(), strict=True):
                seen.setdefault(u, []).append((ti, b))
        log(self, unit, t, back)

    Outages.log = record  # type: ignore[method-assign]
    try:
        result = model.run(backlog_rows=backlog_rows)
    finally:
        Outages.log = log  # type: ignore[method-assign]
    book = result.stock
    report = build_report(result)
    checked = 0
    for i, p in enumerate(sc.products):
        groups = range(i * shards, (i + 1) * shards)
        per_shard = [_intervals(seen.get(g, []), bool(book.initial[g] == 0)) for g in groups]
        want = _all_out(per_shard)
        got = book.skus.spans[i][: min(len(want), book.skus.spans.shape[1])].tolist()
        assert got == want[: len(got)] and int(book.skus.outages[i]) == len(want)
        sku = report["skus"][p.id]
        assert sku["sold_out_intervals"] == len(want)
        assert sku["shard_sold_out_intervals"] == [len(s) for s in per_shard]
        back = [s[1] for s in want if s[1] < INF][:1]
        assert sku["first_available_again_s"] == (round(back[0] / 1e9, 4) if back else None)
        checked += len(want)
    assert checked > 0  # SKUs did sell out (and came back)
    if backlog_rows < 1 << 20:
        assert report["overload"]["decided_early"] > 0
