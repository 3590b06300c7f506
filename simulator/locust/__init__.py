"""The Locust adapter: a flashsale scenario as a Locust locustfile, load shape and web UI page.

Only this package imports locust; the core (scenario, schedule, engine) never does. The pure
parts (:mod:`simulator.locust.plan` for pool sizing and the per-worker order book,
:mod:`simulator.locust.results` for worker results, the merged report and the audit) do not
import locust either, so they are tested as plain functions.

Use ``flashsale locust SCENARIO [locust args…]`` or ``locust -f`` :data:`LOCUSTFILE`
``--flashsale-scenario SCENARIO``; see ``docs/locust.md``.
"""

from __future__ import annotations

from pathlib import Path

#: the locustfile to pass to ``locust -f``
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
