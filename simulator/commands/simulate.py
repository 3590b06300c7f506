"""``flashsale simulate``: model a scenario at full scale offline, or find capacity for an SLO."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.model.search import Probe

HELP = "model a scenario at full scale offline, find the capacity for an SLO"
#: the flag that sets each value a library error may name (simulator.errors.FlashsaleError)
FLAGS = {"calibrate": "--calibrate"}


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    """Everything ``flashsale simulate`` was asked to do (None = the scenario's own value)."""

    scenario: str
    scale: float | None = None
    duration_s: float | None = None
    shards: int | None = None
    servers: int | None = None
    service_ms: float | None = None
    sigma: float | None = None
    queue_limit: int | None = None
    hot_row: bool | None = None
    calibrate: str | None = None
    find: tuple[str, ...] = ()  # SLOs a capacity search must all meet
    vary: str | None = None
    max_refused: float = 0.0  # share of orders the search allows to be refused
    json: bool = False
    out: str | None = None
    chunk: int = 1 << 20
    progress: bool = True


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument("--scale", type=float, help="override the scenario's scale (rates and stock)")
    p.add_argument("--duration", type=float, metavar="S", help="only the first S seconds")
    p.add_argument("--shards", type=int, metavar="K", help="stock shards (default 1)")
    p.add_argument("--servers", type=int, metavar="C", help="FIFO servers per shard (default 1)")
    p.add_argument("--service-ms", type=float, metavar="M", help="median service time (ms)")
    p.add_argument("--sigma", type=float, metavar="S", help="lognormal shape of service times")
    p.add_argument(
        "--queue-limit", type=int, metavar="N", help="orders a shard holds before throttling (0=∞)"
    )
    p.add_argument("--hot-row", action="store_true", default=None, help="one server set per SKU")
    p.add_argument("--calibrate", metavar="RUN.json", help="fit service times from a run report")
    p.add_argument(
        "--find",
        metavar="SLO",
        action="append",
        help="capacity search: e.g. 'p99_ms < 200' (repeat it: every SLO must hold)",
    )
    p.add_argument("--vary", metavar="KNOB=LO..HI", help="knob for --find, e.g. shards=1..64")
    p.add_argument(
        "--max-refused",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="for --find: share of orders that may end throttled, timed out or failed "
        "(default 0: a setting passes only if it serves every order)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="FILE", help="write the JSON report to FILE")
    p.add_argument("--chunk", type=int, default=1 << 20, metavar="N", help="rows per chunk")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def options(args: argparse.Namespace) -> SimulateOptions:
    """The frozen options of a parsed command line (UsageError on bad values)."""
    from simulator.commands.checks import check_flags
    from simulator.errors import UsageError
    from simulator.scenario import limits

    check_flags(
        args,
        {
            "shards": limits.Range(1, 100_000),
            "servers": limits.Range(1, 100_000),
            "queue_limit": limits.Range(0, 1_000_000),
            "chunk": limits.Range(1, 1 << 26),
            "scale": limits.SCALE,
            "duration": limits.DURATION_S,
            "service_ms": limits.Range(0.0, limits.SERVICE_TIME_MS.hi, lo_open=True),
            "sigma": limits.SIGMA,
        },
    )
    if (args.find is None) != (args.vary is None):
        raise UsageError(
            "--find and --vary go together (e.g. --find 'p99_ms < 200' --vary shards=1..64)"
        )
    if not 0.0 <= args.max_refused <= 1.0:  # NaN fails too
        raise UsageError(f"--max-refused: must be a share in 0..1, got {args.max_refused}")
    return SimulateOptions(
        scenario=args.scenario,
        scale=args.scale,
        duration_s=args.duration,
        shards=args.shards,
        servers=args.servers,
        service_ms=args.service_ms,
        sigma=args.sigma,
        queue_limit=args.queue_limit,
        hot_row=args.hot_row,
        calibrate=args.calibrate,
        find=tuple(args.find or ()),
        vary=args.vary,
        max_refused=args.max_refused,
        json=args.json,
        out=args.out,
        chunk=args.chunk,
        progress=not args.no_progress,
    )


def main(args: argparse.Namespace) -> int:
    return simulate(options(args))


def simulate(opts: SimulateOptions) -> int:
    """Run the model (or the capacity search) and print/write its report."""
    from simulator.errors import UsageError
    from simulator.model import config_for, parse_vary
    from simulator.report.thresholds import parse_threshold
    from simulator.scenario import load_scenario

    scenario = load_scenario(opts.scenario, scale=opts.scale)
    overrides: dict[str, Any] = {}
    calibration = None
    if opts.calibrate is not None:
        calibration = _calibration(opts.calibrate, opts.scenario, scenario.name)
        overrides.update(calibration.overrides())
    cli = {
        "shards": opts.shards,
        "servers": opts.servers,
        "service_median_ms": opts.service_ms,
        "service_sigma": opts.sigma,
        "queue_limit": opts.queue_limit,
        "hot_row": opts.hot_row,
    }
    overrides.update({k: v for k, v in cli.items() if v is not None})
    if opts.service_ms is not None:
        overrides["service_samples_ms"] = ()  # an explicit median replaces a fitted empirical
    try:
        config = config_for(scenario, **overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if opts.find and opts.vary is not None:
        try:
            for slo in opts.find:
                parse_threshold(slo)  # a bad expression is a UsageError (exit 2)
            vary = parse_vary(opts.vary)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return _search(scenario, config, opts, vary)
    report = _run_once(scenario, config, opts)
    text = render(report)
    if calibration is not None:
        report["calibration"] = calibration.describe()
        text = f"{text}\n{calibration.line()}"
    _emit(report, opts, text)
    return 0


def _calibration(report_path: str, scenario_path: str, scenario_name: str) -> Any:
    """The fit of ``--calibrate``: from the run report, the per-order records beside it, and,
    when the run was of this scenario, a search against its latencies at the run's scale."""
    from simulator.errors import FlashsaleError
    from simulator.model.calibrate import calibrate, find_records, load_report
    from simulator.report.document import Report
    from simulator.scenario import load_scenario

    data = load_report(report_path)
    run_scenario = None
    try:
        info = Report.from_json(data, report_path, require_outcomes=False).scenario
    except FlashsaleError:  # an unreadable report is calibrate()'s to explain, in its words
        info = None
    if info is not None and info.name == scenario_name and info.scale:
        run_scenario = load_scenario(scenario_path, scale=info.scale)
    return calibrate(data, report_path, find_records(report_path), run_scenario)


def _run_once(scenario: Any, config: Any, opts: SimulateOptions) -> dict[str, Any]:
    from simulator.errors import UsageError
    from simulator.model import Model, build_report

    try:
        model = Model(scenario, config, opts.duration_s)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    expected = model.schedule.expected_orders()
    if opts.progress and sys.stdout.isatty() and expected > 2_000_000:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} / ~{task.total:,.0f} orders"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("simulate", total=expected)
            result = model.run(opts.chunk, lambda n: bar.advance(task, n))
    else:
        result = model.run(opts.chunk)
    return build_report(result)


def _search(scenario: Any, config: Any, opts: SimulateOptions, vary: Any) -> int:
    from simulator.model import find_capacity

    slos = " and ".join(repr(f) for f in opts.find)
    lines: list[str] = []

    def show(p: Probe) -> None:
        line = _probe_line(vary.knob, p)
        lines.append(line)
        if not opts.json:
            print(line, flush=True)

    if not opts.json:
        print(
            f"capacity search: {slos} with at most {opts.max_refused:.2%} of orders refused, "
            f"over {vary.knob}={vary.lo}..{vary.hi} (doubling sweep, then binary search)"
        )
        head = f"{'SLO':>5} {'metric':>12} {'p99 ms':>10} {'refused':>11} {'run s':>7}"
        print(f"{vary.knob:>12} {head}")
    best, probes, report = find_capacity(
        scenario, config, opts.find, vary, opts.duration_s, show, opts.max_refused
    )
    summary = {
        "scenario": {"name": scenario.name, "file": scenario.source, "scale": scenario.scale},
        "mode": "simulate-find",
        "slo": list(opts.find),
        "max_refused": opts.max_refused,
        "knob": vary.knob,
        "range": [vary.lo, vary.hi],
        "strategy": "doubling sweep, then binary search (assumes the metric is monotone)",
        "found": best,
        "tried": [
            {
                "value": p.value,
                "ok": p.ok,
                "metrics": list(p.metrics),
                "p99_ms": p.p99_ms,
                "refused": p.refused,
                "refused_share": p.refused_share,
                "elapsed_s": round(p.elapsed_s, 3),
            }
            for p in probes
        ],
        "report": report,
    }
    if best is None:
        text = f"no {vary.knob} in {vary.lo}..{vary.hi} meets {slos} serving the load"
    else:
        text = f"smallest {vary.knob} meeting {slos} serving the load: {best}"
    _emit(summary, opts, text)
    return 0 if best is not None else 1


def _probe_line(knob: str, p: Probe) -> str:
    p99 = "-" if p.p99_ms is None else f"{p.p99_ms:,.2f}"
    metrics = " ".join(f"{m:,.4g}" for m in p.metrics)
    return (
        f"{p.value:>12,} {'ok' if p.ok else 'no':>5} {metrics:>12} {p99:>10} "
        f"{p.refused_share:>11.2%} {p.elapsed_s:>7.2f}"
    )


def _emit(report: dict[str, Any], opts: SimulateOptions, text: str) -> None:
    import orjson

    from simulator.errors import UsageError

    data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if opts.out is not None:
        try:
            Path(opts.out).write_bytes(data + b"\n")
        except OSError as exc:
            raise UsageError(f"--out: {opts.out}: cannot write: {exc.strerror}") from None
    if opts.json:
        sys.stdout.buffer.write(data + b"\n")
    else:
        print(text)


def render(r: dict[str, Any]) -> str:
    """A model report as a short text table, readable at 80 columns."""
    m = r["model"]
    lat = r["latency_ms"]["intended"]
    orders = r["orders"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f}"

    lines = [
        f"scenario   {r['scenario']['name']}  (scale {r['scenario']['scale']:g}, "
        f"{r['scenario']['duration_s']:g} s)  mode simulate",
        f"model      {m['shards']} shard(s) × {m['servers']} server(s), service median "
        f"{m['service_median_ms']:g} ms σ {m['service_sigma']:g}, queue limit "
        f"{m['queue_limit'] or '∞'}{', hot row' if m['hot_row'] else ''}"
        f"{f', ≤ {n} in flight' if (n := m.get('max_in_flight')) else ''}",
        f"orders     {orders['scheduled']:,}  (attempts {orders['attempts']:,}, retries "
        f"{orders['retries']:,}, replays {orders['replays']:,})",
        "outcomes   " + ", ".join(f"{k} {v:,}" for k, v in orders["outcomes"].items() if v),
        f"latency    p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}  p99 {ms(lat['p99'])}  "
        f"p99.9 {ms(lat['p99.9'])}  max {ms(lat['max'])} ms  (±{r['latency_relative_error']:.2%})",
        f"stock      {orders['confirmed_units']:,} of {r['stock_units']:,} units sold; oversell "
        f"{r['audit']['oversell_units']}; false sold-out answers {r['false_sold_out']:,}",
        f"modelled   in {r['run']['wall_s']:.2f} s "
        f"({(r['run']['orders_per_s'] or 0) / 1e6:,.1f} M orders/s)",
        *([over] if (over := r.get("overload", {}).get("message")) else []),
        *([_flow_line(f)] if (f := r.get("flow")) else []),
        "",
        f"{'sku':<24} {'stock':>10} {'sold':>10} {'first 409 s':>12} {'sold out s':>11}",
    ]
    skus = sorted(r["skus"].items(), key=lambda kv: -kv[1]["stock"])
    for sku, s in skus[:15]:
        first = "-" if s["first_sold_out_s"] is None else f"{s['first_sold_out_s']:.3f}"
        out = "-" if s["sell_out_s"] is None else f"{s['sell_out_s']:.3f}"
        lines.append(
            f"{sku[:24]:<24} {s['stock']:>10,} {s['sold_units']:>10,} {first:>12} {out:>11}"
        )
    if len(skus) > 15:
        lines.append(f"… and {len(skus) - 15} more SKUs")
    return "\n".join(lines)


def _flow_line(f: dict[str, Any]) -> str:
    """The flash-sale flow's totals, one line (the model's ``flow`` section)."""
    parts = []
    if f.get("reservation_ttl_s") is not None:
        parts.append(
            f"TTL {f['reservation_ttl_s']:g} s: {f['reserved_units']:,} units reserved, "
            f"{f['paid_units']:,} paid, {f['expired_units']:,} expired, "
            f"{f['cancelled_units']:,} cancelled; {f['skus_available_again']:,} SKU(s) "
            "available again after selling out"
        )
    if f.get("admit_per_s"):
        parts.append(f"token bucket {f['admit_per_s']:g}/s: {f['admission_throttled']:,} throttled")
    return "flow       " + "; ".join(parts)
