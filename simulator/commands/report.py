"""``flashsale report``: render a finished report — terminal summary, HTML, CSV, thresholds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.report.thresholds import Threshold

HELP = "render a run's report.json: terminal, HTML with plots, CSV, thresholds"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("report", nargs="?", metavar="RUN.json", help="a run's (or the model's) report")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with plots")
    p.add_argument(
        "--csv",
        metavar="DIR",
        help="write timeline.csv (and orders.csv from orders.npz or the orders.npys stream "
        "beside the report) into DIR",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="e.g. 'p99_ms < 250' (repeatable); exit 1 if any fails",
    )
    p.add_argument("--metrics", action="store_true", help="list the metrics thresholds can name")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary, just files/thresholds")


def main(args: argparse.Namespace) -> int:
    from simulator.errors import UsageError
    from simulator.report.thresholds import describe_metrics, parse_thresholds

    if args.metrics:
        print(describe_metrics())
        return 0
    if args.report is None:
        raise UsageError("give a report file (RUN.json), or --metrics")
    thresholds = parse_thresholds(args.threshold)  # a typo fails before any work
    return report(
        Path(args.report),
        html=None if args.html is None else Path(args.html),
        csv_dir=None if args.csv is None else Path(args.csv),
        thresholds=thresholds,
        quiet=args.quiet,
    )


def report(
    path: Path,
    html: Path | None = None,
    csv_dir: Path | None = None,
    thresholds: Sequence[Threshold] = (),
    quiet: bool = False,
) -> int:
    """Print the summary, write the requested files, check thresholds (1 if any fails)."""
    from simulator.errors import UsageError
    from simulator.records import ORDERS_FILE, ORDERS_STREAM, find_orders
    from simulator.report.store import load_report
    from simulator.report.terminal import render_text
    from simulator.report.thresholds import evaluate, render_results

    view = load_report(path)
    if not quiet:
        print(render_text(view))
    if html is not None:
        from simulator.report.html import write_html

        try:
            write_html(view, html, source=path.name)
        except OSError as exc:
            raise UsageError(f"--html: {html}: cannot write: {exc.strerror}") from None
        print(f"wrote {html}")
    if csv_dir is not None:
        from simulator.report.csvout import write_csv

        records = find_orders(path.parent)
        try:
            written = write_csv(view, csv_dir, records)
        except OSError as exc:
            raise UsageError(f"--csv: {csv_dir}: cannot write: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--csv: {exc}") from None
        for p in written:
            print(f"wrote {p}")
        if records is None:
            print(
                f"(no {ORDERS_FILE} beside {path}, nor an {ORDERS_STREAM} stream: "
                "per-order CSV not written)"
            )
    if not thresholds:
        return 0
    results = evaluate(view, thresholds)
    print(render_results(results))
    sys.stdout.flush()
    return 0 if all(r.passed for r in results) else 1
