"""HTTP/1.1 requests built from a scenario's templates, encoded once: bytes with holes.

Everything constant is encoded when the run starts. A request has templates in its path (and
query), its header values and its body; each ``{variable}`` is one of

- the order's own numbers (``{order_id}``, ``{qty}``, ``{user_id}`` = the buyer number),
- the product's (``{sku}`` and its ``vars``, e.g. ``{goods_id}``): put in place per product
  when the run starts, so a product's request is one bytes format;
- the buyer's data row (``{token}``…): encoded per row when the run starts.

A value is encoded for where it goes: percent-encoded in the path and query, as it is in a
header (checked when the scenario was read), JSON-escaped in a JSON body, form-encoded in a
form body. An order then costs one ``bytes % tuple`` for the body and one for the head; the
default shape (no holes outside the body) keeps the two-format fast path of the original.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus

import orjson

from simulator.scenario import Product, Target
from simulator.scenario.buyerdata import BuyerData
from simulator.scenario.model import PLACEHOLDER

#: the order of non-SKU fields the fast path handles without a generic tuple build
_DEFAULT_FIELDS = ("order_id", "qty", "user_id")
#: the order's own numbers, by their position in the per-order base tuple
_ORDER_SLOTS = {"order_id": 0, "qty": 1, "user_id": 2}


def _escape(text: str) -> bytes:
    """A literal piece of a template as bytes, safe inside a %-format."""
    return text.encode("utf-8").replace(b"%", b"%%")


def _encoder(context: str, content_type: str) -> Callable[[str], bytes]:
    """How a text value is written where it goes (path, header or body)."""
    if context == "path":
        return lambda v: quote(v, safe="").encode("ascii")
    if context == "header":
        return lambda v: v.encode("latin-1")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return lambda v: orjson.dumps(v)[1:-1]
    if media == "application/x-www-form-urlencoded":
        return lambda v: quote_plus(v).encode("ascii")
    return lambda v: v.encode("utf-8")


def _pieces(text: str, context: str) -> list[tuple[str, str | None]]:
    """``text`` split into literals (context None) and variables (their context)."""
    parts = PLACEHOLDER.split(text)
    out: list[tuple[str, str | None]] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                out.append((part, None))
        else:
            out.append((part, context))
    return out


class _Compiled:
    """One template (a list of pieces) as a bytes format per product and its holes' keys."""

    def __init__(
        self,
        pieces: list[tuple[str, str | None]],
        products: Sequence[dict[str, str]],
        content_type: str,
        data_columns: tuple[str, ...],
        dynamic: tuple[str, ...] = (),
    ) -> None:
        self.keys: list[tuple[str, str]] = []  # holes in order: (variable, context)
        self.formats: list[bytes] = []
        for k, pvars in enumerate(products):
            out: list[bytes] = []
            for text, context in pieces:
                if context is None:
                    out.append(_escape(text))
                elif text in _ORDER_SLOTS:
                    out.append(b"%d")
                    if k == 0:
                        self.keys.append((text, context))
                elif text in data_columns or text in dynamic:  # per row / per request
                    out.append(b"%b")
                    if k == 0:
                        self.keys.append((text, context))
                elif text in pvars:  # the product's own (sku, vars): in place now
                    value = _encoder(context, content_type)(pvars[text])
                    out.append(value.replace(b"%", b"%%"))
                else:  # the scenario reader refuses this; a direct caller gets told
                    raise ValueError(f"no value for {{{text}}} (product {k}, no such column)")
            self.formats.append(b"".join(out))


def _data_rows(
    data: BuyerData | None, keys: list[tuple[str, str]], content_type: str
) -> tuple[list[tuple[bytes, ...]], int]:
    """The buyers' rows encoded once for the holes ``keys`` (column, context) use, and the
    number rows wrap at (0: buyer k takes row k)."""
    if not keys or data is None:
        return [], 0
    encoded = [[_encoder(ctx, content_type)(v) for v in data.column(n)] for n, ctx in keys]
    rows = list(zip(*encoded, strict=True))
    return rows, len(rows) if data.wrap else 0


def _picker(slots: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A C-speed ``base → tuple(base[i] for i in slots)`` (itemgetter of one gives a scalar)."""
    if not slots:
        return lambda base: ()
    if len(slots) == 1:
        i = slots[0]
        return lambda base: (base[i],)
    return itemgetter(*slots)


class RequestTemplate:
    """Whole HTTP/1.1 requests (line, headers, body) of a scenario; ``render`` per order.

    ``path`` is the request target template (the endpoint's base path + ``orders_path``);
    ``products`` gives each product's ``sku`` and ``vars`` (bare SKU ids are enough when no
    template uses a product variable); ``data`` the buyers' rows (buyer k takes row k, or
    k mod n when it wraps).
    """

    __slots__ = (
        "_body_pick",
        "_data",
        "_head_pick",
        "_wrap_n",
        "body_formats",
        "fast",
        "head_formats",
        "heads",
        "render",
    )

    def __init__(
        self,
        target: Target,
        skus: Sequence[str] | Sequence[Product],
        host: str,
        path: str,
        data: BuyerData | None = None,
    ) -> None:
        products = [_product_values(p) for p in skus]
        columns = data.columns if data is not None else ()
        ct = target.content_type
        head: list[tuple[str, str | None]] = [(f"{target.method} ", None)]
        head += _pieces(path, "path")
        head.append((f" HTTP/1.1\r\nHost: {host}\r\n", None))
        for name, value in target.headers:
            head.append((f"{name}: ", None))
            head += _pieces(value, "header")
            head.append(("\r\n", None))
        head.append((f"Content-Type: {ct}\r\nContent-Length: ", None))
        h = _Compiled(head, products, ct, columns)
        b = _Compiled(_pieces(target.body, "body"), products, ct, columns)
        self.head_formats = tuple(f + b"%d\r\n\r\n%b" for f in h.formats)
        self.body_formats = tuple(b.formats)
        # the per-order base tuple: (order_id, qty, user_id, *the row's encoded data values)
        data_keys = sorted({k for k in h.keys + b.keys if k[0] in columns})
        slot = {k: 3 + i for i, k in enumerate(data_keys)}
        slot.update({(name, ctx): i for name, i in _ORDER_SLOTS.items() for ctx in _CONTEXTS})
        self._head_pick = _picker([slot[k] for k in h.keys])
        self._body_pick = _picker([slot[k] for k in b.keys])
        self._data, self._wrap_n = _data_rows(data, data_keys, ct)
        self.fast = not h.keys and [k[0] for k in b.keys] == list(_DEFAULT_FIELDS)
        # the fast shape's head (it has no holes) for every body length it can have (three
        # integers of at most 20 characters in a body format): a list index and a concatenation
        longest = max((len(f) for f in self.body_formats), default=0) + 3 * 20
        fixed = self.head_formats[0][: -len(b"%b")]
        self.heads = [fixed % n for n in range(longest + 1)] if self.fast else []
        self.render: Callable[[int, int, int, int], bytes]  # (product, order, qty, buyer)
        if self.fast:
            self.render = self._render_fast
        elif self._data:
            self.render = self._render_data
        else:
            self.render = self._render_order

    def _render_fast(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """The default shape: the body's three numbers, then the head for its length."""
        body = self.body_formats[product] % (order, qty, buyer)
        return self.heads[len(body)] + body

    def _render_order(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """Holes for the order's numbers anywhere (path, headers, body); no buyer data."""
        base = (order, qty, buyer)
        body = self.body_formats[product] % self._body_pick(base)
        return self.head_formats[product] % (*self._head_pick(base), len(body), body)

    def _render_data(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """With the buyer's data row (k, or k mod n)."""
        row = self._data[buyer % self._wrap_n if self._wrap_n else buyer]
        base = (order, qty, buyer, *row)
        body = self.body_formats[product] % self._body_pick(base)
        return self.head_formats[product] % (*self._head_pick(base), len(body), body)

    def body_of(self, product: int, order: int, qty: int, buyer: int) -> bytes:
        """Only the body of one order (what :meth:`render` puts after the head)."""
        return self.render(product, order, qty, buyer).partition(b"\r\n\r\n")[2]

    def split(self, product: int, order: int, qty: int, buyer: int) -> SplitRequest:
        """One order as (request target, headers, body) for a client that writes its own
        request line, ``Host`` and ``Content-Length`` (Locust's FastHttpUser): the request
        :meth:`render` makes, taken apart; headers in the template's order, Content-Type last."""
        return split_request(self.render(product, order, qty, buyer))


_CONTEXTS = ("path", "header", "body")
#: headers an HTTP client writes itself (from the URL and the body)
_CLIENT_HEADERS = (b"host", b"content-length")


class SplitRequest(NamedTuple):
    """A rendered request taken apart (:meth:`RequestTemplate.split`)."""

    target: str  # the request target: path and query, percent-encoded
    headers: dict[str, str]
    body: bytes


def split_request(raw: bytes) -> SplitRequest:
    """A whole rendered request (:meth:`RequestTemplate.render`, :meth:`StepTemplate.render`)
    taken apart for a client that writes its own request line, ``Host`` and
    ``Content-Length``: headers in the request's order."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    target = lines[0].split(b" ", 2)[1].decode("ascii")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() not in _CLIENT_HEADERS:
            headers[name.decode("latin-1")] = value.strip().decode("latin-1")
    return SplitRequest(target, headers, body)


def _product_values(p: str | Product) -> dict[str, str]:
    """A product's template values: its SKU and its vars."""
    if isinstance(p, str):
        return {"sku": p}
    return {"sku": p.id, **dict(p.vars)}


#: methods whose step without a body sends no Content-Type/Content-Length
_BODILESS = ("GET", "DELETE")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _journey_encoder(context: str, content_type: str) -> Callable[[str], bytes]:
    """As :func:`_encoder`, for values taken from answers: a header value must be one line
    of Latin-1 (ValueError otherwise: the request cannot be sent)."""
    if context != "header":
        return _encoder(context, content_type)

    def header(v: str) -> bytes:
        if _CONTROL.search(v):
            raise ValueError(f"control character in a header value: {v!r}")
        return v.encode("latin-1")

    return header


class StepTemplate:
    """The request of one journey step, encoded once like :class:`RequestTemplate`'s, with
    holes for the journey's variables (values taken from earlier answers, encoded per request
    for where they go) and for the buyer's cookies (a ``Cookie:`` line or nothing).

    ``variables`` are the journey's variable names in the order of the journey's value list.
    """

    __slots__ = ("_body_pick", "_data", "_dyn", "_head_pick", "_wrap_n", "bodiless", "formats")

    def __init__(
        self,
        step: Any,
        skus: Sequence[str] | Sequence[Product],
        host: str,
        base_path: str,
        variables: tuple[str, ...],
        data: BuyerData | None = None,
    ) -> None:
        products = [_product_values(p) for p in skus]
        columns = data.columns if data is not None else ()
        ct = step.content_type
        self.bodiless = not step.body and step.method in _BODILESS
        head: list[tuple[str, str | None]] = [(f"{step.method} ", None)]
        head += _pieces(base_path + step.path, "path")
        head.append((f" HTTP/1.1\r\nHost: {host}\r\n", None))
        for name, value in step.headers:
            head.append((f"{name}: ", None))
            head += _pieces(value, "header")
            head.append(("\r\n", None))
        h = _Compiled(head, products, ct, columns, variables)
        b = _Compiled(_pieces(step.body, "body"), products, ct, columns, variables)
        if self.bodiless:
            self.formats = tuple((f + b"%b\r\n", b"") for f in h.formats)
        else:
            tail = f"Content-Type: {_escape(ct).decode()}\r\nContent-Length: %d\r\n\r\n%b"
            self.formats = tuple(
                (f + b"%b" + tail.encode("latin-1"), body)
                for f, body in zip(h.formats, b.formats, strict=True)
            )
        data_keys = sorted({k for k in h.keys + b.keys if k[0] in columns})
        dyn_keys = sorted({k for k in h.keys + b.keys if k[0] in variables})
        slot = {k: 3 + i for i, k in enumerate(data_keys)}
        slot.update({k: 3 + len(data_keys) + i for i, k in enumerate(dyn_keys)})
        slot.update({(name, ctx): i for name, i in _ORDER_SLOTS.items() for ctx in _CONTEXTS})
        self._head_pick = _picker([slot[k] for k in h.keys])
        self._body_pick = _picker([slot[k] for k in b.keys])
        self._dyn = [(variables.index(name), _journey_encoder(ctx, ct)) for name, ctx in dyn_keys]
        self._data, self._wrap_n = _data_rows(data, data_keys, ct)

    def render(
        self,
        product: int,
        order: int,
        qty: int,
        buyer: int,
        values: list[str | None],
        cookie: bytes = b"",
    ) -> bytes | None:
        """The request bytes; None when a variable it needs has no value (or one that cannot
        go where it goes: a header value with a line break)."""
        base: tuple[Any, ...] = (order, qty, buyer)
        if self._data:
            base += self._data[buyer % self._wrap_n if self._wrap_n else buyer]
        if self._dyn:
            dyn = []
            for i, enc in self._dyn:
                v = values[i]
                if v is None:
                    return None
                try:
                    dyn.append(enc(v))
                except (ValueError, UnicodeEncodeError):
                    return None
            base += tuple(dyn)
        head, body_format = self.formats[product]
        if self.bodiless:
            return head % (*self._head_pick(base), cookie)
        body = body_format % self._body_pick(base)
        return head % (*self._head_pick(base), cookie, len(body), body)
