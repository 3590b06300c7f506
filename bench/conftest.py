"""Benchmarks: ``make bench`` (saves JSON), ``make bench-compare`` (fails on a regression past
25 % of the mean against ``make bench-baseline``), ``make bench-quick`` (CI: every benchmark's
assertions once, untimed, at small sizes — ``FLASHSALE_BENCH_QUICK=1``)."""

import sys
from pathlib import Path

# the shared helpers (bench/harness.py) import as ``harness``, as they do for the scripts
sys.path.insert(0, str(Path(__file__).resolve().parent))
