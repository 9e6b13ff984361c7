"""The suite's own benchmark: the census that says which kind of process spent a run's CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.census import OTHER, ROOT, Census, kind_of

# A parent that starts a child, lives long enough for the census to see the two together (a third
# of a second: many samples even on a busy machine), and exits. The child, first seen as a plain
# Python, then execs a command of another kind (as a process does between fork and exec, only
# longer) and spins for about half a second of CPU, several times what it used before (under 0.1 s).
SPINS_AS_PYTEST = ["-c", "sum(range(2 * 10**7))", "-m", "pytest"]
ORPHANING_PARENT = f"""
import subprocess, sys, time
then = "import os, sys, time; time.sleep(0.4); os.execv(sys.executable, [sys.executable, *{SPINS_AS_PYTEST!r}])"
child = subprocess.Popen([sys.executable, "-c", then])
print(child.pid, flush=True)
time.sleep(0.3)
"""


def test_each_process_kind_is_told_from_its_command_line():
    assert kind_of("python -u -c import sys;exec(eval(sys.stdin.readline()))") == "xdist workers"
    assert kind_of("python -I -S -B -c import json ...; from infralens.grading.worker import main; main(config)") == "sandboxed learner workers"
    assert kind_of('python -B -m infralens.grading.judges ["pytest"]') == "judging forkservers and judges"
    assert kind_of("python -m infralens --root /x grade a b") == "infralens command line"
    assert kind_of("python -m pytest --lab 10") == kind_of("python -mpytest --basetemp=/tmp/x") == "pytest subprocesses"
    assert kind_of("python -c import sys, pytest; code = pytest.main(sys.argv[1:])") == "pytest subprocesses"
    assert kind_of("bwrap --ro-bind /tmp/pytest-of-root/pytest-4/repo /code -- sh") == OTHER, "a path under pytest's temporary folder is not pytest"


@pytest.mark.slow  # sleeps through two processes' lives: nothing the quick selection needs
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the census reads /proc (Linux)")
def test_a_child_is_counted_under_the_command_it_execs_even_after_its_parent_exits():
    parent = subprocess.Popen([sys.executable, "-c", ORPHANING_PARENT], stdout=subprocess.PIPE, text=True)
    census = Census(parent.pid, interval=0.01).start()
    child = int(parent.stdout.readline())
    parent.wait()
    parent.stdout.close()
    while _alive(child):  # orphaned, it is reaped by someone else: only its disappearance tells
        time.sleep(0.05)
    by_kind = census.stop()
    assert by_kind.get("pytest subprocesses", 0) > 0.25, by_kind
    assert ROOT in by_kind, by_kind


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
