"""The suite's own benchmark: the census that says which kind of process spent a run's CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.census import OTHER, ROOT, Census, kind_of

# A parent that starts a child, lives long enough for the census to see the two together (a third
# of a second: many samples even on a busy machine), and exits; the child then spins alone.
ORPHANING_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.4); sum(range(6 * 10**6))", "-m", "pytest"])
print(child.pid, flush=True)
time.sleep(0.3)
"""


def test_each_process_kind_is_told_from_its_command_line():
    assert kind_of("python -u -c import sys;exec(eval(sys.stdin.readline()))") == "xdist workers"
    assert kind_of("python -I -S -B -c import json ...; from infralens.grading.worker import main; main(config)") == "sandboxed learner workers"
    assert kind_of('python -B -m infralens.grading.judges ["pytest"]') == "judging forkservers and judges"
    assert kind_of("python -m infralens --root /x grade a b") == "infralens command line"
    assert kind_of("python -m pytest --lab 10") == "pytest subprocesses"
    assert kind_of("bwrap --unshare-all -- python") == OTHER


@pytest.mark.slow  # sleeps through two processes' lives: nothing the quick selection needs
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the census reads /proc (Linux)")
def test_a_child_is_counted_under_its_kind_even_after_its_parent_exits():
    parent = subprocess.Popen([sys.executable, "-c", ORPHANING_PARENT], stdout=subprocess.PIPE, text=True)
    census = Census(parent.pid, interval=0.01).start()
    child = int(parent.stdout.readline())
    parent.wait()
    parent.stdout.close()
    while _alive(child):  # orphaned, it is reaped by someone else: only its disappearance tells
        time.sleep(0.05)
    by_kind = census.stop()
    assert by_kind.get("pytest subprocesses", 0) > 0.05, by_kind
    assert ROOT in by_kind, by_kind


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
