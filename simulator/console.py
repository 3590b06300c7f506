"""Terminal rendering of a run: the live progress line and the final summary table.

Both only render numbers computed elsewhere (:class:`simulator.engine.Progress`, the report
dict of :mod:`simulator.results`); nothing here computes a statistic.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from simulator.engine import Progress
from simulator.recorder import OUTCOME_NAMES


def progress_text(p: Progress, stock_total: int) -> Text:
    """One status block: time, target vs achieved rate, p99 so far, outcomes, stock left."""
    p99 = "–" if p.p99_ms != p.p99_ms else f"{p.p99_ms:,.1f} ms"
    outcomes = "  ".join(f"{k} {v:,}" for k, v in p.outcomes.items() if v)
    left = max(0, stock_total - p.confirmed_units)
    return Text(
        f"t {p.elapsed_s:6.1f} s  target {p.target_rate_per_s:,.0f}/s  "
        f"achieved {p.achieved_rate_per_s:,.0f}/s  p99 {p99}  in flight {p.in_flight:,}  "
        f"queued {p.queued:,}  stock left {left:,}\n{outcomes or 'no answers yet'}"
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


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:,.2f}"


def summary_table(report: dict[str, Any]) -> Table:
    """Latency percentiles by kind, outcomes and the audit, as one table."""
    sc, tgt = report["scenario"], report["target"]
    title = (
        f"{sc['name']} (scale {sc['scale']:g}, seed {sc['seed']}, {sc['duration_s']:g} s) → "
        f"{tgt['url']} [{tgt['transport']}]" + ("  PARTIAL" if report["partial"] else "")
    )
    t = Table(title=title, title_justify="left")
    t.add_column("latency (ms)")
    for key in ("p50", "p90", "p99", "p99.9", "max", "count"):
        t.add_column(key, justify="right")
    rows = [
        ("intended", report["latency_ms"]["intended"]),
        ("service", report["latency_ms"]["service"]),
        ("order (with retries)", report["latency_ms"]["order"]),
        ("dispatch lag", report["dispatch_lag_ms"]),
        ("queue wait", report["queue_wait_ms"]),
    ]
    for name, d in rows:
        t.add_row(
            name, *(_ms(d[k]) for k in ("p50", "p90", "p99", "p99.9", "max")), f"{d['count']:,}"
        )
    return t


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Outcomes, run shape and audit under the table."""
    orders, run = report["orders"], report["run"]
    outcome_line = "  ".join(f"{k} {orders['outcomes'][k]:,}" for k in OUTCOME_NAMES)
    return [
        f"orders {orders['scheduled']:,} (+{orders['retries']:,} retries): {outcome_line}",
        f"wall {run['wall_s']:.1f} s, {run['workers']} worker(s), {run['connections']} connections",
        audit_line(report["audit"]),
    ]


def audit_line(a: dict[str, Any]) -> str:
    """The audit in one or a few lines."""
    if not a["available"]:
        return "audit: unavailable (" + "; ".join(a["problems"]) + ")"
    head = f"audit ({a.get('backend')}): oversell {a['oversell_units']:,} units — " + (
        "OK" if a["ok"] else "OVERSOLD"
    )
    return "\n".join([head, *(f"  ! {p}" for p in a["problems"])])


def print_summary(console: Console, report: dict[str, Any], path: str | None) -> None:
    """The final table, and where the report went."""
    console.print(summary_table(report))
    for line in summary_lines(report):
        console.print(line, highlight=False)
    if path is not None:
        console.print(f"report: {path}")
