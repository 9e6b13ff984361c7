"""``infralens watch``: run the checks again whenever a file under ``exercises/`` changes, like rustlings' watch.

Each run happens in a fresh ``python -m pytest`` subprocess, so edited modules are imported anew;
its JSON report (``--infralens-report``) becomes the screen: the progress table and the first
failing check's message. Changes are noticed through ``watchfiles`` (the ``watch`` extra) when it
is installed, else by polling file times twice a second, which the screen says. Ctrl-C stops
watching and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

from infralens.progress import LabProgress, render_table

POLL_SECONDS = 0.5
CLEAR_SCREEN = "\033[2J\033[H"
IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".tmp", ".pyc")
NO_WATCHFILES = "watchfiles is not installed (pip install -e \".[watch]\"), so changes are found by polling every {:g} s"

Snapshot = dict[str, tuple[int, int]]


def watch(repo_root: Path, lab_options: list[str], out: TextIO = sys.stdout) -> int:
    """Run the checks, show the result, wait for a change under ``exercises/``, repeat; 0 on Ctrl-C."""
    folder = Path(repo_root) / "exercises"
    wait, note = _waiter()
    try:
        while True:
            before = snapshot(folder)
            screen = run_and_describe(repo_root, lab_options)
            out.write((CLEAR_SCREEN if out.isatty() else "\n") + screen + "\n\n")
            out.write((f"{note}\n" if note else "") + "watching exercises/ for changes · Ctrl-C to stop\n")
            out.flush()
            wait(folder, before)
    except KeyboardInterrupt:
        out.write("\nstopped watching.\n")
        out.flush()
        return 0


def run_and_describe(repo_root: Path, lab_options: list[str]) -> str:
    """One run of the checks in a fresh process, as the screen shows it: the table and the first failure."""
    with tempfile.TemporaryDirectory(prefix="infralens-watch-") as scratch:
        report_path = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--infralens-report={report_path}", *lab_options]
        done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True)
        if not report_path.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            return f"the checks could not run (pytest exit code {done.returncode}):\n{tail}"
        report = json.loads(report_path.read_text(encoding="utf-8"))
    lines = [render_table([LabProgress(**row) for row in report["labs"]], "exercises")]
    failures = [check for check in report["checks"] if check["outcome"] in ("failed", "error")]
    if failures:
        failure = min(failures, key=lambda check: check["hidden"])  # a public check's message is written for the learner
        lines += ["", f"first failure: {failure['nodeid']}", *("  " + line for line in failure["message"].splitlines())]
    return "\n".join(lines)


def snapshot(folder: Path) -> Snapshot:
    """``{file: (mtime_ns, size)}`` of the files a learner edits (no caches, hidden or editor files)."""
    files = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__pycache__" for part in relative) or path.name.endswith(IGNORED_SUFFIXES):
            continue
        try:
            stat = path.stat()
        except OSError:  # removed while we looked
            continue
        if path.is_file():
            files[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return files


def _waiter() -> tuple[Callable[[Path, Snapshot], None], str]:
    """How to wait for a change, and the note to show about it (empty with watchfiles)."""
    try:
        import watchfiles
    except ImportError:
        return _poll, NO_WATCHFILES.format(POLL_SECONDS)

    def wait(folder: Path, before: Snapshot) -> None:
        # The first timeout comes once the watcher runs; the snapshot then catches edits made during the run.
        for _changes in watchfiles.watch(folder, rust_timeout=int(POLL_SECONDS * 1000), yield_on_timeout=True):
            if snapshot(folder) != before:
                return

    return wait, ""


def _poll(folder: Path, before: Snapshot) -> None:
    while snapshot(folder) == before:
        time.sleep(POLL_SECONDS)
