"""Grade a class: each submission is judged in its own process, learner code in its own worker.

``grade(...)`` runs, for every submission, ``pytest checks/ --submission=PATH --isolate`` in a
fresh judging process (trusted code only) and reads its JSON report back. A submission that
breaks everything still gets one result — zero points and the reason — and the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

JUDGE_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class GradeOptions:
    labs: tuple[str, ...] = ()
    seed: int = 0
    check_timeout: float = 60.0
    call_timeout: float = 10.0
    memory_mib: int = 4096
    jobs: int = 1


@dataclass
class SubmissionResult:
    """One submission's grade: per-check records (the plugin's JSON rows) and, if it could not be judged, why."""

    path: str
    seed: int
    checks: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def points_by_lab(self, catalogue: list[dict]) -> dict[str, tuple[int, int]]:
        """``{lab: (points, max_points)}`` over the catalogue of checks (unknown outcomes count zero)."""
        earned = {c["nodeid"]: c["points"] for c in self.checks if c["outcome"] == "passed"}
        totals: dict[str, list[int]] = {}
        for check in catalogue:
            entry = totals.setdefault(check["lab"], [0, 0])
            entry[0] += earned.get(check["nodeid"], 0)
            entry[1] += check["points"]
        return {lab: (points, maximum) for lab, (points, maximum) in totals.items()}

    def total(self, catalogue: list[dict]) -> tuple[int, int]:
        by_lab = self.points_by_lab(catalogue).values()
        return sum(p for p, _ in by_lab), sum(m for _, m in by_lab)


def judge_command(repo_root: Path, submission: Path, options: GradeOptions, report: Path, collect_only: bool = False) -> list[str]:
    """The command line of one judging process."""
    command = [
        sys.executable, "-m", "pytest", str(repo_root / "checks"),
        "--rootdir", str(repo_root), "-c", str(repo_root / "pyproject.toml"),
        "-p", "no:cacheprovider", "-q", "--no-header",
        f"--submission={submission}", "--isolate",
        f"--seed={options.seed}", f"--infralens-report={report}",
        f"--timeout={options.check_timeout:g}", f"--call-timeout={options.call_timeout:g}", f"--memory-limit={options.memory_mib}",
    ]
    for lab in options.labs:
        command.append(f"--lab={lab}")
    if collect_only:
        command.append("--collect-only")
    return command


def catalogue(repo_root: Path, options: GradeOptions) -> list[dict]:
    """Every selected check with its lab, exercise, points and visibility (what full marks are)."""
    with tempfile.TemporaryDirectory(prefix="infralens-catalogue-") as scratch:
        report = Path(scratch) / "report.json"
        done = subprocess.run(
            judge_command(repo_root, repo_root / "solutions", options, report, collect_only=True),
            cwd=repo_root, capture_output=True, text=True, timeout=JUDGE_TIMEOUT_SECONDS,
        )
        if not report.is_file():
            raise RuntimeError(f"could not collect the checks (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        checks = json.loads(report.read_text(encoding="utf-8"))["collected"]
    if not checks:
        raise RuntimeError("no checks selected: check --labs")
    return checks


def grade_one(repo_root: Path, submission: Path, options: GradeOptions) -> SubmissionResult:
    """Judge one submission in a fresh process; never raises for anything the submission does."""
    started = time.monotonic()
    result = SubmissionResult(str(submission), options.seed)
    if not submission.is_dir():
        result.error = f"{submission} is not a folder"
        return result
    with tempfile.TemporaryDirectory(prefix="infralens-judge-") as scratch:
        report = Path(scratch) / "report.json"
        try:
            done = subprocess.run(judge_command(repo_root, submission, options, report), cwd=repo_root, capture_output=True, text=True, timeout=JUDGE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            result.error = f"grading took longer than {JUDGE_TIMEOUT_SECONDS} s and was stopped"
        else:
            if report.is_file():
                result.checks = json.loads(report.read_text(encoding="utf-8"))["checks"]
            else:
                reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
                result.error = f"could not be graded (exit {done.returncode}): {reason[-1] if reason else 'no output'}"
    result.seconds = time.monotonic() - started
    return result


GRADER_FILES = ("checks", "solutions", "infralens", "pyproject.toml", "conftest.py")


class GraderTampered(RuntimeError):
    """The grader's own files changed while submissions were being graded."""


def grader_digest(repo_root: Path) -> str:
    """SHA-256 over the paths and contents of the files that decide grades (checks, references, tooling)."""
    digest = hashlib.sha256()
    for name in GRADER_FILES:
        top = repo_root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(repo_root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def grade(
    repo_root: Path,
    submissions: list[Path],
    options: GradeOptions,
    on_done: Callable[[int, int, SubmissionResult], None] | None = None,
) -> tuple[list[dict], list[SubmissionResult]]:
    """Grade every submission (``options.jobs`` at a time); results come back in submission order.

    Learner code cannot reach the judging process, but where the worker runs as the grader's own
    user it can write the grader's files. So the checks, references and tooling are fingerprinted
    before the batch and after every submission; a change stops grading with
    :class:`GraderTampered` naming the submissions that were running.
    """
    checks = catalogue(repo_root, options)
    fingerprint = grader_digest(repo_root)
    results: list[SubmissionResult | None] = [None] * len(submissions)
    finished = 0
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {pool.submit(grade_one, repo_root, path, options): index for index, path in enumerate(submissions)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            finished += 1
            if grader_digest(repo_root) != fingerprint:
                running = [str(submissions[futures[f]]) for f in futures if f is future or f.running()]
                for pending in futures:
                    pending.cancel()
                raise GraderTampered(
                    f"the grader's files ({', '.join(GRADER_FILES)}) changed while grading {', '.join(running)}; "
                    "grading stopped. Restore them (git status, git checkout) and grade again, that submission alone first"
                )
            if on_done is not None:
                on_done(finished, len(submissions), results[index])
    return checks, [r for r in results if r is not None]


def shard(submissions: list[Path], spec: str) -> list[Path]:
    """``--shard i/n``: the i-th of n interleaved slices of the sorted submissions (1-based)."""
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--shard must look like 2/5 (this job's number / the number of jobs), got {spec!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {spec}: the job number must be between 1 and {count}")
    ordered = sorted(submissions, key=str)
    return [path for position, path in enumerate(ordered) if position % count == index - 1]


def summary(checks: list[dict], results: list[SubmissionResult]) -> str:
    """Submissions, median score, and the checks most submissions miss."""
    if not results:
        return "no submissions graded"
    totals = [r.total(checks) for r in results]
    maximum = totals[0][1]
    median = statistics.median(points for points, _ in totals)
    missed = Counter()
    for result in results:
        passed = {c["nodeid"] for c in result.checks if c["outcome"] == "passed"}
        missed.update(c["nodeid"] for c in checks if c["nodeid"] not in passed)
    broken = [r for r in results if r.error]
    lines = [f"graded {len(results)} submission{'s' if len(results) != 1 else ''}: median {median:g}/{maximum} points"]
    if broken:
        lines.append(f"{len(broken)} could not be graded at all (zero points): " + "; ".join(f"{r.path}: {r.error}" for r in broken[:5]))
    if missed:
        lines.append("checks missed most often:")
        lines += [f"  {count:>4}/{len(results)}  {nodeid}" for nodeid, count in missed.most_common(10)]
    return "\n".join(lines)
