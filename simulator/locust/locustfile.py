"""A flashsale scenario as a Locust test: ``locust -f <this file> --flashsale-scenario FILE``.

Or ``flashsale locust FILE [locust args…]``. The scenario comes from ``--flashsale-scenario`` or
the FLASHSALE_SCENARIO environment variable; every ``--flashsale-*`` option is listed by
``locust -f <this file> --help``. Open model: :class:`ScheduleUser` senders work through the
schedule, each order at its intended time; :class:`DemandShape` sizes the pool from the demand
curve. With ``--master``/``--worker``, worker k of N sends the rows ≡ k (mod N) of the schedule
and the master prints and saves the merged report with the oversell audit. See docs/locust.md.

This file only wires Locust's events to the process's node (:mod:`simulator.locust.node`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from locust import events

from simulator.errors import FlashsaleError, UsageError
from simulator.load.target import Target
from simulator.load.transport import parse_endpoint
from simulator.locust import webui
from simulator.locust.node import MasterNode, WorkerNode, make_node
from simulator.locust.shape import DemandShape
from simulator.locust.slice_state import NODE_ATTR
from simulator.locust.users import ScheduleUser

__all__ = ["DemandShape", "ScheduleUser"]


#: what our processes listen on unless told otherwise: loopback, not every interface
LOOPBACK_DEFAULTS = {"web_host": "127.0.0.1", "master_bind_host": "127.0.0.1"}


def add_arguments(parser: Any, **_kw: Any) -> None:
    """The ``--flashsale-*`` options (each also settable by its FLASHSALE_* variable).

    Also makes the web UI and a master listen on 127.0.0.1 by default (Locust's own defaults
    are all interfaces): ``--web-host``/``--master-bind-host`` open them up on purpose.
    """
    parser.set_defaults(**LOOPBACK_DEFAULTS)
    for action in parser._actions:  # their help says "all interfaces" otherwise
        if action.dest in LOOPBACK_DEFAULTS:
            action.help = "address to listen on (flashsale's default: 127.0.0.1, this host only)"
    g = parser  # Locust's own parser: argument groups lack its include_in_web_ui keyword
    g.add_argument(
        "--flashsale-scenario",
        env_var="FLASHSALE_SCENARIO",
        default="",
        include_in_web_ui=False,
        help="scenario file (TOML); the same file on every node",
    )
    g.add_argument(
        "--flashsale-scale",
        env_var="FLASHSALE_SCALE",
        type=float,
        default=None,
        include_in_web_ui=False,
        help="override the scenario's scale (rates and stock)",
    )
    g.add_argument(
        "--flashsale-duration",
        env_var="FLASHSALE_DURATION",
        type=float,
        default=None,
        include_in_web_ui=False,
        help="only the first S seconds of the sale",
    )
    g.add_argument(
        "--flashsale-workers",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="slices to cut the schedule into (default: the workers connected at the start); "
        "must equal --expect-workers",
    )
    g.add_argument(
        "--flashsale-out",
        env_var="FLASHSALE_OUT",
        default="flashsale-locust",
        include_in_web_ui=False,
        help="directory where the master saves the merged report.json (flashsale run's shape, "
        "for flashsale report/compare); '' = do not save",
    )
    g.add_argument(
        "--flashsale-orders",
        env_var="FLASHSALE_ORDERS",
        default="",
        include_in_web_ui=False,
        help="stream every attempt's record to FILE as the run goes (flashsale run's --orders "
        "format; with N workers each writes FILE.w<k> on its own machine); '' = not at all",
    )
    g.add_argument(
        "--flashsale-engine",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="workers drive their slices with flashsale's own engine (lean HTTP/1.1 client on "
        "uvloop, in a thread) instead of Locust users; results still go to Locust's stats",
    )
    g.add_argument(
        "--flashsale-no-reset",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="do not POST the target's reset path at the start of each run",
    )
    g.add_argument(
        "--flashsale-lead",
        type=float,
        default=1.0,
        include_in_web_ui=False,
        help="seconds between the start and the sale's t = 0 (to spawn the first users)",
    )
    g.add_argument(
        "--flashsale-busy",
        type=float,
        default=0.05,
        include_in_web_ui=False,
        help="pool sizing: seconds a user is busy with one order (expected latency)",
    )
    g.add_argument(
        "--flashsale-max-users",
        type=int,
        default=2000,
        include_in_web_ui=False,
        help="pool sizing: never more users than this (all workers together)",
    )


def _listen(event: Any, listener: Callable[..., None]) -> None:
    event.add_listener(listener)


def _die(message: str) -> None:
    print(f"flashsale: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def on_init(environment: Any, **_kw: Any) -> None:
    """Load the scenario, check the host and worker counts, hook up the node and the web UI."""
    if environment.parsed_options is None:  # e.g. a library use of the locustfile
        return
    opts = environment.parsed_options
    try:
        node = make_node(environment)
        is_master = bool(opts.master)
        if is_master and opts.flashsale_workers and opts.flashsale_workers != opts.expect_workers:
            raise_mismatch(opts.flashsale_workers, opts.expect_workers)
        if not opts.worker:
            host = environment.host or node.scenario.target.url
            if host:
                environment.host = host
                # https: reachable, certificate not checked, as Locust's FastHttpUser does
                silent = Target(parse_endpoint(host, "host").unverified()).check_reachable()
                if silent is not None:
                    print(f"flashsale: warning: {silent}", file=sys.stderr, flush=True)
            elif opts.headless:
                _die("no host: pass --host URL, or set [target] url in the scenario")
    except FlashsaleError as exc:
        _die(str(exc))
        return
    ScheduleUser.network_timeout = node.scenario.run.timeout_s
    ScheduleUser.connection_timeout = node.scenario.run.connect_timeout_s
    setattr(environment, NODE_ATTR, node)
    if isinstance(node, WorkerNode):
        node.register()
        _listen(
            events.report_to_master, lambda client_id, data, **_: node.on_report_to_master(data)
        )
    elif isinstance(node, MasterNode):
        node.register()
        _listen(
            events.worker_report,
            lambda client_id, data, **_: node.on_worker_report(client_id, data),
        )
    _listen(events.test_start, lambda **_: node.on_test_start())
    _listen(events.test_stop, lambda **_: node.on_test_stop())
    _listen(events.quitting, lambda **_: node.on_quitting())
    if environment.web_ui is not None:
        webui.install(environment, node)


def raise_mismatch(slices: int, expect: int) -> None:
    """The schedule's slice count and the expected worker count must agree."""
    raise UsageError(
        f"--flashsale-workers {slices} but --expect-workers {expect}: each worker takes one "
        f"slice of the schedule, so the two must be equal"
    )


_listen(events.init_command_line_parser, add_arguments)
_listen(events.init, on_init)
