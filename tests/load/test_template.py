"""Request templates: encoded once, one order's values spliced in; valid HTTP/1.1 everywhere
(path, query, headers, body), with product variables and the buyer's data row."""

from __future__ import annotations

import httptools
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.load.transport import parse_endpoint
from simulator.load.transport.aio import split_request
from simulator.load.transport.template import RequestTemplate
from simulator.scenario import Product, Target
from simulator.scenario.buyerdata import BuyerData


class _Req:
    def __init__(self) -> None:
        self.body = b""
        self.headers: dict[bytes, bytes] = {}
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def parse(data: bytes) -> _Req:
    seen = _Req()
    parser = httptools.HttpRequestParser(seen)
    parser.feed_data(data)
    assert seen.done
    assert int(seen.headers[b"content-length"]) == len(seen.body)
    return seen


def body_of(target: Target, skus: tuple[str, ...], *order: int) -> bytes:
    return RequestTemplate(target, skus, "h", target.orders_path).body_of(*order)


def test_default_body_is_the_storefront_json() -> None:
    body = body_of(Target(), ("durian", "d24"), 1, 42, 2, 7)
    assert orjson.loads(body) == {"order_id": "42", "sku": "d24", "qty": 2, "user_id": "7"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("sku={sku}&n={qty}&id={order_id}&u={user_id}", b"sku=x%y&n=3&id=9&u=5"),
        ("{user_id}:{order_id}:{order_id}", b"5:9:9"),
        ("100% {sku}", b"100% x%y"),
        ("static", b"static"),
    ],
)
def test_other_templates_and_percent_signs(template: str, expected: bytes) -> None:
    target = Target(body=template, content_type="text/plain")
    assert body_of(target, ("x%y",), 0, 9, 3, 5) == expected


def test_request_is_parseable_http_with_right_length() -> None:
    ep = parse_endpoint("http://127.0.0.1:8080/shop")
    req = RequestTemplate(Target(), ("a",), ep.host_header, ep.base_path + "/orders")
    assert req.fast  # the default shape keeps the two-format path
    seen = parse(req.render(0, 123456789, 1, 99))
    assert seen.url == b"/shop/orders"
    assert seen.headers[b"host"] == b"127.0.0.1:8080"
    assert orjson.loads(seen.body)["order_id"] == "123456789"


SHOP = Target(
    orders_path="/api/v1/seckill/{goods_id}/order?uid={user_id}&n={name}",
    headers=(("Authorization", "Bearer {token}"), ("X-Order", "{order_id}")),
    body='{"qty":{qty},"name":"{name}","sku":"{sku}"}',
)
PRODUCTS = (Product("A1", "", 5, 0.0, vars=(("goods_id", "7"),)),
            Product("B 2", "", 5, 0.0, vars=(("goods_id", "8"),)))  # fmt: skip
DATA = BuyerData("b.csv", ("token", "name"), (("t0", 'a "b"'), ("t1", "c&d/é"), ("t2", "x")))


def test_path_query_headers_and_body_are_templated_and_encoded_for_where_they_go() -> None:
    req = RequestTemplate(SHOP, PRODUCTS, "h:1", "/base" + SHOP.orders_path, DATA)
    assert not req.fast
    seen = parse(req.render(1, 42, 2, 1))
    assert seen.url == b"/base/api/v1/seckill/8/order?uid=1&n=c%26d%2F%C3%A9"
    assert seen.headers[b"authorization"] == b"Bearer t1"
    assert seen.headers[b"x-order"] == b"42"
    assert orjson.loads(seen.body) == {"qty": 2, "name": "c&d/é", "sku": "B 2"}
    seen = parse(req.render(0, 43, 1, 0))  # JSON escapes in the body, %-encoding in the query
    assert orjson.loads(seen.body)["name"] == 'a "b"'
    assert seen.url.endswith(b"n=a%20%22b%22")


def test_form_bodies_are_form_encoded() -> None:
    target = Target(body="name={name}&q={qty}", content_type="application/x-www-form-urlencoded")
    req = RequestTemplate(target, ("s",), "h", "/o", DATA)
    assert req.body_of(0, 1, 3, 1) == b"name=c%26d%2F%C3%A9&q=3"


def test_the_aiohttp_transport_sends_what_the_lean_one_renders() -> None:
    req = RequestTemplate(SHOP, PRODUCTS, "h:1", SHOP.orders_path, DATA)
    method, target, headers, body = split_request(req.render(0, 5, 1, 2))
    assert (method, target) == ("POST", "/api/v1/seckill/7/order?uid=2&n=x")
    assert headers == {"Authorization": "Bearer t2", "X-Order": "5",
                       "Content-Type": "application/json"}  # fmt: skip
    assert orjson.loads(body)["name"] == "x"


def test_a_variable_without_a_value_is_refused_when_compiled() -> None:
    with pytest.raises(ValueError, match=r"no value for \{goods_id\}"):
        RequestTemplate(SHOP, ("A1",), "h", SHOP.orders_path, DATA)


rows_st = st.lists(st.text(alphabet="abcXYZ019-_", min_size=1, max_size=8), min_size=1, max_size=20)


@given(
    tokens=rows_st, buyer=st.integers(0, 10_000), wrap=st.booleans(), order=st.integers(0, 10**12)
)
def test_buyer_k_takes_row_k_or_k_mod_n(tokens: list[str], buyer: int, wrap: bool, order: int):
    data = BuyerData("d", ("token",), tuple((t,) for t in tokens), wrap=wrap)
    target = Target(headers=(("Authorization", "Bearer {token}"),), body='{"u":{user_id}}')
    req = RequestTemplate(target, ("s",), "h", "/o", data)
    n = len(tokens)
    if not wrap and buyer >= n:
        assert data.row_of(buyer) == -1
        return
    row = buyer % n if wrap else buyer
    assert data.row_of(buyer) == row
    seen = parse(req.render(0, order, 1, buyer))
    assert seen.headers[b"authorization"] == f"Bearer {tokens[row]}".encode()
    assert orjson.loads(seen.body) == {"u": buyer}


@pytest.mark.parametrize(
    "url", ["ftp://x", "http://", "http://h:notaport", "localhost:80", "http://h/?q=1"]
)
def test_bad_target_urls_are_usage_errors(url: str) -> None:
    from simulator.errors import UsageError

    with pytest.raises(UsageError):
        parse_endpoint(url)
