"""Run a checkout's checks in this process and read back every check's result as data.

Used by ``infralens progress``, ``infralens hint`` and ``infralens mutants``: the same checks and
the same plugin as a plain ``pytest`` run, with the terminal output switched off and the JSON
report (``--infralens-report``) read back.

Every learner run also leaves its results in ``.infralens/last-run.json`` (:func:`record_last_run`),
so ``infralens hint`` can answer from them (:func:`last_run_checks`) without running anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

LAST_RUN = Path(".infralens") / "last-run.json"


def run_checks(repo_root: Path, *options: str, paths: tuple[Path, ...] = ()) -> tuple[int, dict]:
    """Run ``checks/`` (or ``paths``) of ``repo_root`` quietly; return pytest's exit code and the report.

    ``options`` are plugin options such as ``"--solutions"``, ``"--submission", "PATH"``,
    ``"--lab", "10"``. Raises ``RuntimeError`` when pytest could not run the checks at all (a
    usage error or an internal error), with pytest's exit code in the message.
    """
    import pytest  # here, not at the top: the commands that never run checks (grade, merge, models) start without it

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


def record_last_run(repo_root: Path, started: float, labs: dict[str, bool], checks: list[dict]) -> None:
    """Keep a learner run's results per lab in ``.infralens/last-run.json``, next to earlier runs' other labs.

    ``labs`` maps each lab that ran to whether the run was complete for it (every check ran);
    ``started`` (``time.time()`` at the start of the run) tells later readers which edits it saw.
    """
    path = Path(repo_root) / LAST_RUN
    kept = _read_last_run(path)
    for lab, complete in labs.items():
        kept[lab] = {"started": started, "complete": complete, "checks": [c for c in checks if c["lab"] == lab]}
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps({"labs": kept}) + "\n", encoding="utf-8")
    scratch.replace(path)  # readers never see half a file


def last_run_checks(repo_root: Path, lab_folder: str) -> list[dict] | None:
    """The checks of ``lab_folder`` from the last complete run, or None when there is none or it is stale.

    Stale means a file of the lab's exercise or checks folder changed after that run started.
    """
    repo_root = Path(repo_root)
    entry = _read_last_run(repo_root / LAST_RUN).get(lab_folder)
    if not isinstance(entry, dict) or entry.get("complete") is not True or not isinstance(entry.get("checks"), list):
        return None
    folders = (repo_root / "exercises" / lab_folder, repo_root / "checks" / lab_folder)
    changed = max((f.stat().st_mtime for folder in folders for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts), default=0.0)
    return entry["checks"] if changed < float(entry.get("started", 0)) else None


def _read_last_run(path: Path) -> dict:
    try:
        labs = json.loads(path.read_text(encoding="utf-8")).get("labs")
    except (OSError, ValueError, AttributeError):
        return {}  # no file yet, or a damaged one: the next run writes it again
    return labs if isinstance(labs, dict) else {}
