"""Lab 04 reference quantizers vs the ``gguf`` package on a 4096 × 4096 float32 matrix.

Quantizes the same matrix to Q8_0 and Q4_0 with both, several times each, checks that the
bytes agree, and prints the median times and the ratio gguf / reference (above 1: the
reference is faster). Run from the repository root::

    python benchmarks/bench_gguf_quantize.py [--rows 4096] [--cols 4096] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infralens.loader import LabCode  # noqa: E402


def median_seconds(fn, x: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    result = fn(x)  # warm-up (first-touch allocations, lazy imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096, help="a multiple of 32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        import gguf
    except ImportError:
        print("the gguf package is needed for this benchmark: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    reference = LabCode(REPO / "solutions", "lab04_block_formats", "solutions").block_formats

    x = (np.random.default_rng(args.seed).standard_normal((args.rows, args.cols), dtype=np.float32) * 0.02)
    print(f"quantizing a {args.rows} × {args.cols} float32 matrix ({x.nbytes / 2**20:.0f} MiB), median of {args.repeats} runs")
    print(f"{'format':8} {'gguf (s)':>10} {'reference (s)':>14} {'gguf / reference':>17}")
    for name, qtype, ours in (
        ("Q8_0", gguf.GGMLQuantizationType.Q8_0, reference.quantize_q8_0),
        ("Q4_0", gguf.GGMLQuantizationType.Q4_0, reference.quantize_q4_0),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_s, theirs = median_seconds(lambda a: gguf.quants.quantize(a, qtype), x, args.repeats)
        ours_s, mine = median_seconds(ours, x, args.repeats)
        if not np.array_equal(theirs, mine):
            print(f"{name}: the bytes differ from gguf", file=sys.stderr)
            return 1
        print(f"{name:8} {theirs_s:10.4f} {ours_s:14.4f} {theirs_s / ours_s:16.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
