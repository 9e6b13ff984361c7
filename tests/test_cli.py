"""The infralens command on the synthetic checkout and on this repository's presets."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import run_python, write
from infralens import cli

SOLVED_ADD = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    # TODO: double it
    raise NotImplementedError("double")
'''


def infralens(root, *args: str) -> subprocess.CompletedProcess:
    """``infralens --root ROOT *args`` run from ``root``, in this process: a new Python would cost
    most of each test. Output and exit code come back as from a subprocess."""
    out, err = io.StringIO(), io.StringIO()
    caller, callers_conftest = os.getcwd(), sys.modules.get("conftest")
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(["--root", str(root), *args])
            except SystemExit as stop:  # argparse's usage errors
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(caller)
        if callers_conftest is not None:  # a checks/conftest.py the run imported took the name
            sys.modules["conftest"] = callers_conftest
    return subprocess.CompletedProcess(["infralens", *args], code, out.getvalue(), err.getvalue())


def test_progress_prints_the_table_without_pytest_output(kata_repo):
    done = infralens(kata_repo, "progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "InfraLens progress (exercises/)"
    assert "lab99  demo   0/3     0/4     not started" in done.stdout
    assert "passed" not in done.stdout and "collected" not in done.stdout


def test_progress_follows_the_learner(kata_repo):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    done = infralens(kata_repo, "progress")
    assert "lab99  demo   2/3     3/4     in progress" in done.stdout
    assert "next for lab99: start `double` in exercises/lab99_demo/demo.py" in done.stdout
    assert "every selected lab is done." in infralens(kata_repo, "progress", "--solutions").stdout


def test_hints_escalate_one_level_per_call_for_the_first_unsolved_exercise(kata_repo):
    first, second, third, again = (infralens(kata_repo, "hint", "lab99") for _ in range(4))
    assert first.stdout.startswith("lab99 · `add` in exercises/lab99_demo/demo.py · hint 1 of 3\n\nWhat does + do?")
    assert "(still stuck? `infralens hint lab99` again shows hint 2 of 3)" in first.stdout
    assert "hint 2 of 3\n\nUse the + operator." in second.stdout
    assert "hint 3 of 3\n\nreturn a + b" in third.stdout and "still stuck" not in third.stdout
    assert "hint 3 of 3" in again.stdout, "the last level repeats once reached"
    ledger = json.loads((kata_repo / ".infralens" / "hints.json").read_text())
    assert ledger == {"lab99_demo:add": 3}


def test_hint_moves_on_when_an_exercise_is_solved(kata_repo):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    assert "`double`" in infralens(kata_repo, "hint", "99").stdout


def test_hint_level_and_exercise_options(kata_repo):
    assert "return 2 * a" in infralens(kata_repo, "hint", "lab99", "--exercise", "double", "--level", "3").stdout
    too_far = infralens(kata_repo, "hint", "lab99", "--level", "9")
    assert too_far.returncode == 2 and "--level must be between 1 and 3 for `add`, got 9" in too_far.stderr
    unknown = infralens(kata_repo, "hint", "lab99", "--exercise", "mul")
    assert unknown.returncode == 2 and "lab99 has no exercise 'mul'; its exercises are add, double" in unknown.stderr


def test_hint_for_unknown_lab_lists_the_labs(kata_repo):
    done = infralens(kata_repo, "hint", "lab42")
    assert done.returncode == 2 and "unknown lab 'lab42': the labs here are lab99" in done.stderr


def test_hint_when_everything_passes(kata_repo):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD.replace('# TODO: double it\n    raise NotImplementedError("double")', "return 2 * a"))
    assert "every check of lab99 passes: nothing left to hint" in infralens(kata_repo, "hint", "lab99").stdout


def test_outside_a_checkout_the_command_says_where_it_looked(tmp_path):
    done = run_python("-m", "infralens", "progress", cwd=tmp_path)
    assert done.returncode == 2 and "no InfraLens Katas checkout at or above" in done.stderr


@pytest.mark.parametrize(("mutant", "caught"), [("return a - b", True), ("return b + a", False)])
def test_mutants_command_reports_caught_and_surviving_mutants(kata_repo, mutant, caught):
    write(kata_repo / "tests/mutants/lab99_demo.toml", f'''
        [[mutant]]
        name = "the-mutant"
        file = "demo.py"
        why = "a plausible mistake"
        find = "return a + b"
        replace = "{mutant}"
    ''')
    done = infralens(kata_repo, "mutants", "lab99")
    assert done.returncode == (0 if caught else 1), done.stdout + done.stderr
    assert ("lab99  caught    the-mutant" if caught else "lab99  SURVIVED  the-mutant") in done.stdout


def test_a_mutant_that_no_longer_applies_is_an_error(kata_repo):
    write(kata_repo / "tests/mutants/lab99_demo.toml", '''
        [[mutant]]
        name = "stale"
        file = "demo.py"
        why = "the solution changed"
        find = "return a * b"
        replace = "return a"
    ''')
    done = infralens(kata_repo, "mutants", "lab99")
    assert done.returncode == 2 and "mutant 'stale': `find` occurs 0 times in lab99_demo/demo.py, expected exactly once" in done.stderr


def test_the_command_line_starts_without_pytest_or_torch():
    """`infralens grade`, `merge` and `models` run no checks in their own process: importing pytest
    (0.14 s) or torch (seconds) there would slow every one of them."""
    done = run_python("-c", "import sys, infralens.cli; print(sorted({'pytest', 'torch'} & set(sys.modules)))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.slow  # fresh Python processes
def test_models_lists_presets_and_shows_one():
    listing = run_python("-m", "infralens", "models")
    assert listing.returncode == 0
    assert any(line.startswith("llama-3-8b") and "8,030,261,248" in line for line in listing.stdout.splitlines())
    one = run_python("-m", "infralens", "models", "qwen2.5-7b")
    assert "num_key_value_heads" in one.stdout and "7615616512" in one.stdout
    unknown = run_python("-m", "infralens", "models", "gpt-5")
    assert unknown.returncode == 2 and "no model preset 'gpt-5'; presets:" in unknown.stderr


def test_hint_answers_from_the_last_run_without_running_the_checks(kata_repo):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    ran = run_python("-m", "pytest", cwd=kata_repo, timeout=300)
    assert ran.returncode == 1 and (kata_repo / ".infralens" / "last-run.json").is_file(), ran.stdout
    # Were the checks run again, this would break them; the lab's own files are untouched, so the last run stands.
    write(kata_repo / "checks/conftest.py", "raise RuntimeError('the checks were run again')\n")
    done = infralens(kata_repo, "hint", "lab99")
    assert done.returncode == 0, done.stderr
    assert "`double`" in done.stdout


def test_hint_runs_the_lab_again_once_its_files_changed(kata_repo):
    ran = run_python("-m", "pytest", cwd=kata_repo, timeout=300)
    assert ran.returncode == 1
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    assert "`double`" in infralens(kata_repo, "hint", "lab99").stdout, "a stale last run would still point at `add`"


def test_a_narrowed_run_is_not_taken_as_the_labs_state(kata_repo):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    ran = run_python("-m", "pytest", "-k", "add", cwd=kata_repo, timeout=300)
    assert ran.returncode == 0, ran.stdout
    write(kata_repo / "checks/conftest.py", "raise RuntimeError('the checks were run again')\n")
    done = infralens(kata_repo, "hint", "lab99")
    assert done.returncode == 2 and "the checks could not run" in done.stderr, "only `add` ran: the lab must be run again to know"
