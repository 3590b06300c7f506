"""report.json on disk: read it into a :class:`~simulator.report.document.Report`, write it once.

Writing serialises to bytes first (:func:`report_bytes`, which never fails on a value JSON
cannot hold: an integer beyond 64 bits becomes a string, anything else unknown its ``str``), so
a finished run's results are never lost to a late serialisation error; the file is then written
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from simulator.errors import FlashsaleError
from simulator.files import atomic_write, read_json_object
from simulator.report.document import Report
from simulator.report.sections import ReportError

REPORT_FILE = "report.json"


def load_report(path: str | Path) -> Report:
    """Read a report file; :class:`ReportError` naming the file if it is not a report."""
    try:
        data = read_json_object(path, "a report.json")
    except FlashsaleError as exc:
        raise ReportError(str(exc)) from None
    return Report.from_json(data, str(path))


def _plain(x: Any) -> Any:
    """``x`` with what JSON cannot hold made printable: wide integers and objects as strings."""
    if isinstance(x, bool) or x is None or isinstance(x, str | float):
        return x
    if isinstance(x, int):
        return x if -(2**63) <= x < 2**64 else str(x)
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    tolist = getattr(x, "tolist", None)  # a NumPy array or scalar
    if callable(tolist):
        return _plain(tolist())
    return str(x)


def report_bytes(report: Report | Mapping[str, Any]) -> bytes:
    """The report as indented JSON bytes (newline-terminated); never fails on a value."""
    import orjson

    doc = report.to_json() if isinstance(report, Report) else report
    option = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    try:
        data = orjson.dumps(doc, option=option)
    except TypeError:  # an integer beyond 64 bits, or a value orjson does not know
        data = orjson.dumps(_plain(doc), option=option)
    return data + b"\n"


def write_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, then rename)."""

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return atomic_write(path, write)


def write_report(report: Report | Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/report.json`` atomically; serialised before the file is touched."""
    return write_bytes(report_bytes(report), out_dir / REPORT_FILE)
