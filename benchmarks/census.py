"""Where a test run's CPU goes, by kind of process: a census of the command's process tree.

The suite's time is spread over hundreds of processes (xdist workers, graders, judges, sandboxed
learner workers, pytest and ``infralens`` subprocesses). A :class:`Census` samples ``/proc`` every
few hundredths of a second while a command runs, follows every process descended from it (a
process keeps being followed after its parent dies), and adds up each one's own CPU time by the
kind :func:`kind_of` gives its last command line read (a child sampled between its fork and its
exec still shows its parent's). What it cannot see — processes born and gone between
two samples, the last moments of the ones it saw, the kernel's work for the run — is the
difference from the machine's busy core-seconds, which :mod:`benchmarks.bench_tests` prints
beside it; the sampling's own CPU time is counted apart. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

# (what a command line contains, its kind), first match wins.
KINDS = (
    ("exec(eval(sys.stdin.readline()))", "xdist workers"),
    ("infralens.grading.worker", "sandboxed learner workers"),
    ("infralens.grading.judges", "judging forkservers and judges"),
    ("-m infralens.sweep", "sweep subprocesses"),
    ("-m infralens", "infralens command line"),
    ("-m pytest", "pytest subprocesses"),
    ("-mpytest", "pytest subprocesses"),  # pytester's runpytest_subprocess
    ("pytest.main(", "pytest subprocesses"),
)
ROOT = "the test command itself"
OTHER = "other processes"
SELF = "the census's own sampling"


def kind_of(command_line: str) -> str:
    """The kind of process ``command_line`` (arguments joined by spaces) starts: one of :data:`KINDS`, else :data:`OTHER`."""
    return next((kind for marker, kind in KINDS if marker in command_line), OTHER)


@dataclass
class _Followed:
    command_line: str  # as last read: the one it runs once it has exec'd
    cpu: float  # its own user + system seconds at the last sample

    def sampled(self, command_line: str, cpu: float) -> None:
        self.command_line = command_line or self.command_line  # a process that has exited shows an empty one
        self.cpu = cpu


def _stat(pid: str) -> tuple[int, str, float] | None:
    """``(parent pid, start time in ticks, own CPU seconds)`` of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name before ")" may hold spaces
    return int(fields[1]), fields[19], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _command_line(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


class Census:
    """Samples the process tree under ``root_pid`` in a thread until :meth:`stop`::

        census = Census(process.pid); census.start(); process.wait(); by_kind = census.stop()
    """

    def __init__(self, root_pid: int, interval: float = 0.02):
        self._root, self._interval = str(root_pid), interval
        self._followed: dict[tuple[str, str], _Followed] = {}  # (pid, start time) survives pid reuse
        self._outside: set[str] = set()  # pids of running processes that are not in the tree
        self._done = threading.Event()
        self._own_cpu = 0.0  # the sampling thread's CPU seconds: part of the machine's busy time too
        self._thread = threading.Thread(target=self._run, name="census", daemon=True)

    def start(self) -> "Census":
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop sampling; ``{kind: CPU seconds}`` of every process seen, largest first, and :data:`SELF`."""
        self._done.set()
        self._thread.join()
        totals: Counter[str] = Counter()
        for (pid, _), followed in self._followed.items():
            totals[ROOT if pid == self._root else kind_of(followed.command_line)] += followed.cpu
        totals[SELF] = self._own_cpu
        return dict(totals.most_common())

    def _run(self) -> None:
        start = time.thread_time()
        while not self._done.is_set():
            self._sample()
            self._own_cpu = time.thread_time() - start
            self._done.wait(self._interval)

    def _sample(self) -> None:
        """Read the processes that are new since the last sample or followed; a process once found
        outside the tree stays outside (its parent never changes but to an adopter) and is not read again."""
        listed = {pid for pid in os.listdir("/proc") if pid.isdigit()}
        self._outside &= listed
        live: set[str] = set()  # the followed processes running now (a reused pid is not one of them)
        new = []
        for pid in listed - self._outside:
            stat = _stat(pid)
            if stat is None:
                continue
            parent, started, cpu = stat
            followed = self._followed.get((pid, started))
            if followed is not None:
                followed.sampled(_command_line(pid), cpu)
                live.add(pid)
            else:
                new.append((int(started), pid, parent, started, cpu))
        for _, pid, parent, started, cpu in sorted(new):  # parents started before their children
            if pid == self._root or str(parent) in live:
                self._followed[(pid, started)] = _Followed(_command_line(pid), cpu)
                live.add(pid)
            else:
                self._outside.add(pid)
