"""The audit of the reservation lifecycle against real storefronts on loopback, every backend.

A storefront in a child process of its own (as ``flashsale run`` starts the bundled one) with a
0.2 s reservation TTL and its sweeper running; buyers reserve, pay, cancel or walk away over HTTP
(aiohttp), many of them around the deadline, while the sweeper expires holds. Then the audit
reads the storefront's records the way the runner does (:func:`simulator.audit_sources.
read_records` for the scenario's target, then :func:`simulator.audit.audit_view`):

- the correct backends (memory, Redis, PostgreSQL) keep ``initial = paid + held + free`` and
  ``reserved = paid + held + returned`` per SKU, and the audit passes;
- the racy twins break it, and the audit names how (double returns, payments after expiry,
  stock beyond the initial, oversell) with the storefront's own counts;
- a storefront whose sweeper has stopped leaves holds past their expiry: undersell, named.

How many buyers beat the deadline depends on the host's speed, so the assertions hold whatever
the interleaving (which breakage a racy store shows first is not fixed, that it shows one is).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulator.audit import ClientView, audit_view
from simulator.audit_sources import read_records
from simulator.load.target import Target
from simulator.load.transport import parse_endpoint
from simulator.outcomes import CONFIRMED, OUTCOME_NAMES
from simulator.report.document import Report
from simulator.report.html import render_html
from simulator.report.sections import Audit, Orders, StockHistory
from simulator.report.terminal import render_text
from simulator.scenario import Scenario, load_scenario
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.process import storefront_process
from tests.storefront.conftest import _drop_namespace

CORRECT = ("memory", "redis", "postgres")
RACY = ("memory-racy", "redis-racy", "postgres-racy")
TTL_S = 0.2
STOCKS = {"durian": 40, "walet": 15}
BUYERS = 160

SCENARIO = """
name = "lifecycle-audit"
seed = 13
duration_s = 2.0
[[products]]
id = "durian"
stock = 40
[[products]]
id = "walet"
stock = 15
[demand]
baseline_per_s = 10.0
[target]
url = "{url}"
"""


@pytest.fixture
def shop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``with shop(backend, **settings) as url``: a storefront process in its own namespace."""
    dropped: list[tuple[str, str, str]] = []

    @contextmanager
    def _shop(backend: str, **kw: Any) -> Iterator[str]:
        store: dict[str, Any] = {}
        url = ""
        if backend.startswith("redis"):
            store["redis_url"] = url = request.getfixturevalue("redis_url")
        elif backend.startswith("postgres"):
            store["postgres_dsn"] = url = request.getfixturevalue("postgres_dsn")
        namespace = f"fs_life_{uuid.uuid4().hex[:12]}"
        dropped.append((backend, namespace, url))
        settings = StorefrontSettings(
            stocks=STOCKS, backend=backend, namespace=namespace, **store, **kw
        )
        with storefront_process(settings) as shop_url:
            yield shop_url

    yield _shop
    for backend, namespace, url in dropped:
        asyncio.run(_drop_namespace(backend, namespace, url))


def scenario_for(url: str, tmp_path: Path) -> Scenario:
    path = tmp_path / "lifecycle.toml"
    path.write_text(SCENARIO.format(url=url))
    return load_scenario(path)


async def drive(url: str, seed: int) -> tuple[ClientView, Counter[str]]:
    """Buyers over about a second: reserve, then pay (in time or around the deadline), cancel,
    or walk away. Returns what the clients saw as the runner's journeys do (the order step is
    the reservation: each order id confirmed once, with its units), and the units they were
    told they paid for, per SKU."""
    rng = random.Random(seed)
    reserved: dict[str, tuple[str, int]] = {}
    paid: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def buyer(i: int) -> None:
            await asyncio.sleep(rng.uniform(0.0, 1.0))  # arrivals: later ones buy returned stock
            sku = "durian" if i % 3 else "walet"
            order = {"order_id": f"o{i}", "sku": sku, "qty": 1 + (i % 7 == 0), "user_id": f"u{i}"}
            async with http.post(url + "/orders", json=order) as resp:
                if resp.status != 201:
                    assert resp.status == 409, await resp.text()  # sold out (for now)
                    return
                held = await resp.json()
            assert held["status"] == "held" and held["ttl_s"] == TTL_S
            reserved[f"o{i}"] = (sku, int(order["qty"]))
            kind = rng.random()
            if kind < 0.15:
                return  # walks away: the hold expires
            action = "cancel" if kind < 0.3 else "pay"
            # in time (within a quarter of the TTL: pays up to half of it came too late on a
            # loaded host), or around the deadline (where the racy stores race the sweeper)
            delay = rng.uniform(0.0, 0.05) if kind < 0.55 else rng.uniform(0.15, 0.3)
            await asyncio.sleep(delay)
            async with http.post(url + f"/orders/o{i}/{action}") as resp:
                body = await resp.json()
                assert resp.status in (200, 409, 410), body
                if action == "pay" and resp.status == 200:
                    paid[sku] += int(order["qty"])

        await asyncio.gather(*(buyer(i) for i in range(BUYERS)))
    units: Counter[str] = Counter()
    orders: Counter[str] = Counter()
    for sku, qty in reserved.values():
        units[sku] += qty
        orders[sku] += 1
    view = ClientView(
        dict.fromkeys(reserved, CONFIRMED),
        Counter(list(reserved)),
        {sku: units.get(sku, 0) for sku in STOCKS},
        {sku: orders.get(sku, 0) for sku in STOCKS},
    )
    return view, paid


def audited(url: str, tmp_path: Path, view: ClientView) -> dict[str, Any]:
    """The runner's audit: the scenario's source read at its target, then compared."""
    sc = scenario_for(url, tmp_path)
    target = Target(parse_endpoint(url), sc.run.connect_timeout_s)
    state = read_records(sc, target)
    assert state.inventory is not None, state.errors
    skus = tuple(p.id for p in sc.products)
    return audit_view(view, skus, sc.stocks(), sc.per_buyer_limits(), state)


def run_sale(
    shop: Any, backend: str, tmp_path: Path, **kw: Any
) -> tuple[dict[str, Any], Counter[str]]:
    cm: AbstractContextManager[str] = shop(backend, reservation_ttl_s=TTL_S, **kw)
    with cm as url:
        view, paid = asyncio.run(drive(url, seed=7))
        asyncio.run(asyncio.sleep(TTL_S + 1.1))  # every hold due and swept; a sample taken
        return audited(url, tmp_path, view), paid


@pytest.mark.parametrize("backend", CORRECT)
def test_correct_backends_conserve_stock_and_pass(backend: str, shop: Any, tmp_path: Path) -> None:
    result, paid = run_sale(shop, backend, tmp_path)
    assert result["ok"] is True, result["problems"]
    assert result["problems"] == []
    assert result["holds"]["reservation_ttl_s"] == TTL_S
    for key in ("undersell_units", "double_returns", "paid_after_expiry", "excess_units"):
        assert result[key] == 0, key
    for sku, initial in STOCKS.items():
        s = result["skus"][sku]
        assert s["initial"] == initial == s["paid"] + s["held"] + s["free"], s
        assert s["reserved"] == s["paid"] + s["held"] + s["returned"], s
        assert s["held"] == 0 and s["conserved"] is True, s
        # what the buyers were told they paid is what the storefront sold; expired stock went
        # back on sale and was reserved again
        assert s["paid"] == paid[sku] == s["ledger_units"], (paid, s)
        assert s["reserved"] == s["client_units"] > initial and s["returned"] > 0, s
    # a sale happened (which SKU's in-time payments beat the TTL depends on the host's speed)
    assert sum(result["skus"][sku]["paid"] for sku in STOCKS) > 0, paid
    assert result["lost_confirmations"]["count"] == result["phantom_sales"]["count"] == 0
    # the stock over time came with the audit: the last sample is the settled sale
    history = StockHistory.from_json(result["stock_history"])
    assert history is not None and len(history.t_s) >= 2
    total = history.series["total"]
    assert total["free"][-1] + total["held"][-1] + total["sold"][-1] == sum(STOCKS.values())
    assert total["sold"][-1] == sum(result["skus"][s]["paid"] for s in STOCKS)
    assert set(history.skus) == set(STOCKS)
    page = render_html(report_of(result))
    assert '<p id="lifecycle-verdict" class="ok">' in page
    assert 'data-plot="history"' in page and 'class="broken"' not in page


@pytest.mark.parametrize("backend", RACY)
def test_racy_backends_break_it_and_the_audit_names_how(
    backend: str, shop: Any, tmp_path: Path
) -> None:
    result, _ = run_sale(shop, backend, tmp_path, racy_delay_ms=50.0)
    assert result["ok"] is False
    named = {
        "double_returns": "double returns",
        "paid_after_expiry": "payments after expiry",
        "excess_units": "units beyond the stock",
        "oversell_units": "oversold by",
    }
    found = {key for key in named if result[key]}
    assert found & {"double_returns", "paid_after_expiry"}, result["problems"]
    text = "\n".join(result["problems"])
    for key in found:  # each breakage is named, with the store's own count
        assert named[key] in text, (key, text)
    for sku in STOCKS:
        s = result["skus"][sku]
        inv_counts = (s["double_returns"], s["paid_after_expiry"])
        if any(inv_counts):
            assert s["conserved"] is False, s
            # every extra end of a hold is a double return or a payment after expiry
            assert s["hold_gap_units"] >= 0 and s["excess_units"] > 0, s
    assert sum(result["skus"][s]["double_returns"] for s in STOCKS) == result["double_returns"]
    out = render_text(report_of(result))
    assert "lifecycle   BROKEN:" in out
    page = render_html(report_of(result))
    assert '<p id="lifecycle-verdict" class="bad">' in page and 'class="broken"' in page


@pytest.mark.parametrize("backend", CORRECT)
async def test_holds_the_sweeper_left_are_undersell(
    backend: str, start: Any, http: Any, tmp_path: Path
) -> None:
    """A sweeper that stopped: holds stay held past their expiry, stock the sale never gets."""
    sf = await start(backend, STOCKS, reservation_ttl_s=TTL_S)
    await sf.storefront.flow.stop()  # the sweeper is gone
    for i in range(5):
        status, _ = await http.order(sf.url, f"o{i}", "durian", qty=2, user_id=f"u{i}")
        assert status == 201
    assert (await http.post(sf.url + "/orders/o0/pay"))[0] == 200
    await asyncio.sleep(TTL_S + 0.2)  # due, and past the grace of two sweep intervals
    sc_path = tmp_path / "s"
    sc_path.mkdir()
    result = await asyncio.to_thread(
        audited, sf.url, sc_path, ClientView({"o0": CONFIRMED}, Counter(["o0"]), {"durian": 2},
                                             {"durian": 1})
    )  # fmt: skip
    s = result["skus"]["durian"]
    assert (s["overdue_units"], s["overdue_holds"], s["undersell_units"]) == (8, 4, 8), s
    assert s["overdue_max_s"] >= TTL_S * 0.5
    assert s["conserved"] is True  # the books balance: the stock is held, just never returned
    assert result["undersell_units"] == 8 and result["ok"] is False
    assert any("undersold: 8 units still held by 4 holds" in p for p in result["problems"])
    doc = report_of(result)
    assert doc.audit is not None and doc.audit.breakages == 8
    # Prometheus sees the same holds
    async with http.session.get(sf.url + "/metrics") as resp:
        text = await resp.text()
    assert f'flashsale_storefront_sku_held{{backend="{backend}",sku="durian"}} 8.0' in text
    assert (
        f'flashsale_storefront_sku_double_returns{{backend="{backend}",sku="durian"}} 0.0' in text
    )


def report_of(result: dict[str, Any]) -> Report:
    """A report around this audit (as the runner's: the stock history moved beside it)."""
    result = dict(result)
    history = StockHistory.from_json(result.pop("stock_history", None))
    orders = Orders(outcomes={**dict.fromkeys(OUTCOME_NAMES, 0), "confirmed": 1})
    return Report(
        kind="run", orders=orders, audit=Audit.from_dict(result, {}), stock_history=history
    )


def test_the_stock_history_is_a_bounded_ring() -> None:
    """A long sale keeps its last ``capacity`` samples in memory fixed at the start."""
    from simulator.storefront.backends import SkuSnapshot
    from simulator.storefront.history import StockHistory

    h = StockHistory(capacity=5, max_skus=2)
    h.clear(100.0, {"a": 10, "b": 30, "c": 20})
    assert h.skus == ("b", "c")  # the largest stocks, one by one; all in the totals
    size = h._t.nbytes + h._v.nbytes
    for i in range(12):
        snap = {
            sku: SkuSnapshot(n, i, i, i, n - i - 1, paid=i, held=1)
            for sku, n in (("a", 10), ("b", 30), ("c", 20))
        }
        h.record(100.0 + i, snap)
    assert h._t.nbytes + h._v.nbytes == size
    doc = h.to_json()
    assert doc["dropped"] == 7 and doc["t_s"] == [7.0, 8.0, 9.0, 10.0, 11.0]
    total = doc["series"]["total"]
    assert total["sold"] == [21, 24, 27, 30, 33] and total["held"] == [3] * 5
    stacked = zip(total["free"], total["sold"], total["held"], strict=True)
    assert [sum(x) for x in stacked] == [60] * 5  # every unit free, sold or held
    assert doc["series"]["b"]["free"] == [22, 21, 20, 19, 18] and "a" not in doc["series"]
    h.clear(200.0, {"a": 1})
    assert h.to_json()["t_s"] == [] and h.to_json()["dropped"] == 0


async def test_overdue_holds_walk_only_the_due_part_of_the_heap() -> None:
    """Memory's overdue holds (a walk of the heap's due part) equal a scan of every hold."""
    from simulator.storefront.backends import BackendOptions, create_backend

    now = [1000.0]
    rng = random.Random(5)
    backend: Any = create_backend(
        "memory",
        {"a": 500, "b": 500},
        {},
        BackendOptions(reservation_ttl_s=1.0, clock=lambda: now[0]),
    )
    for i in range(300):
        now[0] = 1000.0 + rng.uniform(0.0, 10.0)  # reservations made in any order of expiry
        await backend.reserve(f"o{i}", "ab"[i % 2], 1 + i % 3, f"u{i}")
    for i in range(0, 300, 7):
        await backend.cancel(f"o{i}")  # ended: no longer held (their heap entries stay)
    for before in (1000.5, 1004.0, 1008.25, 1012.0):
        expected: dict[str, list[float]] = {}
        for oid, row in backend._rows.items():
            if backend._state[row] == 0 and backend._expiry[row] < before:
                state = backend.order_now(oid)
                expected.setdefault(state.sku, []).extend([backend._expiry[row]] * state.qty)
        got = await backend.overdue_holds(before)
        assert {s: o.units for s, o in got.items()} == {s: len(v) for s, v in expected.items()}
        assert {s: o.oldest_expires_at for s, o in got.items()} == {
            s: min(v) for s, v in expected.items()
        }
