"""The report's figures, drawn with matplotlib (Agg) and returned as inline SVG text.

Each figure is a function of the :class:`~simulator.report.document.Report` alone. A figure
whose data the report lacks comes back without SVG and with a note saying what is missing.
matplotlib is imported inside :func:`render_plots`, so importing this module stays cheap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.report.document import Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_STOCK_LINES = 8
RC: dict[str, Any] = {
    "svg.hashsalt": "flashsale",  # deterministic element ids (reproducible pages)
    "svg.fonttype": "path",  # glyphs as paths: the page needs no fonts
    "font.size": 9.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
COLORS = {
    "intended": "#7f7f7f",
    "sent": "#1f77b4",
    "done": "#2ca02c",
    "confirmed": "#2ca02c",
    "sold_out": "#9467bd",
    "throttled": "#ff7f0e",
    "errors": "#d62728",
    "rejected": "#8c564b",
}


@dataclass(frozen=True, slots=True)
class Plot:
    """One figure: a stable key, a title, its SVG (None if not drawn) and a note."""

    key: str
    title: str
    svg: str | None
    note: str | None = None


def _figure(height: float = 3.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(8.0, height), layout="constrained")


def _svg(fig: Figure, key: str) -> str:
    """The figure as inline SVG whose element ids all start with ``key``.

    Every matplotlib SVG calls its groups figure_1, axes_1, …: prefixing the ids (and the
    ``url(#…)``/``href="#…"`` references to them) keeps ids unique across the page.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE
    return (
        text.replace(' id="', f' id="{key}-')
        .replace("url(#", f"url(#{key}-")
        .replace('href="#', f'href="#{key}-')
    )


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _steps(second: list[int], ys: list[int]) -> tuple[list[int], list[int]]:
    """Per-second counts as a step line over [s, s + 1) for every second, the last included."""
    if not second:
        return [], []
    return [*second, second[-1] + 1], [*ys, ys[-1]]


def _mid(second: list[int]) -> list[float]:
    """The middle of each second (where a per-second percentile belongs)."""
    return [s + 0.5 for s in second]


def _seconds_axis(ax: Axes, ylabel: str, n_seconds: int) -> None:
    ax.set_xlabel("second of the sale")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, max(1, n_seconds))  # every plot over time spans the same seconds


def _legend(ax: Axes, n: int) -> None:
    """The legend above the axes (one row, or two for more than four), never over a line."""
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=n if n <= 4 else -(-n // 2),
        frameon=False,
    )


def _plain_log(ax: Axes, axis: str = "y") -> None:
    """A log axis labelled 0.2, 1, 50 rather than 2×10⁻¹."""
    import math

    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos: object) -> str:  # label 2× and 5× only: no crowding
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f"{v:g}" if lead in (2, 5) else ""

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor) if axis == "y" else "")


def demand(view: Report) -> Plot:
    """Intended attempts per second vs sent and answered per second (did sending keep up?)."""
    title = "Demand vs achieved throughput"
    t = view.timeline
    if t is None or t.intended is None:
        return Plot("demand", title, None, "no per-second demand in this report")
    fig = _figure()
    ax = fig.add_subplot()
    xs, ys = _steps(t.second, t.intended)
    ax.fill_between(xs, ys, step="post", color="#d9d9d9", label="demand (due)")
    n = 1
    # answered is drawn first and wide, sent on top of it dashed: where the two agree (every
    # request answered in the second it left) both stay visible
    for name, series, label, style in (
        ("done", t.done, "answered", {"lw": 3.0, "alpha": 0.55, "zorder": 2}),
        ("sent", t.sent, "sent", {"lw": 1.3, "ls": "--", "zorder": 3}),
    ):
        if series is not None:
            ax.step(
                *_steps(t.second, series), where="post", color=COLORS[name], label=label, **style
            )
            n += 1
    _seconds_axis(ax, "attempts / s", len(t.second))
    ax.set_ylim(bottom=0)
    _legend(ax, n)
    return Plot("demand", title, _svg(fig, "demand"))


def latency(view: Report) -> Plot:
    """Latency p50/p99/max per second due (intended time), and service time when present."""
    title = "Latency over time"
    t = view.timeline
    if t is None or not t.latency:
        return Plot("latency", title, None, "no per-second latency in this report")
    fig = _figure()
    ax = fig.add_subplot()
    styles = {"p50": "#1f77b4", "p99": "#ff7f0e", "max": "#d62728"}
    xs = _mid(t.second)
    seen: list[float] = []
    n = 0
    for key, color in styles.items():
        for kind, table, ls in (("intended", t.latency, "-"), ("service", t.service, ":")):
            if key in table:
                ys = _nan(table[key])
                seen += [y for y in ys if y > 0]
                ax.plot(xs, ys, color=color, ls=ls, marker=".", ms=3, label=f"{key} {kind}")
                n += 1
    note = None
    if not t.service:
        note = "service time per second not in this report: intended-time latency only"
    if seen and max(seen) > 20 * min(seen):  # a log axis only when the range needs one
        ax.set_yscale("log")
        _plain_log(ax)
    else:
        ax.set_ylim(bottom=0)
    _seconds_axis(ax, "ms (by second due)", len(t.second))
    _legend(ax, n)
    return Plot("latency", title, _svg(fig, "latency"), note)


def outcomes(view: Report) -> Plot:
    """Answers per second by outcome: confirmed, sold out, throttled, errors (+ timeouts)."""
    title = "Outcomes over time"
    t = view.timeline
    if t is None or not t.outcomes:
        return Plot("outcomes", title, None, "no per-second outcomes in this report")
    zero = [0] * len(t.second)
    error, timeout = t.outcomes.get("error", zero), t.outcomes.get("timeout", zero)
    series = {
        "confirmed": t.outcomes.get("confirmed", zero),
        "sold_out": t.outcomes.get("sold_out", zero),
        "throttled": t.outcomes.get("throttled", zero),
        "errors": [a + b for a, b in zip(error, timeout, strict=True)],
    }
    if any(t.outcomes.get("rejected", zero)):
        series["rejected"] = t.outcomes["rejected"]
    fig = _figure()
    ax = fig.add_subplot()
    for name, ys in series.items():
        label = "error + timeout" if name == "errors" else name.replace("_", " ")
        ax.step(*_steps(t.second, ys), where="post", color=COLORS[name], label=label)
    _seconds_axis(ax, "answers / s", len(t.second))
    ax.set_ylim(bottom=0)
    _legend(ax, len(series))
    return Plot("outcomes", title, _svg(fig, "outcomes"))


def stock(view: Report) -> Plot:
    """Units left per product over the sale (initial − confirmed so far) and its sell-out."""
    title = "Stock remaining per product"
    t = view.timeline
    skus = [s for s in view.skus if s.initial is not None]
    if t is None or not t.sku_units or not skus:
        what = "per-SKU confirmed units per second" if skus else "initial stock per SKU (audit)"
        return Plot("stock", title, None, f"{what} not in this report")
    drawn = [s for s in sorted(skus, key=lambda s: -(s.initial or 0)) if s.sku in t.sku_units]
    note = None
    if len(drawn) > MAX_STOCK_LINES:
        note = f"the {MAX_STOCK_LINES} largest of {len(drawn)} products"
        drawn = drawn[:MAX_STOCK_LINES]
    fig = _figure()
    ax = fig.add_subplot()
    for i, s in enumerate(drawn):
        assert s.initial is not None
        left, xs, ys = s.initial, [0], [s.initial]
        for sec, units in enumerate(t.sku_units[s.sku]):
            left -= units
            xs.append(sec + 1)
            ys.append(left)
        color = f"C{i % 10}"
        ax.step(xs, ys, where="post", color=color, label=s.sku)
        if s.sell_out_s is not None:
            ax.axvline(s.sell_out_s, color=color, ls=":", lw=1)
            ax.annotate(
                f"sold out by {s.sell_out_s:g} s",
                (s.sell_out_s, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -10 - 11 * i),
                textcoords="offset points",
                color=color,
                fontsize=8,
            )
    ax.axhline(0, color="black", lw=0.8)
    _seconds_axis(ax, "units left", len(t.second))
    _legend(ax, len(drawn))
    if view.audit is not None and view.audit.lifecycle:
        note = (f"{note}; " if note else "") + (
            "with reservations the clients' confirmations are holds, and expired holds are "
            "reserved again (below 0 is not an oversell): the store's own stock is the next figure"
        )
    return Plot("stock", title, _svg(fig, "stock"), note)


#: SKUs drawn one by one under the totals in the stock-over-time figure
MAX_HISTORY_PANELS = 3
STOCK_COLORS = {"sold": "#2ca02c", "held": "#ff7f0e", "free": "#1f77b4"}


def stock_history(view: Report) -> Plot:
    """The storefront's units sold, held and free over time, stacked (totals, then SKUs).

    The stack's height is the stock on the storefront's books: flat at the initial stock while
    the lifecycle is conserved; a step up is stock that was never there (a double return).
    """
    title = "Stock over time: sold, held, free (the storefront's samples)"
    h = view.stock_history
    if h is None:
        return Plot("history", title, None, "stock over time not in this report")
    panels = ["total", *[s for s in h.skus if s in h.series][:MAX_HISTORY_PANELS]]
    if len(h.skus) == 1:
        panels = ["total"]
    fig = _figure(2.4 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, name) in enumerate(zip(axes, panels, strict=True)):
        series = h.series[name]
        kinds = ("sold", "held", "free")
        ax.stackplot(
            h.t_s,
            *(series[k] for k in kinds),
            labels=list(kinds),
            colors=[STOCK_COLORS[k] for k in kinds],
            step="post",
            alpha=0.85,
        )
        if name == "total" and h.initial_total is not None:
            ax.axhline(h.initial_total, color="black", lw=0.8, ls="--", label="initial stock")
        ax.set_ylabel("units")
        label = "all products" if name == "total" else name
        ax.text(0.01, 0.95, label, transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})  # fmt: skip
        ax.set_ylim(bottom=0)
        if i == 0:
            _legend(ax, 4 if name == "total" and h.initial_total is not None else 3)
    axes[-1].set_xlabel("seconds since the storefront's reset")
    axes[-1].set_xlim(0, max(1.0, h.t_s[-1]))
    notes = []
    if h.dropped:
        notes.append(f"the first {h.dropped:,} samples fell off the storefront's ring")
    if len(h.skus) > MAX_HISTORY_PANELS:
        notes.append(f"the {MAX_HISTORY_PANELS} largest products of {len(h.skus)} sampled")
    return Plot("history", title, _svg(fig, "history"), "; ".join(notes) or None)


def _percent_label(x: float) -> str:
    """1 → '0%', 2 → '50%', 10 → '90%', 1000 → '99.9%' (x = 1/(1 − p))."""
    decimals = max(0, round(math.log10(x)) - 2)
    return f"{100 * (1 - 1 / x):.{decimals}f}%"


def spectrum(view: Report) -> Plot:
    """Latency by percentile, x = 1/(1 − p) on a log axis (HdrHistogram style)."""
    title = "Latency percentile spectrum"
    if not view.spectrum:
        return Plot("spectrum", title, None, "no latency spectrum in this report")
    fig = _figure(3.2)
    ax = fig.add_subplot()
    top = 1.0
    n = 0
    for i, (kind, points) in enumerate(sorted(view.spectrum.items())):
        inner = [(p, v) for p, v in points if p < 100.0]
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in inner]
        color = f"C{i % 10}"
        ax.plot(xs, [v for _, v in inner], color=color, marker=".", ms=3, label=kind)
        n += 1
        top = max([top, *xs])
        mx = [v for p, v in points if p >= 100.0]
        if mx:
            ax.axhline(mx[-1], color=color, ls="--", lw=0.8, label=f"{kind} max {mx[-1]:g} ms")
            n += 1
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter("")  # labels only at the percentile ticks below
    ticks = [x for x in (1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000) if x <= top * 1.01]
    ax.set_xticks(ticks, [_percent_label(x) for x in ticks])
    ax.set_xlim(left=1)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency ms")
    ax.set_ylim(bottom=0)
    _legend(ax, n)
    return Plot("spectrum", title, _svg(fig, "spectrum"))


FIGURES: tuple[Callable[[Report], Plot], ...] = (
    demand,
    latency,
    outcomes,
    stock,
    stock_history,
    spectrum,
)


def render_plots(view: Report) -> list[Plot]:
    """Every figure of the report, in page order (missing ones with a note)."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        return [figure(view) for figure in FIGURES]
