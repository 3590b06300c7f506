"""Every error keeps its reason: the transports' failure kinds and the status that decided an
answer reach the recorder and the tally, named as the reports write them."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.load.tally import Tally
from simulator.outcomes import (
    OUTCOME_CODES,
    R_BODY_INT,
    R_BODY_LISTED,
    OutcomeRule,
    merged_status,
    reason_name,
)

from .conftest import constant_rows
from .test_engine import drive


@pytest.mark.parametrize(
    ("transport", "mode", "reason"),
    [
        ("lean", "garbage", "bad response"),
        ("lean", "reset", "connection reset"),
        ("aiohttp", "garbage", "bad response"),
        ("aiohttp", "reset", "connection reset"),
    ],
)
def test_transport_failures_are_counted_by_kind(fake_store, transport, mode, reason) -> None:
    url, _ = fake_store(mode, ("a=1000", "b=1000"))
    rows = constant_rows(200, 1_000_000)
    result = drive(url, rows, transport)
    reasons = result.result.tally.reason_counts()  # folded from the engine's slots
    assert reasons["error"] == {reason: 20}  # every 10th order, each with the same reason
    assert reasons["confirmed"] == {"status 201": 180}


def test_status_decided_answers_name_their_status(fake_store) -> None:
    url, _ = fake_store("ok", ("a=5", "b=5"))
    rows = constant_rows(100, 1_000_000)
    result = drive(url, rows)
    reasons = result.result.tally.reason_counts()
    assert reasons["confirmed"] == {"status 201": 10}
    assert reasons["sold_out"] == {"status 409": 90}
    # the records sink carries each attempt's reason beside its status (orders.npz)
    assert (result.rec["reason"] == result.rec["status"]).all()
    assert counted_from_records(result.rec) == reasons


def counted_from_records(rec: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """The reason counts of a run's records, counted again from the sink's arrays."""
    t = Tally()
    t.count_reasons(rec["outcome"], rec["reason"])
    return t.reason_counts()


RULE = OutcomeRule(
    merged_status(((200, "confirmed"),)),
    ("data", "code"),
    (200,),
    (("0", "confirmed"), ("1001", "sold_out"), ("LIMIT", "rejected")),
)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, b'{"data":{"code":0}}', "confirmed", "body code 0"),
        (200, b'{"data":{"code":1001}}', "sold_out", "body code 1001"),
        (200, b'{"data":{"code":"LIMIT"}}', "rejected", "body code 'LIMIT'"),
        (200, b'{"data":{"code":7}}', "error", "body code 7"),
        (200, b'{"data":{"code":"odd"}}', "error", "body value not listed"),
        (200, b'{"data":{}}', "error", "body field missing"),
        (200, b"<html>", "error", "body not JSON"),
        (422, b"", "rejected", "status 422"),  # the defaults stay
        (502, b"", "error", "status 502"),
    ],
)
def test_the_rule_classifies_status_and_body(status, body, outcome, reason) -> None:
    got = RULE.of_body(status, body) if RULE.reads_body(status) else RULE.of_status(status)
    assert got[0] == OUTCOME_CODES[outcome]
    assert reason_name(got[1], RULE.labels) == reason


def test_reason_counts_merge_across_workers() -> None:
    a, b = Tally(), Tally()
    err, rej = OUTCOME_CODES["error"], OUTCOME_CODES["rejected"]
    a.count_reasons(np.array([err, rej], np.uint8), np.array([3, R_BODY_INT + 401], np.int32))
    b.count_reasons(np.array([err, rej], np.uint8), np.array([3, R_BODY_LISTED], np.int32))
    b.reason_labels[R_BODY_LISTED] = "body code 'LIMIT'"
    a.merge(b)
    assert a.reason_counts() == {
        "rejected": {"body code 401": 1, "body code 'LIMIT'": 1},
        "error": {"connection reset": 2},
    }
