"""``infralens watch`` end to end: a real process, a real edit of a starter, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import write

DEADLINE_SECONDS = 240  # generous: the suite runs with every core busy; the wait ends as soon as the text appears
SOLVED_ADD = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    # TODO: double it
    raise NotImplementedError("double")
'''


class Watcher:
    """``infralens watch`` running in a subprocess, its output collected line by line as it comes."""

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infralens", "--root", str(root), "watch", "--lab", "99"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            # A suite started in the background (`pytest &`) inherits SIGINT ignored, and Python
            # then installs no Ctrl-C handler; a learner's terminal always delivers it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True)
        self.reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, after: int = 0) -> int:
        """Block until ``text`` appears past character ``after`` of the output; return where it ends."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            found = self.output().find(text, after)
            if found >= 0:
                return found + len(text)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"`infralens watch` never printed {text!r}; it printed:\n{self.output()[-3000:]}\n{self.process.stderr.read()[-2000:]}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"`infralens watch` did not stop within {DEADLINE_SECONDS} s of Ctrl-C; it printed:\n{self.output()[-3000:]}")
        self.reader.join(timeout=10)
        return code, self.process.stderr.read()


@pytest.fixture
def no_watchfiles(tmp_path) -> dict[str, str]:
    """An environment in which ``import watchfiles`` fails, as on a machine without the extra."""
    write(tmp_path / "blocked" / "watchfiles.py", "raise ImportError('watchfiles is blocked for this test')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "blocked"), os.environ.get("PYTHONPATH")]))}


# Each wait has its own deadline and message; pytest-timeout's backstop must not end the session first.
@pytest.mark.timeout(8 * DEADLINE_SECONDS)
@pytest.mark.waits  # for the watcher to notice an edit and rerun
@pytest.mark.parametrize("mode", ["watchfiles", "polling"])
def test_watch_reruns_on_a_real_edit_and_stops_cleanly_on_ctrl_c(kata_repo, request, mode):
    if mode == "watchfiles":
        pytest.importorskip("watchfiles")
    watcher = Watcher(kata_repo, env=request.getfixturevalue("no_watchfiles") if mode == "polling" else None)
    seen = watcher.wait_for("lab99  demo   0/3     0/4     not started")
    seen = watcher.wait_for("watching exercises/ for changes · Ctrl-C to stop", seen)
    if mode == "polling":
        assert "watchfiles is not installed" in watcher.output()
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD.replace("return a + b", "return a - b"))
    seen = watcher.wait_for("lab99  demo   0/3     0/4     in progress", seen)
    seen = watcher.wait_for("first failure: checks/lab99_demo/test_demo.py::test_add_small_numbers", seen)
    watcher.wait_for("add(2, 3) returned -1, expected 5", seen)
    write(kata_repo / "exercises/lab99_demo/demo.py", SOLVED_ADD)
    watcher.wait_for("lab99  demo   2/3     3/4     in progress", seen)
    code, errors = watcher.stop()
    assert code == 0, errors
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors
    assert watcher.output().rstrip().endswith("stopped watching.")
