"""Where the audit's truth comes from: the storefront's own records, read after the run.

A scenario's ``[audit]`` table (:mod:`simulator.scenario.model`) names the source: the bundled
storefront's ``/inventory`` + ``/ledger`` or the user's own JSON endpoint (``http``), the
storefront's database (``sql``: PostgreSQL through asyncpg, MySQL/MariaDB through aiomysql), its
Redis keys (``redis``), or nothing (``none``). :func:`read_records` turns each into the same
:class:`~simulator.audit.ServerState` (per SKU units sold and remaining, the orders when the
source has them), so that :func:`simulator.audit.audit` compares client-confirmed units, the
server's units and the initial stock the same way whatever the source. A source that cannot be
read is never an exception here: the state says why, naming the source and where it looked
(host and port, never a password), and the run's report and exit line repeat it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

from simulator import jsonpath
from simulator.audit import ServerState
from simulator.errors import ScenarioError
from simulator.load.target import Target
from simulator.scenario import (
    HttpAudit,
    NoAudit,
    RedisAudit,
    Scenario,
    SqlAudit,
    audit_source_name,
)

#: the default ports of the database schemes, for messages
_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379}


def check_secrets(scenario: Scenario, environ: Mapping[str, str] | None = None) -> None:
    """Before the run: a source's URL given by an environment variable must be set and valid.

    ScenarioError naming the scenario key and the variable (never its value): finding out after
    a ten-minute sale that ``SHOP_DSN`` was unset would waste the sale.
    """
    _resolve(scenario, os.environ if environ is None else environ)


def _resolve(scenario: Scenario, environ: Mapping[str, str]) -> str | None:
    """The URL of a sql/redis source (read from its environment variable if so), else None."""
    from simulator.scenario.reader import dsn_problem, redis_url_problem

    src = scenario.audit
    check: Callable[[str], str | None]
    if isinstance(src, SqlAudit):
        value, var, key, check = src.dsn, src.dsn_env, "dsn_env", dsn_problem
    elif isinstance(src, RedisAudit):
        value, var, key, check = src.url, src.url_env, "url_env", redis_url_problem
    else:
        return None
    if value is not None:
        return value
    assert var is not None  # the reader asks for one of the two
    label = scenario.source or scenario.name
    if not environ.get(var):
        raise ScenarioError(f"{label}: audit.{key}: the environment variable {var} is not set")
    if (problem := check(environ[var])) is not None:
        raise ScenarioError(f"{label}: audit.{key}: the value of {var} {problem}")
    return environ[var]


def read_records(
    scenario: Scenario,
    target: Target | None,
    stocks: Mapping[str, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerState:
    """The storefront's records after a run, from the scenario's ``[audit]`` source.

    ``target`` is the storefront the orders went to (None: not known, e.g. a Locust run
    without a host); ``stocks`` the initial stock per SKU (the scenario's at its scale by
    default), from which a source that keeps only one of sold/remaining gets the other.
    """
    src = scenario.audit
    stocks = scenario.stocks() if stocks is None else stocks
    skus = tuple(p.id for p in scenario.products)
    if isinstance(src, NoAudit):
        return ServerState(None, None, (), "none")
    if isinstance(src, HttpAudit):
        return _read_http(src, scenario, target, skus, stocks)
    url = _resolve(scenario, os.environ if environ is None else environ)
    assert url is not None
    name = audit_source_name(src)
    try:
        if isinstance(src, SqlAudit):
            sold, ledger = asyncio.run(asyncio.wait_for(_sql(src, url, skus), src.timeout_s))
            return _state(name, skus, stocks, sold=sold, ledger=ledger)
        return _state(name, skus, stocks, **_redis(src, url, skus))
    except _BadRecords as exc:
        return ServerState(None, None, (f"{name}: {exc}",), name)
    except Exception as exc:  # a driver's own error types: the reason is what matters
        return ServerState(
            None, None, (f"{name}: {_why(exc, src.timeout_s)} ({_where(url)})",), name
        )


class _BadRecords(ValueError):
    """The source answered, but not with what the scenario says it holds."""


def _state(
    name: str,
    skus: tuple[str, ...],
    stocks: Mapping[str, int],
    *,
    sold: Mapping[str, int] | None = None,
    remaining: Mapping[str, int] | None = None,
    ledger: list[list[Any]] | None = None,
) -> ServerState:
    """Per SKU sold and remaining (one derived from the other and the initial stock)."""
    ledger_units: dict[str, int] = {}
    ledger_orders: dict[str, int] = {}
    for _oid, lsku, qty, _user in ledger or ():
        ledger_units[lsku] = ledger_units.get(lsku, 0) + qty
        ledger_orders[lsku] = ledger_orders.get(lsku, 0) + 1
    # a sql query sums what was sold: no row for a SKU is no sale, not a missing SKU
    absent_is_zero = name == "sql"
    inv: dict[str, dict[str, Any]] = {}
    for sku in skus:
        initial = stocks.get(sku, 0)
        s = sold.get(sku) if sold is not None else None
        r = remaining.get(sku) if remaining is not None else None
        if s is None and r is None:
            if not absent_is_zero:
                continue  # the audit lists the SKU as missing from the records
            s = 0
        if s is None:
            s = initial - (r or 0)
        entry: dict[str, Any] = {"sold": s, "remaining": initial - s if r is None else r}
        if ledger is not None:
            entry["ledger_units"] = ledger_units.get(sku, 0)
            entry["ledger_orders"] = ledger_orders.get(sku, 0)
        inv[sku] = entry
    return ServerState({"backend": name, "skus": inv}, ledger, (), name)


# -- http --------------------------------------------------------------------------------------

#: where the bundled storefront serves its stock over time, under its inventory path
HISTORY_SUFFIX = "/history"


def stock_history(target: Target, inventory_path: str) -> dict[str, Any] | None:
    """The storefront's stock over time (``GET <inventory>/history``), None if it has none.

    Optional: a storefront without the endpoint (the user's own) or one that answers
    something else leaves the report without the stock-over-time figure, not the audit.
    """
    path = inventory_path.split("?", 1)[0].rstrip("/") + HISTORY_SUFFIX
    try:
        doc = target.get_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("series"), dict):
        return None
    return doc


def _read_http(
    src: HttpAudit,
    scenario: Scenario,
    target: Target | None,
    skus: tuple[str, ...],
    stocks: Mapping[str, int],
) -> ServerState:
    t = scenario.target
    if src.bundled:
        if target is None:
            return ServerState(None, None, ("http: no target: the inventory was not read",))
        state = target.server_state(t.inventory_path, t.ledger_path)
        if state.inventory is None:
            return state
        return replace(state, history=stock_history(target, t.inventory_path))
    if src.url is not None:
        url = src.url
    elif target is not None:
        url = target.endpoint.url_for(src.path or t.inventory_path)
    else:
        return ServerState(None, None, ("http: no target: the inventory was not read",))
    try:
        if target is not None:
            doc = target.fetch_json(url, src.timeout_s)
        else:
            with urllib.request.urlopen(url, timeout=src.timeout_s) as resp:
                doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return ServerState(None, None, (f"http: {url}: {_http_why(exc, src.timeout_s)}",))
    try:
        sold, remaining = _http_records(src, doc)
    except (_BadRecords, jsonpath.Missing) as exc:
        return ServerState(None, None, (f"http: {url}: {exc}",))
    return _state("http", skus, stocks, sold=sold, remaining=remaining)


def _http_records(src: HttpAudit, doc: Any) -> tuple[dict[str, int] | None, dict[str, int] | None]:
    assert src.items is not None
    items = jsonpath.get(doc, src.items)
    where = jsonpath.format_path(src.items)
    records: list[tuple[str, Any]] = []
    if src.sku is not None:
        if not isinstance(items, list):
            raise _BadRecords(f"{where}: not a list of records (sku = {src.sku!r} says it is)")
        for i, rec in enumerate(items):
            if not isinstance(rec, dict) or src.sku not in rec:
                raise _BadRecords(f"{where}[{i}]: no field {src.sku!r}")
            records.append((str(rec[src.sku]), rec))
    else:
        if not isinstance(items, dict):
            raise _BadRecords(
                f"{where}: not an object keyed by SKU id (give sku = the field naming the SKU "
                "if it is a list of records)"
            )
        records = [(str(k), v) for k, v in items.items()]
    sold: dict[str, int] | None = {} if src.sold is not None else None
    remaining: dict[str, int] | None = {} if src.remaining is not None else None
    for sku, rec in records:
        for field, out in ((src.sold, sold), (src.remaining, remaining)):
            if field is None or out is None:
                continue
            if not isinstance(rec, dict) or field not in rec:
                raise _BadRecords(f"{where}: the record of {sku!r} has no field {field!r}")
            out[sku] = out.get(sku, 0) + _units(rec[field], f"{sku!r}.{field}")
    return sold, remaining


def _units(value: Any, what: str) -> int:
    """A count of units from a record (an integer, or a string or decimal holding one)."""
    if isinstance(value, bool):
        raise _BadRecords(f"{what}: not a number of units: {value!r}")
    if value is None:
        return 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise _BadRecords(f"{what}: not a number of units: {value!r}") from None
    if n != value and not isinstance(value, str):
        raise _BadRecords(f"{what}: not a whole number of units: {value!r}")
    return n


# -- sql ---------------------------------------------------------------------------------------


async def _sql(
    src: SqlAudit, dsn: str, skus: tuple[str, ...]
) -> tuple[dict[str, int], list[list[Any]] | None]:
    scheme = urlsplit(dsn).scheme
    if scheme in ("postgresql", "postgres"):
        rows, ledger_rows = await _postgres(src, dsn)
    else:
        rows, ledger_rows = await _mysql(src, dsn)
    sold: dict[str, int] = {}
    for row in rows:
        if len(row) < 2:
            raise _BadRecords(
                f"the query returned {len(row)} column(s); it must return 2: SKU, units sold"
            )
        sku = str(row[0])
        sold[sku] = sold.get(sku, 0) + _units(row[1], f"the units sold of {sku!r}")
    if ledger_rows is None:
        return sold, None
    ledger: list[list[Any]] = []
    for row in ledger_rows:
        if len(row) < 4:
            raise _BadRecords(
                f"the ledger_query returned {len(row)} column(s); it must return 4: "
                "order id, SKU, quantity, user id"
            )
        qty = _units(row[2], f"the quantity of order {row[0]!r}")
        ledger.append([str(row[0]), str(row[1]), qty, str(row[3])])
    return sold, ledger


async def _postgres(src: SqlAudit, dsn: str) -> tuple[list[Any], list[Any] | None]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=src.timeout_s)
    try:
        rows = await conn.fetch(src.query)
        ledger = await conn.fetch(src.ledger_query) if src.ledger_query else None
    finally:
        await conn.close()
    return [tuple(r) for r in rows], None if ledger is None else [tuple(r) for r in ledger]


async def _mysql(src: SqlAudit, dsn: str) -> tuple[list[Any], list[Any] | None]:
    import aiomysql

    parts = urlsplit(dsn)
    conn = await aiomysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        db=unquote(parts.path.lstrip("/")) or None,
        connect_timeout=src.timeout_s,
        autocommit=True,
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(src.query)
            rows = list(await cur.fetchall())
            ledger = None
            if src.ledger_query:
                await cur.execute(src.ledger_query)
                ledger = list(await cur.fetchall())
    finally:
        conn.close()
    return rows, ledger


# -- redis -------------------------------------------------------------------------------------


def _redis(src: RedisAudit, url: str, skus: tuple[str, ...]) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=src.timeout_s, socket_connect_timeout=src.timeout_s
    )
    try:
        keys = [src.key.replace("{sku}", sku) for sku in skus]
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    found: dict[str, int] = {}
    for sku, key, value in zip(skus, keys, values, strict=True):
        if value is None:
            continue  # no key: the audit lists the SKU as missing
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        try:
            found[sku] = int(text)
        except ValueError:
            raise _BadRecords(f"key {key!r} holds {text[:40]!r}, not a number of units") from None
    return {src.holds: found}


# -- reasons -----------------------------------------------------------------------------------


def _where(url: str) -> str:
    """``host:port`` of a database URL (never its user or password)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    port = parts.port or _PORTS.get(parts.scheme)
    return f"{parts.hostname or 'localhost'}:{port}"


def _why(exc: BaseException, timeout_s: float) -> str:
    """A driver's error as a short reason: the OS's words for a socket error, else its text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError | asyncio.TimeoutError):
            return f"no answer within {timeout_s:g} s"
        if isinstance(seen, OSError) and seen.errno is not None and seen.errno in errno.errorcode:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    args: tuple[Any, ...] = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        code, message = args
        if code == 2003:  # MySQL's "can't connect", its cause only in the text
            return "connection refused" if "Errno 111" in message else "cannot connect"
        return str(message)  # PyMySQL's (code, message)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


def _http_why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, TimeoutError):
            return f"no answer within {timeout_s:g} s"
        if isinstance(exc.reason, OSError):
            return _why(exc.reason, timeout_s)
        return str(exc.reason)
    if isinstance(exc, ValueError):
        return f"not JSON ({exc})"
    return _why(exc, timeout_s)
