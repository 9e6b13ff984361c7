"""The judges' forkserver: a judge forked from it behaves like a fresh ``python -B -m pytest`` of its own."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, write
from infralens.grading.judges import JUDGE_MODULES, Judges, JudgeServerError, modules_to_preload
from infralens.sessions import own_session_env

pytestmark = pytest.mark.slow  # each test starts a forkserver and judges: pytest sessions of their own

CHECKS = '''
import os
import sys
import time


def test_passes():
    assert sys.dont_write_bytecode, "a judge writes no bytecode"
    print("pid", os.getpid(), "session", os.getsid(0), "cwd", os.getcwd())


def test_sleeps_when_asked():
    if os.environ.get("JUDGE_TEST_SLEEP"):
        time.sleep(60)
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path / "test_judged.py", CHECKS)
    write(tmp_path / "pytest.ini", "[pytest]\n")
    return tmp_path


def _judges(folder: Path, **extra_env: str) -> Judges:
    """A forkserver for ``folder`` whose environment does not forbid bytecode: only the forkserver itself may."""
    env = {name: value for name, value in own_session_env(os.environ).items() if name != "PYTHONDONTWRITEBYTECODE"}
    return Judges(folder, {**env, **extra_env}, JUDGE_MODULES)


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_judge_runs_in_its_own_session_in_the_folder_and_its_output_comes_back(folder):
    with _judges(folder) as judges:
        code, output = judges.run(["-q", "-s", "-p", "no:cacheprovider", "test_judged.py"], folder / "one.log", 60)
        again, _ = judges.run(["-q", "-p", "no:cacheprovider", "test_judged.py", "-k", "nothing-matches"], folder / "two.log", 60)
    assert code == 0 and "2 passed" in output, output
    pid, session = (int(word) for word in output.split("pid ", 1)[1].split()[:3:2])
    assert pid == session, "a judge leads a session of its own, so the grader can kill its whole group"
    assert f"cwd {folder}" in output
    assert again == 5, "each judge is a new pytest session with its own exit code"
    assert not list(folder.rglob("__pycache__")), "no judge writes bytecode"


@pytest.mark.waits  # the judge's 2 s
def test_a_judge_past_its_time_is_killed_with_its_group_and_the_next_one_still_runs(folder):
    with _judges(folder, JUDGE_TEST_SLEEP="1") as judges:
        started = time.monotonic()
        code, output = judges.run(["-q", "-s", "-p", "no:cacheprovider", "test_judged.py"], folder / "slow.log", 2)
        waited = time.monotonic() - started
        pid = int((folder / "slow.log").read_text().split("pid ", 1)[1].split()[0])
        assert (code, output) == (None, "") and waited < 30, f"returned {code!r} after {waited:.1f} s"
        assert not _alive(pid), "the judge past its time is gone"
        code, _ = judges.run(["-q", "-p", "no:cacheprovider", "test_judged.py", "-k", "passes"], folder / "next.log", 60)
    assert code == 0


def test_closing_the_forkserver_ends_every_judge_still_running(folder):
    log, outcome = folder / "left.log", []
    with _judges(folder, JUDGE_TEST_SLEEP="1") as judges:

        def judge() -> None:
            try:
                judges.run(["-q", "-s", "-p", "no:cacheprovider", "test_judged.py"], log, 600)
            except JudgeServerError as error:
                outcome.append(str(error))

        waiting = threading.Thread(target=judge)
        waiting.start()
        deadline = time.monotonic() + 60
        while "pid " not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(log.read_text().split("pid ", 1)[1].split()[0])
    waiting.join(timeout=30)
    assert not _alive(pid), "nothing outlives the batch"
    assert outcome and "stopped" in outcome[0], "a judge waited on when the batch ends is reported, never waited on forever"


def test_a_forkserver_that_cannot_start_says_why(folder):
    judges = Judges(folder, own_session_env(os.environ), ("pytest", "no_such_module_for_judges"))
    with pytest.raises(JudgeServerError, match="did not start.*no_such_module_for_judges"):
        judges.__enter__()


def test_judges_preload_the_heavy_libraries_the_checks_and_references_import_and_nothing_else(tmp_path):
    assert set(modules_to_preload(REPO)) == {*JUDGE_MODULES, "torch", "numpy"}
    write(tmp_path / "checks/lab99_demo/test_demo.py", "import json\nimport pytest\n")
    write(tmp_path / "solutions/lab99_demo/demo.py", "import math\n")
    assert modules_to_preload(tmp_path) == JUDGE_MODULES, "a lab that needs no torch starts its judges without it"
    write(tmp_path / "solutions/lab99_demo/demo.py", "import math\n\ndef f():\n    import torch\n")
    assert modules_to_preload(tmp_path) == (*JUDGE_MODULES, "torch"), "an import inside a function counts: the judge will run it"
