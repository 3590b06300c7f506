"""``flashsale run``: drive a scenario at a storefront, open loop, audit it, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "drive a scenario at a storefront, open loop, and audit it"
#: the flag that sets each value a library error may name (simulator.errors.FlashsaleError)
FLAGS = {
    "target_url": "--target",
    "ca_file": "--ca-file",
    "insecure": "--insecure",
    "backend": "--backend",
    "transport": "--transport",
    "orders_path": "--orders",
    "metrics_port": "--metrics-port",
    "metrics_host": "--metrics-host",
    "windows": "--windows",
}


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``flashsale run``."""
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument("--target", metavar="URL", help="storefront base URL (default: bundled one)")
    p.add_argument("--backend", metavar="NAME", help="inventory backend of the bundled storefront")
    p.add_argument("--scale", type=float, help="override the scenario's scale (rates and stock)")
    p.add_argument("--duration", type=float, metavar="S", help="only the first S seconds")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (one loop each)")
    p.add_argument("--connections", type=int, metavar="N", help="connections in all")
    p.add_argument("--transport", choices=("lean", "aiohttp"), default="lean")
    p.add_argument("--out", metavar="DIR", help="write DIR/report.json")
    p.add_argument(
        "--orders",
        metavar="FILE",
        help="stream every attempt's record to FILE as the run goes (FILE.w0, FILE.w1, … with "
        "--workers N); name it DIR/orders.npys for 'report --csv' and calibration to find it",
    )
    p.add_argument("--html", metavar="FILE", help="also write the HTML report to FILE")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="pass/fail check after the run, e.g. 'p99_ms < 250' (repeatable; adds to the "
        "scenario's thresholds; exit 1 if any fails)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="https target: trust the CA certificates in this PEM file (e.g. a staging CA)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="https target: do not check its certificate or host name",
    )
    p.add_argument(
        "--busy-wait",
        action="store_true",
        help="spin through the last millisecond before each order instead of sleeping on a "
        "timerfd: a whole core below saturation, but answers are seen ~20-30 µs sooner",
    )
    p.add_argument(
        "--windows",
        action="store_true",
        help="send the orders that come due within 100 µs together from the loop's timer, "
        "never from an answer: less CPU per order and a higher top rate, for a dispatch lag "
        "of up to ~0.1 ms more",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve live Prometheus metrics at http://HOST:N/metrics while the run goes",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to serve --metrics-port on (default 127.0.0.1: loopback only)",
    )
    p.add_argument(
        "--metrics-linger",
        type=float,
        metavar="S",
        help="keep serving the final figures S seconds after the report is written, so that "
        "a scraper takes them (default 0; set it to your scrape interval)",
    )
    p.add_argument(
        "--no-reset",
        action="store_true",
        help="do not POST the target's reset path before the run (for your own storefront)",
    )


def main(args: argparse.Namespace) -> int:
    """Validate, run, render; returns 0 (completed), 1 (oversell / incomplete / threshold /
    report not written where asked)."""
    from rich.console import Console

    from simulator.commands.checks import check_flags, check_live_run
    from simulator.commands.hints import target_error
    from simulator.errors import UsageError
    from simulator.load import livemetrics
    from simulator.load.console import LiveProgress
    from simulator.load.runner import RunConfig, execute, exit_reasons
    from simulator.load.target import TargetError
    from simulator.report.store import report_bytes
    from simulator.report.thresholds import parse_thresholds, render_results
    from simulator.scenario import limits, load_scenario
    from simulator.storefront.backends import BACKEND_NAMES

    check_flags(
        args,
        {
            "workers": limits.WORKERS,
            "connections": limits.CONNECTIONS,
            "duration": limits.DURATION_S,
            "scale": limits.SCALE,
            "metrics_port": livemetrics.PORT,
            "metrics_linger": livemetrics.LINGER_S,
        },
    )
    if args.metrics_linger is not None and args.metrics_port is None:
        raise UsageError("--metrics-linger: only with --metrics-port")
    if args.backend is not None and args.backend not in BACKEND_NAMES:
        raise UsageError(f"--backend: unknown {args.backend!r} (one of {', '.join(BACKEND_NAMES)})")
    scenario = load_scenario(args.scenario, scale=args.scale)
    if args.target is None and scenario.target.url is None:
        from simulator.storefront.config import StorefrontSettings

        if StorefrontSettings.from_scenario(scenario).flow and scenario.journey is None:
            raise UsageError(
                f"{args.scenario}: [storefront] turns on the flash-sale flow (reservations, "
                "tokens, admission or a sale start), whose buyers log in and pay; without a "
                "[journey] flashsale run sends one order request per buyer. Describe the "
                "buyers' steps in [journey] (scenarios/seckill-journey.toml is an example), "
                "or remove those keys"
            )
    if scenario.journey is not None and args.transport != "lean":
        raise UsageError(
            f"--transport {args.transport}: a scenario with a [journey] runs on the lean "
            "transport only (it reads whole answers: values, cookies, polls)"
        )
    check_live_run(
        scenario,
        args.duration,
        args.workers or scenario.run.workers,
        args.connections or scenario.run.connections,
    )
    # every expression is parsed before the run, so that a typo costs nothing; the runner
    # checks them on the finished report before its one write
    checks = parse_thresholds([*scenario.thresholds, *args.threshold])
    config = RunConfig(
        scenario=scenario,
        duration_s=args.duration,
        target_url=args.target,
        backend=args.backend,
        workers=args.workers,
        connections=args.connections,
        transport=args.transport,
        out_dir=Path(args.out) if args.out else None,
        orders_path=Path(args.orders) if args.orders else None,
        reset=not args.no_reset,
        busy_wait=args.busy_wait,
        windows=args.windows,
        ca_file=args.ca_file,
        insecure=args.insecure,
        thresholds=tuple(checks),
        metrics=None
        if args.metrics_port is None
        else livemetrics.MetricsConfig(
            args.metrics_port, args.metrics_host, args.metrics_linger or 0.0
        ),
    )
    console = Console(stderr=args.json)
    try:
        if console.is_terminal and not args.json:
            with LiveProgress(console, sum(scenario.stocks().values())) as live:
                outcome = execute(config, live.update)
        else:
            outcome = execute(config)
    except TargetError as exc:
        raise target_error(exc) from None
    report, code = outcome.report, outcome.exit_code
    for problem in outcome.write_problems:
        print(f"flashsale run: {problem}", file=sys.stderr)
    if outcome.write_problems:
        code = max(code, 1)
    html_failed = False
    if args.html:
        from simulator.report.html import write_html

        try:
            write_html(report, Path(args.html), source=str(outcome.path or ""))
        except OSError as exc:
            print(
                f"flashsale run: --html: {args.html}: cannot write: {exc.strerror}", file=sys.stderr
            )
            code = max(code, 1)
            html_failed = True
    if args.json:
        sys.stdout.buffer.write(report_bytes(report))
        sys.stdout.flush()
    else:
        from simulator.report.terminal import render_text

        console.print(render_text(report), highlight=False, markup=False)
        if outcome.path is not None:
            console.print(f"report: {outcome.path}", highlight=False)
        if report.thresholds:
            console.print(render_results(report.thresholds, report), highlight=False)
        if args.html:
            console.print(f"html: {args.html}", highlight=False)
    if report.thresholds and args.json:
        print(render_results(report.thresholds, report), file=sys.stderr)
    if code:
        reasons = exit_reasons(report)
        reasons += [f"the report could not be written: {p}" for p in outcome.write_problems]
        if html_failed:
            reasons.append(f"the HTML report could not be written: {args.html}")
        print(f"flashsale run: exit {code}: {'; '.join(reasons)}", file=sys.stderr)
    return code
