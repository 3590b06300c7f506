"""The OpenAPI document stays true: routes match, answers match their documented schemas."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp import hdrs

from simulator import __version__
from simulator.storefront.app import make_app
from simulator.storefront.config import StorefrontSettings
from simulator.storefront.openapi import openapi_document

DOC = openapi_document(__version__)

#: what each route can answer (besides 405), so that a new status must be documented
ANSWERS = {
    ("post", "/orders"): {
        "201",
        "400",
        "401",
        "403",
        "408",
        "409",
        "413",
        "422",
        "429",
        "500",
        "503",
    },
    ("get", "/orders/{order_id}"): {"200", "401", "403", "404", "500"},
    ("post", "/orders/{order_id}/pay"): {"200", "401", "403", "404", "409", "410", "500"},
    ("post", "/orders/{order_id}/cancel"): {"200", "401", "403", "404", "409", "410", "500"},
    ("post", "/login"): {"200", "400", "408", "413", "422"},
    ("get", "/products/{sku}"): {"200", "404", "500"},
    ("get", "/time"): {"200"},
    ("get", "/inventory"): {"200"},
    ("get", "/inventory/history"): {"200"},
    ("get", "/ledger"): {"200"},
    ("post", "/reset"): {"200", "400", "408", "413", "422"},
    ("get", "/healthz"): {"200"},
    ("get", "/metrics"): {"200"},
    ("get", "/openapi.json"): {"200"},
}


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    validate(DOC, cls=OpenAPIV31SpecValidator)  # raises on any violation


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, ops in DOC["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = make_app(StorefrontSettings(stocks={"a": 1}))
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != hdrs.METH_ANY and route.resource is not None
    }
    assert routes == _documented() == set(ANSWERS)
    fallbacks = {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == hdrs.METH_ANY and route.resource is not None
    }
    assert fallbacks == set(DOC["paths"]) | {"/{tail}"}


def test_documented_response_codes_cover_every_answer() -> None:
    for (method, path), codes in ANSWERS.items():
        documented = set(DOC["paths"][path][method]["responses"])
        assert documented == codes | {"405"}, (method, path)


def test_every_reference_resolves_and_the_document_is_served() -> None:
    text = orjson.dumps(DOC).decode()
    for name in DOC["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in text or name == "Order"
    jsonschema.Draft202012Validator.check_schema({**DOC["components"]["schemas"]["Order"]})
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in DOC["components"]["schemas"], ref


def _validate(method: str, path: str, status: int, body: Any) -> None:
    ops = DOC["paths"][path]
    op = ops.get(method) or next(iter(ops.values()))  # a wrong method: that path's 405
    response = op["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(
        body,
        {**schema, "components": DOC["components"]},
        cls=jsonschema.Draft202012Validator,
    )


async def test_answers_match_their_documented_schemas(start: Any, http: Any) -> None:
    sf = await start("memory", {"durian": 1, "walet": 5}, {"walet": 1}, client_max_size=512)
    order = DOC["components"]["schemas"]["Order"]
    good = {"order_id": "o1", "sku": "durian", "qty": 1, "user_id": "u1"}
    jsonschema.validate(good, order)
    calls: list[tuple[str, str, Any, int]] = [
        ("post", "/orders", good, 201),
        ("post", "/orders", good, 201),  # replay
        ("post", "/orders", {**good, "order_id": "o2"}, 409),
        ("post", "/orders", {**good, "qty": 0}, 422),
        ("post", "/orders", {"order_id": "w1", "sku": "walet", "qty": 1, "user_id": "u"}, 201),
        ("post", "/orders", {"order_id": "w2", "sku": "walet", "qty": 1, "user_id": "u"}, 422),
        ("post", "/orders", b"{", 400),
        ("post", "/orders", {**good, "user_id": "x" * 600}, 413),
        ("get", "/inventory", None, 200),
        ("get", "/ledger", None, 200),
        ("get", "/inventory/history", None, 200),
        ("get", "/healthz", None, 200),
        ("get", "/openapi.json", None, 200),
        ("post", "/reset", {"stock": {"durian": 3}}, 200),
        ("post", "/reset", {"stock": {"durian": -3}}, 422),
        ("get", "/orders", None, 405),
    ]
    for method, path, body, status in calls:
        data = body if isinstance(body, bytes) else orjson.dumps(body) if body else None
        headers = {"Content-Type": "application/json"} if data else {}
        async with http.session.request(method, sf.url + path, data=data, headers=headers) as resp:
            assert resp.status == status, (method, path, body, await resp.text())
            _validate(method, path, status, await resp.json())
    # the 429 answer
    shed = await start("memory", {"durian": 9}, max_concurrency=1, service_time_median_ms=50.0)
    answers = await asyncio.gather(*(http.order(shed.url, f"o{i}", "durian") for i in range(6)))
    throttled = [body for status, body in answers if status == 429]
    assert throttled
    for body in throttled:
        _validate("post", "/orders", 429, body)
    assert (await http.get(sf.url + "/openapi.json")) == DOC


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
def test_every_operation_has_an_id_and_a_summary(path: str) -> None:
    for op in DOC["paths"][path].values():
        assert op["operationId"] and op["summary"]
