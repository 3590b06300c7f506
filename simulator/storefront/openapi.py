"""The OpenAPI 3 document of the storefront contract, served at ``GET /openapi.json``.

A test checks it against the app's routes and answers, so it stays true; keep the two in step.
"""

from __future__ import annotations

from typing import Any

from simulator.storefront.validate import MAX_ID_LENGTH, MAX_QTY


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
_UNITS = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, Any] = {
    "Order": {
        "type": "object",
        "required": ["order_id", "sku", "qty", "user_id"],
        "additionalProperties": False,
        "properties": {
            "order_id": {**_ID, "description": "idempotency key: a repeat gets the first answer"},
            "sku": {"type": "string", "description": "a SKU on sale (see GET /inventory)"},
            "qty": {"type": "integer", "minimum": 1, "maximum": MAX_QTY},
            "user_id": {**_ID, "description": "the buyer, for per-buyer limits"},
        },
    },
    "Confirmation": {
        "type": "object",
        "required": ["order_id", "sku", "qty", "remaining"],
        "properties": {
            "order_id": {"type": "string"},
            "sku": {"type": "string"},
            "qty": {"type": "integer"},
            "remaining": {"type": "integer", "description": "stock left after this order"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong, for a human"},
            "field": {
                "type": "string",
                "description": "the offending field, or body, content-type, method, path, store",
            },
            "order_id": {"type": "string"},
            "sku": {"type": "string"},
            "qty": {"type": "integer"},
            "remaining": {"type": "integer"},
        },
    },
    "SkuNumbers": {
        "type": "object",
        "required": ["initial", "sold", "ledger_units", "ledger_orders", "remaining"],
        "properties": {
            "initial": _UNITS,
            "sold": {"type": "integer", "description": "the backend's sold counter"},
            "ledger_units": {"type": "integer", "description": "units summed from the ledger"},
            "ledger_orders": {"type": "integer", "description": "confirmed orders in the ledger"},
            "remaining": {"type": "integer", "description": "stock left (racy stores: < 0)"},
            "paid": {"type": "integer", "description": "with a TTL: units paid"},
            "held": {"type": "integer", "description": "with a TTL: units in live holds"},
            "free": {"type": "integer", "description": "with a TTL: units free (= remaining)"},
            "reserved": {"type": "integer", "description": "with a TTL: units ever held"},
            "returned": {"type": "integer", "description": "with a TTL: units given back"},
            "double_returns": {"type": "integer", "description": "holds returned again"},
            "paid_after_expiry": {"type": "integer", "description": "holds paid and returned"},
            "overdue_units": {
                "type": "integer",
                "description": "with a TTL: units held past their expiry by over holds.grace_s",
            },
            "overdue_holds": {"type": "integer", "description": "with a TTL: those holds"},
            "overdue_max_s": {
                "type": "number",
                "description": "with a TTL: seconds the oldest overdue hold is past its expiry",
            },
        },
    },
    "Holds": {
        "type": "object",
        "description": "with a TTL: the clock the overdue holds were judged by",
        "required": ["now", "reservation_ttl_s", "sweep_interval_s", "grace_s"],
        "properties": {
            "now": {"type": "number", "description": "Unix seconds"},
            "reservation_ttl_s": {"type": "number"},
            "sweep_interval_s": {"type": "number"},
            "grace_s": {"type": "number", "description": "two sweep intervals"},
        },
    },
    "StockSeries": {
        "type": "object",
        "required": ["free", "held", "sold"],
        "properties": {
            k: {"type": "array", "items": {"type": "integer"}, "description": d}
            for k, d in (
                ("free", "units on sale, per sample"),
                ("held", "units in live reservations, per sample"),
                ("sold", "units paid (or confirmed without a TTL), per sample"),
            )
        },
    },
    "StockHistory": {
        "type": "object",
        "required": ["started_at", "interval_s", "capacity", "dropped", "skus", "t_s", "series"],
        "properties": {
            "started_at": {"type": "number", "description": "Unix seconds of the start or reset"},
            "interval_s": {"type": "number", "description": "the least time between samples"},
            "capacity": {"type": "integer", "description": "samples kept at most (a ring)"},
            "dropped": {"type": "integer", "description": "oldest samples no longer kept"},
            "initial_total": {"type": "integer"},
            "skus": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the SKUs kept one by one (the largest stocks); all are in total",
            },
            "t_s": {
                "type": "array",
                "items": {"type": "number"},
                "description": "when each sample was taken, seconds after started_at",
            },
            "series": {
                "type": "object",
                "description": "'total' and each SKU of skus",
                "additionalProperties": _ref("StockSeries"),
            },
        },
    },
    "Held": {
        "type": "object",
        "required": [
            "order_id",
            "reservation_id",
            "status",
            "sku",
            "qty",
            "remaining",
            "expires_at",
            "ttl_s",
        ],
        "properties": {
            "order_id": {"type": "string"},
            "reservation_id": {"type": "string", "description": "the order id"},
            "status": {"const": "held"},
            "sku": {"type": "string"},
            "qty": {"type": "integer"},
            "remaining": {"type": "integer", "description": "stock left after this hold"},
            "expires_at": {"type": "number", "description": "end of the hold, Unix seconds"},
            "ttl_s": {"type": "number"},
        },
    },
    "OrderStatus": {
        "type": "object",
        "required": ["order_id", "reservation_id", "status", "sku", "qty"],
        "properties": {
            "order_id": {"type": "string"},
            "reservation_id": {"type": "string"},
            "status": {
                "enum": ["held", "paid", "expired", "cancelled", "confirmed", "refused"],
                "description": "confirmed: confirm-on-order mode; refused: sold out or over limit",
            },
            "sku": {"type": "string"},
            "qty": {"type": "integer"},
            "user_id": {"type": ["string", "null"]},
            "expires_at": {"type": ["number", "null"], "description": "Unix seconds"},
        },
    },
    "Login": {
        "type": "object",
        "required": ["user_id"],
        "additionalProperties": False,
        "properties": {"user_id": _ID},
    },
    "Token": {
        "type": "object",
        "required": ["token", "user_id"],
        "properties": {
            "token": {"type": "string", "description": "send as Authorization: Bearer TOKEN"},
            "user_id": {"type": "string"},
        },
    },
    "Product": {
        "type": "object",
        "required": ["sku", "price", "stock_left", "per_buyer_limit", "sale_start", "now"],
        "properties": {
            "sku": {"type": "string"},
            "price": {"type": "number"},
            "stock_left": _UNITS,
            "per_buyer_limit": {"type": "integer", "description": "0 = none"},
            "sale_start": {"type": "number", "description": "Unix seconds"},
            "now": {"type": "number", "description": "the server's clock, Unix seconds"},
        },
    },
    "Time": {
        "type": "object",
        "required": ["now", "sale_start", "open"],
        "properties": {
            "now": {"type": "number", "description": "Unix seconds"},
            "sale_start": {"type": "number", "description": "Unix seconds"},
            "open": {"type": "boolean"},
        },
    },
    "Inventory": {
        "type": "object",
        "required": ["backend", "skus"],
        "properties": {
            "backend": {"type": "string"},
            "skus": {"type": "object", "additionalProperties": _ref("SkuNumbers")},
            "holds": _ref("Holds"),
        },
    },
    "Ledger": {
        "type": "object",
        "required": ["orders"],
        "properties": {
            "orders": {
                "type": "array",
                "description": "every confirmed entry: [order_id, sku, qty, user_id]",
                "items": {
                    "type": "array",
                    "prefixItems": [
                        {"type": "string"},
                        {"type": "string"},
                        {"type": "integer"},
                        {"type": "string"},
                    ],
                    "minItems": 4,
                    "maxItems": 4,
                },
            }
        },
    },
    "Reset": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "stock": {
                "type": "object",
                "description": "SKU → units; SKUs not named get their configured stock back",
                "additionalProperties": _UNITS,
            }
        },
    },
    "ResetDone": {
        "type": "object",
        "required": ["ok", "stock"],
        "properties": {
            "ok": {"type": "boolean"},
            "stock": {"type": "object", "additionalProperties": _UNITS},
        },
    },
    "Health": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean"}},
    },
}

_BAD_METHOD = _error("method not allowed on this path (Allow header lists the right ones)")
_RETRY = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_UNAUTHORIZED = _error("a bearer token is required (require_token) and missing or unknown")
_ORDER_ID = [
    {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
]


def _retry(description: str) -> dict[str, Any]:
    return {**_error(description), "headers": _RETRY}


def _order_end(verb: str, summary: str, operation: str, gone: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "parameters": _ORDER_ID,
            "responses": {
                "200": _json("OrderStatus", f"{verb}: the order now"),
                "401": _UNAUTHORIZED,
                "403": _error("the order belongs to another buyer than the token's"),
                "404": _error("no such order"),
                "409": _error(f"the order cannot be {verb} (already paid, cancelled or refused)"),
                "410": _error(gone),
                "500": _error("the stock store failed"),
                "405": _BAD_METHOD,
            },
        }
    }


PATHS: dict[str, Any] = {
    "/orders": {
        "post": {
            "summary": "Place an order: take qty units of sku for user_id",
            "operationId": "placeOrder",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Order")}},
            },
            "responses": {
                "201": {
                    "description": "confirmed (confirm-on-order) or held until expires_at (TTL)",
                    "content": {
                        "application/json": {
                            "schema": {"anyOf": [_ref("Confirmation"), _ref("Held")]}
                        }
                    },
                },
                "400": _error(
                    "malformed HTTP, wrong content type, malformed JSON, not a JSON object, or a "
                    "key given twice"
                ),
                "408": _error("the body did not arrive within read_timeout_s; connection closed"),
                "409": _error("sold out: fewer units left than qty; nothing taken"),
                "413": _error("body larger than the server's client_max_size"),
                "422": _error(
                    "a wrong field: missing, extra, wrong type, unknown SKU, qty ≤ 0, or qty "
                    "over the per-buyer limit (alone or with the buyer's earlier purchases)"
                ),
                "401": _UNAUTHORIZED,
                "403": _retry("the sale has not started, or the token is another buyer's"),
                "429": _retry("throttled: max_concurrency in flight, or the admission rate"),
                "500": _error("the stock store failed"),
                "503": _retry("in the waiting room (max_active buyers shop at once)"),
                "405": _BAD_METHOD,
            },
        }
    },
    "/orders/{order_id}": {
        "get": {
            "summary": "Poll an order: held, paid, expired or cancelled",
            "operationId": "getOrder",
            "parameters": _ORDER_ID,
            "responses": {
                "200": _json("OrderStatus", "the order now"),
                "401": _UNAUTHORIZED,
                "403": _error("the order belongs to another buyer than the token's"),
                "404": _error("no such order"),
                "500": _error("the stock store failed"),
                "405": _BAD_METHOD,
            },
        }
    },
    "/orders/{order_id}/pay": _order_end(
        "paid", "Pay a held reservation", "payOrder", "the reservation expired; stock returned"
    ),
    "/orders/{order_id}/cancel": _order_end(
        "cancelled", "Cancel a held reservation", "cancelOrder", "the reservation expired already"
    ),
    "/login": {
        "post": {
            "summary": "Log a buyer in: one token per buyer",
            "operationId": "login",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Login")}},
            },
            "responses": {
                "200": _json("Token", "the buyer's token"),
                "400": _error("wrong content type, malformed JSON or not an object"),
                "408": _error("the body did not arrive within read_timeout_s; connection closed"),
                "413": _error("body larger than the server's client_max_size"),
                "422": _error("a wrong field"),
                "405": _BAD_METHOD,
            },
        }
    },
    "/products/{sku}": {
        "get": {
            "summary": "The product page: stock left, price, sale start",
            "operationId": "getProduct",
            "parameters": [
                {"name": "sku", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json("Product", "the product"),
                "404": _error("no such product"),
                "500": _error("the stock store failed"),
                "405": _BAD_METHOD,
            },
        }
    },
    "/time": {
        "get": {
            "summary": "The server's clock and the sale's start, for a countdown",
            "operationId": "getTime",
            "responses": {"200": _json("Time", "server time"), "405": _BAD_METHOD},
        }
    },
    "/inventory": {
        "get": {
            "summary": "Per-SKU initial, sold, ledger and remaining units",
            "operationId": "getInventory",
            "responses": {"200": _json("Inventory", "inventory"), "405": _BAD_METHOD},
        }
    },
    "/inventory/history": {
        "get": {
            "summary": "Free, held and sold units about once a second (a bounded ring)",
            "operationId": "getInventoryHistory",
            "responses": {"200": _json("StockHistory", "stock over time"), "405": _BAD_METHOD},
        }
    },
    "/ledger": {
        "get": {
            "summary": "Every confirmed ledger entry",
            "operationId": "getLedger",
            "responses": {"200": _json("Ledger", "the ledger"), "405": _BAD_METHOD},
        }
    },
    "/reset": {
        "post": {
            "summary": "Restore the stock; clear ledger, counters and idempotency records",
            "operationId": "reset",
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("Reset")}},
            },
            "responses": {
                "200": _json("ResetDone", "reset done; the stock now on sale"),
                "400": _error("malformed HTTP, wrong content type, malformed JSON or a key twice"),
                "408": _error("the body did not arrive within read_timeout_s; connection closed"),
                "413": _error("body larger than the server's client_max_size"),
                "422": _error("a wrong field"),
                "405": _BAD_METHOD,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "operationId": "health",
            "responses": {"200": _json("Health", "alive"), "405": _BAD_METHOD},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "405": _BAD_METHOD,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {
                "200": {
                    "description": "OpenAPI 3 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "405": _BAD_METHOD,
            },
        }
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (3.1 for JSON Schema's ``prefixItems``)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flashsale mock storefront",
            "version": version,
            "description": (
                "A flash-sale inventory service with correct and deliberately racy backends. "
                "Unknown paths answer 404 and wrong methods 405, both with an Error body."
            ),
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
