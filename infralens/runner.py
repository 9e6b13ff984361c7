"""Run a checkout's checks in this process and read back every check's result as data.

Used by ``infralens progress``, ``infralens hint`` and ``infralens mutants``: the same checks and
the same plugin as a plain ``pytest`` run, with the terminal output switched off and the JSON
report (``--infralens-report``) read back.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest


def run_checks(repo_root: Path, *options: str, paths: tuple[Path, ...] = ()) -> tuple[int, dict]:
    """Run ``checks/`` (or ``paths``) of ``repo_root`` quietly; return pytest's exit code and the report.

    ``options`` are plugin options such as ``"--solutions"``, ``"--submission", "PATH"``,
    ``"--lab", "10"``. Raises ``RuntimeError`` when pytest could not run the checks at all (a
    usage error or an internal error), with pytest's exit code in the message.
    """
    repo_root = Path(repo_root).resolve()
    with tempfile.TemporaryDirectory(prefix="infralens-") as scratch:
        report_path = Path(scratch) / "report.json"
        args = [
            *(str(p) for p in (paths or (repo_root / "checks",))),
            "--rootdir", str(repo_root),
            "-c", str(repo_root / "pyproject.toml"),
            "-p", "no:terminal",
            "-p", "no:cacheprovider",
            "--infralens-report", str(report_path),
            *options,
        ]
        exit_code = int(pytest.main(args))
        if not report_path.is_file():
            raise RuntimeError(f"the checks could not run (pytest exit code {exit_code}); run `pytest {' '.join(options)}` to see why")
        return exit_code, json.loads(report_path.read_text(encoding="utf-8"))
