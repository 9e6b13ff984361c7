"""Fixtures for the repository's own tests: the checkout, a tiny synthetic kata repo, pytest runs in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infralens.labs import discover_labs

REPO = Path(__file__).resolve().parent.parent
LABS = [lab.folder for lab in discover_labs(REPO)]


def run_python(*args: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python *args`` in a subprocess (same interpreter), text output captured."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_lab_checks(lab_folder: str, *options: str, tmp_path: Path) -> tuple[int, dict, str]:
    """Run one lab's checks in a subprocess; return exit code, the JSON report and the output."""
    report = tmp_path / f"{lab_folder}-report.json"
    done = run_python("-m", "pytest", f"checks/{lab_folder}", "-p", "no:cacheprovider", "-q", f"--infralens-report={report}", *options)
    output = done.stdout + done.stderr
    assert report.is_file(), f"the checks of {lab_folder} did not run (exit {done.returncode}):\n{output[-3000:]}"
    return done.returncode, json.loads(report.read_text()), output


DEMO_PYPROJECT = """
[tool.pytest.ini_options]
testpaths = ["checks"]
addopts = ["--strict-markers", "--strict-config", "-p", "no:cacheprovider"]
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
