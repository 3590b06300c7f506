"""Order and reset validation as pure functions: repeated JSON keys, whatever their spelling."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.storefront.validate import (
    ORDER_FIELDS,
    InvalidInput,
    parse_order,
    parse_reset,
    reject_duplicate_keys,
)

LIMITS = {"durian": 0, 'du"rian': 0}

_text = st.text(min_size=1, max_size=20)
_values = {
    "order_id": _text,
    "sku": st.sampled_from(sorted(LIMITS)),
    "qty": st.integers(1, 2**31 - 1),
    "user_id": _text,
}
_any_value = st.one_of(st.none(), st.booleans(), st.integers(), _text, st.lists(st.integers()))


@st.composite
def _orders(draw: st.DrawFn) -> tuple[list[tuple[str, object]], dict[str, object]]:
    """A valid order's pairs in any order (the dict it must parse to)."""
    order = {name: draw(_values[name]) for name in ORDER_FIELDS}
    pairs = draw(st.permutations(list(order.items())))
    return pairs, order


def _encode(pairs: list[tuple[str, object]], ascii_only: bool) -> bytes:
    """JSON text of an object with these pairs, repeats kept (a dict would drop them)."""
    items = (
        f"{json.dumps(k, ensure_ascii=ascii_only)}:{json.dumps(v, ensure_ascii=ascii_only)}"
        for k, v in pairs
    )
    return ("{" + ",".join(items) + "}").encode()


@given(_orders(), st.booleans())
def test_a_valid_order_parses_to_its_fields(drawn: tuple, ascii_only: bool) -> None:
    pairs, order = drawn
    raw = _encode(pairs, ascii_only)
    assert parse_order(raw, LIMITS) == tuple(order[name] for name in ORDER_FIELDS)


@given(_orders(), st.sampled_from(ORDER_FIELDS), _any_value, st.integers(0, 4), st.booleans())
def test_a_repeated_key_is_a_400_naming_it(
    drawn: tuple, repeated: str, value: object, at: int, ascii_only: bool
) -> None:
    pairs, _ = drawn
    pairs = [*pairs[:at], (repeated, value), *pairs[at:]]
    with pytest.raises(InvalidInput) as err:
        parse_order(_encode(pairs, ascii_only), LIMITS)
    assert (err.value.status, err.value.field) == (400, repeated)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"a": {"b": 1, "b": 2}}', "b"),
        (b'[{"x": 1}, {"x": 1, "x": 1}]', "x"),
        (b'{"\\u0061": 1, "a": 2}', "a"),
    ],
)
def test_repeats_are_found_at_any_depth(raw: bytes, key: str) -> None:
    with pytest.raises(InvalidInput) as err:
        reject_duplicate_keys(raw)
    assert (err.value.status, err.value.field) == (400, key)
    assert key in err.value.error


@pytest.mark.parametrize(
    "raw", [b'{"a": 1, "b": {"a": 2}}', b"[1, 2, 1]", b'{"a": "\\"a\\": 1"}', b"12"]
)
def test_the_same_key_in_different_objects_is_no_repeat(raw: bytes) -> None:
    reject_duplicate_keys(raw)


def test_malformed_json_stays_a_malformed_json_error() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_order(b'{"qty": 1, "qty": 2', LIMITS)
    assert (err.value.status, err.value.field) == (400, "body")


def test_a_reset_with_a_repeated_sku_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_reset(b'{"stock": {"durian": 1, "durian": 5}}')
    assert (err.value.status, err.value.field) == (400, "durian")
    assert parse_reset(b'{"stock": {"durian": 1, "walet": 5}}') == {"durian": 1, "walet": 5}
