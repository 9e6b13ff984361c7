"""What the project's own tests cost: the README's test command against the torch import.

Times, side by side in one run and alternating so machine load hits both alike:

* ``python -c "import torch"`` — the floor every Python process in the suite pays;
* the README's test command (``python -m pytest --solutions checks tests -n auto --dist loadgroup
  --disable-plugin-autoload -p xdist.plugin -p pytest_timeout``), or any command given after ``--``.

Prints medians and the ratio. Goal: the suite in at most 30× the torch import (about 60 s on a
quiet 2-core machine). Run from the repository root::

    python benchmarks/bench_tests.py [--runs 3] [-- python -m pytest --solutions checks tests -n 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README_TESTS = [sys.executable, "-m", "pytest", "--solutions", "checks", "tests", "-n", "auto", "--dist", "loadgroup",
                "--disable-plugin-autoload", "-p", "xdist.plugin", "-p", "pytest_timeout", "-q", "-p", "no:cacheprovider"]
TORCH_IMPORT = [sys.executable, "-c", "import torch"]
GOAL_RATIO = 30


def timed(command: list[str]) -> float:
    """Wall seconds of ``command``; exits with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the test command to time, after -- (default: the README's)")
    args = parser.parse_args()
    command = [part for part in args.command if part != "--"] or README_TESTS

    floor, suite = [], []
    for _ in range(args.runs):
        floor.append(timed(TORCH_IMPORT))
        suite.append(timed(command))
    floor_median, suite_median = statistics.median(floor), statistics.median(suite)
    print(f"python -c 'import torch': median {floor_median:.2f} s ({', '.join(f'{t:.2f}' for t in floor)})")
    print(f"{' '.join(Path(c).name if c == sys.executable else c for c in command)}: median {suite_median:.1f} s ({', '.join(f'{t:.1f}' for t in suite)})")
    print(f"ratio: {suite_median / floor_median:.1f}x the torch import (goal: at most {GOAL_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
