"""Checks of command-line values shared by the commands: the scenario's ranges, phrased as flags.

A flag such as ``--duration`` takes the same range as the scenario key it overrides
(:mod:`simulator.scenario.limits`); the message names the flag, the library's names the key.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from simulator.errors import UsageError
from simulator.scenario.limits import Range

if TYPE_CHECKING:
    from simulator.scenario import Scenario


def check_flags(args: argparse.Namespace, ranges: Mapping[str, Range]) -> None:
    """UsageError naming the flag (``--queue-limit``) of the first given value out of range.

    ``ranges`` maps argparse destinations (``queue_limit``) to their ranges; None means not given.
    """
    for dest, rng in ranges.items():
        value = getattr(args, dest, None)
        if value is not None and (problem := rng.problem(value)) is not None:
            raise UsageError(f"--{dest.replace('_', '-')}: {problem}")


def check_live_run(
    scenario: Scenario, duration_s: float | None, workers: int, connections: int
) -> None:
    """UsageError/TooLargeError before a live run starts: what it holds (attempts in flight,
    per-second counts, connections) must fit in memory and each worker's share of the
    connections within the process's open-files limit."""
    from simulator.machine import check_connections
    from simulator.schedule import build_schedule

    per_worker = -(-connections // workers)
    check_connections(per_worker)
    run = scenario.run
    # the engine streams the schedule: what a run holds grows with its rate, not its length
    build_schedule(scenario, duration_s).check_live_run(
        run.timeout_s, run.drain_s, connections, workers
    )
