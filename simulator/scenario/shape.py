"""The checks of a request's shape: header names and values, paths, the content type, and every
template's variables, each refused where it is parsed with one error naming the scenario key.

Nothing here renders a request (that is :mod:`simulator.load.transport.template`); these rules
make sure that what is rendered is one well-formed HTTP/1.1 request: no CR/LF smuggled into a
header or the request line, no variable that nothing defines.
"""

from __future__ import annotations

import re

from simulator.errors import ScenarioError
from simulator.scenario.model import BODY_FIELDS, PLACEHOLDER, Scenario

#: an HTTP header name (RFC 9110 token)
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEADER_NAME = re.compile(_TOKEN)
_CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;[\x20-\x7e]*)?")
#: headers the transports write themselves (Content-Type comes from ``content_type``)
RESERVED_HEADERS = ("host", "content-length", "transfer-encoding", "connection", "content-type")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def literal_problem(text: str, header: bool = False) -> str | None:
    """None when ``text`` may go into a request as it is, else what is wrong with it.

    No control characters anywhere (CR/LF would end a header or the request line); in a
    header, only Latin-1 (what HTTP/1.1 header bytes are).
    """
    m = _CONTROL.search(text)
    if m is not None:
        return f"must not hold control characters (CR, LF …), got {m.group()!r} in {text!r}"
    if header:
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            return f"a header value must be Latin-1 text, got {text!r}"
    return None


def check_header_name(name: str) -> str | None:
    """None when ``name`` is a header the scenario may set, else what is wrong."""
    if not _HEADER_NAME.fullmatch(name):
        return "not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    if name.lower() in RESERVED_HEADERS:
        if name.lower() == "content-type":
            return "set by content_type; give it there"
        return "written by flashsale itself; it cannot be set"
    return None


def check_content_type(value: str) -> str | None:
    """None when ``value`` is a media type (``type/subtype[; params]``), else what is wrong."""
    if (problem := literal_problem(value, header=True)) is not None:
        return problem
    if not _CONTENT_TYPE.fullmatch(value):
        return f"must be a media type like application/json, got {value!r}"
    return None


def path_problem(path: str, query: bool) -> str | None:
    """None when ``path`` (with a ``?query`` if ``query``) fits a request line, else why not."""
    if (problem := literal_problem(path)) is not None:
        return problem
    bad = next((ch for ch in path if ch in " #" or ord(ch) > 0x7E), None)
    if bad is not None:
        return f"must be URL text (percent-encode {bad!r}), got {path!r}"
    if not query and "?" in path:
        return f"takes no query, got {path!r}"
    return None


def _fail(scenario: Scenario, key: str, message: str) -> ScenarioError:
    return ScenarioError(f"{scenario.source or scenario.name}: {key}: {message}")


def _product_vars(scenario: Scenario) -> dict[str, int]:
    """Every product variable name → the index of a product that has it (the first)."""
    names: dict[str, int] = {}
    for i, p in enumerate(scenario.products):
        for name, _ in p.vars:
            names.setdefault(name, i)
    return names


def _check_text(
    scenario: Scenario,
    where: str,
    key: str,
    text: str,
    known: tuple[str, ...],
    pvars: dict[str, int],
    later: dict[str, str] | None = None,
) -> list[str]:
    """The one check of a template at scenario key ``where`` (its ``key`` under the request):
    every variable is one of ``known`` (or, in ``later``, extracted by a step that comes after:
    said so), every product has each product variable it uses, no stray brace outside the body.
    Returns the variables it uses."""
    used = PLACEHOLDER.findall(text)
    for name in used:
        if name not in known:
            if later and name in later:
                raise _fail(
                    scenario,
                    where,
                    f"{{{name}}} is extracted by step {later[name]!r}, which does not come "
                    "before this one",
                )
            listing = " ".join("{" + k + "}" for k in known)
            raise _fail(scenario, where, f"unknown variable {{{name}}}; variables: {listing}")
        if name in pvars:
            for i, p in enumerate(scenario.products):
                if name not in dict(p.vars):
                    raise _fail(
                        scenario,
                        f"products[{i}].vars",
                        f"no {name}, which {where} uses (every product needs it)",
                    )
    if key != "body" and re.search(r"[{}]", PLACEHOLDER.sub("", text)):
        raise _fail(scenario, where, f"a brace that is not a {{variable}} in {text!r}")
    return used


def check_templates(scenario: Scenario) -> None:
    """ScenarioError unless every variable of every template of the target is defined.

    Variables: the order's own (:data:`BODY_FIELDS`), the products' ``vars`` (every product
    must define one a template uses) and the buyers data columns. In the path and the headers
    a brace that is not part of a ``{variable}`` is an error too (a typo like ``{user id}``).
    Data values that go into a header are checked like header values.
    """
    target = scenario.target
    data = scenario.buyers.data
    columns = data.columns if data is not None else ()
    pvars = _product_vars(scenario)
    for c in columns:
        if c in BODY_FIELDS:
            raise _fail(
                scenario,
                "buyers.data",
                f"column {c!r} would hide the built-in {{{c}}}; rename it (e.g. shop_{c})",
            )
        if c in pvars:
            raise _fail(scenario, "buyers.data", f"column {c!r} is also a product variable")
    known = (*BODY_FIELDS, *pvars, *columns)
    header_columns: set[str] = set()
    for key, text in target.templates():
        used = _check_text(scenario, f"target.{key}", key, text, known, pvars)
        if key.startswith("headers."):
            header_columns.update(n for n in used if n in columns)
            for name in used:
                if name in pvars:
                    for p in scenario.products:
                        value = dict(p.vars)[name]
                        if (problem := literal_problem(value, header=True)) is not None:
                            raise _fail(scenario, f"products.vars.{name}", problem)
    if data is not None and header_columns:
        for c in sorted(header_columns):
            for r, value in enumerate(data.column(c)):
                if (problem := literal_problem(value, header=True)) is not None:
                    raise _fail(
                        scenario,
                        "buyers.data",
                        f"{data.source}: row {r + 1}, column {c} (used in a header): {problem}",
                    )


def check_journey(scenario: Scenario) -> None:
    """ScenarioError unless every variable of every journey step is defined before it is used:
    the order's own, the products' ``vars``, the buyers data columns, and the values an
    *earlier* step extracts (a step's own extracts come from its answer, after it is sent)."""
    journey = scenario.journey
    if journey is None:
        return
    data = scenario.buyers.data
    columns = data.columns if data is not None else ()
    pvars = _product_vars(scenario)
    extracted: list[str] = []
    later = {e.var: s.name for s in journey.steps for e in s.extract}
    for i, step in enumerate(journey.steps):
        known = (*BODY_FIELDS, *pvars, *columns, *extracted)
        for key, text in step.templates():
            _check_text(scenario, f"journey.steps[{i}].{key}", key, text, known, pvars, later)
        extracted += [e.var for e in step.extract if e.var not in extracted]


def check_streams(scenario: Scenario) -> None:
    """ScenarioError unless every variable of every stream's request is defined: the order's
    own, the products' ``vars`` and the buyers data columns (a stream extracts nothing)."""
    data = scenario.buyers.data
    columns = data.columns if data is not None else ()
    pvars = _product_vars(scenario)
    known = (*BODY_FIELDS, *pvars, *columns)
    for i, stream in enumerate(scenario.streams):
        for key, text in stream.request.templates():
            _check_text(scenario, f"streams[{i}].{key}", key, text, known, pvars)
