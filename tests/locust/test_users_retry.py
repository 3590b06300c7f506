"""The Locust users' retries follow the one retry rule with draws seeded from the scenario.

Locust patches the interpreter with gevent when imported, so the users run in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from simulator.retry import Retry

RETRY = Retry(share=1.0, max_attempts=3, backoff_s=0.002, backoff_factor=2.0, jitter=0.9)

CHILD = """
import json, sys
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
from simulator.load.recorder import Recorder
from simulator.locust.users import send_order
from simulator.outcomes import DEFAULT_STATUS, status_table
from simulator.retry import Retry

seed, answers = int(sys.argv[1]), [429, 429, 201]
retry = Retry(**json.loads(sys.argv[2]))

@contextmanager
def request(*_args, **_kw):
    status = answers.pop(0)
    yield SimpleNamespace(status_code=status, error=None, content=b"{}",
                          success=lambda: None, failure=lambda _f: None)

user = SimpleNamespace(client=SimpleNamespace(request=request),
                       environment=SimpleNamespace(events=SimpleNamespace(
                           request=SimpleNamespace(fire=lambda **_kw: None))))
orders, flags = [40, 41], [2, 2]
book = SimpleNamespace(order=orders, flags=flags, body=lambda i: b"{}")
rec = Recorder.allocate(np.zeros(2, dtype=np.int64), 4)
st = SimpleNamespace(recorder=rec, t0_ns=0, book=book, method="POST", path="/orders",
                     headers={}, table=status_table(DEFAULT_STATUS), retry=retry, seed=seed,
                     rows_sent_twice=0)
send_order(user, st, 1, 0)
first = int(rec.next_attempt[1])
second = int(rec.next_attempt[first])
gaps = [int(rec.intended_ns[first] - rec.done_ns[1]),
        int(rec.intended_ns[second] - rec.done_ns[first])]
print(json.dumps({"gaps": gaps, "tries": [int(rec.tries[first]), int(rec.tries[second])],
                  "outcome": int(rec.outcome[second])}))
"""


def _child(seed: int) -> dict[str, list[int] | int]:
    fields = {f: getattr(RETRY, f) for f in RETRY.__slots__}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(seed), json.dumps(fields)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, list[int] | int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_locust_users_backoffs_are_the_rule_applied_to_seeded_draws() -> None:
    a = _child(5)
    assert a["tries"] == [2, 3] and a["outcome"] == 1  # two retries, then confirmed
    # order 41 (row 1), flags 2, retries 1 and 2: one draw each from the scenario seed
    expected = [RETRY.delay_ns(k, np.random.default_rng([5, 41, 2, k]).random()) for k in (1, 2)]
    assert a["gaps"] == expected
    assert _child(5)["gaps"] == expected  # the same seed: the same delays
    assert _child(6)["gaps"] != expected
