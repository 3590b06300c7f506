"""The oversell audit: units the clients saw confirmed vs the server's counter vs its ledger.

After a run, :meth:`simulator.load.target.Target.server_state` reads the target's
``GET /inventory`` (and ``GET /ledger`` when it has one) into a :class:`ServerState`;
:func:`audit` compares, per SKU, the initial stock, the server's ``sold`` counter, its ledger
units and the units clients saw confirmed (deduplicated by order id), and lists every
disagreement, including sales the server made that no client heard of. It never hides one: a
missing endpoint is reported as unavailable. The comparison itself (:func:`audit_view`) works
from the clients' view aggregated by order id (:class:`ClientView`), so a run merged from
several processes (the Locust master) audits the same way as ``flashsale run``.

With a reservation TTL the bundled storefront's inventory also states each SKU's reservation
lifecycle (:class:`simulator.storefront.backends.base.SkuSnapshot`), and :func:`lifecycle`
audits it. A reservation takes units from ``free`` into ``held`` (and counts them in
``reserved``); a payment moves them from ``held`` to ``paid``; an expiry or a cancel moves them
back from ``held`` to ``free`` (and counts them in ``returned``). Returned units are back in
``free``, so the two exact identities per SKU are::

    initial  = paid + held + free          (stock: every unit is sold, held or on sale)
    reserved = paid + held + returned      (holds: every held unit ended once, or is held)

The issue's "initial = paid + held + free + returned" counts a returned unit twice (it is in
``free`` again); the pair above is what the backends keep. The breakages it names:

- oversell: units sold beyond the initial stock, by the store's counter or its ledger (of
  payments). The clients' confirmations are reservations then (a journey's order step): stock
  that expired is reserved again, so they are compared with the store's ``reserved`` instead,
  and a confirmed reservation missing from the ledger is unpaid, not a lost confirmation;
- undersell: units held by reservations past their expiry by more than the storefront's
  grace (two sweep intervals, ``overdue_units``), plus units that vanished from the stock
  identity (``initial > paid + held + free``: taken and never returned);
- double returns: holds given back more than once (the backend's count of extra returns);
- payments after expiry: holds both paid and returned (a payment racing the expiry);
- excess units: ``paid + held + free > initial`` (stock on the books that was never there:
  a double return, a paid-and-returned hold, or a lost update of the stock counter).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.load.recorder import Recorder
from simulator.load.tally import Tally
from simulator.outcomes import CONFIRMED, ERROR, NOT_SENT, TIMEOUT
from simulator.report.sections import LIFECYCLE_TOTALS

EXAMPLES = 5  # order ids quoted per kind of disagreement


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the storefront's records said about its stock after the run (None where they could
    not say).

    ``inventory`` is ``{"skus": {sku: {"sold", "remaining", …}}, "backend": …}`` whatever the
    source (:mod:`simulator.audit_sources`); ``ledger`` the orders ``[order_id, sku, qty,
    user_id]`` when the source has them; ``errors`` why something could not be read (each
    names the source); ``source`` is where the facts came from (``http``, ``sql``, ``redis``,
    or ``none``: the audit was off).
    """

    inventory: dict[str, Any] | None
    ledger: list[list[Any]] | None
    errors: tuple[str, ...] = ()
    source: str = "http"
    #: the storefront's stock over time (``GET /inventory/history``) when it has one
    history: dict[str, Any] | None = None


def audit_settled(result: dict[str, Any]) -> bool:
    """Whether the audit did what the scenario asked: read the records, or was off (``none``).

    A run is complete only when this holds: a source that could not be read leaves the
    oversell question open, which must not pass for a clean run.
    """
    return bool(result.get("available")) or result.get("source") == "none"


@dataclass(frozen=True, slots=True)
class ClientView:
    """What the clients saw, aggregated by order id: all the audit needs from a run.

    ``best``: order id → the best outcome code any of its attempts got (a confirmation beats any
    failure; an answer beats no answer); ``confirmed``: order id → times it was confirmed;
    ``units``/``orders``: per SKU, the units and order ids confirmed (each order id once).
    Order ids are strings as sent. A live view without per-order detail has only ``units``.
    """

    best: dict[str, int]
    confirmed: Counter[str]
    units: dict[str, int]
    orders: dict[str, int]

    @classmethod
    def of_units(cls, units: dict[str, int]) -> ClientView:
        """Only the confirmed units per SKU (no order ids: the ledger checks are skipped)."""
        return cls({}, Counter(), dict(units), dict.fromkeys(units, 0))


# rank: a confirmation beats any failure; an answer beats no answer
_RANK = {CONFIRMED: 3, TIMEOUT: 1, ERROR: 1, NOT_SENT: 0}


def client_view(rows: npt.NDArray[np.void], rec: Recorder, skus: tuple[str, ...]) -> ClientView:
    """The clients' view of a run from its schedule rows and recorder.

    Units and orders per SKU come from :func:`simulator.results.confirmations` (each order id
    once), the one count the summary and the live progress use too.
    """
    from simulator.results import confirmations

    outcomes = rec.row_outcomes()
    best: dict[str, int] = {}
    confirmed: Counter[str] = Counter()
    for oid, oc in zip(rows["order"].tolist(), outcomes.tolist(), strict=True):
        key = str(oid)
        if oc == CONFIRMED:
            confirmed[key] += 1
        prev = best.get(key)
        if prev is None or _RANK.get(oc, 2) > _RANK.get(prev, 2):
            best[key] = oc
    c = confirmations(rows, rec)
    units = c.units_per_product(len(skus)).tolist()
    orders = c.orders_per_product(len(skus)).tolist()
    return ClientView(
        best,
        confirmed,
        {sku: int(units[i]) for i, sku in enumerate(skus)},
        {sku: int(orders[i]) for i, sku in enumerate(skus)},
    )


def client_view_of(tally: Tally, skus: tuple[str, ...]) -> ClientView:
    """The clients' view of a run from its :class:`~simulator.load.tally.Tally` (bounded state).

    A tally keeps only the confirmed orders and the ids of orders that ended in a timeout or
    error, so ``best`` lists those; an order id the ledger has and the clients never saw
    confirmed nor failed (rejected, or never sent) counts as a phantom sale.
    """
    from simulator.results import confirmed as first_confirmations

    order, _, _, _ = tally.confirmed()
    best: dict[str, int] = dict.fromkeys(map(str, tally.failed().tolist()), TIMEOUT)
    counted: Counter[str] = Counter(map(str, order.tolist()))
    best.update(dict.fromkeys(counted, CONFIRMED))
    c = first_confirmations(tally)
    units = c.units_per_product(len(skus)).tolist()
    orders = c.orders_per_product(len(skus)).tolist()
    return ClientView(
        best,
        counted,
        {sku: int(units[i]) for i, sku in enumerate(skus)},
        {sku: int(orders[i]) for i, sku in enumerate(skus)},
    )


def audit(
    rows: npt.NDArray[np.void],
    rec: Recorder,
    skus: tuple[str, ...],
    stocks: dict[str, int],
    limits: dict[str, int],
    server: ServerState,
) -> dict[str, Any]:
    """Compare clients, counter, ledger and stock; ``ok`` is False on any oversell."""
    return audit_view(client_view(rows, rec, skus), skus, stocks, limits, server)


def audit_view(
    view: ClientView,
    skus: tuple[str, ...],
    stocks: dict[str, int],
    limits: dict[str, int],
    server: ServerState,
) -> dict[str, Any]:
    """:func:`audit` from the clients' aggregated view (e.g. merged from several processes)."""
    confirmed = view.confirmed
    problems: list[str] = list(server.errors)
    out: dict[str, Any] = {"available": server.inventory is not None, "source": server.source}
    if server.inventory is None and server.source != "none":
        out["unavailable_reason"] = "; ".join(server.errors) or "no records were read"
    duplicates = sorted(oid for oid, n in confirmed.items() if n > 1)
    out["duplicate_confirmations"] = {"count": len(duplicates), "examples": duplicates[:EXAMPLES]}
    per_sku: dict[str, dict[str, Any]] = {}
    oversell_total = 0
    inv = server.inventory["skus"] if server.inventory is not None else {}
    cycles: dict[str, dict[str, int]] = {}
    for sku in skus:
        s = inv.get(sku, {}) if isinstance(inv, dict) else {}
        initial = int(s.get("initial", stocks.get(sku, 0)))
        sold = s.get("sold")
        ledger_units = s.get("ledger_units")
        client_units = view.units.get(sku, 0)
        reserving = isinstance(s, dict) and has_lifecycle(s)
        # with a TTL the clients' confirmations are reservations (a journey's order step):
        # stock that expired is reserved again, so only the store's sales measure oversell
        seen = [] if reserving else [client_units]
        seen += [int(x) for x in (sold, ledger_units) if x is not None]
        oversell = max(0, max(seen, default=0) - initial)
        oversell_total += oversell
        per_sku[sku] = {
            "initial": initial,
            "scenario_stock": stocks.get(sku),
            "sold": sold,
            "ledger_units": ledger_units,
            "ledger_orders": s.get("ledger_orders"),
            "remaining": s.get("remaining"),
            "client_units": client_units,
            "client_orders": view.orders.get(sku, 0),
            "oversell_units": oversell,
        }
        if oversell:
            problems.append(f"{sku}: oversold by {oversell} units (stock {initial})")
        if reserving:
            cycles[sku] = lifecycle(sku, initial, s, problems)
            per_sku[sku].update(cycles[sku])
            if client_units > cycles[sku]["reserved"]:
                problems.append(
                    f"{sku}: clients were told of {client_units} units reserved, the store "
                    f"reserved {cycles[sku]['reserved']}"
                )
        if sold is not None and ledger_units is not None and sold != ledger_units:
            problems.append(f"{sku}: sold counter {sold} ≠ ledger units {ledger_units}")
        if server.inventory is not None and sku not in inv:
            problems.append(f"{sku}: missing from the server's inventory")
    out["skus"] = per_sku
    out["oversell_units"] = oversell_total
    broken = 0
    if cycles:
        for key in LIFECYCLE_TOTALS:
            out[key] = sum(c[key] for c in cycles.values())
            broken += out[key]
        holds = server.inventory.get("holds") if server.inventory is not None else None
        out["holds"] = holds if isinstance(holds, dict) else None
    if server.history is not None:
        out["stock_history"] = server.history
    if server.inventory is not None:
        out["backend"] = server.inventory.get("backend")
    if server.ledger is not None:
        ledger = _ledger_checks(server.ledger, view.best, confirmed, limits, problems, bool(cycles))
        out.update(ledger)
    else:
        out["ledger"] = None
    out["problems"] = problems
    # off: no verdict beyond what the clients saw (an oversell they saw is still one)
    off = server.source == "none" and oversell_total == 0
    out["ok"] = None if off else oversell_total == broken == 0 and server.inventory is not None
    return out


#: the lifecycle fields an inventory states per SKU with a reservation TTL
LIFECYCLE_FIELDS = ("paid", "held", "free", "reserved", "returned")


def has_lifecycle(numbers: dict[str, Any]) -> bool:
    """Whether a SKU's inventory numbers carry the reservation lifecycle (a TTL is on)."""
    return all(isinstance(numbers.get(k), int) for k in LIFECYCLE_FIELDS)


def lifecycle(
    sku: str, initial: int, numbers: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    """One SKU's reservation lifecycle checked against the two identities (module docstring).

    Returns the figures the report states (the inventory's own plus ``stock_gap_units`` =
    paid + held + free − initial, ``hold_gap_units`` = paid + held + returned − reserved,
    ``never_returned_units``, ``undersell_units``, ``excess_units``, ``conserved``) and
    appends one problem per breakage, naming it.
    """
    paid, held, free, reserved, returned = (int(numbers[k]) for k in LIFECYCLE_FIELDS)
    doubles = int(numbers.get("double_returns") or 0)
    late_paid = int(numbers.get("paid_after_expiry") or 0)
    overdue = int(numbers.get("overdue_units") or 0)
    stock_gap = paid + held + free - initial
    hold_gap = paid + held + returned - reserved
    never_returned = max(0, -stock_gap)
    excess = max(0, stock_gap)
    undersell = overdue + never_returned
    if overdue:
        late = numbers.get("overdue_max_s")
        by = f", the oldest {late:g} s past its expiry" if isinstance(late, int | float) else ""
        holds = numbers.get("overdue_holds")
        what = f"{holds} holds" if isinstance(holds, int) else "holds"
        problems.append(
            f"{sku}: undersold: {overdue} units still held by {what} that should have expired{by}"
        )
    if never_returned:
        problems.append(
            f"{sku}: undersold: {never_returned} units never returned "
            f"(paid {paid} + held {held} + free {free} < stock {initial})"
        )
    if doubles:
        problems.append(f"{sku}: {doubles} double returns (a hold's stock given back twice)")
    if late_paid:
        problems.append(f"{sku}: {late_paid} payments after expiry (holds both paid and returned)")
    if hold_gap < 0:
        problems.append(
            f"{sku}: {-hold_gap} reserved units neither paid, held nor returned "
            f"(reserved {reserved} > paid {paid} + held {held} + returned {returned})"
        )
    if excess:
        problems.append(
            f"{sku}: {excess} units beyond the stock: paid + held + free = {initial + excess}"
            f" > {initial} (paid {paid}, held {held}, free {free})"
        )
    return {
        "paid": paid,
        "held": held,
        "free": free,
        "reserved": reserved,
        "returned": returned,
        "overdue_units": overdue,
        "overdue_holds": numbers.get("overdue_holds"),
        "overdue_max_s": numbers.get("overdue_max_s"),
        "stock_gap_units": stock_gap,
        "hold_gap_units": hold_gap,
        "never_returned_units": never_returned,
        "undersell_units": undersell,
        "double_returns": doubles,
        "paid_after_expiry": late_paid,
        "excess_units": excess,
        "conserved": stock_gap == 0 and hold_gap == 0,
    }


def _ledger_checks(
    ledger: list[list[Any]],
    best: dict[str, int],
    confirmed: Counter[str],
    limits: dict[str, int],
    problems: list[str],
    reserving: bool = False,
) -> dict[str, Any]:
    """Lost confirmations, phantom sales, ledger duplicates and per-buyer limit violations.

    ``reserving``: the store takes reservations (a TTL) and its ledger holds the payments, so a
    confirmed reservation missing from it is unpaid, not lost: lost confirmations are not
    counted then (a payment the store does not have shows in the lifecycle's identities).
    """
    in_ledger: Counter[str] = Counter()
    per_buyer: Counter[tuple[str, str]] = Counter()
    for entry in ledger:
        oid, sku, qty, user = (str(entry[0]), str(entry[1]), int(entry[2]), str(entry[3]))
        in_ledger[oid] += 1
        per_buyer[(user, sku)] += qty
    lost = [] if reserving else sorted(oid for oid in confirmed if oid not in in_ledger)
    unanswered, phantom = [], []
    for oid in in_ledger:
        if oid in confirmed:
            continue
        # the server sold it but no client saw a confirmation: unanswered if the client never
        # got any answer (timeout, error, not sent), a phantom if it got a different one or
        # never sent that order id at all
        code = best.get(oid)
        if code in (TIMEOUT, ERROR, NOT_SENT):
            unanswered.append(oid)
        else:
            phantom.append(oid)
    dupes = sorted(oid for oid, n in in_ledger.items() if n > 1)
    over = sorted(
        f"{user}/{sku}"
        for (user, sku), units in per_buyer.items()
        if limits.get(sku, 0) > 0 and units > limits[sku]
    )
    if lost:
        problems.append(f"{len(lost)} confirmations the ledger does not have (lost)")
    if phantom:
        problems.append(f"{len(phantom)} ledger sales no client saw confirmed (phantom)")
    if unanswered:  # e.g. a timeout, or a Locust worker lost with its answers
        problems.append(
            f"{len(unanswered)} ledger sales whose orders no client heard answered (unacknowledged)"
        )
    if dupes:
        problems.append(f"{len(dupes)} order ids in the ledger more than once")
    if over:
        problems.append(f"{len(over)} buyers over a per-buyer limit")
    return {
        "ledger": {"orders": len(ledger), "order_ids": len(in_ledger)},
        "lost_confirmations": {"count": len(lost), "examples": lost[:EXAMPLES]},
        "phantom_sales": {"count": len(phantom), "examples": sorted(phantom)[:EXAMPLES]},
        "unacknowledged_sales": {
            "count": len(unanswered),
            "examples": sorted(unanswered)[:EXAMPLES],
        },
        "ledger_duplicates": {"count": len(dupes), "examples": dupes[:EXAMPLES]},
        "limit_violations": {"count": len(over), "examples": over[:EXAMPLES]},
    }
