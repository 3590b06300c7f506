"""The "Flash sale" page and tab in Locust's web UI.

Locust's web UI is a Flask app (``environment.web_ui.app``); this adds

* ``/flashsale``: a page (plain HTML and JS, no CDN) with the demand curve against the
  scheduled and achieved rates, per-product stock and the oversell audit, polling
* ``/flashsale/data``: the JSON it polls (the node's
  :meth:`~simulator.locust.node.Node.live_view`), once a second;
* a "Flash sale" tab in Locust's own UI: the per-SKU stock and audit as a table (Locust's
  extended-tab mechanism: the rows ride on its ``/stats/requests`` answer).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import orjson
from flask import Response, request

#: the tab's key in Locust's UI (``/?tab=flashsale``)
TAB = "flashsale"
_COLUMNS = (
    ("sku", "SKU"),
    ("initial", "Initial stock"),
    ("sold", "Sold (server)"),
    ("ledger", "Ledger units"),
    ("confirmed", "Confirmed to clients"),
    ("remaining", "Remaining"),
    ("oversell", "Oversell"),
)


def tab_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The tab's table: one row per SKU, then the totals and where the live chart is."""
    audit = view["audit"]
    rows = [
        {
            "sku": sku,
            "initial": s["initial"],
            "sold": s["sold"],
            "ledger": s["ledger_units"],
            "confirmed": s["client_units"],
            "remaining": s["remaining"],
            "oversell": s["oversell_units"],
        }
        for sku, s in audit["skus"].items()
    ]
    verdict = "ok" if audit["ok"] else "; ".join(audit["problems"]) or "storefront unreachable"
    rows.append(
        {
            "sku": f"audit: {verdict}",
            "initial": "",
            "sold": "",
            "ledger": "",
            "confirmed": f"{view['counters']['sends']} sent",
            "remaining": "chart: /flashsale",
            "oversell": audit["oversell_units"],
        }
    )
    return rows


def install(environment: Any, node: Any) -> None:
    """Add the page, its data endpoint and the tab to ``environment.web_ui``."""
    web_ui = environment.web_ui
    app = web_ui.app
    page = files("simulator.locust").joinpath("static/flashsale.html").read_bytes()
    guard = web_ui.auth_required_if_enabled

    def flashsale_page() -> Response:
        return Response(page, mimetype="text/html")

    def flashsale_data() -> Response:
        body = orjson.dumps(node.live_view(), option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})

    app.add_url_rule("/flashsale", "flashsale_page", guard(flashsale_page))
    app.add_url_rule("/flashsale/data", "flashsale_data", guard(flashsale_data))

    web_ui.template_args["extendedTabs"] = [{"title": "Flash sale", "key": TAB}]
    web_ui.template_args["extendedTables"] = [
        {"key": TAB, "structure": [{"key": k, "title": t} for k, t in _COLUMNS]}
    ]

    def add_tab_rows(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if not isinstance(data, dict):
            return response
        data["extended_stats"] = [{"key": TAB, "data": tab_rows(node.live_view())}]
        response.set_data(orjson.dumps(data))
        return response

    app.after_request(add_tab_rows)
