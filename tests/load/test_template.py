"""Request templates: encoded once, one order's values spliced in; valid HTTP/1.1."""

from __future__ import annotations

import httptools
import orjson
import pytest

from simulator.load.transport import parse_endpoint
from simulator.load.transport.template import BodyTemplate, RequestTemplate
from simulator.scenario import Target


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


def test_default_body_is_the_storefront_json() -> None:
    body = BodyTemplate(Target(), ("durian", "d24")).render(1, 42, 2, 7)
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
    assert BodyTemplate(Target(body=template), ("x%y",)).render(0, 9, 3, 5) == expected


def test_request_is_parseable_http_with_right_length() -> None:
    ep = parse_endpoint("http://127.0.0.1:8080/shop")
    req = RequestTemplate(Target(), ("a",), ep.host_header, ep.base_path + "/orders")
    data = req.render(0, 123456789, 1, 99)
    seen = _Req()
    parser = httptools.HttpRequestParser(seen)
    parser.feed_data(data)
    assert seen.done and parser.get_method() == b"POST"
    assert seen.url == b"/shop/orders"
    assert seen.headers[b"host"] == b"127.0.0.1:8080"
    assert int(seen.headers[b"content-length"]) == len(seen.body)
    assert orjson.loads(seen.body)["order_id"] == "123456789"


@pytest.mark.parametrize(
    "url", ["ftp://x", "http://", "http://h:notaport", "localhost:80", "http://h/?q=1"]
)
def test_bad_target_urls_are_usage_errors(url: str) -> None:
    from simulator.errors import UsageError

    with pytest.raises(UsageError):
        parse_endpoint(url)
