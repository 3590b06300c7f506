"""One Locust process's part in a flashsale run: a master, a worker or a stand-alone node.

:func:`make_node` reads the options and the scenario and picks the node's class from the type of
Locust's runner (``MasterRunner``, ``WorkerRunner``, else stand-alone). The node owns everything
of the run (no module-level state) and moves through :class:`Phase`: ``IDLE`` → ``RUNNING``
(test start) → ``COLLECTING`` (test stop: the master waits for the workers' results) →
``FINISHED`` (report printed and saved) → ``RUNNING`` again on the next start from the web UI.

Messages between nodes (all plain dicts):

* ``flashsale_plan`` master → each worker at test start: the :class:`RunPlan` (slices, scale,
  duration cut, scenario digest). Sent before Locust's spawn messages, so a worker knows its
  slice before its first user starts.
* ``flashsale_result`` worker → master at test stop: :func:`results.worker_result` (the
  worker's tally: histograms and counters, no per-order array; the digest of its rows).
* live counters ride on Locust's own periodic worker report (``report_to_master``).

A worker that dies mid-run stops sending heartbeats; Locust's master marks it missing, and the
master's report says that worker was lost (its rows count as not sent, and the sales the server
made for them are in the audit's problems) instead of waiting for it.
"""

from __future__ import annotations

import enum
import logging
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from simulator.errors import FlashsaleError
from simulator.load.journey import allowance_s
from simulator.load.target import Target
from simulator.load.transport import parse_endpoint
from simulator.locust import finish, live
from simulator.locust import results as res
from simulator.locust.plan import Options, RunPlan, file_digest, users_at
from simulator.locust.slice_state import NODE_ATTR, SliceState, start_slice
from simulator.locust.stats import INTENDED, order_request
from simulator.records import clear_stream
from simulator.scenario import Scenario, load_scenario

log = logging.getLogger("flashsale")

PLAN_MESSAGE = "flashsale_plan"
RESULT_MESSAGE = "flashsale_result"
INVENTORY_EVERY_S = 0.5  # the live view reads the storefront's /inventory at most this often
FOLD_S = 0.25  # users mode: how often the attempts that are over are folded into the tally


class Phase(enum.Enum):
    """Where a node is in the current run."""

    IDLE = "idle"  # no run yet
    RUNNING = "running"  # test start: the slice(s) are sending
    COLLECTING = "collecting"  # test stop: waiting for the workers' results
    FINISHED = "finished"  # the report is made (or, on a worker, the results are sent)


def make_node(environment: Any) -> Node:
    """The node for this process (by Locust's runner type); a FlashsaleError on bad input."""
    options = Options.from_parsed(environment.parsed_options)
    scenario = load_scenario(options.scenario, scale=options.scale)
    runner = environment.runner
    cls: type[Node]
    if isinstance(runner, MasterRunner):
        cls = MasterNode
    elif isinstance(runner, WorkerRunner):
        cls = WorkerNode
    else:
        cls = LocalNode
    return cls(environment, options, scenario)


def node_of(environment: Any) -> Node | None:
    """The node of this process (None before the locustfile's init hooked one up)."""
    node: Node | None = getattr(environment, NODE_ATTR, None)
    return node


class Node:
    """What every node has: the scenario, the run's plan and slice, the phase, the live view."""

    def __init__(self, environment: Any, options: Options, scenario: Scenario) -> None:
        self.env = environment
        self.options = options
        self.scenario = scenario
        self.digest = file_digest(options.scenario)
        self.skus = [p.id for p in scenario.products]
        self.phase = Phase.IDLE
        self.slice: SliceState | None = None
        self.plan: RunPlan | None = None
        self.run_id = 0
        self.report: dict[str, Any] | None = None
        self.started_unix: float | None = None  # wall time of the sale's t = 0
        self.errors: list[str] = []
        self.notes: list[str] = []
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

    # -- facts -------------------------------------------------------------------------------

    @property
    def drain_s(self) -> float:
        """How long after the last intended send the run waits for answers (and, with a
        journey, for the journeys under way to end: the engine's allowance)."""
        d = self.options.drain_s
        drain = self.scenario.run.drain_s if d is None else d
        journey, run = self.scenario.journey, self.scenario.run
        if journey is not None:  # the last journeys' think times, timeouts and polls, as the
            drain += allowance_s(journey, run.timeout_s, self.scenario.buyers.retry)  # engine
        return drain

    @property
    def sale_s(self) -> float:
        """Length of the sale being run (the scenario's, or the --flashsale-duration cut)."""
        d = self.options.duration_s
        return self.scenario.duration_s if d is None else min(d, self.scenario.duration_s)

    def target(self) -> Target | None:
        """The target client for Locust's host (https not checked, as FastHttpUser does)."""
        host = self.env.host
        if not host:
            return None
        return Target(parse_endpoint(host, "host").unverified())

    def _new_plan(self, slices: int) -> RunPlan:
        self.run_id += 1
        return RunPlan(
            self.run_id,
            slices,
            self.scenario.scale,
            self.options.duration_s,
            self.digest,
            host=self.env.host,
            engine=self.options.engine,
            orders=self.options.orders or None,
        )

    def _begin(self) -> None:
        """A new run: forget the last one's results."""
        self.phase = Phase.RUNNING
        self._last_live = None
        self.report = None
        self.errors.clear()
        self.notes.clear()
        self.started_unix = time.time() + self.options.lead_s

    def _start_slice(self, plan: RunPlan, worker: int) -> None:
        self.plan = plan
        st = start_slice(self.scenario, plan, worker, self.env.host, self.options.lead_s)
        self.slice = st
        if st.engine is not None:
            st.engine.start(self.env.events.request.fire)
            gevent.spawn(st.engine.report_loop)
        else:
            gevent.spawn(self._fold_loop, st)

    def _fold_loop(self, st: SliceState) -> None:
        """Users mode: fold the attempts that are over into the slice's tally while it runs."""
        while self.slice is st:
            gevent.sleep(FOLD_S)
            if self.slice is st and st.feed is not None:
                st.feed.fold(st.now_ns())

    def _clear_orders(self) -> bool:
        """Remove an earlier run's orders stream (on this machine) before the workers write
        theirs; False (the run failed) if the path cannot be one."""
        if not self.options.orders:
            return True
        path = Path(self.options.orders)
        try:
            if not path.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
            clear_stream(path)
        except (ValueError, OSError) as exc:
            self.fail(f"--flashsale-orders: {exc}")
            return False
        return True

    def _reset_target(self) -> None:
        target = self.target()
        if not self.options.reset or target is None:
            return
        done = target.reset(self.scenario.target.reset_path)
        self.notes.append(done.note)
        if not done.ok:
            log.warning("flashsale: %s", done.note)

    def _slice_result(self, st: SliceState) -> dict[str, Any]:
        """The slice's result message: its tally (in engine mode once the engine's thread has
        ended), the digest of its rows and its counts."""
        eng, feed = st.engine, st.feed
        error = None
        if eng is not None:
            eng.stop()
            if not eng.wait(self.scenario.run.timeout_s + 5.0):
                eng.error = eng.error or "engine: still running after the stop"
            eng.drain()
            error = eng.error
        elif feed is not None:
            feed.finish(st.now_ns())
        if st.stream is not None:
            st.stream.close(complete=error is None)
        if error is not None or (eng is None and feed is None):
            msg = f"worker {st.worker}: {error or 'nothing was sent'}"
            log.error("flashsale: %s", msg)
            return {"run_id": st.plan.run_id, "worker": st.worker, "error": msg}
        if eng is not None:
            tally, twice, slot_bytes = eng.tally, 0, eng.slot_bytes()
        else:
            assert feed is not None
            tally, twice, slot_bytes = feed.tally, feed.rows_sent_twice, feed.ring.nbytes()
        return res.worker_result(tally, st.counts, st.digest, st.worker, st.plan, twice, slot_bytes)

    def fail(self, message: str) -> None:
        """A run that cannot go on: log it, stop, and in a headless run quit with exit 2."""
        log.error("flashsale: %s", message)
        self.errors.append(message)
        self.env.process_exit_code = 2
        opts = self.env.parsed_options
        runner = self.env.runner
        gevent.spawn(runner.quit if opts is not None and opts.headless else runner.stop)

    # -- events (overridden per role) ----------------------------------------------------------

    def on_test_start(self) -> None:
        """Locust's test_start."""
        self._begin()

    def on_test_stop(self) -> None:
        """Locust's test_stop."""

    def on_quitting(self) -> None:
        """Locust's quitting."""

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

    def _live_parts(self) -> list[dict[str, Any]]:
        """The live counters this node knows of, one per slice."""
        st = self.slice
        if st is not None:
            return [st.live_counters(self.skus)]
        return [self._last_live] if self._last_live is not None else []

    def _all_answered(self) -> bool:
        return self.slice is not None and live.all_answered(self._live_parts(), 1)

    def _finalize(self, results: dict[int, dict[str, Any]]) -> None:
        """Read the target, make, print and save the report; the exit code follows it."""
        plan = self.plan
        if plan is None or self.phase is Phase.FINISHED:
            return
        self.phase = Phase.FINISHED
        started = self.started_unix or time.time()
        facts = res.RunFacts(
            host=self.env.host,
            mode="engine" if plan.engine else "users",
            started_at=started,
            wall_s=max(0.0, time.time() - started),
            errors=tuple(self.errors),
            notes=tuple(self.notes),
            connections=self.scenario.run.connections if plan.engine else None,
        )
        server = finish.server_state(self.scenario, self.target())
        report = finish.finalize(self.scenario, plan, results, server, facts, self.options.out_dir)
        self.report = report
        if self.env.process_exit_code is None or self.env.process_exit_code == 0:
            self.env.process_exit_code = report["exit_code"]

    # -- the live view (web UI) ------------------------------------------------------------

    def scheduled_per_s(self) -> list[int]:
        """Orders scheduled in each second of the sale (the whole schedule, all workers)."""
        plan = self.plan or RunPlan(0, 1, self.scenario.scale, self.options.duration_s, "")
        if self._scheduled[0] != plan:
            self._scheduled = (plan, live.scheduled_per_s(self.scenario, plan))
        return self._scheduled[1]

    def inventory(self) -> dict[str, Any] | None:
        """The storefront's /inventory, fetched at most every :data:`INVENTORY_EVERY_S`."""
        at, data = self._inventory
        now = time.monotonic()
        target = self.target()
        if now - at > INVENTORY_EVERY_S and target is not None:
            try:
                got = target.get_json(self.scenario.target.inventory_path, timeout_s=1.0)
            except (OSError, ValueError) as exc:
                log.warning(
                    "flashsale: GET %s failed: %s", self.scenario.target.inventory_path, exc
                )
                got = None
            data = got if isinstance(got, dict) else None
            self._inventory = (now, data)
        return data

    def live_view(self) -> dict[str, Any]:
        """Everything the Flash sale page shows, as one JSON-able dict."""
        stats = self.env.runner.stats.get(INTENDED, order_request(self.scenario).method)
        snap = live.Snapshot(
            host=self.env.host,
            state=str(self.env.runner.state),
            users=self.env.runner.user_count,
            sale_s=self.sale_s,
            workers=self.plan.slices if self.plan else None,
            started_unix=self.started_unix,
            now_unix=time.time(),
            achieved_per_s=dict(stats.num_reqs_per_sec),
            counters=live.merge_counters(self._live_parts(), self.skus),
            inventory=self.inventory(),
            scheduled_per_s=self.scheduled_per_s(),
            running=self.slice is not None,
            errors=tuple(self.errors),
            report=self.report,
        )
        return live.view(self.scenario, snap)


class LocalNode(Node):
    """A stand-alone Locust process: it sends the whole schedule and makes the report."""

    def on_test_start(self) -> None:
        """Reset the target, take the whole schedule as one slice."""
        super().on_test_start()
        self._reset_target()
        if self._clear_orders():
            self._start_slice(self._new_plan(1), 0)

    def on_test_stop(self) -> None:
        """Finalize with this process's own results."""
        st = self.slice
        if st is None:
            return
        self.slice = None
        result = self._slice_result(st)
        self._last_live = st.counts.counters(self.skus, True)
        results: dict[int, dict[str, Any]] = {}
        if "error" in result:
            self.errors.append(str(result["error"]))
        else:
            results[0] = result
        self._finalize(results)

    def on_quitting(self) -> None:
        """A run that ended without a report (quit mid-run) gets one now."""
        if self.phase is Phase.RUNNING:
            self.on_test_stop()


class WorkerNode(Node):
    """A Locust worker: sends its slice of the master's plan and returns the results."""

    def register(self) -> None:
        """Listen to the master's plan message."""
        self.env.runner.register_message(PLAN_MESSAGE, lambda msg, **_: self.on_plan(msg.data))

    def on_plan(self, data: dict[str, Any]) -> None:
        """The master's plan for this run; take the slice of this worker's index."""
        plan = RunPlan.from_message(data)
        k = self.env.runner.worker_index
        if plan.digest != self.digest:
            msg = (
                f"worker {k}: scenario file {self.options.scenario} differs from the master's "
                f"(digest {self.digest} vs {plan.digest}); not sending anything"
            )
            self._refuse(plan, k, msg)
            return
        try:
            self._start_slice(plan, k)
        except FlashsaleError as exc:
            self._refuse(plan, k, str(exc))
            return
        log.info("flashsale: worker %d takes slice %d of %d", k, k, plan.slices)

    def _refuse(self, plan: RunPlan, k: int, msg: str) -> None:
        log.error("flashsale: %s", msg)
        self.env.runner.send_message(
            RESULT_MESSAGE, {"run_id": plan.run_id, "worker": k, "error": msg}
        )
        self.slice = None

    def on_test_stop(self) -> None:
        """Send the slice's results to the master."""
        st = self.slice
        if st is not None:
            self.slice = None
            self.env.runner.send_message(RESULT_MESSAGE, self._slice_result(st))
        self.phase = Phase.FINISHED

    def on_report_to_master(self, data: dict[str, Any]) -> None:
        """Add the live counters to Locust's periodic report."""
        st = self.slice
        if st is not None:
            data["flashsale"] = st.live_counters(self.skus)


class MasterNode(Node):
    """A Locust master: plans the run, collects the workers' results, makes the report."""

    def __init__(self, environment: Any, options: Options, scenario: Scenario) -> None:
        super().__init__(environment, options, scenario)
        self.results: dict[int, dict[str, Any]] = {}
        self.live_by_worker: dict[str, dict[str, Any]] = {}
        self._final = gevent.event.Event()

    def register(self) -> None:
        """Listen to the workers' result messages."""
        self.env.runner.register_message(RESULT_MESSAGE, lambda msg, **_: self.on_result(msg.data))

    def on_test_start(self) -> None:
        """Check the workers, plan the run, tell them."""
        super().on_test_start()
        self.results.clear()
        self.live_by_worker.clear()
        self._final.clear()
        self._reset_target()
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
        if not self._clear_orders():
            return
        self.plan = self._new_plan(slices)
        runner.send_message(PLAN_MESSAGE, self.plan.to_message())

    def on_result(self, data: dict[str, Any]) -> None:
        """One worker's results."""
        if self.plan is None or data.get("run_id") != self.plan.run_id:
            return
        if "error" in data:
            self.errors.append(str(data["error"]))
            log.error("flashsale: %s", data["error"])
            return
        self.results[int(data["worker"])] = data

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """Keep each worker's latest live counters."""
        if "flashsale" in data:
            self.live_by_worker[client_id] = data["flashsale"]

    def on_test_stop(self) -> None:
        """Wait for the workers' results (not for a lost worker's), then finalize."""
        if self.plan is None or self.phase is not Phase.RUNNING:
            return
        self.phase = Phase.COLLECTING
        if self.env.runner.user_count == 0:  # the workers were told to stop: wait for them
            self._collect_then_finalize()
        else:  # quitting without a stop: what comes within Locust's last half second
            gevent.spawn(self._collect_then_finalize)

    def on_quitting(self) -> None:
        """A run that ended without a report gets one now, with what came."""
        if self.plan is None:
            return
        if self.phase is Phase.RUNNING:
            self.phase = Phase.COLLECTING
            self._finish()
        self._final.wait(self.options.result_timeout_s)

    def lost_workers(self) -> list[int]:
        """Slices whose worker Locust has marked missing (or dropped) and that sent nothing."""
        if self.plan is None:
            return []
        runner = self.env.runner
        alive = {
            runner.worker_indexes.get(c.id)
            for c in runner.clients.values()
            if c.state != STATE_MISSING
        }
        return [k for k in range(self.plan.slices) if k not in self.results and k not in alive]

    def _collect_then_finalize(self) -> None:
        assert self.plan is not None
        deadline = time.monotonic() + self.options.result_timeout_s
        while time.monotonic() < deadline:
            lost = len(self.lost_workers())
            if len(self.results) + len(self.errors) + lost >= self.plan.slices:
                break
            gevent.sleep(0.1)
        self._finish()

    def _finish(self) -> None:
        for k in self.lost_workers():
            msg = (
                f"worker {k} lost mid-run (no heartbeat): its results never came, its orders "
                f"count as not sent"
            )
            log.error("flashsale: %s", msg)
            self.errors.append(msg)
        self._finalize(dict(self.results))
        self._final.set()

    def _live_parts(self) -> list[dict[str, Any]]:
        return list(self.live_by_worker.values())

    def _all_answered(self) -> bool:
        slices = self.plan.slices if self.plan else 1
        return live.all_answered(self._live_parts(), slices)
