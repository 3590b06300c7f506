"""A scratch MariaDB database per test, and direct queries to check what the shop stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pymysql


def server_params(dsn: str) -> dict[str, Any]:
    """Host, port, user and password of a ``mysql://`` DSN (no database)."""
    p = urlsplit(dsn)
    return {
        "host": p.hostname or "127.0.0.1",
        "port": p.port or 3306,
        "user": p.username or "root",
        "password": p.password or "",
    }


@contextmanager
def scratch_database(dsn: str) -> Iterator[dict[str, Any]]:
    """A new database with a unique name, dropped afterwards; yields aiomysql/pymysql params."""
    server = server_params(dsn)
    name = f"flashsale_t_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(autocommit=True, **server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        try:
            yield {**server, "db": name}
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()


def dsn_of(db: dict[str, Any]) -> str:
    """The ``mysql://`` DSN of a scratch database."""
    auth = db["user"] + (f":{db['password']}" if db["password"] else "")
    return f"mysql://{auth}@{db['host']}:{db['port']}/{db['db']}"


def query(db: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the scratch database directly (not through the code under test)."""
    params = {("database" if k == "db" else k): v for k, v in db.items()}
    conn = pymysql.connect(autocommit=True, **params)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()
