"""The head-to-head on this machine, in one run: the engine vs k6, Locust and wrk (vs wrk2).

    .venv/bin/python bench/peers.py [--seconds 5] [--connections 64] [--json FILE]
    .venv/bin/python bench/peers.py --quick      # 1 s cells, a short stall: a smoke run

Target pinned to core 0, generator to core 1, everything on 127.0.0.1, every cell ≤ 10 s.

1. Throughput against nginx (``return 201``, one process) and against the bundled storefront
   (``flashsale serve``, memory backend): wrk 4.1 (1 thread, closed loop), Locust FastHttpUser
   (``constant(0)``, closed loop) and the engine's max sustained *open-loop* rate with full
   recording (every order 201, dispatch-lag p99 ≤ 1 ms, ≥ 99 % answered in time; the search
   starts at 0.4× wrk's rate and steps ×1.15), as it runs by default and with windows
   (``flashsale run --windows``: answers never send, the orders due within 100 µs leave
   together). Prints req/s, ratios, the generator's CPU per request and, for nginx, the
   server's own request count.
2. Honest latency under a stall: nginx is paused (SIGSTOP) for 1 s, 4 s into a 10 s run at a
   constant 5,000 req/s (wrk: closed loop, its own rate). Each tool's reported p99 / p99.9 / max
   is set against the truth: a share f = 1 s / 10 s of the orders wait 0–1 s more, so
   p99 = 1 s · (1 − 0.01 / f) = 900 ms, p99.9 = 990 ms, max = 1000 ms (see BENCH-NOTES.md).

Installs nginx and wrk with apt-get when missing and run as root (``--no-install`` not to);
a peer that cannot run is skipped with the reason. wrk2 has no Debian or PyPI package to build
it from, so it is reported as unavailable unless a ``wrk2`` binary is already on PATH.
Kills only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import Figures

WRK2_MISSING = (
    "wrk2: not available — no Debian package (apt-cache policy wrk2: no candidate) and no "
    "PyPI package ships it; it builds only from its source repository, which this script "
    "does not fetch"
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return "-"
        return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout + out.stderr else "-"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg(),
        "wrk": version(["wrk", "-v"]) if shutil.which("wrk") else "-",
        "nginx": version(["nginx", "-v"]) if shutil.which("nginx") else "-",
        "locust": version([str(harness.VENV_BIN / "locust"), "--version"])
        if harness.locust_missing() is None
        else "-",
    }


#: the engine as it runs by default, and with windows instead of answers sending due orders
#: (``EngineConfig.answers_send=False``, ``flashsale run --windows``): each searched the same way
ENGINES: dict[str, dict[str, Any] | None] = {
    "engine (open, sustained)": None,
    "engine, windows (open, sustained)": {"answers_send": False},
}


def engine_figures(step: dict[str, float], seconds: float) -> Figures:
    return Figures(
        "engine", step["rate"], int(step["orders"]), int(step["orders"] - step["confirmed"]),
        step["cpu_s"], step["latency_p50_ms"], step["latency_p99_ms"], step["latency_p999_ms"],
        step["latency_max_ms"], step.get("sys_s"),
    )  # fmt: skip


def throughput(
    target: str, url: str, args: argparse.Namespace, workdir: Path, peers: dict[str, str | None]
) -> dict[str, Any]:
    """The three generators against one running target; req/s and ratios to wrk."""
    print(f"\n== throughput vs {target} ({url}), {args.seconds:g} s cells, "
          f"{args.connections} connections ==")  # fmt: skip
    cells: dict[str, Figures] = {}
    counted: dict[str, int] = {}
    server_count = (lambda: harness.nginx_requests(url)) if target == "nginx" else None

    def cell(name: str, fn: Any, count: bool = True) -> None:
        before = server_count() if server_count and count else 0
        fig = fn()
        if server_count and count:
            counted[name] = server_count() - before - 1  # minus our own status request
        cells[name] = fig
        extra = f"  server counted {counted[name]:,}" if name in counted else ""
        kernel = f" ({fig.sys_us_per_request:.1f} in the kernel)" if fig.sys_s is not None else ""
        print(f"{name:<28} {fig.rps:>10,.0f} req/s  {fig.requests:>9,} requests  "
              f"{fig.errors} errors  {fig.cpu_us_per_request:6.1f} µs CPU/req"
              f"{kernel}{extra}")  # fmt: skip

    if peers["wrk"] is None:
        cell("wrk (closed)", lambda: harness.run_wrk(url, args.seconds, args.connections, workdir))
    else:
        print(f"wrk: skipped ({peers['wrk']})")
    if peers["locust"] is None:
        cell(
            "locust FastHttpUser (closed)",
            # Locust needs ~1 s to start its users: a shorter cell would measure the start only
            lambda: harness.run_locust(url, max(args.seconds, 3.0), args.connections, workdir),
        )
    else:
        print(f"locust: skipped ({peers['locust']})")
    wrk_rps = cells["wrk (closed)"].rps if "wrk (closed)" in cells else None
    hosts: dict[str, Any] = {}
    if peers["k6"] is None:
        print(f"k6 constant-arrival-rate, {args.connections} VUs, GOMAXPROCS=1 — "
              + harness.SEARCH_RULE.format(factor=1.25, reps=args.reps))  # fmt: skip
        k6_start = round(max(500.0, 0.02 * (wrk_rps or 25_000.0)), -2)
        k6 = harness.k6_max_rate(
            url, k6_start, args.seconds, args.connections, workdir, factor=1.25,
            max_rate_per_s=k6_start * 1.2 if args.quick else (wrk_rps or 50_000.0),
            reps=args.reps,
        )  # fmt: skip
        if k6 is not None:
            fig = k6["figures"]
            hosts["k6 (open, sustained)"] = k6["host"]
            cell("k6 (open, sustained)", lambda: fig, count=False)
        else:
            print("k6: no rate passed")
    else:
        print(f"k6: skipped ({peers['k6']})")
    start = 0.4 * wrk_rps if wrk_rps else 5000.0
    for name, config in ENGINES.items():
        print(f"{name.removesuffix(' (open, sustained)')}, "
              + harness.SEARCH_RULE.format(factor=1.15, reps=args.reps))  # fmt: skip
        best = harness.engine_max_rate(
            url, round(start, -2), args.seconds, args.connections, factor=1.15,
            max_rate_per_s=start * args.max_steps_factor, reps=args.reps, config=config,
        )  # fmt: skip
        if best is not None:
            # its best step of the search (the server count spans every step: not shown)
            hosts[name] = {k: best[k] for k in ("load1", "steal_share")}
            cell(name, lambda best=best: engine_figures(best, args.seconds), count=False)
        else:
            print(f"{name}: no rate passed")
    if wrk_rps:
        for name, fig in cells.items():
            print(f"  ratio {name} / wrk: {fig.rps / wrk_rps:.2f}")
    for name in ENGINES:
        eng = cells.get(name)
        label = name.removesuffix(" (open, sustained)")
        for peer in ("locust FastHttpUser (closed)", "k6 (open, sustained)"):
            if eng is not None and peer in cells and cells[peer].rps:
                ratio = eng.rps / cells[peer].rps
                print(f"  ratio {label} / {peer.split()[0]}: {ratio:.1f}  (goal ≥ 10)")
        if eng is not None and "wrk (closed)" in cells:
            w = cells["wrk (closed)"]
            print(f"  {label} CPU per order / wrk's: "
                  f"{eng.cpu_us_per_request / w.cpu_us_per_request:.2f}  (goal ≤ 1.3)")  # fmt: skip
    for name, host in hosts.items():
        print(f"  host during {name}: load {host['load1']:.2f}, steal {host['steal_share']:.1%}")
    return {name: {**vars(fig), "server_counted": counted.get(name)} for name, fig in cells.items()}


def stall(args: argparse.Namespace, workdir: Path, peers: dict[str, str | None]) -> dict[str, Any]:
    """Each tool at a constant rate while nginx is paused once; reported vs true percentiles."""
    rate, window, at_s, for_s = args.stall_rate, args.stall_window, args.stall_at, args.stall_for
    print(f"\n== stall: nginx paused {for_s:g} s at ~{at_s:g} s of a {window:g} s run, "
          f"{rate:,.0f} req/s ==")  # fmt: skip
    rows: dict[str, Any] = {}
    users = 50
    tools: list[tuple[str, float, Any]] = [
        ("engine (open loop)", 0.5, lambda url: engine_figures(
            harness.engine_step(url, rate, window, args.connections), window)),
    ]  # fmt: skip
    if peers["wrk"] is None:
        tools.append(
            ("wrk (closed, own rate)", 0.0,
             lambda url: harness.run_wrk(url, window, args.connections, workdir))
        )  # fmt: skip
    if peers["locust"] is None:
        tools.append(
            (f"locust {users}×constant_throughput", 1.0,
             lambda url: harness.run_locust(url, window, users, workdir, rate / users))
        )  # fmt: skip
    dropped: dict[str, int] = {}
    if peers["k6"] is None:

        def k6_cell(url: str) -> harness.Figures:
            cell = harness.run_k6(url, rate, window, args.connections, workdir)
            dropped["k6 constant-arrival-rate"] = cell["dropped"]
            fig: harness.Figures = cell["figures"]
            return fig

        tools.append(("k6 constant-arrival-rate", 0.3, k6_cell))
    for name, startup_s, fn in tools:
        with harness.nginx(workdir) as (proc, url):
            with harness.stall_at(proc, at_s + startup_s, for_s) as measured:
                fig = fn(url)
            stall_s = measured[0] if measured else for_s
        truth = {
            "p99": harness.true_quantile_ms(0.99, stall_s, window),
            "p99.9": harness.true_quantile_ms(0.999, stall_s, window),
            "max": stall_s * 1e3,
        }
        due = rate * window
        rows[name] = {"figures": vars(fig), "truth_ms": truth, "stall_s": stall_s}
        ratio = fig.p99_ms / truth["p99"] if fig.p99_ms is not None and truth["p99"] else None
        sent = (f"{fig.requests:,} answered of {due:,.0f} due" if "wrk" not in name
                else f"{fig.requests:,} answered (closed loop)")  # fmt: skip
        if name in dropped:
            rows[name]["dropped_iterations"] = dropped[name]
            sent += f", {dropped[name]:,} dropped (never sent, in no percentile)"
        print(
            f"{name:<32} p99 {_ms(fig.p99_ms)} / p99.9 {_ms(fig.p999_ms)} / max {_ms(fig.max_ms)}"
            f"  truth {truth['p99']:.0f} / {truth['p99.9']:.0f} / {truth['max']:.0f} ms"
            f"  reported/truth p99 {ratio:.2f}  {sent}"
            if ratio is not None
            else f"{name:<32} p99 not reported  {sent}"
        )
    if peers["wrk"] is None:
        print(WRK2_MISSING if shutil.which("wrk2") is None else "wrk2: on PATH, not driven yet")
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="per throughput cell (≤ 10)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--stall-rate", type=float, default=5000.0)
    p.add_argument("--stall-window", type=float, default=10.0, help="seconds per stall cell")
    p.add_argument("--stall-at", type=float, default=4.0)
    p.add_argument("--stall-for", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=3, help="runs per search step (pass on the median)")
    p.add_argument("--max-steps-factor", type=float, default=4.0, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="1 s cells and a 4 s stall cell")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install peers")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.stall_window, args.stall_at, args.stall_for = 1.0, 4.0, 1.5, 0.5
        args.stall_rate, args.max_steps_factor, args.reps = 2000.0, 1.2, 1
    args.seconds = min(args.seconds, 10.0)
    args.stall_window = min(args.stall_window, 10.0)
    if not args.no_install:
        harness.install_peers()
    if harness.missing("nginx"):
        print(
            f"skipped: every cell needs nginx or the storefront pinned: {harness.missing('nginx')}"
        )
        return 0
    peers = {
        "wrk": harness.missing("wrk"),
        "locust": harness.locust_missing(),
        "k6": harness.k6_missing(install=not args.no_install),
    }
    info = machine()
    print("machine:", json.dumps(info))
    out: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="flashsale-peers-") as tmp:
        workdir = Path(tmp)
        with harness.nginx(workdir) as (_proc, url):
            out["nginx"] = throughput("nginx", url, args, workdir, peers)
        with harness.storefront() as (_proc, url):
            out["storefront"] = throughput("storefront (memory)", url, args, workdir, peers)
        out["stall"] = stall(args, workdir, peers)
    out["machine"]["load_avg_end"] = os.getloadavg()
    print(f"\nload average at start {info['load_avg_start']}, at end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    status = main()
    print(f"peers.py: {time.monotonic() - t0:.0f} s")
    sys.exit(status)
