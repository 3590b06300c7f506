"""One Locust process's flashsale state, and what it does on each Locust event.

:class:`FlashsaleRun` is created by the locustfile's ``init`` listener and owns everything of
the run (no module-level state): the scenario and options, this process's slice of the schedule
while a run is on (:class:`SliceState`), and, on the master (or a stand-alone process), the
worker results, the live view for the web UI and the merged report.

Messages between nodes (all plain dicts):

* ``flashsale_plan`` master → each worker at test start: the :class:`RunPlan` (slices, scale,
  duration cut, scenario digest). Sent before Locust's spawn messages, so a worker knows its
  slice before its first user starts.
* ``flashsale_result`` worker → master at test stop: :func:`results.worker_result` (the
  worker's recorder arrays as bytes).
* live counters ride on Locust's own periodic worker report (``report_to_master``).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import numpy as np

from simulator.audit import ClientView, ServerState, audit_view, fetch_server_state
from simulator.errors import FlashsaleError, UsageError
from simulator.load.engine import retry_capacity
from simulator.load.recorder import Recorder
from simulator.load.transport import parse_endpoint
from simulator.locust import results as res
from simulator.locust.engine_mode import EngineSlice
from simulator.locust.plan import (
    Dispatcher,
    OrderBook,
    PoolSizing,
    RunPlan,
    demand_rate,
    file_digest,
    users_at,
    worker_rows,
)
from simulator.locust.stats import INTENDED
from simulator.outcomes import OUTCOME_NAMES, status_table
from simulator.records import save_orders
from simulator.results import write_report
from simulator.retry import Retry
from simulator.scenario import Scenario, load_scenario
from simulator.schedule import Orders, build_schedule

log = logging.getLogger("flashsale")

PLAN_MESSAGE = "flashsale_plan"
RESULT_MESSAGE = "flashsale_result"


@dataclass(frozen=True, slots=True)
class Options:
    """The ``--flashsale-*`` options, read once from Locust's parsed options."""

    scenario: str
    scale: float | None = None
    duration_s: float | None = None
    slices: int = 0  # 0 = as many as there are workers at the start
    out_dir: str = "flashsale-locust"  # the master writes OUT_DIR/report.json; "" = not at all
    engine: bool = False  # workers drive their slices with flashsale's engine, not with users
    reset: bool = True
    lead_s: float = 1.0
    drain_s: float | None = None  # None = the scenario's [run] drain_s
    result_timeout_s: float = 15.0
    sizing: PoolSizing = field(default_factory=PoolSizing)

    @classmethod
    def from_parsed(cls, o: Any) -> Options:
        """From Locust's ``environment.parsed_options`` (validated; UsageError on bad values)."""
        if not o.flashsale_scenario:
            raise UsageError(
                "no scenario: pass --flashsale-scenario FILE or set FLASHSALE_SCENARIO"
            )
        if o.flashsale_duration is not None and not o.flashsale_duration > 0:
            raise UsageError(f"--flashsale-duration: must be > 0, got {o.flashsale_duration}")
        if o.flashsale_workers < 0:
            raise UsageError(f"--flashsale-workers: must be ≥ 0, got {o.flashsale_workers}")
        sizing = PoolSizing(busy_s=o.flashsale_busy, max_users=o.flashsale_max_users)
        return cls(
            scenario=o.flashsale_scenario,
            scale=o.flashsale_scale,
            duration_s=o.flashsale_duration,
            slices=o.flashsale_workers,
            out_dir=o.flashsale_out,
            engine=o.flashsale_engine,
            reset=not o.flashsale_no_reset,
            lead_s=o.flashsale_lead,
            sizing=sizing,
        )


@dataclass(slots=True)
class SliceState:
    """This process's part of a run: its orders, who sends which next, and the results."""

    plan: RunPlan
    worker: int
    rows: Orders
    book: OrderBook
    dispatcher: Dispatcher
    recorder: Recorder  # the engine's arrays (in engine mode, the engine's own recorder)
    t0_ns: int  # perf_counter_ns() at the sale's t = 0 on this process
    method: str
    path: str
    headers: dict[str, str]
    table: list[int]  # HTTP status → outcome code
    retry: Retry
    seed: int  # the scenario's: retry delays are drawn from it
    engine: EngineSlice | None = None  # engine mode: the engine's thread does the sending
    rows_sent_twice: int = 0  # rows the users sent a second time (an integrity failure)


class FlashsaleRun:
    """The flashsale side of one Locust process (master, worker or stand-alone)."""

    def __init__(self, environment: Any, options: Options, scenario: Scenario) -> None:
        self.env = environment
        self.options = options
        self.scenario = scenario
        self.digest = file_digest(options.scenario)
        self.skus = [p.id for p in scenario.products]
        self.slice: SliceState | None = None
        self.plan: RunPlan | None = None
        self.run_id = 0
        self.results: dict[int, dict[str, Any]] = {}
        self.live_by_worker: dict[str, dict[str, Any]] = {}
        self.report: dict[str, Any] | None = None
        self.started_unix: float | None = None  # wall time of the sale's t = 0
        self.errors: list[str] = []
        self._final = gevent.event.Event()
        self._finalizing = False
        self.run_time_s: float | None = None
        opts = environment.parsed_options
        if opts is not None and opts.headless and not opts.worker and opts.run_time:
            # with a shape, Locust only starts its --run-time timer after the shape ends:
            # the shape enforces it instead (see shape_tick)
            self.run_time_s = float(opts.run_time)
            opts.run_time = None
        self._inventory: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._scheduled: tuple[RunPlan | None, list[int]] = (None, [])
        self._last_live: dict[str, Any] | None = None  # this process's counters of the last run

    # -- helpers ---------------------------------------------------------------------------

    @classmethod
    def load(cls, environment: Any) -> FlashsaleRun:
        """Read the options and the scenario; a FlashsaleError on anything wrong."""
        options = Options.from_parsed(environment.parsed_options)
        scenario = load_scenario(options.scenario, scale=options.scale)
        return cls(environment, options, scenario)

    @property
    def is_master(self) -> bool:
        """Whether this process is a Locust master (it holds no users)."""
        return type(self.env.runner).__name__ == "MasterRunner"

    @property
    def is_worker(self) -> bool:
        """Whether this process is a Locust worker."""
        return type(self.env.runner).__name__ == "WorkerRunner"

    @property
    def drain_s(self) -> float:
        """How long after the last intended send the run waits for answers."""
        d = self.options.drain_s
        return self.scenario.run.drain_s if d is None else d

    @property
    def sale_s(self) -> float:
        """Length of the sale being run (the scenario's, or the --flashsale-duration cut)."""
        d = self.options.duration_s
        return self.scenario.duration_s if d is None else min(d, self.scenario.duration_s)

    def _plan(self, slices: int) -> RunPlan:
        self.run_id += 1
        return RunPlan(
            self.run_id,
            slices,
            self.scenario.scale,
            self.options.duration_s,
            self.digest,
            host=self.env.host,
            engine=self.options.engine,
        )

    def _start_slice(self, plan: RunPlan, worker: int) -> None:
        sc = self.scenario
        rows = worker_rows(sc, plan, worker)
        target = sc.target
        self.plan = plan
        engine = None
        if plan.engine:
            host = plan.host or self.env.host
            if not host:
                raise UsageError("--flashsale-engine: no host to send to (pass --host)")
            connections = max(1, math.ceil(sc.run.connections / plan.slices))
            start_at = time.time() + self.options.lead_s
            engine = EngineSlice(sc, rows, host, connections, worker, start_at)
            recorder = engine.recorder
        else:
            recorder = Recorder.allocate(
                rows["t_ns"].astype(np.int64), retry_capacity(rows, sc.buyers.retry)
            )
        self.slice = SliceState(
            plan=plan,
            worker=worker,
            rows=rows,
            book=OrderBook(sc, rows),
            dispatcher=Dispatcher(0 if engine is not None else len(rows)),
            recorder=recorder,
            t0_ns=time.perf_counter_ns() + round(self.options.lead_s * 1e9),
            method=target.method,
            path=target.orders_path,
            headers={"Content-Type": target.content_type},
            table=status_table(target.status),
            retry=sc.buyers.retry,
            seed=sc.seed,
            engine=engine,
        )
        if engine is not None:
            engine.start()
            gevent.spawn(engine.report_loop, self.env.events.request.fire)

    def _url(self, path: str) -> str:
        host = (self.env.host or "").rstrip("/")
        return host + path

    def _tls(self) -> ssl.SSLContext | None:
        """TLS for an https host, its certificate not checked (as Locust's FastHttpUser does)."""
        if not (self.env.host or "").startswith("https://"):
            return None
        return parse_endpoint(self.env.host or "", "--host").unverified().ssl_context()

    def _http(self, method: str, path: str, timeout_s: float = 3.0) -> dict[str, Any] | None:
        if not self.env.host:
            return None
        req = urllib.request.Request(
            self._url(path), method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s, context=self._tls()) as r:
                data: dict[str, Any] = json.loads(r.read() or b"{}")
                return data
        except (OSError, ValueError, urllib.error.URLError) as exc:
            log.warning("flashsale: %s %s failed: %s", method, self._url(path), exc)
            return None

    # -- events ----------------------------------------------------------------------------

    def on_test_start(self) -> None:
        """Master: plan the run and tell the workers; stand-alone: take the whole schedule."""
        self.results.clear()
        self.live_by_worker.clear()
        self._last_live = None
        self.report = None
        self.errors.clear()
        self._final.clear()
        self._finalizing = False
        self.started_unix = time.time() + self.options.lead_s
        if self.is_worker:
            return  # the plan message has come (or will come) from the master
        if self.options.reset and self.env.host:
            self._http("POST", self.scenario.target.reset_path)
        if not self.is_master:
            self._start_slice(self._plan(1), 0)
            return
        runner = self.env.runner
        clients = [c.id for c in runner.clients.values()]
        indexes = sorted(runner.get_worker_index(c) for c in clients)
        slices = self.options.slices or len(clients)
        problem = None
        if slices != len(clients):
            problem = (
                f"--flashsale-workers {slices} but {len(clients)} workers are connected: "
                f"the schedule must be cut into as many slices as there are workers"
            )
        elif indexes != list(range(slices)):
            problem = (
                f"worker indexes are {indexes}, not 0…{slices - 1} (a worker reconnected?): "
                f"restart the workers so that every slice has one"
            )
        if problem is not None:
            self.fail(problem)
            return
        self.plan = self._plan(slices)
        runner.send_message(PLAN_MESSAGE, self.plan.to_message())

    def fail(self, message: str) -> None:
        """A run that cannot go on: log it, stop, and in a headless run quit with exit 2."""
        log.error("flashsale: %s", message)
        self.errors.append(message)
        self.env.process_exit_code = 2
        opts = self.env.parsed_options
        runner = self.env.runner
        gevent.spawn(runner.quit if opts is not None and opts.headless else runner.stop)

    def on_plan(self, data: dict[str, Any]) -> None:
        """Worker: the master's plan for this run; take the slice of this worker's index."""
        plan = RunPlan.from_message(data)
        k = self.env.runner.worker_index
        if plan.digest != self.digest:
            msg = (
                f"worker {k}: scenario file {self.options.scenario} differs from the master's "
                f"(digest {self.digest} vs {plan.digest}); not sending anything"
            )
            log.error("flashsale: %s", msg)
            self.env.runner.send_message(
                RESULT_MESSAGE, {"run_id": plan.run_id, "worker": k, "error": msg}
            )
            self.slice = None
            return
        try:
            self._start_slice(plan, k)
        except FlashsaleError as exc:
            log.error("flashsale: %s", exc)
            self.env.runner.send_message(
                RESULT_MESSAGE, {"run_id": plan.run_id, "worker": k, "error": str(exc)}
            )
            self.slice = None
        else:
            log.info(
                "flashsale: worker %d takes slice %d of %d: %d orders",
                k,
                k,
                plan.slices,
                self.slice.book.n if self.slice else 0,
            )

    def on_test_stop(self) -> None:
        """Worker: send the results; stand-alone: finalize; master: wait for the workers."""
        st = self.slice
        if self.is_worker:
            if st is not None:
                self.slice = None
                self.env.runner.send_message(RESULT_MESSAGE, self._slice_result(st))
            return
        if self.is_master:
            if self.plan is None or self._final.is_set():
                return
            if self.env.runner.user_count == 0:  # the workers were told to stop: wait for them
                self._collect_then_finalize()
            else:  # quitting without a stop: what comes within Locust's last half second
                gevent.spawn(self._collect_then_finalize)
            return
        if st is not None:
            self.slice = None
            result = self._slice_result(st)
            self._last_live = res.live_counters(st.rows, st.recorder, self.skus)
            if "error" in result:
                self.errors.append(str(result["error"]))
            else:
                self.results = {0: result}
            self.finalize()

    def _slice_result(self, st: SliceState) -> dict[str, Any]:
        """The slice's result message (in engine mode once the engine's thread has ended)."""
        eng = st.engine
        if eng is not None:
            eng.stop()
            if not eng.wait(self.scenario.run.timeout_s + 5.0):
                eng.error = eng.error or "engine: still running after the stop"
            eng.report(self.env.events.request.fire)
            if eng.error is not None:
                msg = f"worker {st.worker}: {eng.error}"
                log.error("flashsale: %s", msg)
                return {"run_id": st.plan.run_id, "worker": st.worker, "error": msg}
        return res.worker_result(st.recorder, st.worker, st.plan, st.rows_sent_twice)

    def on_result(self, data: dict[str, Any]) -> None:
        """Master: one worker's results."""
        if self.plan is None or data.get("run_id") != self.plan.run_id:
            return
        if "error" in data:
            self.errors.append(str(data["error"]))
            log.error("flashsale: %s", data["error"])
            return
        self.results[int(data["worker"])] = data

    def _collect_then_finalize(self) -> None:
        assert self.plan is not None
        deadline = time.monotonic() + self.options.result_timeout_s
        while len(self.results) < self.plan.slices and time.monotonic() < deadline:
            if len(self.results) + len(self.errors) >= self.plan.slices:
                break
            gevent.sleep(0.1)
        self.finalize()

    def on_quitting(self) -> None:
        """Master/stand-alone: a run that ended without a report gets one now, with what came."""
        if not self.is_worker and self.plan is not None:
            self.finalize()
            self._final.wait(self.options.result_timeout_s)

    def on_report_to_master(self, data: dict[str, Any]) -> None:
        """Worker: add the live counters to Locust's periodic report."""
        st = self.slice
        if st is not None:
            data["flashsale"] = res.live_counters(st.rows, st.recorder, self.skus)

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """Master: keep each worker's latest live counters."""
        if "flashsale" in data:
            self.live_by_worker[client_id] = data["flashsale"]

    # -- the end of a run ------------------------------------------------------------------

    def shape_tick(self, elapsed_s: float) -> tuple[int, float] | None:
        """(users, spawn rate) for Locust's shape; None once the run is over.

        The run is over after the sale and its drain (or as soon as every order is answered),
        or at ``--run-time`` in a headless run. Then this stops the runner right here, in the
        shape's own greenlet, so that Locust does not quit before the workers' results are in
        and the report is written (``test_stop`` waits for them).
        """
        t = elapsed_s - self.options.lead_s
        over = t > self.sale_s + self.drain_s or (t > self.sale_s and self._all_answered())
        if self.run_time_s is not None and elapsed_s >= self.run_time_s:
            over = True
        if over:
            self.env.runner.stop()
            return None
        if self.options.engine:  # the engine sends; one idle user per worker keeps Locust running
            users = self.plan.slices if self.plan is not None else 1
        else:
            users = users_at(self.scenario, max(t, 0.0), self.options.sizing)
        return users, float(max(users, 10))

    def _all_answered(self) -> bool:
        if self.is_master:
            live = list(self.live_by_worker.values())
            if len(live) < (self.plan.slices if self.plan else 1):
                return False
            return all(w["outcomes"]["not_sent"] == 0 for w in live)
        st = self.slice
        if st is None:
            return False
        return bool(res.live_counters(st.rows, st.recorder, self.skus)["outcomes"]["not_sent"] == 0)

    def finalize(self) -> None:
        """Merge the workers' recorders over the schedule, audit, print and save the report."""
        plan = self.plan
        if plan is None or self._finalizing:
            return
        self._finalizing = True
        merged = res.merge_workers(self._schedule_rows(plan), plan, self.results)
        target = self.scenario.target
        host = (self.env.host or "").rstrip("/")
        if host:
            server = fetch_server_state(
                host + target.inventory_path, host + target.ledger_path, context=self._tls()
            )
        else:
            server = ServerState(None, None, ("no host: the server's inventory was not read",))
        started = self.started_unix or time.time()
        facts = res.RunFacts(
            host=self.env.host,
            mode="engine" if plan.engine else "users",
            started_at=started,
            wall_s=max(0.0, time.time() - started),
            errors=tuple(self.errors),
            connections=self.scenario.run.connections if plan.engine else None,
        )
        report = res.build_report(self.scenario, plan, merged, server, facts)
        self.report = report
        print(res.render(report), flush=True)
        if self.options.out_dir:
            try:
                out_dir = Path(self.options.out_dir)
                path = write_report(report, out_dir)
                save_orders(out_dir, merged.rows, merged.recorder, self.skus)
                print(f"flashsale: report saved to {path} (orders.npz beside it)", flush=True)
            except OSError as exc:
                log.error("flashsale: cannot save the report in %s: %s", self.options.out_dir, exc)
        if self.env.process_exit_code is None or self.env.process_exit_code == 0:
            self.env.process_exit_code = report["exit_code"]
        self._final.set()

    def _schedule_rows(self, plan: RunPlan) -> Orders:
        schedule = build_schedule(self.scenario.with_scale(plan.scale), plan.duration_s)
        return schedule.materialize()

    # -- the live view (web UI) ------------------------------------------------------------

    def scheduled_per_s(self) -> list[int]:
        """Orders scheduled in each second of the sale (the whole schedule, all workers)."""
        plan = self.plan or RunPlan(0, 1, self.scenario.scale, self.options.duration_s, "")
        if self._scheduled[0] != plan:
            schedule = build_schedule(self.scenario.with_scale(plan.scale), plan.duration_s)
            seconds = int(np.ceil(schedule.duration_s))
            counts = np.zeros(seconds, dtype=np.int64)
            for chunk in schedule.chunks():
                counts += np.bincount(chunk["t_ns"] // 1_000_000_000, minlength=seconds)[:seconds]
            self._scheduled = (plan, counts.tolist())
        return self._scheduled[1]

    def inventory(self) -> dict[str, Any] | None:
        """The storefront's /inventory, fetched at most once a second."""
        at, data = self._inventory
        now = time.monotonic()
        if now - at > 0.5:
            data = self._http("GET", self.scenario.target.inventory_path, timeout_s=1.0)
            self._inventory = (now, data)
        return data

    def live_counters(self) -> dict[str, Any]:
        """Sends, outcomes and client-confirmed units so far (all workers)."""
        parts = list(self.live_by_worker.values())
        st = self.slice
        if st is not None:
            parts.append(res.live_counters(st.rows, st.recorder, self.skus))
        elif self._last_live is not None:
            parts.append(self._last_live)
        out: dict[str, Any] = {
            "sends": 0,
            "outcomes": dict.fromkeys(OUTCOME_NAMES, 0),
            "confirmed_units": dict.fromkeys(self.skus, 0),
        }
        for p in parts:
            out["sends"] += p["sends"]
            for k, v in p["outcomes"].items():
                out["outcomes"][k] += v
            for k, v in p["confirmed_units"].items():
                out["confirmed_units"][k] = out["confirmed_units"].get(k, 0) + v
        return out

    def live_view(self) -> dict[str, Any]:
        """Everything the Flash sale page shows, as one JSON-able dict."""
        sale_s = self.sale_s
        grid = np.linspace(0.0, sale_s, min(601, max(2, round(sale_s / 0.05) + 1)))
        stats = self.env.runner.stats.get(INTENDED, self.scenario.target.method)
        achieved_t: list[float] = []
        achieved: list[int] = []
        if self.started_unix is not None:
            for sec, count in sorted(stats.num_reqs_per_sec.items()):
                achieved_t.append(round(sec - self.started_unix, 3))
                achieved.append(count)
        counters = self.live_counters()
        inventory = self.inventory()
        if self.report is not None and self.report.get("audit") and self.slice is None:
            audit = self.report["audit"]  # the finished run's full three-way audit
        else:
            # during a run: no ledger (the clients' count and the server's are a moment apart,
            # order by order they would look like disagreements); units and counters only
            sc = self.scenario
            state = ServerState(inventory, None, () if inventory else ("no /inventory",))
            audit = audit_view(
                ClientView.of_units(counters["confirmed_units"]),
                tuple(self.skus),
                sc.stocks(),
                sc.per_buyer_limits(),
                state,
            )
        elapsed = None if self.started_unix is None else time.time() - self.started_unix
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "scale": self.scenario.scale,
            "host": self.env.host,
            "state": str(self.env.runner.state),
            "elapsed_s": elapsed,
            "sale_s": sale_s,
            "workers": self.plan.slices if self.plan else None,
            "users": self.env.runner.user_count,
            "demand": {"t": grid.tolist(), "rate": demand_rate(self.scenario, grid).tolist()},
            "scheduled_per_s": self.scheduled_per_s(),
            "achieved": {"t": achieved_t, "rate": achieved},
            "counters": counters,
            "audit": audit,
            "errors": list(self.errors),
            "report": self.report,
        }
