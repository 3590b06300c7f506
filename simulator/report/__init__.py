"""Reports people look at: the terminal summary, the HTML page with plots, CSV, run-to-run
comparison and CI thresholds — all rendered from a finished report dict, never recomputed.

A live run's ``report.json`` (:func:`simulator.results.summarize` plus the audit) and the offline
model's report (:func:`simulator.model.report.build_report`) differ in shape; :mod:`.view` reads
either into one :class:`~simulator.report.view.ReportView`, and every renderer works on that.
A section one of them lacks is skipped with a note, never a crash.

Modules: ``view`` (read a report), ``metrics`` (the flat numbers thresholds and comparisons
name), ``thresholds``, ``compare``, ``terminal``, ``plots`` and ``html`` (matplotlib, imported
only when a page is rendered), ``csvout``, and ``series`` (pure NumPy functions that add
spectrum and per-SKU series to a run's report when it is summarised).
"""

from __future__ import annotations
