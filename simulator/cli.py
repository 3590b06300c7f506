"""The ``flashsale`` command: parses arguments and hands them to one command module.

Each subcommand lives in ``simulator/commands/<name>.py`` with ``HELP``, ``configure(parser)``
and ``main(args) -> int``. Only the module of the command being run is imported, and heavy
imports (aiohttp, uvloop, numpy) happen inside ``main``, so that the CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simulator import __version__
from simulator.errors import FlashsaleError

#: subcommand name -> (module implementing it, one-line help), in the order ``--help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "schedule": ("simulator.commands.schedule", "generate a scenario's order stream, summarise it"),
    "serve": ("simulator.commands.serve", "run the bundled mock inventory service"),
    "run": ("simulator.commands.run", "drive a scenario at a storefront, open loop, and audit it"),
    "simulate": (
        "simulator.commands.simulate",
        "model a scenario at full scale offline, find the capacity for an SLO",
    ),
    "locust": ("simulator.commands.locust", "run a scenario in Locust (web UI, master/worker)"),
    "report": (
        "simulator.commands.report",
        "render a run's report.json: terminal, HTML with plots, CSV, thresholds",
    ),
    "compare": ("simulator.commands.compare", "compare two runs and fail on regression"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="flashsale",
        description="Flash-sale order simulator and open-loop load engine.",
    )
    parser.add_argument("--version", action="version", version=f"flashsale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            module = importlib.import_module(module_name)
            module.configure(p)
            p.set_defaults(_main=module.main, _flags=getattr(module, "FLAGS", {}))
    return parser


def _flag_prefix(args: argparse.Namespace, exc: FlashsaleError) -> str:
    """``"--flag: "`` when the value at fault came from a flag of this command, else ``""``.

    A command module's ``FLAGS`` maps an error's subject to the flag that sets it; the prefix is
    used only when the flag was given (the value may have come from the scenario instead).
    """
    flag = args._flags.get(exc.subject) if exc.subject else None
    if flag is None:
        return ""
    given = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    return f"{flag}: " if given not in (None, False) else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args._main(args)
    except FlashsaleError as exc:
        print(f"flashsale: error: {_flag_prefix(args, exc)}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("flashsale: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
