"""The outcome vocabulary: what became of an order, as a code, a name and a status mapping.

The one owner of these facts for every part that speaks of outcomes: the recorder and the
engine (codes written per attempt), the scenario (which statuses map to which outcome), the
Locust adapter, the offline model, the audit and every report. The bundled storefront's
backends have their own reservation codes (``simulator.storefront.backends``): they say what
the stock did, not what the client saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from simulator import jsonpath

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


def merged_status(user: tuple[tuple[int, str], ...]) -> tuple[tuple[int, str], ...]:
    """The defaults extended by a scenario's own status map (its entries win on a conflict).

    A user's map adds to the contract's instead of replacing it: writing ``200 = "confirmed"``
    keeps 409, 422 … mapped; ``422 = "error"`` is how a default is turned off.
    """
    mine = dict(user)
    out = [(code, mine.pop(code, name)) for code, name in DEFAULT_STATUS]
    return tuple(out) + tuple(mine.items())


# -- reasons -------------------------------------------------------------------------------------
#
# Every attempt also records a small reason code (int32) saying what decided its outcome, so
# that "error 34" comes with "connect failed 30 · status 500 4". Codes are self-describing
# (:func:`reason_name`) except the listed non-numeric body values, named by the rule's labels.

#: no reason recorded (not sent, or a run that predates reasons)
R_NONE = 0
R_CONNECT = 1  # no connection to the target could be opened
R_CLOSED = 2  # the target closed the connection before its answer was complete
R_RESET = 3  # the connection was reset
R_BAD_RESPONSE = 4  # the answer was not HTTP the parser accepts
R_TIMEOUT = 5  # sent, no answer within the timeout
R_QUEUE_TIMEOUT = 6  # waited for a free connection past the timeout; never sent
R_UNANSWERED = 7  # still unanswered when the run ended
R_TLS = 8  # a TLS error on the connection
R_SOCKET = 9  # another socket error
R_BODY_NOT_JSON = 10  # a body rule applied but the body is not JSON
R_BODY_MISSING = 11  # the body has nothing at the rule's path
R_BODY_UNLISTED = 12  # a non-numeric body value the rule does not list
R_BAD_STATUS = 13  # a status outside 0…599
R_MISSING_VALUE = 14  # a journey step needs a value no earlier answer gave (or one unsendable)
R_POLL_LIMIT = 15  # a polling step made its most requests without its condition holding
R_WORKER_LOST = 16  # sent by a worker process that died: answered or not, nobody knows
#: a journey's order that was never sent because the journey ended at step k (k < the order
#: step): code R_JOURNEY_STEP + k, named by the run's labels ("journey ended at login")
R_JOURNEY_STEP = 1 << 24
#: 100…599: the answer's HTTP status decided ("status 409")
R_STATUS_MIN, R_STATUS_MAX = 100, 599
#: a body value that is an integer v decided: code R_BODY_INT + v ("body code 1001")
R_BODY_INT = 1 << 30
R_BODY_INT_SPAN = 1 << 29  # |v| below this; larger integers are labelled like strings
#: a listed non-numeric body value (its index k in the rule's list): R_BODY_LISTED + k
R_BODY_LISTED = 1 << 20

_CLIENT_REASONS = {
    R_NONE: "none",
    R_CONNECT: "connect failed",
    R_CLOSED: "closed by the target",
    R_RESET: "connection reset",
    R_BAD_RESPONSE: "bad response",
    R_TIMEOUT: "timeout",
    R_QUEUE_TIMEOUT: "timeout waiting for a connection",
    R_UNANSWERED: "unanswered at the end",
    R_TLS: "TLS error",
    R_SOCKET: "socket error",
    R_BODY_NOT_JSON: "body not JSON",
    R_BODY_MISSING: "body field missing",
    R_BODY_UNLISTED: "body value not listed",
    R_BAD_STATUS: "status out of range",
    R_MISSING_VALUE: "a value from an earlier answer missing",
    R_POLL_LIMIT: "polled to its limit",
    R_WORKER_LOST: "worker lost: fate unknown",
}


def reason_name(code: int, labels: Mapping[int, str] | None = None) -> str:
    """The reason as reports write it: "status 409", "body code 1001", "connect failed"."""
    if labels and code in labels:
        return labels[code]
    if code in _CLIENT_REASONS:
        return _CLIENT_REASONS[code]
    if R_STATUS_MIN <= code <= R_STATUS_MAX:
        return f"status {code}"
    if abs(code - R_BODY_INT) < R_BODY_INT_SPAN:
        return f"body code {code - R_BODY_INT}"
    if code >= R_BODY_LISTED:
        return f"body value #{code - R_BODY_LISTED}"
    return f"reason {code}"


def value_key(value: Any) -> str:
    """A JSON value as the keys of a body rule's value map write it: ``0``, ``SOLD_OUT``,
    ``true``, ``null`` (TOML keys are strings; 1001 and "1001" are the same key)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class OutcomeRule:
    """The one classification of an answer: its status, and its body when the rule says so.

    ``status`` maps statuses to outcome names (unmapped ones are errors). With a body rule,
    answers whose status is in ``body_statuses`` are decided by the value at ``body_path``
    (a parsed JSON path) looked up in ``body_values`` (value key → outcome name); a value not
    listed is ``body_other``. Transports ask :meth:`reads_body` per status, then
    :meth:`of_status` or :meth:`of_body`; both return ``(outcome code, reason code)``.
    """

    __slots__ = ("_by_key", "_other", "body_path", "labels", "reads", "table")

    def __init__(
        self,
        status: tuple[tuple[int, str], ...] = DEFAULT_STATUS,
        body_path: tuple[str | int, ...] | None = None,
        body_statuses: tuple[int, ...] = (),
        body_values: tuple[tuple[str, str], ...] = (),
        body_other: str = "error",
    ) -> None:
        self.table = status_table(status)
        self.body_path = body_path
        #: per status 0…599: True when its answers are decided by the body
        self.reads = [False] * 600
        if body_path is not None:
            for code in body_statuses:
                if 0 <= code < 600:
                    self.reads[code] = True
        self._by_key: dict[str, tuple[int, int]] = {}
        self.labels: dict[int, str] = {}
        for k, (key, name) in enumerate(body_values):
            reason = _body_int_reason(key)
            if reason is None:
                reason = R_BODY_LISTED + k
                self.labels[reason] = f"body code {key!r}"
            self._by_key[key] = (OUTCOME_CODES[name], reason)
        self._other = OUTCOME_CODES[body_other]

    @property
    def has_body_rule(self) -> bool:
        """Whether some answers are decided by their body (the transport must keep bodies)."""
        return self.body_path is not None and any(self.reads)

    def reads_body(self, status: int) -> bool:
        """Whether an answer with this status is decided by its body."""
        return 0 <= status < 600 and self.reads[status]

    def of_status(self, status: int) -> tuple[int, int]:
        """(outcome, reason) of an answer decided by its status alone."""
        if 0 <= status < 600:
            return self.table[status], status if status >= R_STATUS_MIN else R_BAD_STATUS
        return ERROR, R_BAD_STATUS

    def of_body(self, status: int, body: bytes) -> tuple[int, int]:
        """(outcome, reason) of an answer decided by its body (status in the rule's list)."""
        assert self.body_path is not None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ERROR, R_BODY_NOT_JSON
        try:
            value = jsonpath.get(doc, self.body_path)
        except jsonpath.Missing:
            return ERROR, R_BODY_MISSING
        if isinstance(value, dict | list):
            return ERROR, R_BODY_UNLISTED
        key = value_key(value)
        hit = self._by_key.get(key)
        if hit is not None:
            return hit
        reason = _body_int_reason(key)
        return self._other, R_BODY_UNLISTED if reason is None else reason


def _body_int_reason(key: str) -> int | None:
    """The reason code of an integer body value (by its key text), None if not one."""
    try:
        v = int(key)
    except ValueError:
        return None
    if str(v) != key.lstrip("+") or abs(v) >= R_BODY_INT_SPAN:
        return None
    return R_BODY_INT + v
