"""Fixtures for the repository's own tests: the checkout, a tiny synthetic kata repo, pytest runs in a subprocess."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import lab_sources
from infralens.labs import discover_labs
from infralens.mutants import SEEDS, Mutant, baseline_target, load_mutants, mutant_target  # SEEDS: every mutant's hidden checks run under these
from infralens.sweep import Target, TargetRun, sweep

REPO = Path(__file__).resolve().parent.parent
LABS = [lab.folder for lab in discover_labs(REPO)]
# Pytest plugins installed beside the project (hypothesis, pytest-benchmark, anyio, ...) take no part
# in what these tests check, yet cost every pytest session they start about 2 s of imports: the
# synthetic checkout's own configuration blocks them.
OUR_PLUGINS = {"infralens.plugin", "timeout", "xdist", "xdist.looponfail"}
FOREIGN_PLUGINS = sorted({entry.name for entry in entry_points(group="pytest11")} - OUR_PLUGINS)


SUBPROCESS_FIXTURES = {"pytester", "kata_repo"}
REFERENCE_TESTS = "_reference.py"  # test_labNN_*_reference.py: a reference against its independent oracles
QUICK_SELECTION = "not slow"  # the README's selection while changing a check or a reference: -m "not slow"


GRADED_BATCH = "graded-batch"  # the xdist group of test_grading's batch: its grader runs several processes at once


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow, besides tests marked so: a test that runs pytest on a synthetic checkout (a new pytest
    session each time) and the references' tests against independent oracles.

    Then the order xdist hands tests out in (the README's command keeps it: ``--no-loadscope-reorder``),
    a stable sort by :func:`_run_order`."""
    for item in items:
        if SUBPROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name.endswith(REFERENCE_TESTS):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_run_order)


def _run_order(item: pytest.Item) -> int:
    """0: the graded batch, whose grader keeps several processes busy; 1: the tests marked ``waits``,
    so that the worker sleeping through their limits leaves its core to those processes; 2: the
    other slow tests, the long ones among them started early; 3: the quick ones, which even out
    the end so that neither worker waits long on the other's last test."""
    group = item.get_closest_marker("xdist_group")
    if group is not None and group.args and group.args[0] == GRADED_BATCH:
        return 0
    if item.get_closest_marker("waits") is not None:
        return 1
    return 2 if item.get_closest_marker("slow") is not None else 3


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under the quick selection (exactly ``-m "not slow"``), a test module whose every test is slow
    is not even imported: it would cost each worker its imports only for every test to be deselected."""
    if config.getoption("markexpr") != QUICK_SELECTION or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return True if _slow_as_a_whole(collection_path) else None


def _slow_as_a_whole(module: Path) -> bool:
    """A reference test module, or one whose module-level ``pytestmark`` holds ``pytest.mark.slow``."""
    if module.name.endswith(REFERENCE_TESTS):
        return True
    for node in ast.parse(module.read_bytes()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return any(ast.unparse(part) == "pytest.mark.slow" for part in ast.walk(node.value))
    return False


def run_python(*args: str, cwd: Path = REPO, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python *args`` in a subprocess (same interpreter), text output captured; ``env`` adds variables."""
    environment = {**os.environ, **env} if env else None
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


_sweeps: dict[str, "LabSweep"] = {}


@dataclass(frozen=True)
class LabSweep:
    """Every run of one lab's checks that the invariant tests judge, from one pytest session:
    the starter, the reference (under a fresh seed, then :data:`SEEDS`), the adversarial trees of
    :data:`lab_sources.ADVERSARIAL_BODIES` and every mutant (public checks until caught, hidden
    checks once per seed; only the checks that call the function a mutant changes, see
    :mod:`infralens.sweep`)."""

    runs: dict[str, TargetRun]
    mutants: list[Mutant]
    fresh_seed: int


def fresh_seed() -> int:
    """A new random seed for the hidden checks, never one of :data:`SEEDS` (the sweeps run those anyway)."""
    seed = secrets.randbelow(2**31)
    return seed if seed not in SEEDS else fresh_seed()


def sweep_lab(lab_folder: str, tmp_path_factory: pytest.TempPathFactory) -> LabSweep:
    """Run (once per test process, in it) every tree the invariant tests need against ``lab_folder``'s checks."""
    if lab_folder in _sweeps:
        return _sweeps[lab_folder]
    scratch = tmp_path_factory.mktemp(f"sweep-{lab_folder}")
    seed = fresh_seed()
    solution = baseline_target(REPO / "solutions" / lab_folder, scratch / "solution", "solution", (seed, *SEEDS))
    targets = [Target("starter", REPO / "exercises", SEEDS[:1]), solution]
    for name, body in lab_sources.ADVERSARIAL_BODIES.items():
        targets.append(Target(name, lab_sources.write_adversarial_tree(REPO / "exercises" / lab_folder, body, scratch / name), SEEDS))
    mutants_file = REPO / "tests" / "mutants" / f"{lab_folder}.toml"
    mutants = load_mutants(mutants_file) if mutants_file.is_file() else []
    for mutant in mutants:
        target = mutant_target(REPO / "solutions" / lab_folder, mutant, scratch / "mutants" / mutant.name, baseline="solution")
        targets.append(dataclasses.replace(target, name=f"mutant:{mutant.name}"))
    # In this process: a session of its own costs seconds of startup (torch, pytest, collection)
    # per lab, and the sweep's checks run on one torch thread anyway (the plugin sees to that).
    try:
        runs = sweep(REPO, lab_folder, targets)
    except RuntimeError as error:
        pytest.fail(f"the sweep of {lab_folder} failed: {error}", pytrace=False)
    _sweeps[lab_folder] = LabSweep({run.name: run for run in runs}, mutants, seed)
    return _sweeps[lab_folder]


def solution_under_a_fresh_seed(lab_folder: str) -> tuple[int, TargetRun]:
    """``(seed, run)``: every check of ``lab_folder`` against its reference under a new random seed:
    what ``pytest --solutions --lab NN --seed SEED`` runs.

    Read from the lab's sweep where this process ran it (its reference drew a fresh seed first);
    otherwise (``-m "not slow"``) run in this process, at a fraction of the cost of the same
    checks as items of this session (each would cross to the xdist controller).
    """
    swept = _sweeps.get(lab_folder)
    if swept is not None:
        run = swept.runs["solution"]
        return swept.fresh_seed, TargetRun(run.name, run.public, {swept.fresh_seed: run.hidden[swept.fresh_seed]})
    seed = fresh_seed()
    try:
        (run,) = sweep(REPO, lab_folder, [Target("solution", REPO / "solutions", (seed,))])
    except RuntimeError as error:
        pytest.fail(f"the checks of {lab_folder} could not run: {error}", pytrace=False)
    return seed, run


# A session run in this process finds the plugins already imported by the suite's own session,
# which (started with --disable-plugin-autoload) never marked them for assertion rewriting.
DEMO_PYPROJECT = f"""
[tool.pytest.ini_options]
testpaths = ["checks"]
addopts = {json.dumps(["--strict-markers", "--strict-config", "-p", "no:cacheprovider", *(f"-pno:{name}" for name in FOREIGN_PLUGINS)])}
filterwarnings = ["ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]
"""

DEMO_STARTER = '''
"""Demo lab: add two numbers."""


def add(a: int, b: int) -> int:
    """Return a + b."""
    # TODO: add them
    raise NotImplementedError("add")


def double(a: int) -> int:
    """Return 2a."""
    # TODO: double it
    raise NotImplementedError("double")
'''

DEMO_SOLUTION = '''
"""Demo lab: add two numbers."""


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    return 2 * a
'''

DEMO_CHECKS = '''
import pytest


@pytest.mark.check("add", points=2)
def test_add_small_numbers(lab):
    got = lab.demo.add(2, 3)
    assert got == 5, f"add(2, 3) returned {got}, expected 5"


@pytest.mark.check("double")
def test_double(lab):
    got = lab.demo.double(4)
    assert got == 8, f"double(4) returned {got}, expected 8"
'''

DEMO_HIDDEN = '''
import pytest


@pytest.mark.check("add")
def test_add_matches_reference(lab, oracle, rng):
    a, b = rng.randint(-1000, 1000), rng.randint(-1000, 1000)
    got, expected = lab.demo.add(a, b), oracle.demo.add(a, b)
    assert got == expected, f"add({a}, {b}) returned {got}, expected {expected}"
'''

DEMO_HINTS = '''
[[exercise]]
name = "add"
file = "demo.py"
hints = ["What does + do?", "Use the + operator.", "return a + b"]

[[exercise]]
name = "double"
file = "demo.py"
hints = ["What is twice a number?", "Multiply by two.", "return 2 * a"]
'''


@pytest.fixture
def kata_repo(pytester: pytest.Pytester) -> Path:
    """A minimal checkout with one lab, lab99_demo: starter, solution, public and hidden checks, hints."""
    root = pytester.path
    files = {
        "pyproject.toml": DEMO_PYPROJECT,
        "exercises/lab99_demo/demo.py": DEMO_STARTER,
        "exercises/lab99_demo/hints.toml": DEMO_HINTS,
        "solutions/lab99_demo/demo.py": DEMO_SOLUTION,
        "checks/lab99_demo/test_demo.py": DEMO_CHECKS,
        "checks/lab99_demo/test_hidden_demo.py": DEMO_HIDDEN,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
