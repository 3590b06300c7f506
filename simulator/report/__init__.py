"""Reports people look at: the terminal summary, the HTML page with plots, CSV, run-to-run
comparison and CI thresholds — all rendered from a finished report, never recomputed.

:mod:`.document` owns the report's schema: one typed :class:`~simulator.report.document.Report`
that a live run, the Locust master and the offline model each assemble once, and that every
renderer reads (``from_json`` also reads version 1 files; :mod:`.legacy` the model's first
shape). A section a report lacks is skipped with a note, never a crash.

Modules: ``document`` (the model), ``store`` (read and write report.json), ``metrics`` (the
flat numbers thresholds and comparisons name), ``thresholds``, ``compare``, ``terminal``,
``plots`` and ``html`` (matplotlib, imported only when a page is rendered), and ``csvout``.
"""

from __future__ import annotations
