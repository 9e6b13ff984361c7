"""What the project's own tests cost: the README's test command against the torch import.

Times, side by side in one run and alternating so machine load hits all alike:

* ``python -c "import torch"`` — the floor every Python process in the suite pays;
* the README's test command (``python -m pytest --solutions checks tests -n auto --dist loadgroup
  --disable-plugin-autoload -p xdist.plugin -p pytest_timeout``), or any command given after ``--``,
  in this checkout or, with ``--revisions``, in a temporary worktree of each git revision named
  (its own ``infralens`` first on ``PYTHONPATH``): before and after a change, measured together.

Prints medians and ratios. Goal: the suite in at most 30× the torch import (about 60 s on a
quiet 2-core machine). Run from the repository root::

    python benchmarks/bench_tests.py [--runs 3] [--revisions main~5 main] [-- python -m pytest ... -n 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README_TESTS = [sys.executable, "-m", "pytest", "--solutions", "checks", "tests", "-n", "auto", "--dist", "loadgroup",
                "--disable-plugin-autoload", "-p", "xdist.plugin", "-p", "pytest_timeout", "-q", "-p", "no:cacheprovider"]
TORCH_IMPORT = [sys.executable, "-c", "import torch"]
GOAL_RATIO = 30


def timed(command: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of ``command`` in ``cwd``, and how it ended."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


@contextmanager
def worktrees(revisions: list[str]) -> Iterator[dict[str, Path]]:
    """A detached git worktree of each revision, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="infralens-bench-") as scratch:
        trees: dict[str, Path] = {}
        try:
            for index, revision in enumerate(revisions):
                tree = Path(scratch) / f"{index}"
                subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--quiet", "--detach", str(tree), revision], check=True)
                trees[revision] = tree
            yield trees
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


@contextmanager
def this_checkout() -> Iterator[dict[str, Path]]:
    """This checkout, as the only tree to time."""
    yield {"this checkout": REPO}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--revisions", nargs="+", metavar="REV", help="time the command on these git revisions, side by side, instead of this checkout")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the test command to time, after -- (default: the README's)")
    args = parser.parse_args()
    command = [part for part in args.command if part != "--"] or README_TESTS
    shown = " ".join(Path(part).name if part == sys.executable else part for part in command)

    with worktrees(args.revisions) if args.revisions else this_checkout() as trees:
        floor: list[float] = []
        suites: dict[str, list[tuple[float, int]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            floor.append(timed(TORCH_IMPORT)[0])
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tree), os.environ.get("PYTHONPATH"))))} if args.revisions else None
                elapsed, done = timed(command, tree, env)
                if done.returncode != 0 and not args.revisions:
                    raise SystemExit(f"{shown} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
                suites[name].append((elapsed, done.returncode))
    floor_median = statistics.median(floor)
    print(f"python -c 'import torch': median {floor_median:.2f} s ({', '.join(f'{t:.2f}' for t in floor)})")
    print(f"{shown}:")
    for name, runs in suites.items():
        median = statistics.median(t for t, _ in runs)
        failed = [code for _, code in runs if code != 0]
        note = f" — exit {failed[0]} in {len(failed)} of {len(runs)} runs" if failed else ""
        print(f"  {name}: median {median:.1f} s ({', '.join(f'{t:.1f}' for t, _ in runs)}), "
              f"{median / floor_median:.1f}x the torch import (goal: at most {GOAL_RATIO}x){note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
