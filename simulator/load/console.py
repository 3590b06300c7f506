"""Live progress of a run in the terminal (rich), while it runs.

It only renders numbers computed elsewhere (:class:`simulator.load.engine.Progress`); the summary at
the end is :func:`simulator.report.terminal.render_text`, the same as ``flashsale report``.
"""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.text import Text

from simulator.load.engine import Progress


def progress_text(p: Progress, stock_total: int) -> Text:
    """One status block: time, target vs achieved rate, p99 so far, attempts by outcome, stock
    left. The live counts are of ATTEMPTS (a retried order's throttled attempts each count);
    the report's outcomes count orders by their final outcome — the labels say which."""
    p99 = "–" if p.p99_ms != p.p99_ms else f"{p.p99_ms:,.1f} ms"
    outcomes = "  ".join(f"{k} {v:,}" for k, v in p.outcomes.items() if v)
    left = max(0, stock_total - p.confirmed_units)
    # three short lines: readable at 80 columns
    return Text(
        f"t {p.elapsed_s:6.1f} s  target {p.target_rate_per_s:,.0f}/s  "
        f"achieved {p.achieved_rate_per_s:,.0f}/s  p99 {p99}\n"
        f"in flight {p.in_flight:,}  queued {p.queued:,}  stock left {left:,} "
        "(units confirmed, each order once)\n"
        f"attempts: {outcomes or 'no answers yet'}"
    )


class LiveProgress:
    """A rich Live display updated from progress snapshots (only used on a terminal)."""

    def __init__(self, console: Console, stock_total: int) -> None:
        self.stock_total = stock_total
        self.live = Live(Text("starting…"), console=console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, p: Progress) -> None:
        """Show a new snapshot."""
        self.live.update(progress_text(p, self.stock_total))
