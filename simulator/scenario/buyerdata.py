"""Per-buyer data from a file (``[buyers] data = "buyers.csv"``): user ids, credentials, tokens.

A CSV file with a header row, or JSON lines (one object of scalars per line); each column is a
template variable (``{token}``). The rule is fixed so that runs are reproducible and workers
never share a row: buyer number k takes row k — or row k mod n with ``wrap = true``. Buyer
numbers come from the schedule (a buyer's number is the number of their first order), so with
repeat buyers some rows go unused, and no row ever goes to two buyers.

The file's size is checked before it is read (:data:`MAX_DATA_BYTES`, :data:`MAX_DATA_ROWS`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from simulator.errors import ScenarioError
from simulator.files import read_regular_file

#: the largest data file read: a million buyers with a 64-byte token and a few ids fit
MAX_DATA_BYTES = 128 << 20
#: the most rows: each costs ~100–200 bytes of Python objects per worker, per column used
MAX_DATA_ROWS = 2_000_000
#: a column name is a template variable name
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class BuyerData:
    """The rows of a buyers data file: ``columns`` names, ``rows`` values (strings)."""

    source: str  # the file, for messages
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    wrap: bool = False

    def row_of(self, buyer: int) -> int:
        """The row of buyer number ``buyer`` (k, or k mod n when wrapping); −1 if none."""
        n = len(self.rows)
        if self.wrap:
            return buyer % n
        return buyer if 0 <= buyer < n else -1

    def column(self, name: str) -> tuple[str, ...]:
        """One column's values, row by row."""
        i = self.columns.index(name)
        return tuple(r[i] for r in self.rows)


def _fail(label: str, message: str) -> ScenarioError:
    return ScenarioError(f"{label}: {message}")


def _check_columns(label: str, names: list[str]) -> tuple[str, ...]:
    if not names:
        raise _fail(label, "no columns: the first line must name them (e.g. user,token)")
    seen: set[str] = set()
    for name in names:
        if not COLUMN_NAME.fullmatch(name):
            raise _fail(label, f"column {name!r}: must be a variable name (letters, digits, '_')")
        if name in seen:
            raise _fail(label, f"column {name!r} appears twice")
        seen.add(name)
    return tuple(names)


def _read_csv(label: str, text: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        columns = _check_columns(label, [h.strip() for h in header])
        rows: list[tuple[str, ...]] = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != len(columns):
                raise _fail(
                    f"{label}: line {reader.line_num}",
                    f"{len(row)} values for {len(columns)} columns ({', '.join(columns)})",
                )
            rows.append(tuple(row))
            if len(rows) > MAX_DATA_ROWS:
                raise _fail(label, f"more than {MAX_DATA_ROWS:,} rows")
    except csv.Error as exc:
        raise _fail(f"{label}: line {reader.line_num}", f"not CSV: {exc}") from None
    return columns, rows


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _read_jsonl(label: str, text: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{label}: line {line_no}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _fail(where, f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise _fail(where, "must be a JSON object, one buyer per line")
        if not columns:
            columns = _check_columns(label, list(obj))
        if set(obj) != set(columns):
            raise _fail(where, f"keys {sorted(obj)} differ from the first line's {list(columns)}")
        values = []
        for name in columns:
            v = _scalar(obj[name])
            if v is None:
                raise _fail(where, f"{name}: must be a string, number or boolean")
            values.append(v)
        rows.append(tuple(values))
        if len(rows) > MAX_DATA_ROWS:
            raise _fail(label, f"more than {MAX_DATA_ROWS:,} rows")
    return columns, rows


def load_buyer_data(path: Path, label: str, wrap: bool) -> BuyerData:
    """Read a buyers data file (``.jsonl``/``.ndjson``: JSON lines; otherwise CSV).

    ScenarioError naming ``label`` (the scenario key) and the file on any problem: missing,
    too large (checked before reading), not UTF-8, a malformed line, no rows.
    """
    where = f"{label} ({path})"
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_DATA_BYTES:  # before reading anything
            raise ScenarioError(
                f"{path}: {size:,} bytes; a buyers data file holds at most {MAX_DATA_BYTES:,}"
            )
        raw = read_regular_file(
            path, MAX_DATA_BYTES, "a buyers data file", missing="buyers data file",
            error=ScenarioError,
        )  # fmt: skip
    except ScenarioError as exc:
        raise _fail(label, str(exc)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(where, f"not UTF-8 text ({exc.reason})") from None
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    columns, rows = _read_jsonl(where, text) if jsonl else _read_csv(where, text)
    if not rows:
        raise _fail(where, "no rows: one buyer per line after the header")
    return BuyerData(str(path), columns, tuple(rows), wrap)


def check_buyer_rows(data: BuyerData, expected_orders: float, label: str) -> None:
    """ScenarioError when the sale's buyers would outnumber the rows (without ``wrap``).

    Buyer numbers run up to the number of orders; the count is the schedule's expectation
    (the exact one is checked again when the schedule is drawn).
    """
    n = len(data.rows)
    if data.wrap or expected_orders <= n:
        return
    raise ScenarioError(
        f"{label}: the sale expects about {expected_orders:,.0f} orders, each may be a new "
        f"buyer, and {data.source} has {n:,} rows: add rows, lower the demand or scale, or "
        "set wrap = true to reuse rows (buyer k takes row k mod n)"
    )
