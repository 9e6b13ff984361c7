"""infralens grade end to end: hostile submissions get correct partial grades with reasons, the
batch always completes, and every output format has the structure its consumer expects."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import REPO, run_python, write

# One module-scoped batch grades every hostile submission (two judging processes at a time).
pytestmark = pytest.mark.timeout(900)

GOOD = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    return 2 * a
'''

# Each submission breaks `add` (worth 3 of the 4 points: a 2-point public check and a 1-point
# hidden one) or everything, in its own way; `double` (1 point) still works where it can.
HOSTILE = {
    "infinite-loop": (GOOD.replace("return a + b", "while True:\n        pass"), 1, "did not return within"),
    "exit-inside": (GOOD.replace("return a + b", "import sys\n    sys.exit(3)"), 1, "called sys.exit(3)"),
    "os-exit-at-import": ("import os\nos._exit(0)\n" + GOOD, 0, "ended its process"),
    "sys-exit-at-import": ("import sys\nsys.exit('bye')\n" + GOOD, 0, "importing your module raised your code called sys.exit(bye)"),
    "segfault": (GOOD.replace("return a + b", "import ctypes\n    return ctypes.string_at(0)"), 1, "SIGSEGV"),
    "memory-bomb": (GOOD.replace("return a + b", "blocks = [bytearray(1 << 30) for _ in range(64)]\n    return a + b"), 1, "MemoryError"),
    "syntax-error": ("def add(a, b):\n    return a +\n", 0, "SyntaxError"),
    "floods-output": (GOOD.replace("return a + b", "print('x' * 5_000_000)\n    return a + b"), 4, None),
    "deletes-its-folder": (GOOD.replace("return a + b", "import shutil, pathlib\n    shutil.rmtree(pathlib.Path(__file__).parent, ignore_errors=True)\n    return a + b"), 4, None),
    "patches-the-judge": (
        "import pytest, torch, numpy, infralens.checking, infralens.plugin\n"
        "torch.equal = lambda *a: True\nnumpy.array_equal = lambda *a: True\n"
        "pytest.fail = lambda *a, **k: None\ninfralens.checking.expect_value_error = lambda *a, **k: None\n"
        + GOOD.replace("return a + b", "return a - b"),
        1,
        "returned -1, expected 5",
    ),
    "os-exit-inside": (GOOD.replace("return a + b", "import os\n    os._exit(0)"), 1, "ended its process"),
    "import-error": ("import numpy.this_module_does_not_exist\n" + GOOD, 0, "could not be imported: ModuleNotFoundError"),
    "lying-result": (
        "class Anything(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n\n\n"
        + GOOD.replace("return a + b", "return Anything(0)"),
        1,
        "expected 5",
    ),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the synthetic lab's solution, its starter and every hostile submission in one batch."""
    from conftest import DEMO_CHECKS, DEMO_HIDDEN, DEMO_HINTS, DEMO_PYPROJECT, DEMO_SOLUTION, DEMO_STARTER

    root = tmp_path_factory.mktemp("repo")
    for relative, text in {
        "pyproject.toml": DEMO_PYPROJECT, "exercises/lab99_demo/demo.py": DEMO_STARTER, "exercises/lab99_demo/hints.toml": DEMO_HINTS,
        "solutions/lab99_demo/demo.py": DEMO_SOLUTION, "checks/lab99_demo/test_demo.py": DEMO_CHECKS, "checks/lab99_demo/test_hidden_demo.py": DEMO_HIDDEN,
    }.items():
        write(root / relative, text)
    class_dir = tmp_path_factory.mktemp("class")
    write(class_dir / "solved/exercises/lab99_demo/demo.py", GOOD)
    write(class_dir / "starter/lab99_demo/demo.py", DEMO_STARTER)
    (class_dir / "missing-lab/lab42_other").mkdir(parents=True)
    for name, (source, _points, _reason) in HOSTILE.items():
        write(class_dir / name / "lab99_demo/demo.py", source)
    # A submission that ships pytest and interpreter hooks: none of them may load anywhere.
    hooks = class_dir / "ships-hooks"
    write(hooks / "exercises/lab99_demo/demo.py", GOOD.replace("return a + b", "return a - b"))
    for folder in (hooks, hooks / "exercises", hooks / "exercises/lab99_demo"):
        write(folder / "conftest.py", "import pytest\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n    return True\n")
        write(folder / "sitecustomize.py", "import os\nos._exit(0)\n")
        write(folder / "usercustomize.py", "import os\nos._exit(0)\n")
        write(folder / "evil.pth", "import os; os._exit(0)\n")
    out = tmp_path_factory.mktemp("out")
    done = run_python(
        "-m", "infralens", "--root", str(root), "grade", *sorted(str(p) for p in class_dir.iterdir()),
        "--jobs", "2", "--seed", "11", "--call-timeout", "3", "--memory-limit", "2048",
        "--csv", str(out / "grades.csv"), "--json", str(out / "grades.json"), "--junit", str(out / "grades.xml"),
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "grades.json").read_text())
    by_name = {Path(s["path"]).name: s for s in data["submissions"]}
    return {"root": root, "class": class_dir, "out": out, "data": data, "by_name": by_name, "stdout": done.stdout, "stderr": done.stderr}


def test_the_solution_gets_full_marks_and_the_starter_none(graded):
    assert graded["by_name"]["solved"]["total"] == graded["by_name"]["solved"]["max_points"] == 4
    assert graded["by_name"]["starter"]["total"] == 0
    assert all(c["outcome"] == "not_started" for c in graded["by_name"]["starter"]["checks"])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_submissions_get_a_correct_grade_and_a_reason(graded, name):
    _source, points, reason = HOSTILE[name]
    result = graded["by_name"][name]
    assert result["total"] == points, f"{name}: {result['total']} points, expected {points}\n{json.dumps(result['checks'], indent=1)[:3000]}"
    if reason:
        messages = " | ".join(c["message"] for c in result["checks"] if c["outcome"] != "passed")
        assert reason in messages, f"{name}: the feedback should say {reason!r}, got: {messages[:2000]}"


def test_a_submissions_own_conftest_sitecustomize_and_pth_files_never_load(graded):
    result = graded["by_name"]["ships-hooks"]
    assert result["total"] == 1, "only `double` is right; add is wrong and no shipped hook may change that"
    assert "add(2, 3) returned -1, expected 5" in " ".join(c["message"] for c in result["checks"])


def test_a_missing_lab_folder_is_zero_with_a_reason(graded):
    result = graded["by_name"]["missing-lab"]
    assert result["total"] == 0
    assert all("lab99_demo/ is missing" in c["message"] for c in result["checks"])


def test_the_batch_completes_with_one_result_per_submission(graded):
    assert len(graded["data"]["submissions"]) == len(list(graded["class"].iterdir()))
    count = len(list(graded["class"].iterdir()))
    assert f"graded {count} submissions" in graded["stdout"] and "checks missed most often:" in graded["stdout"]
    assert f"[{count}/{count}]" in graded["stderr"], "a progress line per submission in non-interactive logs"


def test_learner_code_never_touched_the_originals(graded):
    assert (graded["class"] / "deletes-its-folder" / "lab99_demo" / "demo.py").is_file(), "the worker runs in a scratch copy"
    assert (graded["root"] / "solutions" / "lab99_demo" / "demo.py").is_file()


def test_csv_has_a_row_per_submission_with_lab_and_total_columns(graded):
    rows = list(csv.DictReader((graded["out"] / "grades.csv").open()))
    assert list(rows[0]) == ["submission", "lab99_demo", "total", "max_points", "seed", "error"]
    assert len(rows) == len(list(graded["class"].iterdir())) and {r["seed"] for r in rows} == {"11"}
    solved = next(r for r in rows if r["submission"].endswith("solved"))
    assert (solved["lab99_demo"], solved["total"], solved["max_points"]) == ("4", "4", "4")


def test_junit_xml_has_a_suite_per_submission_and_failures_with_messages(graded):
    tree = ElementTree.parse(graded["out"] / "grades.xml").getroot()
    suites = tree.findall("testsuite")
    assert tree.tag == "testsuites" and len(suites) == len(list(graded["class"].iterdir()))
    starter = next(s for s in suites if s.get("name").endswith("starter"))
    assert starter.get("tests") == "3" and starter.get("failures") == "3"
    failure = starter.find("testcase/failure")
    assert "is not started" in failure.get("message")


def test_rewriting_the_graders_files_stops_grading(graded, tmp_path):
    # The judge's working folder is the grader's checkout; a worker running as the grader's own
    # user can reach it through /proc. Either it may not write there, or the change is caught.
    attack = GOOD.replace(
        "return a + b",
        "import os, pathlib\n    target = pathlib.Path(f'/proc/{os.getppid()}/cwd/solutions/lab99_demo/demo.py')\n"
        "    try:\n        target.write_text(target.read_text().replace('return a + b', 'return a - b'))\n"
        "    except OSError:\n        pass\n    return a - b",
    )
    write(tmp_path / "attacker/lab99_demo/demo.py", attack)
    reference = graded["root"] / "solutions/lab99_demo/demo.py"
    before = reference.read_text()
    done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(tmp_path / "attacker"), "--seed", "3", cwd=graded["root"])
    after = reference.read_text()
    reference.write_text(before)
    if after == before:
        assert done.returncode == 0 and "graded 1 submission" in done.stdout
    else:
        assert done.returncode == 3, done.stdout + done.stderr
        assert "the grader's files (checks, solutions, infralens, pyproject.toml, conftest.py) changed while grading" in done.stderr


def test_same_seed_same_grades(graded, tmp_path):
    report = tmp_path / "again.json"
    done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(graded["class"] / "solved"), str(graded["class"] / "starter"),
                      "--seed", "11", "--json", str(report), cwd=graded["root"])
    assert done.returncode == 0, done.stderr
    again = {Path(s["path"]).name: s for s in json.loads(report.read_text())["submissions"]}
    for name in ("solved", "starter"):
        strip = lambda s: [(c["nodeid"], c["outcome"], c["message"]) for c in s["checks"]]  # noqa: E731
        assert strip(again[name]) == strip(graded["by_name"][name])


def test_gradescope_results_follow_the_autograder_spec(graded, tmp_path):
    results = tmp_path / "results.json"
    done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(graded["class"] / "exit-inside"), "--gradescope", str(results), "--call-timeout", "3", cwd=graded["root"])
    assert done.returncode == 0, done.stderr
    data = json.loads(results.read_text())
    assert data["score"] == 1 and isinstance(data["execution_time"], float)
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_published"}
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
    hidden = next(t for t in data["tests"] if t["visibility"] == "after_published")
    assert hidden["output"].startswith("hidden check: feedback is withheld")
    too_many = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(graded["class"] / "solved"), str(graded["class"] / "starter"), "--gradescope", str(results), cwd=graded["root"])
    assert too_many.returncode == 2 and "exactly one submission" not in too_many.stdout and "one submission's results.json" in too_many.stderr


def test_shards_split_the_class_and_merge_back(graded, tmp_path):
    submissions = [str(graded["class"] / name) for name in ("solved", "starter", "syntax-error")]
    for index in (1, 2):
        done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", *submissions, "--shard", f"{index}/2", "--seed", "11",
                          "--json", str(tmp_path / f"shard{index}.json"), cwd=graded["root"])
        assert done.returncode == 0, done.stderr
    sizes = [len(json.loads((tmp_path / f"shard{i}.json").read_text())["submissions"]) for i in (1, 2)]
    assert sorted(sizes) == [1, 2]
    merged = run_python("-m", "infralens", "merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard2.json"), "--json", str(tmp_path / "all.json"), "--csv", str(tmp_path / "all.csv"))
    assert merged.returncode == 0, merged.stderr
    totals = {Path(s["path"]).name: s["total"] for s in json.loads((tmp_path / "all.json").read_text())["submissions"]}
    assert totals == {"solved": 4, "starter": 0, "syntax-error": 0}
    twice = run_python("-m", "infralens", "merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard1.json"), "--json", str(tmp_path / "x.json"))
    assert twice.returncode == 2 and "graded in more than one shard" in twice.stderr


def test_bad_shard_spec(graded):
    done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(graded["class"] / "solved"), "--shard", "3/2", cwd=graded["root"])
    assert done.returncode == 2 and "--shard 3/2: the job number must be between 1 and 2" in done.stderr


def test_release_has_no_solutions_or_hidden_checks_and_its_learner_run_works(tmp_path):
    out = tmp_path / "student"
    done = run_python("-m", "infralens", "release", str(out))
    assert done.returncode == 0, done.stderr
    assert not (out / "solutions").exists() and not (out / "tests").exists()
    assert not list(out.glob("checks/*/test_hidden_*.py")) and list(out.glob("checks/lab10_quantization_plan/test_*.py"))
    workflow = (out / ".github/workflows/classroom.yml").read_text()
    assert "classroom-resources/autograding-command-grader@v1" in workflow and "--lab lab10 --exercise saved_memory" in workflow
    assert "LAB10-SAVED-MEMORY_RESULTS" in workflow
    learner = run_python("-m", "pytest", "--lab", "10", "-p", "no:cacheprovider", cwd=out)
    assert learner.returncode == 1 and "not started" in learner.stdout and "InfraLens progress (exercises/)" in learner.stdout
    shutil.rmtree(out / "exercises" / "lab10_quantization_plan")
    shutil.copytree(REPO / "solutions" / "lab10_quantization_plan", out / "exercises" / "lab10_quantization_plan")
    solved = run_python("-m", "pytest", "--lab", "10", "-p", "no:cacheprovider", cwd=out)
    assert solved.returncode == 0 and "every selected lab is done." in solved.stdout, "a solved release passes its own learner run"
    refused = run_python("-m", "infralens", "release", str(out))
    assert refused.returncode == 2 and "already exists and is not empty" in refused.stderr


def test_gradescope_bundle_holds_the_full_grader_and_its_scripts(tmp_path):
    done = run_python("-m", "infralens", "gradescope", str(tmp_path / "bundle"))
    assert done.returncode == 0, done.stderr
    names = set(zipfile.ZipFile(tmp_path / "bundle" / "autograder.zip").namelist())
    assert {"setup.sh", "run_autograder", "pyproject.toml"} <= names
    assert "solutions/lab10_quantization_plan/quantization_plan.py" in names
    assert "checks/lab10_quantization_plan/test_hidden_plan.py" in names
    script = (tmp_path / "bundle" / "source" / "run_autograder").read_text()
    assert "infralens grade /autograder/submission --gradescope /autograder/results/results.json" in script
