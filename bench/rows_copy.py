"""Benchmark: copying order rows as opaque 32-byte records vs as a structured array.

``simulator.schedule`` takes and joins rows through a ``np.void`` view of ORDER_DTYPE
(``_raw``): NumPy then copies whole records instead of field by field. Prints the time of a
fancy-index take (half the rows) and of a concatenation, each way, and the ratio.

    .venv/bin/python bench/rows_copy.py [--rows 1000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from simulator.schedule import _RAW, ORDER_DTYPE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    rows = np.zeros(args.rows, dtype=ORDER_DTYPE)
    rng = np.random.default_rng(1)
    index = np.sort(rng.choice(args.rows, args.rows // 2, replace=False))
    raw = rows.view(_RAW)
    cases = {
        "take": (lambda: rows[index], lambda: raw[index].view(ORDER_DTYPE)),
        "concatenate": (
            lambda: np.concatenate([rows, rows]),
            lambda: np.concatenate([raw, raw]).view(ORDER_DTYPE),
        ),
    }
    for name, (fields, records) in cases.items():
        t = [min(timeit.repeat(f, number=3, repeat=args.reps)) / 3 for f in (fields, records)]
        print(
            f"{name:<12} structured {t[0] * 1e3:7.2f} ms  records {t[1] * 1e3:7.2f} ms  "
            f"{t[0] / t[1]:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
