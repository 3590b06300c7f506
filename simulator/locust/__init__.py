"""The Locust adapter: a flashsale scenario as a Locust locustfile, load shape and web UI page.

Only this package imports locust; the core (scenario, schedule, engine) never does. The pure
parts (:mod:`simulator.locust.plan` for pool sizing, slices and their digests,
:mod:`simulator.locust.feed` for a worker's orders and attempts, :mod:`simulator.locust.results`
for what a worker sends and the master's merged report) do not import locust either, so they
are tested as plain functions. Workers take their slice block by block and fold their attempts
into the :class:`~simulator.load.tally.Tally` that ``flashsale run`` keeps; the master merges
the tallies by adding counts and writes ``flashsale run``'s ``report.json`` with the engine's
summary and audit. :mod:`simulator.locust.engine_mode` (``--flashsale-engine``) lets a
worker drive its slice with the engine itself.

Use ``flashsale locust SCENARIO [locust args…]`` or ``locust -f`` :data:`LOCUSTFILE`
``--flashsale-scenario SCENARIO``; see ``docs/locust.md``.
"""

from __future__ import annotations

from pathlib import Path

#: the locustfile to pass to ``locust -f``
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
