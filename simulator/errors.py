"""Errors that reach the user as one clear line (the CLI exits 2 on them, without a traceback)."""

from __future__ import annotations


class FlashsaleError(Exception):
    """Base of every error meant for the user rather than a bug report.

    ``exit_code`` is what the CLI exits with: 2 for bad usage or bad input (the default).
    ``subject`` names the value at fault as the library knows it (``"target_url"``,
    ``"ca_file"``, ``"backend"`` …), never as a command-line flag: a command that took the value
    from a flag maps the subject to the flag's name in its message (``simulator.cli``).
    """

    exit_code = 2

    def __init__(self, message: str, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class ScenarioError(FlashsaleError):
    """A scenario file is missing, not TOML, or breaks a rule; the message names file and key."""


class UsageError(FlashsaleError):
    """A command-line argument or combination of arguments is wrong."""


class TooLargeError(FlashsaleError):
    """The work asked for would not fit this machine (memory, open files) or a bounded time.

    Raised before anything is allocated; the message says how big the work would be and which
    values to lower.
    """
