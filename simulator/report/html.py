"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

Headline numbers sit in elements ``id="metric-<name>"`` with ``data-metric`` and ``data-value``
(the exact number from the report, as :mod:`.metrics` names it) so that a test or a scraper
reads them without parsing the display text. Each figure is a ``<figure data-plot="<key>">``
holding an inline ``<svg>``, or ``class="missing"`` and a note when the report lacks its data.
The audit table marks oversold products with ``class="oversell"``; with a reservation TTL the
lifecycle verdict is ``id="lifecycle-verdict"`` and the table ``id="lifecycle-table"`` marks a
product whose lifecycle broke with ``class="broken"`` (its cells carry ``data-field``). The
run's metadata (target, backend, date, connections, …) is a ``<dl id="run-meta">`` whose
entries carry ``data-field``; the thresholds checked at the end of the run are a table
``id="thresholds"`` with one row per threshold, ``data-passed="true|false"``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import IO

from simulator.files import atomic_write
from simulator.report import journeys
from simulator.report.document import Report
from simulator.report.metrics import metric_values
from simulator.report.plots import Plot, render_plots
from simulator.report.terminal import count, lifecycle_verdict, share

#: headline metrics in page order: (metric, label, format)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("scheduled", "orders scheduled", "count"),
    ("confirmed", "confirmed", "count"),
    ("sold_out", "sold out", "count"),
    ("throttled", "throttled", "count"),
    ("errors", "error + timeout", "count"),
    ("p50_ms", "p50 latency", "ms"),
    ("p99_ms", "p99 latency", "ms"),
    ("max_ms", "max latency", "ms"),
    ("achieved_rate_ratio", "sent on time", "pct"),
    ("throughput_peak_per_s", "peak answers / s", "count"),
    ("oversell_units", "oversell units", "count"),
    ("undersell_units", "undersell units", "count"),
    ("double_returns", "double returns", "count"),
    ("paid_after_expiry", "paid after expiry", "count"),
)
#: headline metrics shown only when the report has them (the reservation lifecycle)
OPTIONAL_HEADLINE = frozenset({"undersell_units", "double_returns", "paid_after_expiry"})
#: metrics whose tile is red when above zero
BAD_ABOVE_ZERO = frozenset({"oversell_units", "errors"}) | OPTIONAL_HEADLINE

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 64em;
       padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.headline { display: grid; grid-template-columns: repeat(auto-fill, minmax(11.5em, 1fr));
            gap: 0.6em; }
.stat { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.7em; }
.stat .label { display: block; color: #666; font-size: 0.85em; }
.stat .value { font-size: 1.35em; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat.bad { border-color: #d62728; background: #fdecea; }
.stat.missing .value { color: #999; }
figure { margin: 1em 0; } figure svg { width: 100%; height: auto; display: block; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
.note { color: #8a6d3b; background: #fcf8e3; padding: 0.3em 0.6em; border-radius: 4px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.oversell td, tr.broken td { background: #fdecea; color: #a50e0e; font-weight: 600; }
#lifecycle-verdict.ok { color: #1a7f37; }
#lifecycle-verdict.bad { color: #a50e0e; font-weight: 700; }
#audit-verdict.ok { color: #1a7f37; } #audit-verdict.bad { color: #a50e0e; font-weight: 700; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
tr.pass td.verdict { color: #1a7f37; font-weight: 700; }
tr.fail td { background: #fdecea; } tr.fail td.verdict { color: #a50e0e; font-weight: 700; }
"""


def _value_attr(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if x == int(x) and abs(x) < 2**53 else repr(x)


def _show(x: float | None, fmt: str) -> str:
    if x is None:
        return "–"
    if fmt == "ms":
        return f"{x:,.4f}".rstrip("0").rstrip(".") + " ms"
    if fmt == "pct":
        return share(x, 2)
    return count(x)


def _headline(view: Report) -> str:
    values = metric_values(view)
    items = []
    for metric, label, fmt in HEADLINE:
        x = values[metric]
        if x is None and metric in OPTIONAL_HEADLINE:
            continue
        cls = "stat"
        if x is None:
            cls += " missing"
        elif metric in BAD_ABOVE_ZERO and x > 0:
            cls += " bad"
        items.append(
            f'<div class="{cls}" id="metric-{metric}" data-metric="{metric}" '
            f'data-value="{_value_attr(x)}"><span class="label">{escape(label)}</span>'
            f'<span class="value">{escape(_show(x, fmt))}</span></div>'
        )
    return '<section class="headline" id="headline">' + "".join(items) + "</section>"


def _figure(p: Plot) -> str:
    note = f'<p class="note">{escape(p.note)}</p>' if p.note else ""
    if p.svg is None:
        return (
            f'<figure class="missing" id="plot-{p.key}" data-plot="{p.key}">'
            f"<figcaption>{escape(p.title)}</figcaption>{note}</figure>"
        )
    return (
        f'<figure id="plot-{p.key}" data-plot="{p.key}"><figcaption>{escape(p.title)}'
        f"</figcaption>{p.svg}{note}</figure>"
    )


def _latency_table(view: Report) -> str:
    cols = ("p50", "p90", "p99", "p99.9", "max", "mean")
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for kind, d in view.latency.items():
        cells = "".join(f"<td>{'–' if (x := d.get(c)) is None else f'{x:,.4g}'}</td>" for c in cols)
        rows.append(f"<tr><td>{escape(kind.replace('_', ' '))}</td>{cells}</tr>")
    if not rows:
        return '<p class="note">no latency in this report</p>'
    return f'<table id="latency-table"><tr><th>ms</th>{head}</tr>{"".join(rows)}</table>'


def _reasons(view: Report) -> str:
    """Attempts by outcome and reason ("error · connection reset · 12 · 35 %")."""
    rows = []
    for outcome, by in (view.orders.reasons or {}).items():
        total = sum(by.values())
        for reason, n in sorted(by.items(), key=lambda kv: -kv[1]):
            pct = f"{n / total:.0%}" if total else "–"
            rows.append(
                f"<tr><td>{escape(outcome.replace('_', ' '))}</td><td>{escape(reason)}</td>"
                f"<td>{n:,}</td><td>{pct}</td></tr>"
            )
    if not rows:
        return '<p class="note" id="reasons-table">no reasons in this report</p>'
    head = "<tr><th>outcome</th><th>reason</th><th>attempts</th><th>share</th></tr>"
    return f'<table id="reasons-table">{head}{"".join(rows)}</table>'


def _audit(view: Report) -> str:
    if view.audit is None:
        return '<p class="note" id="audit-verdict">no audit in this report</p>'
    over = view.oversell_units
    if over:
        verdict, cls = f"OVERSOLD by {over:,} units", "bad"
    elif over == 0:
        verdict, cls = "no oversell", "ok"
    else:
        verdict, cls = "oversell unknown", "bad"
    if not view.audit.available:
        off = view.audit.source == "none"
        why = "audit off" if off else "server inventory unavailable"
        verdict += f" ({why}: client view only)"
    parts = [f'<p id="audit-verdict" class="{cls}">{escape(verdict)}</p>']
    head = ["sku", "stock", "confirmed (clients)", "sold (server)", "ledger", "remaining"]
    head += ["oversell", "sold out at"]
    rows = []
    for s in view.skus:
        cls_attr = ' class="oversell"' if s.oversell_units > 0 else ""
        cells = [escape(s.sku)] + [
            count(x) for x in (s.initial, s.client_units, s.sold, s.ledger_units, s.remaining)
        ]
        cells += [count(s.oversell_units), "–" if s.sell_out_s is None else f"{s.sell_out_s:g} s"]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f'<tr{cls_attr} data-sku="{escape(s.sku)}">{tds}</tr>')
    if rows:
        ths = "".join(f"<th>{h}</th>" for h in head)
        parts.append(f'<table id="audit-table"><tr>{ths}</tr>{"".join(rows)}</table>')
    parts.append(_lifecycle(view))
    if view.audit.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in view.audit.problems)
        parts.append(f'<ul id="audit-problems">{items}</ul>')
    return "".join(parts)


_LIFECYCLE_COLUMNS = (
    ("paid", "paid"), ("held", "held"), ("free", "free"), ("reserved", "reserved"),
    ("returned", "returned"), ("overdue_units", "held past expiry"),
    ("never_returned_units", "never returned"), ("undersell_units", "undersell"),
    ("double_returns", "double returns"), ("paid_after_expiry", "paid after expiry"),
    ("stock_gap_units", "paid + held + free − stock"),
)  # fmt: skip


def _lifecycle(view: Report) -> str:
    """The reservation lifecycle: verdict line and per-SKU table (nothing without a TTL)."""
    verdict = lifecycle_verdict(view)
    if verdict is None:
        return ""
    text, sound = verdict
    cls = "ok" if sound else "bad"
    parts = [f'<p id="lifecycle-verdict" class="{cls}">reservations: {escape(text)}</p>']
    holds = view.audit.holds if view.audit is not None else None
    if holds:
        facts = [
            f"{label} {holds[key]:g} s"
            for key, label in (("reservation_ttl_s", "TTL"), ("sweep_interval_s", "sweep every"),
                               ("grace_s", "grace"))
            if isinstance(holds.get(key), int | float)
        ]  # fmt: skip
        parts.append(f'<p class="sub" id="lifecycle-clock">{escape(" · ".join(facts))}</p>')
    rows = []
    for s in view.skus:
        c = s.cycle
        if c is None:
            continue
        cells = "".join(
            f'<td data-field="{key}">{count(getattr(c, key))}</td>' for key, _ in _LIFECYCLE_COLUMNS
        )
        cls_attr = ' class="broken"' if c.broken else ""
        rows.append(
            f'<tr{cls_attr} data-sku="{escape(s.sku)}"><td>{escape(s.sku)}</td>{cells}</tr>'
        )
    ths = "".join(f"<th>{escape(label)}</th>" for _, label in _LIFECYCLE_COLUMNS)
    parts.append(f'<table id="lifecycle-table"><tr><th>sku</th>{ths}</tr>{"".join(rows)}</table>')
    return "".join(parts)


def _meta(view: Report) -> str:
    """Where and when the run went, with what: one ``<dt>``/``<dd>`` per known fact."""
    t, r, sc = view.target, view.run, view.scenario
    kind = None if t.embedded is None else "bundled storefront" if t.embedded else "external"
    sf = t.storefront
    storefront = None
    if sf is not None:
        parts = [f"max concurrency {sf.max_concurrency or 'unlimited'}"]
        if sf.service_time_median_ms:
            parts.append(
                f"service time {sf.service_time_median_ms:g} ms (σ {sf.service_time_sigma or 0:g})"
            )
        if sf.hot_row:
            parts.append("hot row")
        storefront = ", ".join(parts)
    items = (
        ("target", "target", t.url),
        ("target-kind", "target kind", kind),
        ("backend", "backend", t.backend),
        ("transport", "transport", t.transport),
        ("storefront", "storefront settings", storefront),
        ("started-at", "started at", r.started_at),
        ("wall", "wall time", None if r.wall_s is None else f"{r.wall_s:g} s"),
        ("workers", "workers", None if r.workers is None else str(r.workers)),
        ("connections", "connections", None if r.connections is None else str(r.connections)),
        ("timeout", "request timeout", None if r.timeout_s is None else f"{r.timeout_s:g} s"),
        ("seed", "seed", None if sc.seed is None else str(sc.seed)),
        ("scenario-file", "scenario file", sc.file),
        ("exit-code", "exit code", str(view.exit_code)),
        ("complete", "complete", "yes" if view.complete else "NO"),
    )
    rows = [
        f'<dt>{escape(label)}</dt><dd data-field="{key}">{escape(value)}</dd>'
        for key, label, value in items
        if value is not None
    ]
    rows += [f'<dt>note</dt><dd data-field="note">{escape(n)}</dd>' for n in r.notes]
    rows += [
        f'<dt>worker error</dt><dd data-field="worker-error">{escape(e)}</dd>'
        for e in r.worker_errors
    ]
    return f'<dl class="meta" id="run-meta">{"".join(rows)}</dl>'


def _thresholds(view: Report) -> str:
    if not view.thresholds:
        return '<p class="note" id="thresholds-none">no thresholds were checked on this run</p>'
    rows = []
    for c in view.thresholds:
        shown = "not in this report" if c.value is None else f"{c.value:.6g}"
        verdict, cls = ("PASS", "pass") if c.passed else ("FAIL", "fail")
        rows.append(
            f'<tr class="{cls}" data-passed="{str(c.passed).lower()}"><td>{escape(c.expr)}</td>'
            f'<td>{escape(shown)}</td><td class="verdict">{verdict}</td></tr>'
        )
    failed = sum(not c.passed for c in view.thresholds)
    head = "<tr><th>threshold</th><th>value</th><th>verdict</th></tr>"
    summary = f"{len(view.thresholds) - failed} passed, {failed} failed"
    return (
        f'<p id="thresholds-summary">{summary}</p>'
        f'<table id="thresholds">{head}{"".join(rows)}</table>'
    )


def render_html(view: Report, source: str = "") -> str:
    """The whole page as text."""
    sc = view.scenario
    title = f"flashsale {view.kind} — {sc.name}"
    sub = [f"scale {sc.scale:g}" if sc.scale is not None else ""]
    sub.append(f"{sc.duration_s:g} s" if sc.duration_s is not None else "")
    sub.append(escape(view.run.started_at or ""))
    sub.append(escape(source))
    plots = render_plots(view)
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in view.remarks())
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{" · ".join(s for s in sub if s)}</p>',
            notes,
            "<h2>Run</h2>",
            _meta(view),
            _headline(view),
            "<h2>Thresholds</h2>",
            _thresholds(view),
            "<h2>Latency</h2>",
            _latency_table(view),
            "<h2>Outcomes and reasons</h2>",
            _reasons(view),
            *(
                ("<h2>Journeys</h2>", journeys.render_html(view.journey))
                if view.journey is not None
                else ()
            ),
            "<h2>Figures</h2>",
            *(_figure(p) for p in plots),
            "<h2>Audit</h2>",
            _audit(view),
            "</body></html>",
            "",
        ]
    )


def write_html(view: Report, path: Path, source: str = "") -> Path:
    """Render the page and write it to ``path`` atomically (temporary file, then rename)."""
    data = render_html(view, source).encode("utf-8")

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return atomic_write(path, write)
