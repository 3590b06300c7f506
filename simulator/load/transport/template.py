"""Request bodies and HTTP/1.1 requests built from a scenario's template, encoded once.

Everything constant is encoded when the run starts: for every product one bytes format with
the SKU already in place, so an order costs one ``bytes % tuple`` for the body (its order id,
quantity and buyer) and, for the lean transport, one more for the request line and headers.
"""

from __future__ import annotations

from simulator.scenario import Target

#: the order of non-SKU fields the fast path handles without a generic tuple build
_DEFAULT_FIELDS = ("order_id", "qty", "user_id")


def _escape(text: str) -> bytes:
    """A literal piece of a template as bytes, safe inside a %-format."""
    return text.encode("utf-8").replace(b"%", b"%%")


class BodyTemplate:
    """Renders the body of one order; ``render(product, order, qty, buyer) -> bytes``."""

    __slots__ = ("fast", "fields", "formats")

    def __init__(self, target: Target, skus: tuple[str, ...]) -> None:
        literals, fields = target.body_parts()
        self.fields = tuple(f for f in fields if f != "sku")
        self.fast = self.fields == _DEFAULT_FIELDS
        formats = []
        for sku in skus:
            out = [_escape(literals[0])]
            for name, literal in zip(fields, literals[1:], strict=True):
                out.append(_escape(sku) if name == "sku" else b"%d")
                out.append(_escape(literal))
            formats.append(b"".join(out))
        self.formats = tuple(formats)

    def render(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """The body bytes of one order."""
        if self.fast:
            return self.formats[product] % (order, qty, buyer)
        values = {"order_id": order, "qty": qty, "user_id": buyer}
        return self.formats[product] % tuple(values[f] for f in self.fields)


class RequestTemplate:
    """Whole HTTP/1.1 requests (line, headers, body) for the lean transport."""

    __slots__ = ("body", "head")

    def __init__(self, target: Target, skus: tuple[str, ...], host: str, path: str) -> None:
        self.body = BodyTemplate(target, skus)
        self.head = (
            f"{target.method} {path} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Content-Type: {target.content_type}\r\n"
            "Content-Length: "
        ).encode("latin-1").replace(b"%", b"%%") + b"%d\r\n\r\n%b"

    def render(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """The request bytes of one order."""
        body = self.body.render(product, order, qty, buyer)
        return self.head % (len(body), body)
