"""What sandboxed grading costs: a class of solution and starter copies against plain pytest runs.

Builds a class of ``--copies`` copies of ``solutions/`` and as many of ``exercises/`` (the
untouched starters), grades it with ``infralens grade --jobs N`` (each submission taken in,
judged in its own process, learner code in its own bubblewrap-sandboxed worker), and side by side
times plain in-process ``pytest --solutions`` runs of the same labs, half before the grading and
half after, so a change in the machine's load shows in both. Prints seconds per submission and
the ratio to one plain run.
Run from the repository root::

    python benchmarks/bench_grading.py [--copies 20] [--jobs 2] [--plain-runs 3] [--labs lab10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20, help="copies of the solutions, and as many of the starters")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plain-runs", type=int, default=3)
    parser.add_argument("--labs", default="", help="comma-separated labs (default: all)")
    args = parser.parse_args()
    lab_options = [f"--lab={lab}" for lab in args.labs.split(",") if lab]

    plain_command = [sys.executable, "-m", "pytest", "--solutions", "-q", "-p", "no:cacheprovider", "--seed=1", *lab_options]
    plain = [timed(plain_command) for _ in range(args.plain_runs // 2)]
    with tempfile.TemporaryDirectory(prefix="infralens-bench-") as scratch:
        class_dir = Path(scratch) / "class"
        for index in range(args.copies):
            shutil.copytree(REPO / "solutions", class_dir / f"solved-{index:02d}" / "exercises")
            shutil.copytree(REPO / "exercises", class_dir / f"starter-{index:02d}" / "exercises")
        submissions = sorted(str(p) for p in class_dir.iterdir())
        report = Path(scratch) / "grades.json"
        labs = ["--labs", args.labs] if args.labs else []
        graded = timed([sys.executable, "-m", "infralens", "grade", *submissions, "--jobs", str(args.jobs), "--seed", "1", "--json", str(report), *labs])
        isolation = json.loads(report.read_text())["isolation"]
    plain += [timed(plain_command) for _ in range(args.plain_runs - args.plain_runs // 2)]

    per_submission = graded / len(submissions)
    plain_median = statistics.median(plain)
    print(f"plain `pytest --solutions`: median {plain_median:.2f} s over {len(plain)} runs ({', '.join(f'{t:.2f}' for t in plain)})")
    print(f"isolation: {isolation}")
    print(f"infralens grade, {len(submissions)} submissions ({args.copies} solved + {args.copies} starters), --jobs {args.jobs}: {graded:.1f} s")
    print(f"seconds per submission: {per_submission:.2f}")
    print(f"ratio per submission / one plain run: {per_submission / plain_median:.2f}x (goal: below 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
