"""The outcome vocabulary: what became of an order, as a code, a name and a status mapping.

The one owner of these facts for every part that speaks of outcomes: the recorder and the
engine (codes written per attempt), the scenario (which statuses map to which outcome), the
Locust adapter, the offline model, the audit and every report. The bundled storefront's
backends have their own reservation codes (``simulator.storefront.backends``): they say what
the stock did, not what the client saw.
"""

from __future__ import annotations

#: outcome codes, in the order reports list them; 0 is the initial value of every attempt
NOT_SENT = 0
CONFIRMED = 1
SOLD_OUT = 2
THROTTLED = 3
REJECTED = 4
ERROR = 5
TIMEOUT = 6
#: names by code (``OUTCOME_NAMES[CONFIRMED] == "confirmed"``)
OUTCOME_NAMES = ("not_sent", "confirmed", "sold_out", "throttled", "rejected", "error", "timeout")
OUTCOME_CODES = {name: code for code, name in enumerate(OUTCOME_NAMES)}

#: outcomes a storefront's answer can map to (not_sent and timeout come from the client side)
ANSWER_OUTCOMES = ("confirmed", "sold_out", "throttled", "rejected", "error")

#: the storefront contract's status → outcome (DESIGN.md); any other status is an error
DEFAULT_STATUS: tuple[tuple[int, str], ...] = (
    (201, "confirmed"),
    (200, "confirmed"),
    (409, "sold_out"),
    (429, "throttled"),
    (503, "throttled"),
    (400, "rejected"),
    (422, "rejected"),
)


def status_table(mapping: tuple[tuple[int, str], ...]) -> list[int]:
    """Outcome code for every status 0…599 (unmapped statuses are errors): a list for O(1) use."""
    table = [ERROR] * 600
    for code, name in mapping:
        if 0 <= code < 600:
            table[code] = OUTCOME_CODES[name]
    return table
