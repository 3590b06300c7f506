"""The terminal summary of a report: plain text, at most 80 columns, the default output."""

from __future__ import annotations

import textwrap

from simulator.report import journeys
from simulator.report.document import Report
from simulator.report.metrics import metric_values

WIDTH = 80
MAX_SKUS = 12


def ms(x: float | None) -> str:
    """A latency in ms for a table cell ('-' when absent)."""
    if x is None:
        return "-"
    return f"{x:,.1f}" if x >= 100 else f"{x:.2f}"


def count(x: float | int | None) -> str:
    """A count with thousands separators ('-' when absent)."""
    return "-" if x is None else f"{int(x):,}"


def share(x: float, decimals: int = 1) -> str:
    """A ratio as a percentage that never rounds a share short of 100 % up to "100.0%" (or a
    non-zero share down to "0.0%"): 0.9996 → "99.9%", not "100.0%"."""
    text = f"{x:.{decimals}%}"
    step = 10.0**-decimals
    if 0 < x < 1:
        if text == f"{100:.{decimals}f}%":
            text = f"{100 - step:.{decimals}f}%"
        elif text == f"{0:.{decimals}f}%":
            text = f"{step:.{decimals}f}%"
    return text


def _wrap(label: str, parts: list[str]) -> list[str]:
    """``label`` then ``parts`` joined by ' · ', wrapped under the label at WIDTH."""
    lines, line = [], f"{label:<12}"
    for i, part in enumerate(parts):
        sep = "" if i == 0 else " · "
        if i and len(line) + len(sep) + len(part) > WIDTH:
            lines.append(line)
            line, sep = " " * 12, ""
        line += sep + part
    lines.append(line)
    return lines


def render_text(view: Report) -> str:
    """The summary: orders, outcomes, latency table, rates, audit per SKU, notes."""
    v = metric_values(view)
    o = view.orders
    sc = view.scenario
    head = f"flashsale {view.kind} · {sc.name}"
    if sc.scale is not None:
        head += f" · scale {sc.scale:g}"
    if sc.duration_s is not None:
        head += f" · {sc.duration_s:g} s"
    lines = [head[:WIDTH], ""]
    lines += _wrap(
        "orders",
        [
            f"{count(o.scheduled)} scheduled",
            f"{count(o.attempts)} attempts ({count(o.retries)} retries)",
            f"{count(o.sent)} sent",
        ],
    )
    lines += _wrap(
        "outcomes", [f"{name.replace('_', ' ')} {n:,}" for name, n in view.outcomes.items() if n]
    )
    lines.append(f"{'':<12}(orders by final outcome; a retried order counts once)")
    if v["error_rate"] is not None:
        lines.append(
            f"{'':<12}error rate {share(v['error_rate'], 2)} (error + timeout / scheduled)"
        )
    lines += _reasons(view)
    lines += ["", _latency_table(view)]
    rates = []
    for key, label in (
        ("intended_peak_per_s", "peak due"),
        ("sent_peak_per_s", "peak sent"),
        ("throughput_peak_per_s", "peak answered"),
    ):
        if v[key] is not None:
            rates.append(f"{label} {count(v[key])}/s")
    if v["achieved_rate_ratio"] is not None:
        rates.append(f"sent on time {share(v['achieved_rate_ratio'])}")
    if rates:
        lines += ["", *_wrap("rates", rates)]
    if view.journey is not None:
        lines += ["", *journeys.render_text(view.journey)]
    lines += ["", *_audit(view)]
    if view.remarks():
        lines.append("")
        for n in view.remarks():  # wrapped, never cut: a note is often the run's cause
            lines += textwrap.wrap(f"note: {n}", WIDTH, subsequent_indent="      ")
    return "\n".join(lines)


#: the most reasons listed per outcome (the rest are summed as "other")
MAX_REASONS = 4


def _reasons(view: Report) -> list[str]:
    """Why attempts did not confirm: per outcome, its reasons with counts and shares."""
    reasons = view.orders.reasons or {}
    lines = []
    for outcome, by in reasons.items():
        if outcome == "confirmed" or not by:
            continue
        total = sum(by.values())
        top = sorted(by.items(), key=lambda kv: -kv[1])
        parts = [f"{r} {n:,} ({share(n / total, 0)})" for r, n in top[:MAX_REASONS]]
        if len(top) > MAX_REASONS:
            parts.append(f"other {sum(n for _, n in top[MAX_REASONS:]):,}")
        lines += _wrap(f"  {outcome.replace('_', ' ')}", parts)
    if lines:
        lines.insert(0, f"{'reasons':<12}(attempts by what decided them)")
    return lines


def _latency_table(view: Report) -> str:
    cols = ("p50", "p90", "p99", "p99.9", "max")
    rows = [f"{'latency ms':<14}" + "".join(f"{c:>11}" for c in cols)]
    for kind in ("intended", "service", "order", "dispatch_lag", "queue_wait"):
        d = view.latency.get(kind)
        if d is None:
            continue
        rows.append(
            f"  {kind.replace('_', ' '):<12}" + "".join(f"{ms(d.get(c)):>11}" for c in cols)
        )
    if len(rows) == 1:
        rows.append("  (no latency in this report)")
    return "\n".join(rows)


def _audit(view: Report) -> list[str]:
    if view.audit is None:
        return ["audit       not in this report"]
    over = view.oversell_units
    if over:
        verdict = f"OVERSOLD by {over:,} units"
    elif over == 0:
        verdict = "no oversell"
    else:
        verdict = "oversell unknown"
    if not view.audit.available:
        off = view.audit.source == "none"
        why = "audit off" if off else "server inventory unavailable"
        verdict += f" ({why}: client view only)"
    lines = [f"{'audit':<12}{verdict}"]
    if view.skus:
        lines.append(
            f"  {'sku':<22}{'stock':>9}{'confirmed':>10}{'sold':>9}{'ledger':>9}"
            f"{'oversell':>9}{'sold out':>9}"
        )
        for s in view.skus[:MAX_SKUS]:
            out = "-" if s.sell_out_s is None else f"{s.sell_out_s:.1f} s"
            lines.append(
                f"  {s.sku[:21]:<22}{count(s.initial):>9}{count(s.client_units):>10}"
                f"{count(s.sold):>9}{count(s.ledger_units):>9}{s.oversell_units:>9,}{out:>9}"
            )
        if len(view.skus) > MAX_SKUS:
            lines.append(f"  … and {len(view.skus) - MAX_SKUS} more SKUs")
    lines += _lifecycle(view)
    for p in view.audit.problems:  # wrapped, not cut: the numbers are at the end
        lines += textwrap.wrap(p, WIDTH, initial_indent="  ! ", subsequent_indent="    ")
    return lines


def lifecycle_verdict(view: Report) -> tuple[str, bool] | None:
    """The report's reservation verdict (:meth:`~simulator.report.sections.Audit.lifecycle_verdict`;
    None without an audit or a TTL)."""
    return view.audit.lifecycle_verdict() if view.audit is not None else None


def _lifecycle(view: Report) -> list[str]:
    """The reservation lifecycle: its verdict, then per SKU paid/held/free and the breakages."""
    verdict = lifecycle_verdict(view)
    if verdict is None:
        return []
    lines = [f"{'lifecycle':<12}{verdict[0]}"[:WIDTH]]
    cycles = [(s.sku, s.cycle) for s in view.skus if s.cycle is not None]
    lines.append(
        f"  {'sku':<16}{'paid':>8}{'held':>7}{'free':>8}{'returned':>9}"
        f"{'under':>7}{'dbl ret':>8}{'late pay':>9}{'gap':>6}"
    )
    for sku, c in cycles[:MAX_SKUS]:
        lines.append(
            f"  {sku[:15]:<16}{c.paid:>8,}{c.held:>7,}{c.free:>8,}{c.returned:>9,}"
            f"{c.undersell_units:>7,}{c.double_returns:>8,}{c.paid_after_expiry:>9,}"
            f"{c.stock_gap_units:>+6,}"
        )
    if len(cycles) > MAX_SKUS:
        lines.append(f"  … and {len(cycles) - MAX_SKUS} more SKUs")
    return lines
