"""``flashsale serve``: run the bundled mock inventory service until SIGINT/SIGTERM.

When ready it prints exactly one line to stdout, for people and scripts (the benchmarks):
``flashsale storefront: listening on http://HOST:PORT (backend NAME)`` (``https://`` with
``--tls-cert``/``--tls-key``). The run's embedded storefront does not go through here: see
``simulator.storefront.process``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

HELP = "run the bundled mock inventory service (storefront)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", metavar="FILE", help="stock, limits and knobs from a scenario")
    p.add_argument("--scale", type=float, help="override the scenario's scale (stock)")
    p.add_argument(
        "--stock",
        action="append",
        default=[],
        metavar="SKU=N",
        help="initial stock of a SKU (repeatable; adds to or overrides the scenario's)",
    )
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="SKU=N",
        help="per-buyer limit of a SKU, 0 = none (repeatable)",
    )
    p.add_argument("--backend", help="memory (default), memory-racy, redis, redis-racy, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port; 0 = a free one (default 8080)")
    p.add_argument("--redis-url", help="Redis for the redis backends")
    p.add_argument("--postgres-dsn", help="PostgreSQL for the postgres backends")
    p.add_argument("--namespace", help="Redis key prefix / PostgreSQL schema (default flashsale)")
    p.add_argument("--service-time-ms", type=float, metavar="M", help="median service time")
    p.add_argument("--service-time-sigma", type=float, metavar="S", help="lognormal sigma")
    p.add_argument("--max-concurrency", type=int, metavar="N", help="shed beyond N in flight")
    p.add_argument("--hot-row", action="store_true", default=None, help="serialise per SKU")
    p.add_argument("--racy-delay-ms", type=float, metavar="M", help="racy backends' round trip")
    p.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body")
    p.add_argument(
        "--read-timeout",
        type=float,
        metavar="S",
        help="seconds for a request's headers (from its first byte), then its body (default 10)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=float,
        metavar="S",
        help="close a connection idle this many seconds (default 75)",
    )
    flow = p.add_argument_group("flash-sale flow (all off by default: confirm on order)")
    flow.add_argument(
        "--reservation-ttl",
        type=float,
        metavar="S",
        help="orders become reservations held S seconds until paid (POST /orders/ID/pay)",
    )
    flow.add_argument(
        "--require-token",
        action="store_true",
        default=None,
        help="order routes need a bearer token from POST /login (else 401)",
    )
    flow.add_argument("--admit-per-s", type=float, metavar="R", help="token bucket: R orders/s")
    flow.add_argument("--burst", type=int, metavar="N", help="token bucket size (default R)")
    flow.add_argument("--max-active", type=int, metavar="N", help="waiting room: N buyers at once")
    flow.add_argument(
        "--session-s", type=float, metavar="S", help="waiting room: each session's length (60)"
    )
    flow.add_argument(
        "--room-order", choices=("fifo", "shuffle"), help="waiting room order at the drop"
    )
    flow.add_argument(
        "--sale-start-s", type=float, metavar="S", help="the sale opens S seconds after start"
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")


def parse_pairs(option: str, values: list[str]) -> dict[str, int]:
    """``["a=1", "b=2"]`` → ``{"a": 1, "b": 2}``; anything else is a UsageError."""
    from simulator.errors import UsageError
    from simulator.scenario import sku_problem
    from simulator.scenario.limits import MAX_INT64

    out: dict[str, int] = {}
    for text in values:
        sku, sep, number = text.partition("=")
        try:
            units = int(number)
        except ValueError:
            units = -1
        if not sep or not 0 <= units <= MAX_INT64:
            raise UsageError(f"{option} {text!r}: expected SKU=N with N an integer 0…2**63 - 1")
        if (problem := sku_problem(sku)) is not None:
            raise UsageError(f"{option} {text!r}: the SKU {problem}")
        out[sku] = units
    return out


def build_settings(args: argparse.Namespace) -> Any:
    """The StorefrontSettings the arguments describe (the namespace goes no further)."""
    from simulator.commands.checks import check_flags
    from simulator.errors import UsageError
    from simulator.scenario import limits as ranges
    from simulator.scenario import load_scenario
    from simulator.storefront.config import StorefrontSettings

    check_flags(args, {"scale": ranges.SCALE})
    stocks = parse_pairs("--stock", args.stock)
    limits = parse_pairs("--limit", args.limit)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0–65535, got {args.port}")
    if args.scenario is not None:
        settings = StorefrontSettings.from_scenario(load_scenario(args.scenario, args.scale))
        stocks = {**settings.stocks, **stocks}
        limits = {**settings.limits, **limits}
    elif not stocks:
        raise UsageError("give --scenario FILE or at least one --stock SKU=N")
    elif args.scale is not None:
        raise UsageError("--scale needs --scenario")
    else:
        settings = StorefrontSettings(stocks=stocks)
    overrides = {
        "backend": args.backend,
        "redis_url": args.redis_url,
        "postgres_dsn": args.postgres_dsn,
        "namespace": args.namespace,
        "service_time_median_ms": args.service_time_ms,
        "service_time_sigma": args.service_time_sigma,
        "max_concurrency": args.max_concurrency,
        "hot_row": args.hot_row,
        "racy_delay_ms": args.racy_delay_ms,
        "client_max_size": args.max_body,
        "read_timeout_s": args.read_timeout,
        "keepalive_timeout_s": args.keepalive_timeout,
        "reservation_ttl_s": args.reservation_ttl,
        "require_token": args.require_token,
        "admit_per_s": args.admit_per_s,
        "burst": args.burst,
        "max_active": args.max_active,
        "session_s": args.session_s,
        "room_order": args.room_order,
        "sale_start_s": args.sale_start_s,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(settings, stocks=stocks, limits=limits, **given)
    except UsageError as exc:
        message = str(exc)
        for name, flag in FLAGS.items():
            if message.startswith(f"{name}:") and name in given:
                raise UsageError(flag + message[len(name) :]) from None
        raise


#: the flow's settings fields and their flags (an error about such a field names the flag)
FLAGS = {
    "reservation_ttl_s": "--reservation-ttl",
    "admit_per_s": "--admit-per-s",
    "burst": "--burst",
    "max_active": "--max-active",
    "session_s": "--session-s",
    "sale_start_s": "--sale-start-s",
}


def tls_context(cert: str | None, key: str | None) -> Any:
    """The server's TLS context for ``--tls-cert``/``--tls-key`` (None: plain HTTP)."""
    import ssl

    from simulator.errors import UsageError

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key: give both, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(
            f"--tls-cert/--tls-key: cannot load {cert!r} with {key!r}: {reason}"
        ) from None
    return context


def main(args: argparse.Namespace) -> int:
    import asyncio

    import uvloop

    from simulator.storefront.server import RunningStorefront, serve

    settings = build_settings(args)
    context = tls_context(args.tls_cert, args.tls_key)

    def announce(running: RunningStorefront) -> None:
        url = running.url
        sys.stdout.write(f"flashsale storefront: listening on {url} (backend {settings.backend})\n")
        sys.stdout.flush()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, args.host, args.port, announce, context))
    return 0
