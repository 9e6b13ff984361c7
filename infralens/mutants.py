"""Mutation testing for the checks: each mutant is the reference solution with one plausible learner
mistake, and the lab's checks must catch it — a *public* check, so a student release catches it too —
and the hidden checks must give it the same verdict whatever the seed.

Mutants live as data in ``tests/mutants/labNN_slug.toml``::

    [[mutant]]
    name = "kv-counted-once"              # unique in the file
    file = "quantization_plan.py"         # the solution module to patch
    why = "K and V counted once: the cache holds both"
    find = '''return 2 * model.num_hidden_layers * per_tensor'''
    replace = '''return model.num_hidden_layers * per_tensor'''

``find`` must occur exactly once in the solution, so a mutant that no longer applies after the
solution changes is reported instead of silently testing nothing.

All mutants of a lab run in one pytest session (:mod:`infralens.sweep`) after the reference:
public checks until the first failure, then the hidden checks once per seed in :data:`SEEDS`,
each time only the checks that call the function a mutant changes (the others provably give the
reference's verdict; see :mod:`infralens.sweep`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infralens.hints import tomllib
from infralens.sweep import Change, Target, TargetRun, changed_lines, sweep

SEEDS = (1, 2, 3)


class MutantError(ValueError):
    """A mutants file or a mutant that cannot be applied; the message names the file and the mutant."""


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    why: str
    find: str
    replace: str


@dataclass(frozen=True)
class MutantResult:
    """``caught`` when at least one check failed on the mutant for a reason other than an import error;
    ``caught_by_public`` when a public check did (what a student release still catches);
    ``hidden_stable`` when the hidden checks that fail are the same for every seed in :data:`SEEDS`."""

    lab: str
    mutant: Mutant
    caught: bool
    caught_by_public: bool
    hidden_stable: bool
    failing_checks: tuple[str, ...]
    detail: str


def load_mutants(path: Path) -> list[Mutant]:
    """Read and validate a mutants file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise MutantError(f"{path}: {error}") from error
    mutants = []
    for index, entry in enumerate(data.get("mutant", []), start=1):
        missing = [key for key in ("name", "file", "why", "find", "replace") if not isinstance(entry.get(key), str)]
        if missing or not entry.get("find"):
            raise MutantError(f"{path}, mutant #{index}: needs string fields name, file, why, find (non-empty) and replace; missing {missing or ['find']}")
        mutants.append(Mutant(entry["name"], entry["file"], entry["why"], entry["find"], entry["replace"]))
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise MutantError(f"{path}: mutant names must be unique, got {names}")
    return mutants


def baseline_target(solution_dir: Path, into: Path, name: str, seeds: tuple[int, ...] = SEEDS) -> Target:
    """A copy of ``solution_dir`` at ``into/<lab folder>``, as the sweep target that records calls
    for the mutants whose ``baseline`` is ``name``.

    A copy, not ``solutions/`` itself: hidden checks load the oracle from ``solutions/``, and the
    checked tree at that very path would be the same modules, so every oracle call would count as
    a call into the checked tree and each mutant would rerun checks that only the oracle's copy of
    the changed function ever ran.
    """
    shutil.copytree(solution_dir, into / solution_dir.name, ignore=shutil.ignore_patterns("__pycache__"))
    return Target(name, into, seeds, record_calls=True)


def mutant_target(solution_dir: Path, mutant: Mutant, into: Path, baseline: str, seeds: tuple[int, ...] = SEEDS) -> Target:
    """Copy ``solution_dir`` to ``into/<lab folder>`` with ``mutant`` applied, as a sweep target.

    The target runs public checks until one catches the mutant, then the hidden checks once per
    seed, each time only the checks that can see the change from ``baseline`` (the sweep target
    that ran ``solution_dir`` with ``record_calls``).
    """
    target = into / solution_dir.name
    shutil.copytree(solution_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
    source = target / mutant.file
    if not source.is_file():
        raise MutantError(f"mutant {mutant.name!r}: {solution_dir.name}/{mutant.file} does not exist")
    text = source.read_text(encoding="utf-8")
    count = text.count(mutant.find)
    if count != 1:
        raise MutantError(f"mutant {mutant.name!r}: `find` occurs {count} times in {solution_dir.name}/{mutant.file}, expected exactly once")
    source.write_text(text.replace(mutant.find, mutant.replace), encoding="utf-8")
    start = text.index(mutant.find)
    first, last, in_function = changed_lines(text, start, start + len(mutant.find))
    change = Change(baseline, f"{solution_dir.name}/{mutant.file}", first, last, in_function)
    return Target(mutant.name, into, seeds, until_caught=True, change=change)


def run_mutants(repo_root: Path, lab_folder: str) -> list[MutantResult]:
    """Run the lab's checks against every mutant in ``tests/mutants/<lab_folder>.toml``, in one session."""
    repo_root = Path(repo_root).resolve()
    mutants = load_mutants(repo_root / "tests" / "mutants" / f"{lab_folder}.toml")
    solutions = repo_root / "solutions"
    with tempfile.TemporaryDirectory(prefix="infralens-mutants-") as scratch:
        baseline = baseline_target(solutions / lab_folder, Path(scratch) / "reference", "reference")
        targets = [mutant_target(solutions / lab_folder, m, Path(scratch) / m.name, baseline.name) for m in mutants]
        runs = sweep(repo_root, lab_folder, [baseline, *targets])[1:]
    return [judge_mutant(lab_folder, mutant, run) for mutant, run in zip(mutants, runs)]


def judge_mutant(lab_folder: str, mutant: Mutant, run: TargetRun) -> MutantResult:
    """The verdict on one mutant from its sweep run."""
    failing = [c for c in run.public + [row for rows in run.hidden.values() for row in rows] if c["outcome"] not in ("passed", "skipped")]
    broken = [c for c in failing if "could not be imported" in c["message"]]
    caught = bool(failing) and not broken
    detail = broken[0]["message"] if broken else (failing[0]["message"].splitlines()[0] if failing else "every check passed")
    by_public = caught and any(not c["hidden"] for c in failing)
    stable = len(set(run.hidden_verdicts().values())) <= 1
    names = tuple(dict.fromkeys(c["nodeid"] for c in failing))
    return MutantResult(lab_folder, mutant, caught, by_public, stable, names, detail)
