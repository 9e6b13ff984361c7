"""infralens grade end to end: hostile submissions get exact grades with reasons, an honest classmate
in the same batch keeps full marks, nothing outlives grading or alters the grader, and every output
format has the structure its consumer expects.

One module-scoped batch grades the whole robustness corpus: one hostile submission or more per
category of the threat table in the README's teacher section.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import sysconfig
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import DEMO_CHECKS, DEMO_HIDDEN, DEMO_HINTS, DEMO_PYPROJECT, DEMO_SOLUTION, DEMO_STARTER, FOREIGN_PLUGINS, GRADED_BATCH, REPO, run_python, write
from infralens.grading.sandbox import availability

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not availability().available, reason=f"needs the bubblewrap sandbox: {availability().reason}"),
]

# The tests that read the graded batch run on one xdist worker (see the `graded` fixture).
BATCH = pytest.mark.xdist_group(GRADED_BATCH)
CALL_TIMEOUT = 4  # seconds: a thousand times any honest call here (the memory bomb fails at once), so no verdict depends on load

GOOD = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    return 2 * a
'''

# Where an attacker would look for the answers: the judge's /proc, the editable install's
# metadata, paths relative to the submission, the grader's temporary folders, the checkout itself.
FIND_ANSWERS = '''
import glob, importlib


def _answers():
    patterns = ["/proc/*/cwd/solutions/lab99_demo/demo.py", "/proc/*/root@REPO@/solutions/lab99_demo/demo.py", "@REPO@/solutions/lab99_demo/demo.py",
                "../../solutions/lab99_demo/demo.py", "../../../solutions/lab99_demo/demo.py", "/tmp/pytest-of-*/*/repo*/solutions/lab99_demo/demo.py",
                "@REPO@/checks/lab99_demo/test_hidden_demo.py"]
    try:
        finder = importlib.import_module("__editable___infralens_katas_0_1_0_finder")
        patterns += [str(path).replace("infralens", "") + "solutions/lab99_demo/demo.py" for path in finder.MAPPING.values()]
    except Exception:
        pass
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                return open(path).read()
            except OSError:
                continue
    return None
'''

FIND_CLASSMATE = '''
import glob


def _classmate():
    patterns = ["/tmp/infralens-grade-*/*/submission/exercises/lab99_demo/demo.py", "/proc/*/cwd/lab99_demo/demo.py", "/proc/*/root/submission/lab99_demo/demo.py",
                "@CLASS@/*/lab99_demo/demo.py", "@CLASS@/*/exercises/lab99_demo/demo.py", "/tmp/infralens-worker-*/code/lab99_demo/demo.py"]
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                source = open(path).read()
            except OSError:
                continue
            if "return a + b" in source and "_classmate" not in source:
                return source
    return None
'''

POISON = '''
import os, sysconfig

TARGETS = ["@REPO@/solutions/lab99_demo/__pycache__/demo.cpython-311.pyc", "@REPO@/checks/conftest.py", "@REPO@/checks/lab99_demo/test_demo.py",
           "@REPO@/exercises/lab99_demo/demo.py", "@REPO@/exercises/lab99_demo/hints.toml", "@REPO@/tests/conftest.py",
           sysconfig.get_paths()["purelib"] + "/infralens-hostile.pth", "/proc/1/cwd/poison.py"]


def _poison():
    for target in TARGETS:
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a") as handle:
                handle.write("import os; os._exit(0)\\n")
        except OSError:
            pass
'''

DAEMON = '''
import os, sys


def _daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "infralens-hostile-daemon"])
        os._exit(0)
'''

# name: (source, points, reason in the feedback, or None when the feedback is not the point)
HOSTILE = {
    # --- crashes and lies (kept from the first hostile corpus) ---
    "infinite-loop": (GOOD.replace("return a + b", "while True:\n        pass"), 1, f"did not return within {CALL_TIMEOUT} s"),
    "exit-inside": (GOOD.replace("return a + b", "import sys\n    sys.exit(3)"), 1, "called sys.exit(3)"),
    "os-exit-at-import": ("import os\nos._exit(0)\n" + GOOD, 0, "ended its process"),
    "sys-exit-at-import": ("import sys\nsys.exit('bye')\n" + GOOD, 0, "importing your module raised your code called sys.exit(bye)"),
    "segfault": (GOOD.replace("return a + b", "import ctypes\n    return ctypes.string_at(0)"), 1, "SIGSEGV"),
    # Blocks of 3 GiB, each past the batch's 2 GiB address-space limit: without a limit they would
    # fill the machine; with it the first allocation fails before it touches a page, so the bomb
    # meets its memory limit at once, however busy the machine, never its call limit.
    "memory-bomb": (GOOD.replace("return a + b", "blocks = [bytearray(3 << 30) for _ in range(64)]\n    return a + b"), 1, "MemoryError"),
    "syntax-error": ("def add(a, b):\n    return a +\n", 0, "has a syntax error"),
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
        "its documented return type is int",
    ),
    # --- reading the answers: the judge's /proc, the editable install, relative paths, hidden checks ---
    "reads-the-answers": (
        FIND_ANSWERS + GOOD.replace("return a + b", "source = _answers()\n    if source is None:\n        raise RuntimeError('no answers found')\n"
                                    "    namespace = {}\n    exec(source, namespace)\n    return namespace['add'](a, b)"),
        1,
        "no answers found",
    ),
    # --- surviving the worker: a double-forked daemon ---
    "leaves-a-daemon": (DAEMON + GOOD.replace("return a + b", "_daemon()\n    return a + b"), 4, None),
    # --- poisoning later runs: bytecode, .pth, conftest, starters, hints, the project's tests ---
    "poisons-the-grader": (POISON + GOOD.replace("return a + b", "_poison()\n    return a - b"), 1, "returned -1, expected 5"),
    # --- attacking the grader and classmates ---
    "kills-the-grader": (
        GOOD.replace("return a + b", "import os, signal\n    for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()] + [os.getppid(), -1]:\n"
                     "        for sig in (signal.SIGSTOP, signal.SIGKILL):\n            try:\n                os.kill(pid, sig) if pid != os.getpid() else None\n"
                     "            except OSError:\n                pass\n    return a - b"),
        1,
        "returned -1, expected 5",
    ),
    "copies-a-classmate": (
        FIND_CLASSMATE + GOOD.replace("return a + b", "source = _classmate()\n    if source is None:\n        raise RuntimeError('no classmate found')\n"
                                      "    namespace = {}\n    exec(source, namespace)\n    return namespace['add'](a, b)"),
        1,
        "no classmate found",
    ),
    # --- resources: processes, /tmp and /dev/shm, huge return values ---
    "fork-bomb": (
        GOOD.replace("return a + b", "import os, time\n    count = 0\n    try:\n        for _ in range(2000):\n            if os.fork() == 0:\n"
                     "                time.sleep(600)\n                os._exit(0)\n            count += 1\n    except OSError:\n        pass\n"
                     "    return a + b if count < 2000 else a - b"),
        4,
        None,
    ),
    "fills-tmp": (
        GOOD.replace("return a + b", "written = 0\n    for folder in ('/tmp', '/dev/shm'):\n        for i in range(64):\n            try:\n"
                     "                with open(f'{folder}/infralens-hostile-fill-{i}', 'wb') as handle:\n                    for _ in range(64):\n"
                     "                        handle.write(bytes(1 << 20))\n                        written += 1 << 20\n            except OSError:\n                break\n"
                     "    return a + b if written <= 300 << 20 else a - b"),
        4,
        None,
    ),
    "huge-return": (GOOD.replace("return a + b", "return b'x' * (300 << 20)"), 1, "message of more than"),
    # --- reports and the pipe: flooding, NUL/escapes/lone surrogates; a call past its limit (interrupted,
    # or ignoring the interruption) costs that call alone: `double`, asked next, still earns its point ---
    "message-flood": (GOOD.replace("return a + b", "raise ValueError('x' * 1_000_000)"), 1, "more characters cut"),
    "poisons-the-xml": (GOOD.replace("return a + b", "raise ValueError('bad\\x00\\x1b[2J\\udcff\\x07 value')"), 1, "ValueError: bad"),
    "slow-once": (GOOD.replace("return a + b", "import time\n    if (a, b) == (2, 3):\n        time.sleep(100)\n    return a + b"), 1, "`time.sleep(100)`"),
    "stubborn-once": (
        GOOD.replace("return a + b", "import time\n    while (a, b) == (2, 3):\n        try:\n            time.sleep(100)\n        except BaseException:\n"
                     "            pass\n    return a + b"),
        1,
        f"did not return within {CALL_TIMEOUT} s (called with (2, 3))",
    ),
}

# The cases that sit out a call limit: graded first, each in a slot of its own, while two more
# slots grade the rest of the corpus (sleeping costs no CPU).
WAIT_OUT_THEIR_LIMIT = ("infinite-loop", "slow-once", "stubborn-once")

# Submissions refused at intake: (how to build it, the reason in the feedback).
REFUSED = {
    "links-a-module": "is a symbolic link to a folder or to something outside the submission",
    "links-a-lab": "is a symbolic link to a folder or to something outside the submission",
    "links-exercises": "exercises is a symbolic link",
    "hard-links-a-module": "is a hard link to one of the grader's own files",
    "sparse-file": "big.bin is 2,147,483,648 bytes",
}
NON_UTF8 = os.fsdecode(b"caf\xe9-solved")


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(os.fsencode(path) + path.read_bytes())
    return digest.hexdigest()


def _daemons() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"infralens-hostile-daemon" in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The synthetic checkout and the class folder of the robustness corpus, ungraded: for tests
    that grade a few of its submissions themselves (each test process writes its own)."""
    return _write_the_corpus(tmp_path_factory.mktemp("grading-corpus"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The batch, graded once per test session even across xdist workers (the first one grades,
    the others read its results under a lock). The tests that read it share an xdist group, so
    under ``--dist loadgroup`` one worker grades while the others go on with other tests."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with open(shared / "graded-batch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "graded-batch.json"
        if not saved.is_file():
            saved.write_text(json.dumps(_grade_the_corpus(shared / "graded-batch")))
        graded = json.loads(saved.read_text())
    for key in ("root", "class", "out", "scratch"):
        graded[key] = Path(graded[key])
    return graded


def _write_the_corpus(base: Path) -> dict[str, Path]:
    """Write the synthetic lab (solution, starter, checks) and one submission per case of the corpus."""
    root, class_dir, out = base / "repo", base / "class", base / "out"
    for folder in (root, class_dir, out):
        folder.mkdir(parents=True)
    for relative, text in {
        "pyproject.toml": DEMO_PYPROJECT, "exercises/lab99_demo/demo.py": DEMO_STARTER, "exercises/lab99_demo/hints.toml": DEMO_HINTS,
        "solutions/lab99_demo/demo.py": DEMO_SOLUTION, "checks/lab99_demo/test_demo.py": DEMO_CHECKS, "checks/lab99_demo/test_hidden_demo.py": DEMO_HIDDEN,
        "tests/conftest.py": "# the project's own test fixtures\n",
    }.items():
        write(root / relative, text)
    write(class_dir / "solved/exercises/lab99_demo/demo.py", GOOD)
    write(class_dir / "starter/lab99_demo/demo.py", DEMO_STARTER)
    write(class_dir / NON_UTF8 / "lab99_demo/demo.py", GOOD)
    (class_dir / "missing-lab/lab42_other").mkdir(parents=True)
    for name, (source, _points, _reason) in HOSTILE.items():
        write(class_dir / name / "lab99_demo/demo.py", source.replace("@REPO@", str(root)).replace("@CLASS@", str(class_dir)))
    reference = root / "solutions/lab99_demo/demo.py"
    (class_dir / "links-a-module/lab99_demo").mkdir(parents=True)
    (class_dir / "links-a-module/lab99_demo/demo.py").symlink_to(reference)
    (class_dir / "links-a-lab").mkdir()
    (class_dir / "links-a-lab/lab99_demo").symlink_to(reference.parent)
    (class_dir / "links-exercises").mkdir()
    (class_dir / "links-exercises/exercises").symlink_to(root / "solutions")
    (class_dir / "hard-links-a-module/lab99_demo").mkdir(parents=True)
    os.link(reference, class_dir / "hard-links-a-module/lab99_demo/demo.py")
    write(class_dir / "sparse-file/lab99_demo/demo.py", GOOD)
    with open(class_dir / "sparse-file/lab99_demo/big.bin", "wb") as sparse:
        sparse.truncate(2 << 30)
    # A submission that ships pytest and interpreter hooks: none of them may load anywhere.
    hooks = class_dir / "ships-hooks"
    write(hooks / "exercises/lab99_demo/demo.py", GOOD.replace("return a + b", "return a - b"))
    for folder in (hooks, hooks / "exercises", hooks / "exercises/lab99_demo"):
        write(folder / "conftest.py", "import pytest\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n    return True\n")
        write(folder / "sitecustomize.py", "import os\nos._exit(0)\n")
        write(folder / "usercustomize.py", "import os\nos._exit(0)\n")
        write(folder / "evil.pth", "import os; os._exit(0)\n")
    return {"root": root, "class": class_dir, "out": out}


def _grade_the_corpus(base: Path) -> dict:
    """Grade the synthetic lab's solution, its starter and the whole robustness corpus in one batch.

    The grader's temporary folders go to a scratch folder of the batch's own, so the test that
    they are cleaned up never sees another test's grading in progress.
    """
    paths = _write_the_corpus(base)
    root, class_dir, out, scratch = paths["root"], paths["class"], paths["out"], base / "tmp"
    scratch.mkdir()
    grader_before = _digest(root)
    done = run_python(
        "-m", "infralens", "--root", str(root), "grade", *sorted(os.listdir(class_dir), key=lambda name: (name not in WAIT_OUT_THEIR_LIMIT, name)),
        "--jobs", str(len(WAIT_OUT_THEIR_LIMIT) + 2), "--seed", "11", "--call-timeout", str(CALL_TIMEOUT), "--memory-limit", "2048",
        "--csv", str(out / "grades.csv"), "--json", str(out / "grades.json"), "--junit", str(out / "grades.xml"),
        cwd=class_dir,  # relative submission paths resolve against the folder the command ran in
        env={"TMPDIR": str(scratch)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "grades.json").read_text())
    by_name = {s["path"].rsplit("/", 1)[1]: s for s in data["submissions"]}
    return {"root": str(root), "class": str(class_dir), "out": str(out), "scratch": str(scratch), "data": data, "by_name": by_name,
            "stdout": done.stdout, "stderr": done.stderr, "grader_before": grader_before, "grader_after": _digest(root), "daemons": _daemons()}


def _messages(result: dict) -> str:
    return " | ".join(c["message"] for c in result["checks"] if c["outcome"] != "passed")


@BATCH
def test_the_solution_gets_full_marks_and_the_starter_none(graded):
    assert graded["by_name"]["solved"]["total"] == graded["by_name"]["solved"]["max_points"] == 4
    assert graded["by_name"]["starter"]["total"] == 0
    assert all(c["outcome"] == "not_started" for c in graded["by_name"]["starter"]["checks"])


@BATCH
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_submissions_get_an_exact_grade_and_a_reason(graded, name):
    _source, points, reason = HOSTILE[name]
    result = graded["by_name"][name]
    assert result["total"] == points, f"{name}: {result['total']} points, expected {points}\n{json.dumps(result['checks'], indent=1)[:3000]}"
    if reason:
        assert reason in _messages(result), f"{name}: the feedback should say {reason!r}, got: {_messages(result)[:2000]}"
    assert graded["by_name"]["solved"]["total"] == 4, "the honest classmate in the same batch keeps full marks"


@BATCH
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_links_and_oversized_files_are_refused_at_intake(graded, name):
    result = graded["by_name"][name]
    assert result["total"] == 0 and not result["checks"]
    assert result["error"].startswith("refused: ") and REFUSED[name] in result["error"], result["error"]
    assert graded["by_name"]["solved"]["total"] == 4


@BATCH
def test_a_timeout_names_the_real_function_never_a_placeholder(graded):
    messages = _messages(graded["by_name"]["infinite-loop"])
    assert "demo.py:" in messages and "(calling `function`)" not in messages


@BATCH
def test_nothing_outlives_grading_and_the_grader_is_unchanged(graded):
    assert graded["daemons"] == [], "a daemon started by learner code outlived its worker"
    assert graded["grader_after"] == graded["grader_before"], "learner code changed the grader's checkout"
    assert not Path(sysconfig.get_paths()["purelib"], "infralens-hostile.pth").exists()
    assert not list(Path("/tmp").glob("infralens-hostile-fill-*")) and not list(Path("/dev/shm").glob("infralens-hostile-fill-*"))
    assert not list(graded["scratch"].iterdir()), "the grader's scratch copies are cleaned up"


@BATCH
def test_a_non_utf8_folder_name_is_graded_and_reported_readably(graded):
    result = graded["by_name"]["caf\\xe9-solved"]
    assert result["total"] == 4
    rows = list(csv.DictReader((graded["out"] / "grades.csv").read_text(encoding="utf-8").splitlines(keepends=True)))
    assert any(r["submission"].endswith("caf\\xe9-solved") for r in rows)


@BATCH
def test_feedback_is_capped_and_clean(graded):
    for submission in graded["data"]["submissions"]:
        for check in submission["checks"]:
            assert len(check["message"]) <= 2000
            assert not any(ch in check["message"] for ch in "\x00\x1b\x07"), check["message"][:200]
    assert "\ufffd" in _messages(graded["by_name"]["poisons-the-xml"]), "a lone surrogate becomes U+FFFD"


@BATCH
def test_a_submissions_own_conftest_sitecustomize_and_pth_files_never_load(graded):
    result = graded["by_name"]["ships-hooks"]
    assert result["total"] == 1, "only `double` is right; add is wrong and no shipped hook may change that"
    assert "add(2, 3) returned -1, expected 5" in " ".join(c["message"] for c in result["checks"])


@BATCH
def test_a_missing_lab_folder_is_zero_with_a_reason(graded):
    result = graded["by_name"]["missing-lab"]
    assert result["total"] == 0
    assert all("lab99_demo/ is missing" in c["message"] for c in result["checks"])


@BATCH
def test_the_batch_completes_with_one_result_per_submission(graded):
    count = len(os.listdir(graded["class"]))
    assert len(graded["data"]["submissions"]) == count
    assert f"graded {count} submissions" in graded["stdout"] and "checks missed most often:" in graded["stdout"]
    assert f"[{count}/{count}]" in graded["stderr"], "a progress line per submission in non-interactive logs"


@BATCH
def test_learner_code_never_touched_the_originals(graded):
    assert (graded["class"] / "deletes-its-folder" / "lab99_demo" / "demo.py").is_file(), "the worker sees a read-only copy"
    assert (graded["root"] / "solutions" / "lab99_demo" / "demo.py").is_file()


@BATCH
def test_csv_has_a_row_per_submission_with_lab_total_and_isolation_columns(graded):
    rows = list(csv.DictReader((graded["out"] / "grades.csv").read_text(encoding="utf-8").splitlines(keepends=True)))
    assert list(rows[0]) == ["submission", "lab99_demo", "total", "max_points", "seed", "error", "isolation"]
    assert len(rows) == len(os.listdir(graded["class"])) and {r["seed"] for r in rows} == {"11"}
    assert {r["isolation"] for r in rows} == {graded["data"]["isolation"]} and graded["data"]["isolation"].startswith("sandbox")
    solved = next(r for r in rows if r["submission"].endswith("/solved"))
    assert (solved["lab99_demo"], solved["total"], solved["max_points"]) == ("4", "4", "4")


@BATCH
def test_junit_xml_parses_and_has_a_suite_per_submission_and_failures_with_messages(graded):
    tree = ElementTree.parse(graded["out"] / "grades.xml").getroot()
    suites = tree.findall("testsuite")
    assert tree.tag == "testsuites" and len(suites) == len(os.listdir(graded["class"]))
    assert tree.find("properties/property[@name='isolation']").get("value").startswith("sandbox")
    starter = next(s for s in suites if s.get("name").endswith("starter"))
    assert starter.get("tests") == "3" and starter.get("failures") == "3"
    failure = starter.find("testcase/failure")
    assert "is not started" in failure.get("message")


@BATCH
def test_same_seed_same_grades(graded, tmp_path):
    report = tmp_path / "again.json"
    done = run_python("-m", "infralens", "--root", str(graded["root"]), "grade", str(graded["class"] / "solved"), str(graded["class"] / "starter"),
                      "--seed", "11", "--json", str(report), "--jobs", "2", cwd=graded["root"])
    assert done.returncode == 0, done.stderr
    again = {Path(s["path"]).name: s for s in json.loads(report.read_text())["submissions"]}
    for name in ("solved", "starter"):
        strip = lambda s: [(c["nodeid"], c["outcome"], c["message"]) for c in s["checks"]]  # noqa: E731
        assert strip(again[name]) == strip(graded["by_name"][name])


def test_gradescope_results_follow_the_autograder_spec_and_record_the_isolation(corpus, tmp_path):
    results = tmp_path / "results.json"
    done = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", str(corpus["class"] / "exit-inside"), "--gradescope", str(results),
                      "--call-timeout", str(CALL_TIMEOUT), cwd=corpus["root"])
    assert done.returncode == 0, done.stderr
    data = json.loads(results.read_text())
    assert data["score"] == 1 and isinstance(data["execution_time"], float) and data["output"].startswith("isolation: sandbox")
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_published"}
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
    hidden = next(t for t in data["tests"] if t["visibility"] == "after_published")
    assert hidden["output"].startswith("hidden check: feedback is withheld")
    too_many = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", str(corpus["class"] / "solved"), str(corpus["class"] / "starter"), "--gradescope", str(results), cwd=corpus["root"])
    assert too_many.returncode == 2 and "one submission's results.json" in too_many.stderr


def test_shards_split_the_class_and_merge_back(corpus, tmp_path):
    submissions = [str(corpus["class"] / name) for name in ("solved", "starter", "syntax-error")]
    for index in (1, 2):
        done = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", *submissions, "--shard", f"{index}/2", "--seed", "11",
                          "--json", str(tmp_path / f"shard{index}.json"), cwd=corpus["root"])
        assert done.returncode == 0, done.stderr
    sizes = [len(json.loads((tmp_path / f"shard{i}.json").read_text())["submissions"]) for i in (1, 2)]
    assert sorted(sizes) == [1, 2]
    merged = run_python("-m", "infralens", "merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard2.json"), "--json", str(tmp_path / "all.json"), "--csv", str(tmp_path / "all.csv"))
    assert merged.returncode == 0, merged.stderr
    data = json.loads((tmp_path / "all.json").read_text())
    assert {Path(s["path"]).name: s["total"] for s in data["submissions"]} == {"solved": 4, "starter": 0, "syntax-error": 0}
    assert data["isolation"].startswith("sandbox")
    twice = run_python("-m", "infralens", "merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard1.json"), "--json", str(tmp_path / "x.json"))
    assert twice.returncode == 2 and "graded in more than one shard" in twice.stderr


def test_bad_shard_spec(corpus):
    done = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", str(corpus["class"] / "solved"), "--shard", "3/2", cwd=corpus["root"])
    assert done.returncode == 2 and "--shard 3/2: the job number must be between 1 and 2" in done.stderr


@pytest.mark.waits  # the budget's 3 s
def test_a_used_up_budget_costs_the_remaining_checks_with_the_reason(corpus, tmp_path):
    # Sleeping, not spinning: the budget is wall-clock time, and a spin would burn a core for all of it.
    never_returns = "import time\n    while True:\n        time.sleep(1)"
    write(tmp_path / "slow/lab99_demo/demo.py", GOOD.replace("return a + b", never_returns).replace("return 2 * a", never_returns))
    report = tmp_path / "budget.json"
    done = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", str(tmp_path / "slow"), str(corpus["class"] / "solved"),
                      "--budget", "3", "--call-timeout", "2", "--json", str(report), cwd=corpus["root"])
    assert done.returncode == 0, done.stderr
    by_name = {Path(s["path"]).name: s for s in json.loads(report.read_text())["submissions"]}
    messages = [check["message"] for check in by_name["slow"]["checks"]]
    # `add` runs out its 2 s call limit (and is not called again); `double` then meets the end of the
    # budget. On a busy machine the judge's start may eat into the budget first: then both meet it.
    assert by_name["slow"]["total"] == 0 and any("used up its time budget of 3 s" in message for message in messages), messages
    assert by_name["solved"]["total"] == 4, "the next submission has a budget of its own"


def test_without_a_sandbox_grading_refuses_unless_asked_and_then_says_so_everywhere(corpus, tmp_path, monkeypatch, capsys):
    from infralens import cli
    from infralens.grading import sandbox

    monkeypatch.setattr(sandbox, "availability", lambda: sandbox.Availability(None, "no bwrap found"))
    assert cli.main(["--root", str(corpus["root"]), "grade", str(corpus["class"] / "solved")]) == 2
    refusal = capsys.readouterr().err
    assert "none is available here: no bwrap found" in refusal and "apt install bubblewrap" in refusal and "--no-sandbox" in refusal
    out = tmp_path / "out"
    done = run_python("-m", "infralens", "--root", str(corpus["root"]), "grade", "solved", "--no-sandbox",
                      "--csv", str(out) + ".csv", "--json", str(out) + ".json", "--junit", str(out) + ".xml", cwd=corpus["class"])
    assert done.returncode == 0, done.stderr
    assert "WARNING: NO SANDBOX (--no-sandbox)" in done.stderr
    data = json.loads(Path(str(out) + ".json").read_text())
    assert data["isolation"].startswith("NO SANDBOX") and data["submissions"][0]["total"] == 4
    assert "NO SANDBOX" in Path(str(out) + ".csv").read_text() and "NO SANDBOX" in Path(str(out) + ".xml").read_text()


def test_a_change_to_the_graders_files_voids_the_running_grades_and_still_reports(corpus, tmp_path, monkeypatch):
    from infralens.grading import batch

    root = tmp_path / "repo"
    shutil.copytree(corpus["root"], root)
    real = batch.grade_one

    def tampering(repo_root, submission, options, scratch, judges, protected):
        result = real(repo_root, submission, options, scratch, judges, protected)
        if submission.name == "starter":
            with open(root / "tests/conftest.py", "a") as handle:
                handle.write("# changed during grading\n")
        return result

    monkeypatch.setattr(batch, "grade_one", tampering)
    with pytest.raises(batch.GraderTampered, match="changed while grading") as raised:
        batch.grade(root, [corpus["class"] / "solved", corpus["class"] / "starter"], batch.GradeOptions(seed=1))
    solved, starter = raised.value.results
    assert solved.error is None and solved.total(raised.value.checks) == (4, 4), "graded before the change: kept"
    assert starter.error == "void: the grader's files changed while this submission was graded"


def test_release_has_no_solutions_or_hidden_checks_and_its_learner_run_works(tmp_path):
    out = tmp_path / "student"
    done = run_python("-m", "infralens", "release", str(out))
    assert done.returncode == 0, done.stderr
    assert not (out / "solutions").exists() and not (out / "tests").exists()
    assert not list(out.glob("checks/*/test_hidden_*.py")) and list(out.glob("checks/lab10_quantization_plan/test_*.py"))
    workflow = (out / ".github/workflows/classroom.yml").read_text()
    assert "classroom-resources/autograding-command-grader@v1" in workflow and "--lab lab10 --exercise saved_memory" in workflow
    assert "LAB10-SAVED-MEMORY_RESULTS" in workflow
    # As a learner runs it, less the pytest plugins this machine holds beside the project.
    learner_run = ("-m", "pytest", "--lab", "10", "-p", "no:cacheprovider", *(f"-pno:{name}" for name in FOREIGN_PLUGINS))
    learner = run_python(*learner_run, cwd=out)
    assert learner.returncode == 1 and "not started" in learner.stdout and "InfraLens progress (exercises/)" in learner.stdout
    shutil.rmtree(out / "exercises" / "lab10_quantization_plan")
    shutil.copytree(REPO / "solutions" / "lab10_quantization_plan", out / "exercises" / "lab10_quantization_plan")
    solved = run_python(*learner_run, cwd=out)
    assert solved.returncode == 0 and "every selected lab is done." in solved.stdout, "a solved release passes its own learner run"
    refused = run_python("-m", "infralens", "release", str(out))
    assert refused.returncode == 2 and "already exists and is not empty" in refused.stderr


def test_gradescope_bundle_holds_the_full_grader_and_locks_it_away_from_workers(tmp_path):
    done = run_python("-m", "infralens", "gradescope", str(tmp_path / "bundle"))
    assert done.returncode == 0, done.stderr
    names = set(zipfile.ZipFile(tmp_path / "bundle" / "autograder.zip").namelist())
    assert {"setup.sh", "run_autograder", "pyproject.toml"} <= names
    assert "solutions/lab10_quantization_plan/quantization_plan.py" in names
    assert "checks/lab10_quantization_plan/test_hidden_plan.py" in names
    setup = (tmp_path / "bundle" / "source" / "setup.sh").read_text()
    assert "bubblewrap" in setup and "chmod -R go-rwx /autograder/source" in setup
    script = (tmp_path / "bundle" / "source" / "run_autograder").read_text()
    assert "infralens grade /autograder/submission --gradescope /autograder/results/results.json" in script
    assert "--no-sandbox" in script and "infralens sandbox" in script, "falls back to an unprivileged worker only where bwrap cannot run"
