"""``flashsale schedule``: generate a scenario's order stream, summarise it, optionally save it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, Any

HELP = "generate a scenario's order stream and summarise it (or save it as .npy)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument("--scale", type=float, help="override the scenario's scale (rates and stock)")
    p.add_argument("--duration", type=float, metavar="S", help="only the first S seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--out", metavar="FILE", help="write the stream to FILE (.npy)")
    p.add_argument(
        "--chunk", type=int, default=1 << 20, metavar="N", help="rows per chunk (default 1Mi)"
    )


def main(args: argparse.Namespace) -> int:
    import orjson

    from simulator.commands.checks import check_flags
    from simulator.errors import UsageError
    from simulator.scenario import limits, load_scenario
    from simulator.schedule import build_schedule
    from simulator.streamstats import StreamStats, summary_dict

    if args.chunk < 1:
        raise UsageError(f"--chunk: must be ≥ 1, got {args.chunk}")
    check_flags(args, {"duration": limits.DURATION_S, "scale": limits.SCALE})
    if args.out is not None and not args.out.endswith(".npy"):
        raise UsageError(f"--out: {args.out}: only .npy files are supported")
    scenario = load_scenario(args.scenario, scale=args.scale)
    schedule = build_schedule(scenario, args.duration)
    stats = StreamStats(len(scenario.products), schedule.duration_s)
    started = time.perf_counter()
    if args.out is None:
        for chunk in schedule.chunks(args.chunk):
            stats.add(chunk)
    else:
        _write_npy(Path(args.out), schedule.chunks(args.chunk), stats)
    summary = summary_dict(schedule, stats, time.perf_counter() - started)
    if args.out is not None:
        summary["out"] = args.out
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render(summary))
    return 0


_HEADER_LEN = 256  # fixed .npy header size, rewritten with the real shape at the end


def _npy_header(n: int) -> bytes:
    import numpy as np

    from simulator.schedule import ORDER_DTYPE

    descr = np.lib.format.dtype_to_descr(ORDER_DTYPE)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({n},), }}"
    body = text.ljust(_HEADER_LEN - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def _write_npy(path: Path, chunks: Any, stats: Any) -> None:
    """Stream chunks into a .npy file, which appears only when complete (atomic_write)."""
    from simulator.errors import UsageError
    from simulator.files import atomic_write

    if not path.parent.is_dir():
        raise UsageError(f"--out: {path}: cannot write: no directory {path.parent}")

    def write(out: IO[bytes]) -> None:
        out.write(_npy_header(0))  # the real shape is known at the end
        for chunk in chunks:
            stats.add(chunk)
            out.write(chunk.tobytes())
        out.seek(0)
        out.write(_npy_header(stats.total))

    try:
        atomic_write(path, write)
    except PermissionError as exc:
        raise UsageError(f"--out: {path}: cannot write: {exc.strerror}") from None


def render(s: dict[str, Any]) -> str:
    """The summary as a short text table, readable at 80 columns."""
    lines = [
        f"scenario     {s['scenario']}  (seed {s['seed']}, scale {s['scale']:g}, "
        f"{s['duration_s']:g} s)",
        f"orders       {s['total_orders']:,}  (expected {s['expected_orders']:,.0f}; "
        f"double clicks {s['duplicate_clicks']:,})",
        f"first minute {s['first_minute_orders']:,} orders",
        f"peak         {s['peak_rate_per_s']:,} orders/s (second {s['peak_second']}); "
        f"{s['peak_orders_per_10ms']:,} in 10 ms at {s['peak_10ms_at_s']:.2f} s "
        f"(= {s['peak_rate_per_s_10ms']:,}/s)",
        f"stock        {s['stock_total']:,} units",
        f"generated in {s['generation_s']:.3f} s "
        f"({s['generation_orders_per_s'] / 1e6:,.1f} M orders/s)",
        "",
        f"{'sku':<24} {'orders':>12} {'expected':>14} {'stock':>10}",
    ]
    per_sku = s["per_sku"]
    shown = sorted(per_sku, key=lambda k: -per_sku[k])
    for sku in shown[:20]:
        lines.append(
            f"{sku[:24]:<24} {per_sku[sku]:>12,} {s['expected_per_sku'][sku]:>14,.1f} "
            f"{s['stock_per_sku'][sku]:>10,}"
        )
    if len(shown) > 20:
        lines.append(f"… and {len(shown) - 20} more SKUs")
    if "out" in s:
        lines.append(f"\nwrote {s['total_orders']:,} orders to {s['out']}")
    return "\n".join(lines)
