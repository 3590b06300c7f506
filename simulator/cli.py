"""The ``flashsale`` command: parses arguments and hands them to one command module.

Each subcommand lives in ``simulator/commands/<name>.py`` with ``HELP``, ``configure(parser)``
and ``main(args) -> int``; heavy imports (aiohttp, uvloop) happen inside ``main`` so that
``flashsale schedule`` never pays for the network stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simulator import __version__
from simulator.errors import FlashsaleError

#: subcommand name -> module implementing it, in the order ``--help`` lists them
COMMANDS: dict[str, str] = {
    "schedule": "simulator.commands.schedule",
    "serve": "simulator.commands.serve",
    "run": "simulator.commands.run",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand configured."""
    parser = argparse.ArgumentParser(
        prog="flashsale",
        description="Flash-sale order simulator and open-loop load engine.",
    )
    parser.add_argument("--version", action="version", version=f"flashsale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args._main(args)
    except FlashsaleError as exc:
        print(f"flashsale: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("flashsale: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
