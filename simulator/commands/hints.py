"""How the commands phrase library errors in terms of their own flags.

The library says what is wrong with a value (:class:`simulator.load.target.TargetError`: the
target's certificate was refused); only a command knows which of its flags fixes it.
"""

from __future__ import annotations

from simulator.errors import UsageError
from simulator.load.target import TargetError


def target_error(exc: TargetError) -> UsageError:
    """``exc`` in flag terms: with ``--ca-file``/``--insecure`` when the certificate failed."""
    if exc.untrusted:
        hint = "trust its CA with --ca-file FILE, or skip the check with --insecure"
        return UsageError(f"{exc} ({hint})")
    return UsageError(str(exc))
