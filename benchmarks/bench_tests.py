"""What the project's own tests cost: the README's test command against the torch import.

Times, side by side in one run and alternating so machine load hits all alike:

* ``python -c "import torch"`` — the floor every Python process in the suite pays;
* the README's test command (today ``python -m pytest tests -n auto --dist loadgroup
  --disable-plugin-autoload -p xdist.plugin -p pytest_timeout``), or any command given after ``--``,
  in this checkout or, with ``--revisions``, in a temporary worktree of each git revision named
  (its own ``infralens`` first on ``PYTHONPATH``): before and after a change, measured together.
  Each tree runs the test command of its own README, so a change to the command is measured too.

Prints medians and ratios. Goals: the suite in at most 60 s on a quiet 2-core machine, and in
at most 30× the torch import. Where ``/proc/stat`` exists (Linux) it also prints, per command, the
machine's busy, idle and stolen core-seconds while it ran: wall time on a shared machine swings
with its neighbours, while busy core-seconds show what a change saves in work and idle ones what
it leaves unused (a test waiting out a real limit, a worker with nothing left to run). With
``--census`` it adds where the busy time went: the CPU seconds of each kind of process the command
started, xdist workers, judges, sandboxed learner workers and so on (:mod:`benchmarks.census`).
Run from the repository root::

    python benchmarks/bench_tests.py [--runs 3] [--census] [--revisions main~5 main] [-- python -m pytest ... -n 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: benchmarks/ alone is on the path

from benchmarks.census import Census  # noqa: E402

QUIET = ["-q", "-p", "no:cacheprovider"]  # added to the README's command: no progress dots, no cache written
TORCH_IMPORT = [sys.executable, "-c", "import torch"]
GOAL_SECONDS = 60  # on a quiet 2-core machine
GOAL_RATIO = 30


@dataclass(frozen=True)
class CoreSeconds:
    """Core-seconds of the whole machine, from the first line of ``/proc/stat``: ``busy`` (user, nice,
    system, irq, softirq), ``idle`` (idle, iowait) and ``stolen`` (by the hypervisor for other guests)."""

    busy: float
    idle: float
    stolen: float

    def __sub__(self, earlier: "CoreSeconds") -> "CoreSeconds":
        return CoreSeconds(self.busy - earlier.busy, self.idle - earlier.idle, self.stolen - earlier.stolen)


@dataclass(frozen=True)
class Run:
    """One timed command: wall seconds, the machine's core-seconds meanwhile (None without ``/proc/stat``),
    exit code, and with ``--census`` its process tree's CPU seconds by kind of process (:mod:`benchmarks.census`)."""

    wall: float
    machine: CoreSeconds | None
    returncode: int
    by_kind: dict[str, float] | None = None


def machine_core_seconds() -> CoreSeconds | None:
    """The machine's core-seconds since boot, or None where ``/proc/stat`` cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (tick / os.sysconf("SC_CLK_TCK") for tick in ticks)
    return CoreSeconds(user + nice + system + irq + softirq, idle + iowait, steal)


def readme_setup_commands(readme: Path) -> list[str]:
    """The commands of the README's "Set-up on a fresh machine" section, one per ``bash`` block."""
    setup = readme.read_text(encoding="utf-8").split("## Set-up on a fresh machine", 1)[-1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def readme_test_command(tree: Path) -> list[str]:
    """The README's test command in ``tree`` (the set-up section's second command, after its
    ``pip install ... &&``), run with this interpreter and :data:`QUIET`."""
    readme = tree / "README.md"
    commands = readme_setup_commands(readme)
    if len(commands) != 2 or "python -m pytest" not in commands[1]:
        raise SystemExit(f"{readme}: expected the set-up section's two commands, the second running `python -m pytest`; found {commands}")
    command = shlex.split(commands[1].rsplit("&&", 1)[-1])
    return [sys.executable if part == "python" else part for part in command] + QUIET


def _shown(command: list[str]) -> str:
    return " ".join(Path(part).name if part == sys.executable else part for part in command)


def timed(command: list[str], cwd: Path = REPO, env: dict[str, str] | None = None, census: bool = False) -> tuple[Run, subprocess.CompletedProcess]:
    """``command`` run in ``cwd``: its :class:`Run`, and how it ended. With ``census``, its process
    tree is sampled meanwhile, at a cost the census reports (several percent of one core)."""
    before, start = machine_core_seconds(), time.perf_counter()
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        sampling = Census(process.pid).start() if census else None
        stdout, stderr = process.communicate()
    wall, after = time.perf_counter() - start, machine_core_seconds()
    by_kind = sampling.stop() if sampling else None
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return Run(wall, after - before if before and after else None, done.returncode, by_kind), done


def _summary(runs: list[Run]) -> str:
    """``"median 88.0 s (87.1, 88.0, 90.2); machine 150 busy, 12 idle, 2 stolen core-s"`` (medians)."""
    walls = [run.wall for run in runs]
    shown = f"median {statistics.median(walls):.1f} s ({', '.join(f'{wall:.1f}' for wall in walls)})"
    machine = [run.machine for run in runs if run.machine]
    if len(machine) == len(runs):
        shown += (f"; machine {statistics.median(m.busy for m in machine):.0f} busy, {statistics.median(m.idle for m in machine):.0f} idle, "
                  f"{statistics.median(m.stolen for m in machine):.0f} stolen core-s")
    return shown


def _census(runs: list[Run]) -> str:
    """Median CPU seconds per kind of process over ``runs``, and what the samples missed of the machine's busy time."""
    kinds = list(dict.fromkeys(kind for run in runs for kind in run.by_kind))
    medians = {kind: statistics.median(run.by_kind.get(kind, 0.0) for run in runs) for kind in kinds}
    lines = [f"    {seconds:6.1f}  {kind}" for kind, seconds in sorted(medians.items(), key=lambda item: -item[1])]
    if all(run.machine for run in runs):
        unseen = statistics.median(run.machine.busy - sum(run.by_kind.values()) for run in runs)
        lines.append(f"    {unseen:6.1f}  not seen by the samples (processes gone between two samples, the kernel)")
    return "\n".join(["  CPU seconds by kind of process (medians):", *lines])


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
    parser.add_argument("--census", action="store_true", help="also print the CPU seconds of each kind of process the command started (Linux)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the test command to time, after -- (default: the README's)")
    args = parser.parse_args()
    given = [part for part in args.command if part != "--"]

    with worktrees(args.revisions) if args.revisions else this_checkout() as trees:
        commands = {name: given or readme_test_command(tree) for name, tree in trees.items()}
        floor: list[float] = []
        suites: dict[str, list[Run]] = {name: [] for name in trees}
        for _ in range(args.runs):
            floor.append(timed(TORCH_IMPORT)[0].wall)
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tree), os.environ.get("PYTHONPATH"))))} if args.revisions else None
                run, done = timed(commands[name], tree, env, census=args.census)
                if done.returncode != 0 and not args.revisions:
                    raise SystemExit(f"{_shown(commands[name])} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
                suites[name].append(run)
    floor_median = statistics.median(floor)
    print(f"python -c 'import torch': median {floor_median:.2f} s ({', '.join(f'{t:.2f}' for t in floor)})")
    for name, runs in suites.items():
        median = statistics.median(run.wall for run in runs)
        failed = [run.returncode for run in runs if run.returncode != 0]
        note = f" — exit {failed[0]} in {len(failed)} of {len(runs)} runs" if failed else ""
        print(f"{name}: {_shown(commands[name])}")
        print(f"  {_summary(runs)}, {median / floor_median:.1f}x the torch import (goals: at most {GOAL_SECONDS} s on 2 quiet cores, at most {GOAL_RATIO}x){note}")
        if args.census:
            print(_census(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
