"""The pieces of the untrusted-code boundary one at a time: what a sandboxed worker can see and do,
how a submission is taken in, and how learner text is made safe for every report."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import REPO, write
from infralens.grading import reports
from infralens.grading.batch import SubmissionResult
from infralens.grading.intake import IntakeLimits, Refused, grader_inodes, readable, take_in
from infralens.grading.sandbox import availability
from infralens.grading.text import csv_cell, safe_text

def needs_sandbox(test):
    """A test that starts sandboxed workers: slow, and skipped where bubblewrap cannot run."""
    skip = pytest.mark.skipif(not availability().available, reason=f"needs the bubblewrap sandbox: {availability().reason}")
    return pytest.mark.slow(skip(test))

VIEW = '''
import os, resource, socket, sys


def facts():
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        network = "connected"
    except OSError as error:
        network = type(error).__name__
    writable = []
    for folder in ("/", "/submission", "/opt/infralens/infralens", sys.prefix, "/tmp"):
        try:
            with open(os.path.join(folder, "probe"), "w"):
                writable.append(folder)
        except OSError:
            pass
    limits = {name: resource.getrlimit(getattr(resource, name))[0] for name in ("RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_AS", "RLIMIT_CORE")}
    return {
        "uid": os.getuid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "top": sorted(os.listdir("/")),
        "checkout": os.path.exists(@REPO@), "cwd": os.getcwd(), "env": sorted(os.environ), "network": network,
        "writable": writable, "limits": limits, "path": [p for p in sys.path if "infralens" in p or p.startswith("/work")],
    }
'''


@needs_sandbox
def test_a_sandboxed_worker_sees_only_its_interpreter_tooling_and_own_code(tmp_path):
    from infralens.grading.remote import RemoteLabCode, Worker

    write(tmp_path / "code/lab99_demo/view.py", VIEW.replace("@REPO@", repr(str(REPO))))
    worker = Worker(tmp_path / "code", "code", call_timeout=60, memory_bytes=2 << 30, isolation="sandbox", preload=())  # the view needs neither numpy nor torch
    try:
        facts = RemoteLabCode(worker, "lab99_demo").view.facts()
    finally:
        worker.close()
    assert facts["pids"] == [1, 2], "its own PID namespace: bwrap's init and the worker, nothing of the grader"
    assert not facts["checkout"] and facts["cwd"] == "/submission"
    assert "submission" in facts["top"] and not {"work", "home", "var", "srv", "mnt"} & set(facts["top"])
    assert facts["network"] != "connected", "no network"
    assert facts["writable"] == ["/tmp"], "only its private tmpfs is writable"
    assert set(facts["env"]) <= {"HOME", "LANG", "PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE", "PWD"}
    assert facts["path"] == ["/opt/infralens"], "the tooling comes from the read-only copy, never the checkout"
    if os.geteuid() == 0:
        assert facts["uid"] != 0 and facts["uid"] != os.getuid()
    assert facts["limits"]["RLIMIT_NPROC"] == worker.limits.processes and facts["limits"]["RLIMIT_CORE"] == 0
    assert facts["limits"]["RLIMIT_AS"] == 2 << 30 and facts["limits"]["RLIMIT_FSIZE"] == worker.limits.file_bytes


@pytest.fixture
def checkout(tmp_path):
    write(tmp_path / "grader/solutions/lab99_demo/demo.py", "def add(a, b):\n    return a + b\n")
    write(tmp_path / "grader/checks/lab99_demo/test_demo.py", "")
    return tmp_path / "grader"


def test_intake_copies_lab_folders_only_and_keeps_links_inside_the_submission(tmp_path, checkout):
    write(tmp_path / "student/exercises/lab99_demo/demo.py", "x = 1\n")
    write(tmp_path / "student/exercises/lab99_demo/data/table.txt", "1 2 3\n")
    write(tmp_path / "student/exercises/notes.md", "not a lab\n")
    write(tmp_path / "student/.venv/lib/huge.py", "x" * 100)
    (tmp_path / "student/exercises/lab99_demo/alias.py").symlink_to("demo.py")
    odd = os.fsdecode(b"\xff\xfe.txt")
    (tmp_path / "student/exercises/lab99_demo" / odd).write_text("odd name")
    original = take_in(tmp_path / "student", tmp_path / "copy", checkout)
    copied = tmp_path / "copy/exercises/lab99_demo"
    assert original == (tmp_path / "student/exercises").resolve()
    assert sorted(os.listdir(copied)) == sorted(["alias.py", "data", "demo.py", odd])
    assert not (copied / "alias.py").is_symlink() and (copied / "alias.py").read_text() == "x = 1\n"
    assert not (tmp_path / "copy/exercises/notes.md").exists() and not (tmp_path / "copy/.venv").exists()
    assert readable(odd) == "\\xff\\xfe.txt"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda s, g: (s / "lab99_demo").mkdir(parents=True) or (s / "lab99_demo/demo.py").symlink_to(g / "solutions/lab99_demo/demo.py"), "symbolic link"),
        (lambda s, g: s.mkdir() or (s / "lab99_demo").symlink_to(g / "solutions/lab99_demo"), "symbolic link"),
        (lambda s, g: s.mkdir() or (s / "exercises").symlink_to(g / "solutions"), "exercises is a symbolic link"),
        (lambda s, g: (s / "lab99_demo").mkdir(parents=True) or os.link(g / "solutions/lab99_demo/demo.py", s / "lab99_demo/demo.py"), "hard link"),
        (lambda s, g: (s / "lab99_demo").mkdir(parents=True) or os.mkfifo(s / "lab99_demo/pipe"), "not a regular file"),
        (lambda s, g: [write(s / f"lab99_demo/m{i}.py", "") for i in range(6)], "more than 5 files"),
        (lambda s, g: write(s / "lab99_demo/big.py", "x" * 2000), "is 2,000 bytes; a file may be at most 1,000"),
        (lambda s, g: [write(s / f"lab99_demo/m{i}.py", "x" * 900) for i in range(4)], "more than 3,000 bytes"),
        (lambda s, g: write(s / "notes.md", ""), "found neither"),
    ],
    ids=["linked-module", "linked-lab", "linked-exercises", "hard-link", "fifo", "too-many-files", "file-too-big", "too-many-bytes", "no-labs"],
)
def test_intake_refuses_with_a_reason(tmp_path, checkout, build, reason):
    student = tmp_path / "student"
    build(student, checkout)
    with pytest.raises(Refused, match=reason.replace("(", r"\(")):
        take_in(student, tmp_path / "copy", checkout, grader_inodes(checkout), IntakeLimits(files=5, file_bytes=1000, total_bytes=3000))


def test_intake_refuses_a_submission_inside_the_graders_checkout(tmp_path, checkout):
    with pytest.raises(Refused, match="inside the grader's checkout"):
        take_in(checkout / "solutions", tmp_path / "copy", checkout)


def test_safe_text_caps_and_cleans_learner_text():
    assert safe_text("a\x00b\x1b[31mred\x1b[0m\x1b]0;title\x07 \udcff\n\tok") == "abred \ufffd\n\tok"
    capped = safe_text("x" * 1_000_000)
    assert len(capped) <= 2000 and capped.endswith("more characters cut]")


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_never_start_a_formula(cell):
    assert csv_cell(cell) == "'" + cell


def test_reports_stay_parseable_whatever_the_learner_text(tmp_path):
    message = "bad\x00\x1b[2J\udcff\x07 " + "y" * 5000
    checks = [{"nodeid": "checks/lab99_demo/test_demo.py::test_add", "lab": "lab99_demo", "exercise": "add", "points": 1, "hidden": False}]
    results = [SubmissionResult("=cmd|' /C calc'!A0", 1, [{**checks[0], "outcome": "failed", "message": message}], "=1+1")]
    reports.write_csv(tmp_path / "g.csv", checks, results, "sandbox")
    reports.write_json(tmp_path / "g.json", checks, results, "sandbox")
    reports.write_junit(tmp_path / "g.xml", checks, results, "sandbox")
    reports.write_gradescope(tmp_path / "r.json", checks, results[0], "sandbox")
    row = next(csv.DictReader((tmp_path / "g.csv").open(encoding="utf-8")))
    assert row["submission"].startswith("'=") and row["error"] == "'=1+1"
    failure = ElementTree.parse(tmp_path / "g.xml").getroot().find("testsuite/testcase/failure")
    assert failure.text.startswith("bad\ufffd y") and len(failure.text) <= 2000
    assert json.loads((tmp_path / "g.json").read_text())["submissions"][0]["checks"][0]["message"] == failure.text
    assert json.loads((tmp_path / "r.json").read_text())["tests"][0]["output"] == failure.text
    assert sorted(os.listdir(tmp_path)) == ["g.csv", "g.json", "g.xml", "r.json"], "no temporary files left behind"


def test_finding_the_interpreters_folders_imports_no_torch():
    """The judge finds what to mount without importing numpy or torch."""
    import subprocess
    import sys

    code = "import sys, infralens.grading.sandbox as s; s.interpreter_paths(); s.site_folders(); print('torch' in sys.modules, 'numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(REPO))
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_the_worker_preloads_only_the_heavy_libraries_lab_code_imports(tmp_path):
    """numpy and torch load before the worker's hello (off the learner's clock) when lab code needs them."""
    from infralens.grading.remote import HEAVY_LIBRARIES, heavy_libraries, worker_preload

    assert heavy_libraries(Path(REPO) / "exercises") == HEAVY_LIBRARIES, "every real lab's starter imports torch"
    starters, submission = tmp_path / "exercises", tmp_path / "submission"
    write(starters / "lab99_demo" / "demo.py", "def add(a, b):\n    return a + b\n")
    assert heavy_libraries(starters) == ()
    write(submission / "lab99_demo" / "demo.py", "import torch.nn\nfrom numpy import array\n")
    assert heavy_libraries(starters, submission) == ("numpy", "torch"), "what the submission imports counts too"
    assert worker_preload(tmp_path, submission) == ("numpy", "torch") and worker_preload(tmp_path, starters) == (), "the checkout's starters and the code under test"
    assert worker_preload(Path(REPO), starters) == HEAVY_LIBRARIES, "checks hand the real labs' code tensors, whatever a submission imports"
    broken = tmp_path / "broken"
    write(broken / "lab99_demo" / "demo.py", "import torch\n\ndef add(a, b):\n    return a +\n")
    (broken / "lab99_demo" / "nul.py").write_bytes(b"import numpy\x00\n")
    assert heavy_libraries(starters, broken) == (), "a file that cannot be compiled never runs its imports"
    (broken / "lab99_demo" / "latin.py").write_bytes("# -*- coding: latin-1 -*-\nimport torch\nNAME = 'caf\u00e9'\n".encode("latin-1"))
    assert heavy_libraries(starters, broken) == ("torch",), "a coding declaration is read as Python reads it"
    (broken / "lab99_demo" / "unreadable.py").mkdir()  # reading it fails, even for root
    assert heavy_libraries(starters, broken) == HEAVY_LIBRARIES, "a file that cannot be read counts as importing everything"
