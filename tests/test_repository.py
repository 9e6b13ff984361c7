"""Repository-level promises: the README's two commands are what CI runs, the plain-Python labs it names
start without torch, and the tree stays clean."""

from __future__ import annotations

import re
import subprocess

import pytest

from benchmarks.bench_tests import readme_setup_commands
from conftest import FOREIGN_PLUGINS, LABS, REPO, run_python

PLAIN_PYTHON_LABS = ("01", "04", "09", "10")  # README, "Working on a lab": their runs never import torch


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_second():
    commands = readme_setup_commands(REPO / "README.md")
    assert len(commands) == 2, f"the set-up section must hold exactly two commands, found {commands}"
    learner, tests = commands
    assert learner.endswith("python -m pytest") and "install" in learner
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines(), f".ci/run must run the README's test command verbatim: {tests!r}"
    assert ci.index("torch==2.13.0") < ci.index(tests), ".ci/run installs torch 2.13.0 before the project"


def test_readme_lab_table_marks_exactly_the_existing_labs_available():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    available = set(re.findall(r"\| `(lab\d\d_[a-z0-9_]+)` \|[^\n]*\| available \|", text))
    assert available == set(LABS), f"README marks {sorted(available)} available, but checks/ holds {sorted(LABS)}"


@pytest.mark.slow  # a pytest session of its own on four labs
def test_the_plain_python_labs_run_without_importing_torch():
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    named = f"Labs {', '.join(PLAIN_PYTHON_LABS[:-1])} and {PLAIN_PYTHON_LABS[-1]}"
    assert f"{named} are plain Python" in text, f"README: name the labs that start without torch ({named})"
    probe = "import sys, pytest; code = pytest.main(sys.argv[1:]); print('torch' in sys.modules); sys.exit(code)"
    labs = [f"--lab={lab}" for lab in PLAIN_PYTHON_LABS]
    done = run_python("-c", probe, "--solutions", "-q", "-p", "no:cacheprovider", *labs, *(f"-pno:{name}" for name in FOREIGN_PLUGINS))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False", (
        f"a run of {named} imported torch (seconds on every learner run): keep torch out of their checks, "
        "their code and infralens.checking, or change the README"
    )


def test_no_generated_files_are_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()
    generated = [p for p in tracked if "__pycache__" in p or p.endswith((".pyc", ".egg-info")) or p.startswith((".pytest_cache", ".infralens/"))]
    assert not generated, f"generated files are tracked: {generated}"
