"""``flashsale compare``: what changed between two reports; exit 1 when NEW regressed."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HELP = "compare two runs and fail on regression"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", metavar="BASE.json", help="the report to compare against")
    p.add_argument("new", metavar="NEW.json", help="the report being judged")
    p.add_argument(
        "--tolerance",
        type=float,
        default=10.0,
        metavar="PCT",
        help="how much worse (percent of BASE) a metric may get before it fails (default 10)",
    )
    p.add_argument(
        "--min-ms",
        type=float,
        default=0.5,
        metavar="MS",
        help="latency changes up to this many ms are noise, never a regression (default 0.5)",
    )


def main(args: argparse.Namespace) -> int:
    from simulator.errors import UsageError

    for name in ("tolerance", "min_ms"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')}: must be a number ≥ 0, got {value}")
    return compare(Path(args.base), Path(args.new), args.tolerance, args.min_ms)


def compare(base: Path, new: Path, tolerance_pct: float = 10.0, min_ms: float = 0.5) -> int:
    """Print the comparison table; 1 if NEW regressed past the tolerance, else 0."""
    from simulator.report import compare as cmp
    from simulator.report.store import load_report

    b = load_report(base)
    n = load_report(new)
    changes = cmp.compare(b, n, tolerance_pct, min_ms)
    print(f"base {base}\nnew  {new}\n")
    print(cmp.render_table(b, n, changes, tolerance_pct))
    return 1 if cmp.regressions(changes) else 0
