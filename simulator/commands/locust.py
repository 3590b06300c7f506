"""``flashsale locust SCENARIO [--scale F] [--duration S] [locust args…]``: the scenario in Locust.

Runs ``locust -f simulator/locust/locustfile.py --flashsale-scenario SCENARIO`` with the other
arguments passed through unchanged (``--headless``, ``--master``, ``--worker``, ``--web-port``,
…). Before that it checks what it can, so that bad input is one clear line and exit 2: the
scenario, the host (reachable, and answering HTTP?), ``--expect-workers`` against
``--flashsale-workers``. When the scenario has no ``[target] url`` and no ``--host`` is given, it
starts the bundled storefront for the run (``flashsale serve`` on a free port) and stops it
afterwards; workers never do. Locust's web UI and master listen on 127.0.0.1 unless
``--web-host`` / ``--master-bind-host`` say otherwise (the locustfile's defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

HELP = "run a scenario in Locust (web UI, master/worker)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument(
        "locust_args",
        nargs=argparse.REMAINDER,
        metavar="…",
        help="--scale F, --duration S, then any locust arguments (e.g. --headless, --master, "
        "--worker, --expect-workers N, --host URL, --web-port P) and --flashsale-* options "
        "(e.g. --flashsale-engine, --flashsale-out DIR)",
    )


def _take(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` or ``name=VALUE`` from ``args``; the value or None."""
    from simulator.errors import UsageError

    for i, a in enumerate(args):
        if a == name:
            if i + 1 >= len(args):
                raise UsageError(f"{name}: needs a value")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if a.startswith(name + "="):
            del args[i]
            return a.partition("=")[2]
    return None


def _peek(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``args`` (not removed)."""
    for i, a in enumerate(args):
        for name in names:
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.partition("=")[2]
    return None


def _number(name: str, text: str | None, kind: type[float] | type[int]) -> float | int | None:
    from simulator.errors import UsageError

    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{name}: not a number: {text!r}") from None


def build_command(scenario: str, args: list[str]) -> tuple[list[str], float | None]:
    """The locust command line for ``args`` (validated); and the --scale given, if any."""
    from simulator.commands.checks import check_flags
    from simulator.errors import UsageError
    from simulator.locust import LOCUSTFILE
    from simulator.scenario import limits, load_scenario

    scale = _number("--scale", _take(args, "--scale"), float)
    duration = _number("--duration", _take(args, "--duration"), float)
    check_flags(
        argparse.Namespace(scale=scale, duration=duration),
        {"scale": limits.SCALE, "duration": limits.DURATION_S},
    )
    load_scenario(scenario, scale=scale)  # bad input stops here, in one line
    expect = _number("--expect-workers", _peek(args, "--expect-workers"), int)
    slices = _number("--flashsale-workers", _peek(args, "--flashsale-workers"), int)
    if expect is not None and slices is not None and expect != slices:
        raise UsageError(
            f"--flashsale-workers {slices} but --expect-workers {expect}: each worker takes one "
            f"slice of the schedule, so the two must be equal"
        )
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--flashsale-scenario", scenario]
    if scale is not None:
        cmd += ["--flashsale-scale", repr(scale)]
    if duration is not None:
        cmd += ["--flashsale-duration", repr(duration)]
    return cmd + args, scale


def main(args: argparse.Namespace) -> int:
    from simulator.load.launcher import StorefrontSpec, embedded_storefront
    from simulator.load.target import Target
    from simulator.load.transport import parse_endpoint
    from simulator.scenario import load_scenario

    rest = list(args.locust_args)
    cmd, scale = build_command(args.scenario, rest)
    sc = load_scenario(args.scenario, scale)
    host = _peek(rest, "--host", "-H") or sc.target.url
    with contextlib.ExitStack() as stack:
        if "--worker" not in rest:
            if host is None:
                spec = StorefrontSpec(sc.source, sc.scale, sc.storefront.backend)
                host = stack.enter_context(embedded_storefront(spec))
                print(f"flashsale: bundled storefront at {host}", file=sys.stderr, flush=True)
                cmd += ["--host", host]
            else:
                # https: reachable, certificate not checked, as Locust's FastHttpUser does; a
                # host that does not answer is warned about by the locust process's own check
                Target(parse_endpoint(host, "--host").unverified()).check_reachable()
        return _run(cmd)


def _run(cmd: list[str]) -> int:
    """Run locust, passing SIGINT/SIGTERM on to it; its exit code."""
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # pragma: no cover - forwarded above
                time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
