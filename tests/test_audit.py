"""The oversell audit on hand-made client records and server documents."""

from __future__ import annotations

import numpy as np

from simulator.audit import ServerState, audit
from simulator.load.recorder import Recorder
from simulator.outcomes import CONFIRMED, SOLD_OUT, TIMEOUT
from tests.load.conftest import constant_rows

SKUS = ("a", "b")


def recorded(outcomes: list[int]) -> tuple[np.ndarray, Recorder]:
    rows = constant_rows(len(outcomes), 1_000_000)
    rec = Recorder.allocate(rows["t_ns"].astype(np.int64), 0)
    rec.outcome[:] = outcomes
    return rows, rec


def inventory(a: tuple[int, int, int], b: tuple[int, int, int] = (5, 0, 0)) -> dict:
    def sku(initial: int, sold: int, ledger: int) -> dict:
        return {
            "initial": initial,
            "sold": sold,
            "ledger_units": ledger,
            "ledger_orders": ledger,
            "remaining": max(0, initial - sold),
        }

    return {"backend": "t", "skus": {"a": sku(*a), "b": sku(*b)}}


def test_clean_run_is_ok() -> None:
    rows, rec = recorded([CONFIRMED, SOLD_OUT, CONFIRMED, SOLD_OUT])  # rows 0, 2 are SKU a
    ledger = [["0", "a", 1, "0"], ["2", "a", 1, "2"]]
    out = audit(rows, rec, SKUS, {"a": 2, "b": 5}, {}, ServerState(inventory((2, 2, 2)), ledger))
    assert out["ok"] and out["oversell_units"] == 0 and out["problems"] == []
    assert out["skus"]["a"]["client_units"] == 2


def test_oversell_is_found_from_any_of_the_three_counts() -> None:
    rows, rec = recorded([CONFIRMED, SOLD_OUT, CONFIRMED, SOLD_OUT])
    ledger = [["0", "a", 1, "0"], ["2", "a", 1, "2"], ["9", "a", 1, "9"]]
    out = audit(rows, rec, SKUS, {"a": 1, "b": 5}, {}, ServerState(inventory((1, 3, 3)), ledger))
    assert not out["ok"] and out["oversell_units"] == 2
    assert out["phantom_sales"]["count"] == 1  # order 9 was never sent by these clients


def test_lost_confirmations_counter_mismatch_and_duplicates() -> None:
    rows, rec = recorded([CONFIRMED, SOLD_OUT, CONFIRMED, TIMEOUT])
    rows["order"][3] = 1  # a double click of order 1 (SKU b)
    ledger = [["0", "a", 1, "0"], ["0", "a", 1, "0"], ["1", "b", 1, "1"]]
    out = audit(
        rows, rec, SKUS, {"a": 5, "b": 5}, {}, ServerState(inventory((5, 1, 2), (5, 1, 1)), ledger)
    )
    assert out["lost_confirmations"]["examples"] == ["2"]
    assert out["ledger_duplicates"]["examples"] == ["0"]
    assert any("sold counter 1 ≠ ledger units 2" in p for p in out["problems"])
    # order 1: the client saw sold_out on one click and a timeout on the other → a phantom,
    # because one of its answers contradicts the sale
    assert out["phantom_sales"]["count"] == 1


def test_per_buyer_limits_and_duplicate_confirmations() -> None:
    rows, rec = recorded([CONFIRMED, CONFIRMED, CONFIRMED, CONFIRMED])
    rows["buyer"][:] = 1
    rows["order"][2] = 0  # a double click of order 0, confirmed twice (an idempotent replay)
    ledger = [["0", "a", 1, "1"], ["1", "b", 1, "1"], ["3", "b", 1, "1"]]
    out = audit(
        rows,
        rec,
        SKUS,
        {"a": 5, "b": 5},
        {"b": 1},
        ServerState(inventory((5, 1, 1), (5, 2, 2)), ledger),
    )
    assert out["duplicate_confirmations"]["examples"] == ["0"]
    assert out["limit_violations"]["examples"] == ["1/b"]
    assert out["skus"]["a"]["client_units"] == 1  # deduplicated by order id


def test_unavailable_server_is_reported_not_hidden() -> None:
    rows, rec = recorded([CONFIRMED])
    out = audit(rows, rec, SKUS, {"a": 5, "b": 5}, {}, ServerState(None, None, ("x: refused",)))
    assert not out["available"] and not out["ok"] and out["problems"] == ["x: refused"]
