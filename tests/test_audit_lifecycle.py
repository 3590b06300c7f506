"""The reservation lifecycle audit on hand-made inventories: each breakage, named and counted.

The figures in each row are what a backend's snapshot would state after that breakage (see
``simulator.storefront.backends.memory._settle``): a double return gives a hold's units back to
``free`` and ``returned`` twice; a payment racing the expiry counts them ``paid`` and
``returned``; a hold the sweeper left stays ``held`` and ``overdue``.
"""

from __future__ import annotations

from typing import Any

import pytest

from simulator.audit import ClientView, ServerState, audit_view, has_lifecycle, lifecycle
from simulator.load.tally import Tally
from simulator.report.sections import Audit, Lifecycle
from simulator.results import measure_tally, run_report

STOCK = 10


def numbers(**kw: int | float) -> dict[str, Any]:
    """A SKU's inventory numbers: stock 10, 4 paid, 2 held, 4 free, 9 reserved, 3 returned."""
    base: dict[str, Any] = {
        "initial": STOCK, "sold": 4, "ledger_units": 4, "ledger_orders": 4, "remaining": 4,
        "paid": 4, "held": 2, "free": 4, "reserved": 9, "returned": 3,
        "double_returns": 0, "paid_after_expiry": 0,
        "overdue_units": 0, "overdue_holds": 0, "overdue_max_s": 0.0,
    }  # fmt: skip
    base.update(kw)
    return base


CASES = [
    # (what, numbers, expected figures, words in the problems)
    ("sound", numbers(), {"undersell_units": 0, "excess_units": 0, "conserved": True}, []),
    (
        "a 2-unit hold returned twice",
        numbers(free=6, returned=5, double_returns=1),
        {"double_returns": 1, "excess_units": 2, "stock_gap_units": 2, "hold_gap_units": 2},
        ["1 double returns", "2 units beyond the stock: paid + held + free = 12 > 10"],
    ),
    (
        "a 1-unit hold paid after it expired",
        numbers(paid=5, sold=5, ledger_units=5, held=1, free=5, returned=4, paid_after_expiry=1),
        {"paid_after_expiry": 1, "excess_units": 1, "hold_gap_units": 1},
        ["1 payments after expiry"],
    ),
    (
        "two holds the sweeper left",
        numbers(overdue_units=2, overdue_holds=2, overdue_max_s=1.5),
        {"undersell_units": 2, "overdue_units": 2, "conserved": True},
        ["undersold: 2 units still held by 2 holds that should have expired, the oldest 1.5 s"],
    ),
    (
        "an expiry that lost its stock return",
        numbers(held=0, returned=5),
        {"undersell_units": 2, "never_returned_units": 2, "stock_gap_units": -2},
        ["undersold: 2 units never returned (paid 4 + held 0 + free 4 < stock 10)"],
    ),
    (
        "a hold that vanished",
        numbers(held=0, free=4),
        {"never_returned_units": 2, "hold_gap_units": -2},
        ["2 reserved units neither paid, held nor returned"],
    ),
]


@pytest.mark.parametrize(("what", "inv", "expected", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_breakage_is_counted_and_named(
    what: str, inv: dict[str, Any], expected: dict[str, Any], words: list[str]
) -> None:
    problems: list[str] = []
    out = lifecycle("a", STOCK, inv, problems)
    for key, value in expected.items():
        assert out[key] == value, (what, key, out)
    assert bool(problems) == bool(words), problems
    for w in words:
        assert any(w in p for p in problems), (w, problems)
    # the typed section reads back what the audit wrote, with the same verdict
    cycle = Lifecycle.from_json(out)
    assert cycle is not None and cycle.conserved == out["conserved"]
    assert cycle.broken == bool(words)


def test_no_ttl_no_lifecycle() -> None:
    plain = {"initial": 5, "sold": 1, "ledger_units": 1, "ledger_orders": 1, "remaining": 4}
    assert not has_lifecycle(plain) and has_lifecycle(numbers())
    result = audit_view(
        ClientView.of_units({"a": 1}),
        ("a",),
        {"a": 5},
        {},
        ServerState({"skus": {"a": plain}}, None),
    )
    assert result["ok"] is True and "undersell_units" not in result
    assert Audit.from_dict(result, {}).lifecycle == {}


def clean_and_broken() -> tuple[dict[str, Any], dict[str, Any]]:
    holds = {"now": 1.0, "reservation_ttl_s": 0.2, "sweep_interval_s": 0.02, "grace_s": 0.04}
    results = []
    for inv in (numbers(), numbers(free=6, returned=5, double_returns=1)):
        state = ServerState({"backend": "x", "skus": {"a": inv}, "holds": holds}, None)
        view = ClientView.of_units({"a": inv["paid"]})
        results.append(audit_view(view, ("a",), {"a": STOCK}, {}, state))
    return results[0], results[1]


def test_the_run_exits_1_on_a_broken_lifecycle_without_oversell() -> None:
    from simulator.report.sections import RunInfo, ScenarioInfo, TargetInfo

    clean, broken = clean_and_broken()
    assert broken["oversell_units"] == 0 and broken["double_returns"] == 1
    assert clean["ok"] is True and broken["ok"] is False
    summary = measure_tally(Tally(), 1.0, ("a",))
    codes = []
    for result in (clean, broken):
        doc = run_report(
            summary, result, scenario=ScenarioInfo(), target=TargetInfo(), run=RunInfo(),
            partial=False, complete=True,
        )  # fmt: skip
        assert doc.audit is not None and doc.audit.holds == result["holds"]
        codes.append(doc.exit_code)
    assert codes == [0, 1]
