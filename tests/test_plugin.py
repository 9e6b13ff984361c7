"""The pytest plugin end to end, on a tiny synthetic checkout (lab99_demo): each run a pytest
session of its own, in this process (a new Python each time would cost most of the module's time)."""

from __future__ import annotations

import json
import sys

import pytest

import infralens.grading.remote  # noqa: F401  (what --isolate loads; pytester unloads what a run imported, and numpy cannot load twice)
from conftest import FOREIGN_PLUGINS, run_python, write

SOLVED_WRONG = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a - b


def double(a: int) -> int:
    """Return 2a."""
    return 2 * a
'''


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*args)


def _before_short_summary(out: str) -> str:
    """The report above pytest's own short summary, whose lines CI (CI=true) prints untruncated."""
    return out.split("short test summary info")[0]


def test_untouched_starter_is_reported_as_not_started_without_tracebacks(kata_repo, pytester):
    result = _run(pytester)
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "3 not started" in out
    assert "Traceback" not in out and "def test_" not in out and "FAILURES" not in out
    assert "Not started yet" not in out, "a lab not begun at all is summed up by its next line, not listed function by function"
    assert "lab99  demo   0/3     0/4     not started" in out
    assert "next for lab99: start `add` in exercises/lab99_demo/demo.py (stuck? infralens hint lab99)" in out


def test_mid_lab_the_functions_not_started_are_listed_with_their_file_and_line(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG.replace("a - b", "a + b").replace("return 2 * a", "# TODO: double it\n    raise NotImplementedError"))
    out = _run(pytester).stdout.str()
    assert "lab99  `double` is not started: replace its `raise NotImplementedError` at exercises/lab99_demo/demo.py:9 (1 check waiting)" in out
    assert "2 passed, 1 not started" in out


def test_solutions_pass_and_exit_zero(kata_repo, pytester):
    result = _run(pytester, "--solutions")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "3 passed" in out and "every selected lab is done." in out
    assert "checking the references in solutions/" in out


def test_a_failing_check_shows_the_learner_message_not_pytest_internals(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG)
    result = _run(pytester)
    out = result.stdout.str()
    assert result.ret == 1
    assert "add(2, 3) returned -1, expected 5" in out
    assert "(check at checks/lab99_demo/test_demo.py:7)" in out
    assert "assert -1 == 5" not in out, "pytest's assertion introspection should be hidden in compact mode"
    assert "lab99  demo   1/3     1/4     in progress" in out
    assert "next for lab99: fix `add` (2 checks open): add(2, 3) returned -1, expected 5" in out


def test_tb_long_restores_full_tracebacks(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG)
    out = _run(pytester, "--tb=long").stdout.str()
    assert "def test_add_small_numbers(lab):" in out and "assert -1 == 5" in out


def test_an_exception_in_learner_code_points_at_the_learner_line(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG.replace("return a - b", "return a + undefined_name"))
    out = _run(pytester).stdout.str()
    assert "your `add` raised NameError: name 'undefined_name' is not defined" in out
    assert "at exercises/lab99_demo/demo.py:3  `return a + undefined_name`" in out


def test_a_syntax_error_is_reported_once_with_its_file_and_line(kata_repo, pytester, tmp_path):
    write(kata_repo / "exercises/lab99_demo/demo.py", "def add(a, b):\n    return a +\n")
    report = tmp_path / "report.json"
    result = _run(pytester, f"--infralens-report={report}")
    out = result.stdout.str()
    assert result.ret == 1
    full = "exercises/lab99_demo/demo.py:2 has a syntax error: invalid syntax `return a +`; it could not be imported, and every check of lab99 needs this file"
    assert _before_short_summary(out).count(full) == 2, "once under FAILURES, once as the lab's next step; never once per check"
    assert out.count("FAILED checks/") == 1, "one line in pytest's short summary, not one per check"
    assert "1 failed, 2 blocked" in out
    assert "next for lab99: fix the file first: exercises/lab99_demo/demo.py:2 has a syntax error" in out
    assert "`add`" not in out and "`double`" not in out, "no exercise is blamed for a file that does not import"
    messages = [check["message"] for check in json.loads(report.read_text())["checks"]]
    short = "exercises/lab99_demo/demo.py:2 does not import (explained at the first failing check of lab99)"
    assert messages == [full, short, short]


def test_an_import_error_names_the_learner_line(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", "import math\nfrom math import nothing_here\n")
    out = _run(pytester).stdout.str()
    assert "exercises/lab99_demo/demo.py:2 could not be imported: ImportError: cannot import name 'nothing_here' from 'math'" in out


def test_focus_one_lab_and_reject_unknown_labs(kata_repo, pytester):
    write(kata_repo / "checks/lab98_other/test_other.py", '''
        import pytest

        @pytest.mark.check("other")
        def test_other(lab):
            assert lab.other.value() == 1
    ''')
    write(kata_repo / "checks/lab98_other/test_broken.py", "raise RuntimeError('collected although --lab 99 was asked for')\n")
    focused = _run(pytester, "--solutions", "--lab", "99")
    out = focused.stdout.str()
    assert focused.ret == 0 and "collected 3 items" in out and "3 passed in" in out, out
    assert "deselected" not in out and "collected although" not in out, "other labs are not collected at all"
    unknown = _run(pytester, "--lab", "lab42")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown lab 'lab42': the labs here are lab98, lab99" in unknown.stderr.str()


@pytest.mark.parametrize("name", ["5", "lab05", "lab05_activation_quant"])
def test_a_lab_missing_from_the_checkout_says_so_and_lists_the_labs(kata_repo, pytester, name):
    result = _run(pytester, "--lab", name)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Lab 05 (activation quantization) is part of the track but not in this checkout. The labs here are lab99" in result.stderr.str()


@pytest.mark.parametrize("layout", ["repo-root", "bare-labs"])
def test_submission_layouts(kata_repo, pytester, tmp_path, layout):
    student = tmp_path / "student"
    code = student / "exercises" if layout == "repo-root" else student
    write(code / "lab99_demo/demo.py", SOLVED_WRONG.replace("a - b", "a + b"))
    result = _run(pytester, f"--submission={student}")
    assert result.ret == 0, result.stdout.str()


def test_submission_errors_are_explained(kata_repo, pytester, tmp_path):
    missing = _run(pytester, f"--submission={tmp_path / 'nowhere'}")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR and "no such folder" in missing.stderr.str()
    (tmp_path / "empty").mkdir()
    empty = _run(pytester, f"--submission={tmp_path / 'empty'}")
    assert "expected a repository root holding exercises/ or a folder of labNN_* folders" in empty.stderr.str()
    write(tmp_path / "other/lab98_other/other.py", "X = 1\n")
    lab_missing = _run(pytester, f"--submission={tmp_path / 'other'}")
    assert "lab99_demo/ is missing: this lab's folder is not in the tree being checked" in lab_missing.stdout.str()


def test_submission_with_a_space_gets_the_equals_form(kata_repo, pytester, tmp_path):
    write(tmp_path / "student/lab99_demo/demo.py", SOLVED_WRONG)
    result = pytester.run(sys.executable, "-m", "pytest", "--submission", str(tmp_path / "student"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"Write the option with '=': pytest --submission={tmp_path / 'student'}" in result.stderr.str()


def test_public_checks_may_not_use_the_oracle(kata_repo, pytester):
    write(kata_repo / "checks/lab99_demo/test_demo.py", '''
        import pytest

        @pytest.mark.check("add")
        def test_cheat(lab, oracle):
            assert lab.demo.add(1, 2) == oracle.demo.add(1, 2)
    ''')
    out = _run(pytester, "--solutions").stdout.str()
    assert "only hidden checks (files named test_hidden_*.py) may use the oracle fixture" in out


def test_every_check_needs_a_check_marker(kata_repo, pytester):
    write(kata_repo / "checks/lab99_demo/test_demo.py", "def test_unmarked(lab):\n    assert True\n")
    result = _run(pytester, "--solutions")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "has no @pytest.mark.check(exercise, points=...) marker" in result.stderr.str()


def test_check_marker_arguments_are_validated(kata_repo, pytester):
    write(kata_repo / "checks/lab99_demo/test_demo.py", '''
        import pytest

        @pytest.mark.check("add", points=0)
        def test_free(lab):
            assert True
    ''')
    result = _run(pytester, "--solutions")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "points must be a positive integer, got 0" in result.stderr.str()


def test_gpu_checks_skip_with_a_reason_without_cuda(kata_repo, pytester):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the skip path needs a machine without it")
    write(kata_repo / "checks/lab99_demo/test_gpu.py", '''
        import pytest

        @pytest.mark.gpu
        @pytest.mark.check("add")
        def test_on_gpu(lab):
            assert False, "must not run without CUDA"
    ''')
    result = _run(pytester, "--solutions", "-rs")
    out = result.stdout.str()
    assert result.ret == 0 and "1 skipped" in out
    assert "needs a CUDA device; torch.cuda.is_available() is False here" in out
    assert "3/3 (+1 skipped)" in out


def test_gpu_checks_are_skipped_and_left_out_of_the_totals_under_isolate(kata_repo, pytester, tmp_path):
    write(kata_repo / "checks/lab99_demo/test_gpu.py", '''
        import pytest

        @pytest.mark.gpu
        @pytest.mark.check("add", points=5)
        def test_on_gpu(lab):
            assert False, "must not run in an isolated run"
    ''')
    report = tmp_path / "report.json"
    result = _run(pytester, "--collect-only", "--isolate", f"--infralens-report={report}")
    assert result.ret == 0, result.stdout.str()
    collected = json.loads(report.read_text())["collected"]
    assert {c["nodeid"].split("::")[1] for c in collected} == {"test_add_small_numbers", "test_double", "test_add_matches_reference"}
    out = _run(pytester, "--solutions", "--isolate", "-rs", "-k", "gpu").stdout.str()
    assert "1 skipped" in out and "under --isolate that code runs in a worker that receives CPU tensors" in out


def test_hidden_inputs_follow_the_seed_and_the_seed_is_recorded(kata_repo, pytester, tmp_path):
    write(kata_repo / "checks/lab99_demo/test_hidden_demo.py", '''
        import pytest

        @pytest.mark.check("add")
        def test_show_draw(lab, rng):
            assert False, f"drew {rng.random()!r}"
    ''')

    def draw(seed: int) -> tuple[str, int]:
        report = tmp_path / f"report-{seed}.json"
        _run(pytester, "--solutions", f"--seed={seed}", f"--infralens-report={report}")
        data = json.loads(report.read_text())
        [hidden] = [c for c in data["checks"] if c["hidden"]]
        return hidden["message"].splitlines()[0], data["seed"]

    first, second, other = draw(7), draw(7), draw(8)
    assert first == second and first[1] == 7
    assert first[0] != other[0]
    header = _run(pytester, "--solutions", "--seed=7").stdout.str()
    assert "hidden-check seed 7 (rerun with --seed 7)" in header


def test_json_report_lists_every_check_with_its_lab_exercise_and_points(kata_repo, pytester, tmp_path):
    report = tmp_path / "report.json"
    _run(pytester, f"--infralens-report={report}")
    data = json.loads(report.read_text())
    rows = {c["nodeid"].split("::")[1]: c for c in data["checks"]}
    assert set(rows) == {"test_add_small_numbers", "test_double", "test_add_matches_reference"}
    add = rows["test_add_small_numbers"]
    assert (add["lab"], add["exercise"], add["points"], add["hidden"], add["outcome"], add["function"]) == ("lab99_demo", "add", 2, False, "not_started", "add")
    assert rows["test_add_matches_reference"]["hidden"] is True
    assert data["labs"][0]["status"] == "not started" and data["labs"][0]["max_points"] == 4


def test_solutions_and_submission_together_are_refused(kata_repo, pytester, tmp_path):
    result = _run(pytester, "--solutions", f"--submission={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "give one of them" in result.stderr.str()


def test_the_plugin_stays_out_of_other_projects(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    # A Python of its own: another project autoloads every installed plugin, ours among them (the
    # other plugins beside the project are kept out: they take no part and cost seconds to import).
    foreign = [f"-pno:{name}" for name in FOREIGN_PLUGINS]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *foreign)
    assert result.ret == 0 and "InfraLens" not in result.stdout.str()
    refused = pytester.runpytest_subprocess("--solutions", *foreign)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR and "is not an InfraLens Katas checkout" in refused.stderr.str()


@pytest.mark.parametrize("where", ["exercises/lab99_demo", "exercises/lab99_demo/demo.py", "exercises"])
def test_an_exercise_folder_or_starter_as_the_path_runs_its_lab(kata_repo, pytester, where):
    result = _run(pytester, "--solutions", where)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "3 passed" in out and "every selected lab is done." in out


@pytest.mark.parametrize("options", [(), ("--lab", "99")])
def test_pytest_from_inside_an_exercise_folder_runs_that_lab(kata_repo, options):
    done = run_python("-m", "pytest", "--solutions", *options, cwd=kata_repo / "exercises" / "lab99_demo", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout and "every selected lab is done." in done.stdout


def test_an_exercise_path_without_checks_is_a_usage_error(kata_repo, pytester):
    (kata_repo / "exercises/lab97_nothing").mkdir()
    result = _run(pytester, "exercises/lab97_nothing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no checks for" in result.stderr.str() and "the labs are lab99" in result.stderr.str()


@pytest.mark.parametrize(
    ("options", "cell"),
    [
        (("--exercise", "add"), "2/2 selected of 3"),
        (("-k", "double"), "1/1 selected of 3"),
        (("--deselect", "checks/lab99_demo/test_demo.py::test_double"), "2/2 selected of 3"),
        (("checks/lab99_demo/test_demo.py::test_double",), "1/1 selected"),
        (("checks/lab99_demo/test_demo.py",), "2/2 selected"),
    ],
    ids=["exercise", "keyword", "deselect", "node-id", "file"],
)
def test_a_narrowed_run_never_calls_the_lab_done(kata_repo, pytester, options, cell):
    result = _run(pytester, "--solutions", *options)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert f"lab99  demo   {cell}" in out and "selection passes" in out
    assert "every selected lab is done" not in out and " done" not in out.split("InfraLens progress")[1]
    assert "next for lab99: the selected checks pass; run all" in out


def test_a_run_stopped_at_the_first_failure_shows_what_ran(kata_repo, pytester, tmp_path):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG)
    report = tmp_path / "report.json"
    out = _run(pytester, "-x", f"--infralens-report={report}").stdout.str()
    [lab] = json.loads(report.read_text())["labs"]
    assert lab["complete"] is False and lab["status"] != "done" and lab["lab_checks"] == 3
    assert f"{lab['passed']}/{lab['total']} selected of 3" in out


def test_feedback_is_capped_in_the_terminal_and_the_report(kata_repo, pytester, tmp_path):
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_WRONG.replace("return a - b", "raise ValueError('x' * 40_000)").replace(
        "return 2 * a", "raise RuntimeError('\\n'.join(f'row {i}' for i in range(500)))"
    ))
    report = tmp_path / "report.json"
    out = _run(pytester, f"--infralens-report={report}").stdout.str()
    assert "x" * 2000 not in out and "row 100" not in out
    assert "more characters cut)" in out and "more lines cut)" in out
    assert "at exercises/lab99_demo/demo.py:3" in out, "the learner's line survives the cut"
    for check in json.loads(report.read_text())["checks"]:
        assert len(check["message"]) <= 1600 and check["message"].count("\n") <= 20, check["message"][:200]


def test_reports_cross_xdist_workers(kata_repo, pytester):
    pytest.importorskip("xdist")
    write(kata_repo / "exercises/lab99_demo/demo.py", "def add(a, b):\n    return a +\n")
    result = _run(pytester, "-n", "2")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1 and "INTERNALERROR" not in out, out
    # Each worker explains the broken file once; the others' checks are blocked by it.
    assert _before_short_summary(out).count("has a syntax error") <= 2 and "blocked" in out, out
