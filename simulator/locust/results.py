"""What a worker sends to the master, and the master's report in ``flashsale run``'s shape.

A worker records into the engine's :class:`simulator.load.recorder.Recorder` (preallocated arrays,
attempts and retries as the engine does). At the end its trimmed arrays travel to the master as
raw bytes in one Locust message (:func:`worker_result`). The master rebuilds
them, merges the workers exactly with :func:`simulator.load.recorder.merge` in slice order
(:func:`merge_workers`), and builds the report with :func:`simulator.results.measure` and
:func:`simulator.audit.audit` (:func:`build_document`): the same ``report.json`` as ``flashsale
run`` writes, so ``flashsale report`` and ``flashsale compare`` read it, plus a ``locust``
section with what only a Locust run has (workers, per-worker counts, integrity checks). No locust
import here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.audit import ServerState, audit, audit_settled
from simulator.load.recorder import Recorder, merge
from simulator.locust.plan import RunPlan, duplicate_check
from simulator.outcomes import OUTCOME_NAMES
from simulator.report.document import Report
from simulator.report.sections import RunInfo, ScenarioInfo, TargetInfo
from simulator.report.terminal import render_text
from simulator.results import measure, run_report
from simulator.scenario import Scenario
from simulator.schedule import Orders, concat

#: the recorder's arrays and their dtypes, as they travel in a worker's message
FIELDS: tuple[tuple[str, type[np.generic]], ...] = (
    ("intended_ns", np.int64),
    ("dispatched_ns", np.int64),
    ("sent_ns", np.int64),
    ("done_ns", np.int64),
    ("status", np.int16),
    ("outcome", np.uint8),
    ("reason", np.int32),
    ("tries", np.uint8),
    ("next_attempt", np.int32),
    ("row_of_retry", np.int32),
)


def recorder_to_message(rec: Recorder) -> dict[str, Any]:
    """A recorder's used part as plain values and bytes (a Locust message payload)."""
    t = rec.trimmed()
    out: dict[str, Any] = {"n_rows": t.n_rows, "n_attempts": t.n_attempts}
    for name, _ in FIELDS:
        out[name] = getattr(t, name).tobytes()
    out["reason_labels"] = [[code, label] for code, label in t.reason_labels.items()]
    return out


def recorder_from_message(data: Mapping[str, Any]) -> Recorder:
    """The inverse of :func:`recorder_to_message`; ValueError if the arrays do not fit."""
    n_rows, m = int(data["n_rows"]), int(data["n_attempts"])
    arrays: dict[str, Any] = {
        name: np.frombuffer(data[name], dtype=dtype).copy() for name, dtype in FIELDS
    }
    for name, a in arrays.items():
        want = m - n_rows if name == "row_of_retry" else m
        if len(a) != want:
            raise ValueError(f"recorder message: {name} has {len(a)} values, expected {want}")
    labels = {int(code): str(label) for code, label in data.get("reason_labels", [])}
    return Recorder(n_rows=n_rows, n_attempts=m, reason_labels=labels, **arrays)


def worker_result(
    rec: Recorder, worker: int, plan: RunPlan, rows_sent_twice: int = 0
) -> dict[str, Any]:
    """Everything the master needs from one worker (a Locust message)."""
    return {
        "run_id": plan.run_id,
        "worker": worker,
        "slices": plan.slices,
        "rows_sent_twice": rows_sent_twice,
        "recorder": recorder_to_message(rec),
    }


# ---------------------------------------------------------------------------------------------
# Master


@dataclass(frozen=True, slots=True)
class Merged:
    """The workers' results as one run: rows in slice order, their merged recorder, the checks."""

    rows: Orders
    recorder: Recorder
    section: dict[str, Any]  # the report's ``locust`` section


def merge_workers(whole: Orders, plan: RunPlan, results: Mapping[int, Mapping[str, Any]]) -> Merged:
    """Merge the workers' recorders over the schedule (exactly: ``load.recorder.merge``).

    ``whole`` is the plan's whole schedule; worker k's rows are ``whole[k::slices]``. A worker
    that did not report (or sent arrays that do not fit its slice) counts as missing: its rows
    stay not sent, so the outcomes still add up to the schedule.
    """
    parts_rows: list[Orders] = []
    parts_rec: list[Recorder] = []
    per_worker: list[dict[str, Any]] = []
    missing: list[int] = []
    problems: list[str] = []
    twice = 0
    for k in range(plan.slices):
        mine = whole[k :: plan.slices].copy()
        rec = None
        r = results.get(k)
        if r is not None:
            try:
                rec = recorder_from_message(r["recorder"])
            except (KeyError, ValueError) as exc:
                problems.append(f"worker {k}: unreadable results ({exc})")
            else:
                if rec.n_rows != len(mine) or not np.array_equal(
                    rec.intended_ns[: rec.n_rows], mine["t_ns"]
                ):
                    problems.append(
                        f"worker {k}: its {rec.n_rows} rows are not slice {k} of "
                        f"{plan.slices} of the schedule ({len(mine)} rows)"
                    )
                    rec = None
        if rec is None:
            missing.append(k)
            rec = Recorder.allocate(mine["t_ns"].astype(np.int64), 0)
        else:
            twice += int(r.get("rows_sent_twice", 0)) if r is not None else 0
            per_worker.append(_worker_counts(k, rec))
        parts_rows.append(mine)
        parts_rec.append(rec)
    rows = concat(parts_rows)
    merged = merge(parts_rec)
    sent = merged.sent_ns[: merged.n_rows] >= 0
    checks: dict[str, Any] = {
        "all_workers_reported": not missing,
        "slices_match_schedule": not problems,
        "rows_sent_twice": twice,
        **duplicate_check(rows, sent),
    }
    checks["ok"] = bool(not missing and not problems and twice == 0)
    checks["ok"] = checks["ok"] and checks["unintended_repeats"] == 0
    section = {
        "run_id": plan.run_id,
        "workers": plan.slices,
        "missing_workers": missing,
        "per_worker": per_worker,
        "checks": checks,
        "problems": problems,
    }
    return Merged(rows, merged, section)


def _worker_counts(k: int, rec: Recorder) -> dict[str, Any]:
    m = rec.n_attempts
    counts = np.bincount(rec.row_outcomes(), minlength=len(OUTCOME_NAMES))
    return {
        "worker": k,
        "slice_orders": rec.n_rows,
        "sent": int(np.count_nonzero(rec.sent_ns[: rec.n_rows] >= 0)),
        "attempts": int(np.count_nonzero(rec.sent_ns[:m] >= 0)),
        "outcomes": {name: int(counts[i]) for i, name in enumerate(OUTCOME_NAMES)},
    }


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the master knows about a run besides its results."""

    host: str | None
    mode: str  # "users" (Locust FastHttpUser senders) or "engine" (flashsale's engine)
    started_at: float  # time.time() at the sale's start
    wall_s: float
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    connections: int | None = None


def build_document(
    scenario: Scenario, plan: RunPlan, merged: Merged, server: ServerState, facts: RunFacts
) -> Report:
    """The run's :class:`Report`: :func:`measure` and :func:`audit`, plus a ``locust`` section."""
    rows, rec = merged.rows, merged.recorder
    duration_s = plan.duration_s or scenario.duration_s
    skus = tuple(p.id for p in scenario.products)
    summary = measure(rows, rec, duration_s, skus)
    audit_result = audit(rows, rec, skus, scenario.stocks(), scenario.per_buyer_limits(), server)
    section = dict(merged.section)
    section["mode"] = facts.mode
    partial = summary.orders.outcomes["not_sent"] > 0 or bool(section["missing_workers"])
    complete = (
        not partial and not facts.errors and section["checks"]["ok"] and audit_settled(audit_result)
    )
    started = dt.datetime.fromtimestamp(facts.started_at, dt.UTC).isoformat(timespec="seconds")
    transport = "flashsale engine (lean)" if facts.mode == "engine" else "locust FastHttpUser"
    return run_report(
        summary,
        audit_result,
        scenario=ScenarioInfo(
            scenario.name, scenario.source, plan.scale, scenario.seed, duration_s
        ),
        target=TargetInfo(facts.host, False, None, transport),
        run=RunInfo(
            started_at=started,
            wall_s=round(facts.wall_s, 3),
            workers=plan.slices,
            connections=facts.connections,
            timeout_s=scenario.run.timeout_s,
            drain_s=scenario.run.drain_s,
            recorder_bytes=rec.nbytes(),
            notes=tuple(facts.notes),
            worker_errors=tuple(facts.errors),
        ),
        partial=partial,
        complete=complete,
        extra={"locust": section},
    )


def build_report(
    scenario: Scenario, plan: RunPlan, merged: Merged, server: ServerState, facts: RunFacts
) -> dict[str, Any]:
    """``report.json`` of the run as JSON (:func:`build_document`'s ``to_json``)."""
    return build_document(scenario, plan, merged, server, facts).to_json()


def render(report: Mapping[str, Any]) -> str:
    """The report for the terminal: ``flashsale report``'s summary, then the Locust section."""
    lines = [render_text(Report.from_json(dict(report), "locust report"))]
    loc = report["locust"]
    c = loc["checks"]
    lines.append(
        f"locust      {loc['mode']} mode · {loc['workers']} worker"
        f"{'s' if loc['workers'] != 1 else ''}"
    )
    for w in loc["per_worker"]:
        lines.append(
            f"  worker {w['worker']}  slice {w['slice_orders']:,} · sent {w['sent']:,} · "
            f"attempts {w['attempts']:,}"
        )
    lines.append(
        f"  checks {'ok' if c['ok'] else 'FAILED'} (rows sent twice {c['rows_sent_twice']}, "
        f"double clicks {c['double_clicks_sent']}, unintended repeats {c['unintended_repeats']}"
        + (f", missing workers {loc['missing_workers']}" if loc["missing_workers"] else "")
        + ")"
    )
    lines.extend(f"  {p}" for p in loc["problems"])
    lines.extend(f"  error: {e}" for e in report["run"].get("worker_errors", []))
    a = report["audit"]
    lines.append(f"  audit {'ok' if a['ok'] else 'PROBLEMS'}: oversell {a['oversell_units']} units")
    return "\n".join(lines)
