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
from simulator.locust.feed import SliceFeed
from simulator.locust.live import SliceCounts
from simulator.locust.users import send_order
from simulator.outcomes import OutcomeRule
from simulator.retry import Retry
from simulator.schedule import ORDER_DTYPE

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
rows = np.zeros(2, dtype=ORDER_DTYPE)
rows["order"], rows["flags"] = [40, 41], [2, 2]
feed = SliceFeed(iter([rows]), 0, 1, SliceCounts())
split = lambda *_a: SimpleNamespace(target="/orders", headers={}, body=b"{}")
st = SimpleNamespace(t0_ns=0, method="POST", template=SimpleNamespace(split=split),
                     rule=OutcomeRule(), failure=lambda *_a: RuntimeError(), retry=retry,
                     seed=seed)
feed.claim()
claim = feed.claim()
send_order(user, st, feed, claim, 0)
a = feed.ring.arrays
at = [claim.slot] + [int(np.flatnonzero((a["try"] == k) & (a["order"] == 41))[0]) for k in (2, 3)]
gaps = [int(a["intended_ns"][at[k + 1]] - a["done_ns"][at[k]]) for k in (0, 1)]
finals = [bool(a["final"][i]) for i in at]
print(json.dumps({"gaps": gaps, "tries": [int(a["try"][i]) for i in at[1:]],
                  "outcome": int(a["outcome"][at[2]]), "finals": finals}))
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
    assert a["finals"] == [False, False, True]  # only the last attempt decides the order
    # order 41 (row 1), flags 2, retries 1 and 2: one draw each from the scenario seed
    expected = [RETRY.delay_ns(k, np.random.default_rng([5, 41, 2, k]).random()) for k in (1, 2)]
    assert a["gaps"] == expected
    assert _child(5)["gaps"] == expected  # the same seed: the same delays
    assert _child(6)["gaps"] != expected
