"""What a worker sends to the master, and the master's report in ``flashsale run``'s shape.

A worker folds its attempts into a :class:`~simulator.load.tally.Tally` as they end (the same
tally ``flashsale run`` keeps: histograms, per-second counters, the confirmed orders). At the end
the tally travels to the master in one Locust message (:func:`worker_result`: its counts as
plain values and bytes, histograms as their non-empty buckets, never a per-order array), with the
slice's digest and a few counts. The master checks each worker's digest against its slice of the
schedule (:func:`simulator.locust.plan.scan_slices`, one streamed pass), merges the tallies by
adding counts (:func:`merge_workers`: exact), and builds the report with
:func:`simulator.results.measure_tally` and :func:`simulator.audit.audit_view`
(:func:`build_document`): the same ``report.json`` as ``flashsale run`` writes, so ``flashsale
report`` and ``flashsale compare`` read it, plus a ``locust`` section with what only a Locust run
has (workers, per-worker counts, integrity checks). No locust import here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.audit import ServerState, audit_settled, audit_view, client_view_of
from simulator.histogram import Histogram, Scale
from simulator.load.tally import SecondHistograms, Tally
from simulator.locust.live import SliceCounts
from simulator.locust.plan import RunPlan, SliceDigest, SliceScan
from simulator.outcomes import NOT_SENT, OUTCOME_NAMES
from simulator.report.document import Report
from simulator.report.sections import RunInfo, ScenarioInfo, TargetInfo
from simulator.report.terminal import render_text
from simulator.results import measure_tally, run_report
from simulator.scenario import Scenario

#: dtypes an array of a worker's message may have (anything else is refused)
_DTYPES = frozenset({"<i8", "<i4", "<u4", "<u2", "|u1", "|b1"})


# ---------------------------------------------------------------------------------------------
# A tally as a message (msgpack: plain values, bytes, lists)


def _arr(a: npt.NDArray[Any]) -> list[Any]:
    a = np.ascontiguousarray(a)
    return [a.dtype.str, list(a.shape), a.tobytes()]


def _unarr(v: Any, ndim: int | None = None) -> npt.NDArray[Any]:
    dtype, shape, data = v
    if str(dtype) not in _DTYPES:
        raise ValueError(f"array of dtype {dtype!r}")
    shape = tuple(int(x) for x in shape)
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"array of shape {shape}, expected {ndim} dimensions")
    a = np.frombuffer(bytes(data), dtype=np.dtype(str(dtype)))
    return a.reshape(shape).copy()


def _hist_to(h: Histogram) -> list[Any]:
    nz = np.flatnonzero(h.counts).astype(np.int64)
    return [h.total, h.sum_ns, h.min_ns, h.max_ns, _arr(nz), _arr(h.counts[nz])]


def _hist_from(v: Any, scale: Scale) -> Histogram:
    total, sum_ns, lo, hi, idx, counts = v
    h = Histogram.empty(scale)
    i, c = _unarr(idx, 1), _unarr(counts, 1)
    if len(i) != len(c) or (len(i) and (i.min() < 0 or i.max() >= scale.n_buckets)):
        raise ValueError("histogram buckets out of range")
    h.counts[i] = c
    h.total, h.sum_ns, h.min_ns, h.max_ns = int(total), int(sum_ns), int(lo), int(hi)
    return h


def _seconds_to(sh: SecondHistograms) -> list[Any]:
    """Per-second histograms as four flat arrays: seconds, buckets per second, bucket indexes
    and counts (narrow integer types: ~6 bytes a non-empty bucket), then the exact max and min."""
    items = list(sh.seconds())  # the spilled seconds too (simulator.load.tally)
    secs = [s for s, _, _ in items]
    parts = [(i, c) for _, i, c in items]
    idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    counts = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    wide = len(counts) and int(counts.max()) >= 1 << 32
    return [
        _arr(np.array(secs, dtype=np.int64)),
        _arr(np.array([len(p[0]) for p in parts], dtype=np.int64)),
        _arr(idx.astype(np.uint16 if sh.scale.n_buckets <= 1 << 16 else np.int32)),
        _arr(counts.astype(np.int64 if wide else np.uint32)),
        _arr(sh.max_ns),
        _arr(sh.min_ns),
    ]


def _seconds_from(v: Any, scale: Scale) -> SecondHistograms:
    secs, lens, idx, counts, hi, lo = (_unarr(x, 1).astype(np.int64) for x in v)
    if len(secs) != len(lens) or int(lens.sum()) != len(idx) or len(idx) != len(counts):
        raise ValueError("per-second histograms: arrays of different lengths")
    if len(idx) and (idx.min() < 0 or idx.max() >= scale.n_buckets):
        raise ValueError("per-second histogram buckets out of range")
    sh = SecondHistograms(scale)
    if len(secs):
        cuts = np.cumsum(lens)[:-1]
        pairs = zip(np.split(idx, cuts), np.split(counts, cuts), strict=True)
        sh.per_second = dict(zip(secs.tolist(), pairs, strict=True))
    sh.max_ns, sh.min_ns = hi, lo
    return sh


def tally_to_message(t: Tally) -> dict[str, Any]:
    """A tally as plain values and bytes (a Locust message payload; no pickle)."""
    order, product, qty, done = t.confirmed()
    sc = t.scale
    return {
        "scale": [sc.sub_bits, sc.lo_exp, sc.hi_exp],
        "counts": [t.scheduled, t.attempts, t.retries, t.sent, t.last_ns],
        "row_outcomes": _arr(t.row_outcomes),
        "attempt_outcomes": _arr(t.attempt_outcomes),
        "hists": [[k, o, _hist_to(h)] for (k, o), h in sorted(t.hists.items()) if h.total],
        "per_s": [_arr(getattr(t, n)) for n in _PER_S],
        "latency_s": _seconds_to(t.latency_s),
        "service_s": _seconds_to(t.service_s),
        "confirmed": [_arr(order), _arr(product), _arr(qty), _arr(done)],
        "failed": _arr(t.failed()),
        "reasons": [[o, r, n] for (o, r), n in sorted(t.reasons.items())],
        "reason_labels": [[code, label] for code, label in sorted(t.reason_labels.items())],
        "journey": None if t.journey is None else _journey_to(t.journey),
    }


def _journey_to(j: Any) -> dict[str, Any]:
    """A :class:`~simulator.load.journey.JourneyTally` as plain values (its tallies nested)."""
    return {
        "names": list(j.names),
        "order_step": j.order_step,
        "stream_names": list(j.stream_names),
        "implicit": j.implicit,
        "started": j.started,
        "ends": _arr(j.ends),
        "times": {kind: _hist_to(h) for kind, h in sorted(j.times.items())},
        "steps": [tally_to_message(st) for st in j.steps],
        "streams": [tally_to_message(st) for st in j.streams],
    }


def _journey_from(v: Mapping[str, Any], scale: Scale) -> Any:
    from simulator.load.journey import JourneyTally

    names = tuple(str(x) for x in v["names"])
    streams = tuple(str(x) for x in v["stream_names"])
    j = JourneyTally(names, int(v["order_step"]), streams, bool(v["implicit"]))
    j.started = int(v["started"])
    ends = _unarr(v["ends"], 2).astype(np.int64)
    if ends.shape != j.ends.shape:
        raise ValueError(f"journey ends: shape {ends.shape}, expected {j.ends.shape}")
    j.ends = ends
    j.times = {str(k): _hist_from(h, scale) for k, h in v["times"].items()}
    j.steps = [tally_from_message(x) for x in v["steps"]]
    j.streams = [tally_from_message(x) for x in v["streams"]]
    if len(j.steps) != len(names) or len(j.streams) != len(streams):
        raise ValueError("journey: one tally per step and per stream expected")
    return j


_PER_S = ("intended_per_s", "sent_per_s", "done_per_s", "outcomes_per_s")


def tally_from_message(data: Mapping[str, Any]) -> Tally:
    """The inverse of :func:`tally_to_message`; ValueError (or KeyError) if it is not one."""
    scale = Scale(*(int(x) for x in data["scale"]))
    t = Tally(scale=scale, latency_s=SecondHistograms(scale), service_s=SecondHistograms(scale))
    t.scheduled, t.attempts, t.retries, t.sent, t.last_ns = (int(x) for x in data["counts"])
    n = len(OUTCOME_NAMES)
    for name in ("row_outcomes", "attempt_outcomes"):
        a = _unarr(data[name], 1).astype(np.int64)
        if len(a) != n:
            raise ValueError(f"{name}: {len(a)} outcomes, expected {n}")
        setattr(t, name, a)
    kinds = {"intended", "service", "dispatch_lag", "queue_wait", "order"}
    for kind, o, h in data["hists"]:
        if kind not in kinds or not 0 <= int(o) < n:
            raise ValueError(f"histogram ({kind!r}, {o!r}): unknown kind or outcome")
        t.hists[(str(kind), int(o))] = _hist_from(h, scale)
    for name, v in zip(_PER_S, data["per_s"], strict=True):
        a = _unarr(v, 2 if name == "outcomes_per_s" else 1).astype(np.int64)
        if name == "outcomes_per_s" and a.shape[0] != n:
            raise ValueError(f"outcomes_per_s: {a.shape[0]} rows, expected {n}")
        setattr(t, name, a)
    t.latency_s = _seconds_from(data["latency_s"], scale)
    t.service_s = _seconds_from(data["service_s"], scale)
    conf = [_unarr(v, 1).astype(np.int64) for v in data["confirmed"]]
    if len(conf) != 4 or len({len(a) for a in conf}) != 1:
        raise ValueError("confirmed orders: four arrays of one length expected")
    if len(conf[0]):
        t.c_order, t.c_product, t.c_qty, t.c_done = ([a] for a in conf)
    failed = _unarr(data["failed"], 1).astype(np.int64)
    if len(failed):
        t.failed_orders = [failed]
    t.reasons = {(int(o), int(r)): int(c) for o, r, c in data["reasons"]}
    t.reason_labels = {int(code): str(label) for code, label in data["reason_labels"]}
    if data.get("journey") is not None:
        t.journey = _journey_from(data["journey"], scale)
    return t


def worker_result(
    tally: Tally,
    counts: SliceCounts,
    digest: SliceDigest,
    worker: int,
    plan: RunPlan,
    rows_sent_twice: int = 0,
    slot_bytes: int = 0,
) -> dict[str, Any]:
    """Everything the master needs from one worker (a Locust message): its tally, the digest
    of the rows it took, and what the report's per-worker line and checks count."""
    return {
        "run_id": plan.run_id,
        "worker": worker,
        "slices": plan.slices,
        "digest": digest.to_message(),
        "rows_sent": counts.rows_sent,
        "double_clicks_sent": counts.double_clicks_sent,
        "rows_sent_twice": rows_sent_twice,
        "slot_bytes": slot_bytes,
        "tally": tally_to_message(tally),
    }


# ---------------------------------------------------------------------------------------------
# Master


@dataclass(frozen=True, slots=True)
class Merged:
    """The workers' results as one run: their tallies added up, and the checks."""

    tally: Tally
    section: dict[str, Any]  # the report's ``locust`` section
    unheard: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # ^ watched order ids (the ledger's) of the slices of workers that never reported
    slot_bytes: int = 0  # the largest worker's attempt slots


def merge_workers(
    scans: Sequence[SliceScan], plan: RunPlan, results: Mapping[int, Mapping[str, Any]]
) -> Merged:
    """Merge the workers' tallies (exactly: :meth:`Tally.merge` adds counts).

    ``scans`` are the plan's slices as the schedule has them (:func:`scan_slices`). A worker
    that did not report, sent a tally that cannot be read, or took rows that are not its slice
    counts as missing: its rows count as not sent, so the outcomes still add up to the
    schedule, and its watched order ids are :attr:`Merged.unheard`.
    """
    tally = Tally()
    per_worker: list[dict[str, Any]] = []
    missing: list[int] = []
    problems: list[str] = []
    twice = doubles = slot_bytes = 0
    unheard: list[npt.NDArray[np.int64]] = []
    for k in range(plan.slices):
        scan = scans[k]
        r = results.get(k)
        got: Tally | None = None
        if r is not None:
            try:
                got = tally_from_message(r["tally"])
                digest = SliceDigest.from_message(r["digest"])
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"worker {k}: unreadable results ({exc})")
                got = None
            else:
                if digest != scan.digest or got.scheduled != scan.digest.rows:
                    problems.append(
                        f"worker {k}: its {digest.rows} rows are not slice {k} of "
                        f"{plan.slices} of the schedule ({scan.digest.rows} rows)"
                    )
                    got = None
        if got is None or r is None:
            missing.append(k)
            tally.merge(scan.unsent)
            unheard.extend(scan.watched)
            continue
        twice += int(r.get("rows_sent_twice", 0))
        doubles += int(r.get("double_clicks_sent", 0))
        slot_bytes = max(slot_bytes, int(r.get("slot_bytes", 0)))
        per_worker.append(_worker_counts(k, got, int(r.get("rows_sent", 0))))
        tally.merge(got)
    checks: dict[str, Any] = {
        "all_workers_reported": not missing,
        "slices_match_schedule": not problems,
        "rows_sent_twice": twice,
        # slices are disjoint (each worker's digest is its slice's), so an order id repeats
        # only as a double click or as a row a worker sent twice
        "repeated_ids": doubles + twice,
        "double_clicks_sent": doubles,
        "unintended_repeats": twice,
    }
    checks["ok"] = bool(not missing and not problems and twice == 0)
    section = {
        "run_id": plan.run_id,
        "workers": plan.slices,
        "missing_workers": missing,
        "per_worker": per_worker,
        "checks": checks,
        "problems": problems,
    }
    lost = np.concatenate(unheard) if unheard else np.zeros(0, dtype=np.int64)
    return Merged(tally, section, lost, slot_bytes)


def _worker_counts(k: int, t: Tally, rows_sent: int) -> dict[str, Any]:
    return {
        "worker": k,
        "slice_orders": t.scheduled,
        "sent": rows_sent,
        "attempts": t.sent,
        "outcomes": {name: int(t.row_outcomes[i]) for i, name in enumerate(OUTCOME_NAMES)},
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
    """The run's :class:`Report`: :func:`measure_tally` and :func:`audit_view` of the merged
    tally (as ``flashsale run`` does), plus a ``locust`` section."""
    tally = merged.tally
    duration_s = plan.duration_s or scenario.duration_s
    skus = tuple(p.id for p in scenario.products)
    summary = measure_tally(tally, duration_s, skus)
    view = client_view_of(tally, skus)
    # the orders of a worker that never reported: no client heard their answers
    view.best.update(dict.fromkeys(map(str, merged.unheard.tolist()), NOT_SENT))
    audit_result = audit_view(view, skus, scenario.stocks(), scenario.per_buyer_limits(), server)
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
            recorder_bytes=merged.slot_bytes,
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
