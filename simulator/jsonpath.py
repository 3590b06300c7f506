"""A small JSON path: ``data.items``, ``$.data.list[0].stock``: keys and list indices only.

Enough to point into a storefront's own JSON documents (its inventory listing, a field of an
answer) without an expression language: a path is parsed once, where the scenario is read, into
a tuple of steps, so a typo is an error naming the scenario key and not a surprise after the run.
"""

from __future__ import annotations

import re
from typing import Any

#: one step: a key (str) or a list index (int)
Step = str | int

_SEGMENT = re.compile(r"([^.\[\]]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
#: control characters (Unicode category Cc): never part of a key a scenario can name
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class JsonPathError(ValueError):
    """A path that cannot be parsed; the message says what is wrong with it."""


def parse_path(text: str) -> tuple[Step, ...]:
    """The steps of ``text`` (``$`` alone, or ``""``, is the document itself).

    Keys are separated by dots; ``[n]`` after a key (or at the start) indexes a list. A key
    holding a dot or a bracket cannot be named (no storefront seen needs it), nor one holding a
    control character (U+0000–U+001F, U+007F–U+009F): in a scenario file that is a typo or a
    paste gone wrong, and some of them would be trimmed away as blanks. Blanks (``str.isspace``)
    around the whole path are trimmed; inside a key they are kept.
    """
    control = _CONTROL.search(text)
    if control is not None:
        step = next(p for p in re.split(r"[.\[\]]", text) if control.group() in p)
        raise JsonPathError(
            f"bad JSON path {text!r}: step {step!r} holds the control character "
            f"U+{ord(control.group()):04X} (a key may not)"
        )
    body = text.strip()
    if body.startswith("$"):
        body = body[1:].removeprefix(".")
    if not body:
        return ()
    steps: list[Step] = []
    for i, part in enumerate(body.split(".")):
        m = _SEGMENT.fullmatch(part)
        if m is None or (not m.group(1) and not m.group(2)) or (not m.group(1) and i > 0):
            raise JsonPathError(
                f"bad JSON path {text!r}: {part!r} is not a key or key[index] "
                "(e.g. 'data.items' or 'data.list[0]')"
            )
        if m.group(1):
            steps.append(m.group(1))
        steps.extend(int(n) for n in _INDEX.findall(m.group(2)))
    return tuple(steps)


def format_path(steps: tuple[Step, ...]) -> str:
    """The path as a scenario writes it (``$`` for the document itself)."""
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out or "$"


class Missing(LookupError):
    """The document has nothing at a path; the message names the step that is missing."""


def get(doc: Any, steps: tuple[Step, ...]) -> Any:
    """The value at ``steps`` in ``doc``; :class:`Missing` naming the first step not there."""
    here = doc
    for k, step in enumerate(steps):
        if isinstance(step, int):
            ok = isinstance(here, list) and step < len(here)
        else:
            ok = isinstance(here, dict) and step in here
        if not ok:
            what = "a list this long" if isinstance(step, int) else "this key"
            raise Missing(f"{format_path(steps[: k + 1])}: no {what} in the document")
        here = here[step]
    return here
