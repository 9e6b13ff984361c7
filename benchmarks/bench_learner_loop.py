"""What the learner's loop costs: pytest runs a learner makes, against the bare `import torch` they all pay.

Times, side by side and interleaved round by round (so a busy machine slows every command alike):

* ``python -c "import torch"``, the floor;
* ``pytest --lab LAB`` on the untouched starter (goal: at most 1.5x the floor);
* ``pytest --lab LAB --solutions``, every check of the lab passing (goal: at most 1.5x);
* ``pytest``, every lab on the untouched starters (goal: at most 2.5x).

Runs in a scratch copy of the checkout (the learner's own ``.infralens/`` stays untouched), after
one untimed round that lets Python cache its bytecode, as it does on a learner's machine from the
second run on (``PYTHONDONTWRITEBYTECODE`` is cleared for the runs). Prints each command's median
and its ratio to the floor, and the other pytest plugins this environment loads into every run.
``--kata-plugins-only`` loads only what a learner's install has (the InfraLens plugin and
pytest-timeout), for a development environment full of other plugins. Run from the repository root::

    python benchmarks/bench_learner_loop.py [--lab 02] [--rounds 5] [--kata-plugins-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COPIED = ("checks", "exercises", "solutions", "pyproject.toml", "conftest.py")
KATA_PLUGINS = ("infralens.plugin", "pytest_timeout")


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="02", help="the lab of the single-lab runs (default 02)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; each runs every command once (default 5)")
    parser.add_argument("--kata-plugins-only", action="store_true", help="load only the InfraLens plugin and pytest-timeout, as a learner's install does")
    args = parser.parse_args()

    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    if args.kata_plugins_only:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        pytest += [option for plugin in KATA_PLUGINS for option in ("-p", plugin)]
    commands = {
        "import torch": ([sys.executable, "-c", "import torch"], None),
        f"pytest --lab {args.lab} (untouched starter)": ([*pytest, f"--lab={args.lab}"], 1.5),
        f"pytest --lab {args.lab} --solutions (all pass)": ([*pytest, f"--lab={args.lab}", "--solutions"], 1.5),
        "pytest (every lab, untouched starters)": (pytest, 2.5),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="infralens-bench-") as scratch:
        checkout = Path(scratch)
        for name in COPIED:
            source = REPO / name
            (shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__")) if source.is_dir() else shutil.copy2(source, checkout / name))
        for name, (command, _goal) in commands.items():
            timed(command, checkout, env)  # warm-up: bytecode caches, as from a learner's second run on
        for _round in range(args.rounds):
            for name, (command, _goal) in commands.items():
                times[name].append(timed(command, checkout, env))

    floor = statistics.median(times["import torch"])
    others = sorted({ep.value.split(".")[0].split(":")[0] for ep in entry_points(group="pytest11")} - {plugin.split(".")[0] for plugin in KATA_PLUGINS})
    loaded = "none (--kata-plugins-only)" if args.kata_plugins_only else (", ".join(others) or "none")
    print(f"other pytest plugins loaded into every run: {loaded}")
    print(f"{args.rounds} rounds, medians in seconds (each round runs every command once, interleaved)")
    for name, (_command, goal) in commands.items():
        median = statistics.median(times[name])
        ratio = f"{median / floor:.2f}x import torch" + (f" (goal: at most {goal}x, {'met' if median / floor <= goal else 'MISSED'})" if goal else "")
        print(f"{name:<48} {median:6.2f} s  {ratio}   runs: {', '.join(f'{t:.2f}' for t in times[name])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
