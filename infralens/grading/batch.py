"""Grade a class: each submission is taken in, then judged in its own process, learner code sandboxed.

``grade(...)`` copies every submission into a grader-owned scratch tree (:mod:`~infralens.grading.intake`),
runs ``pytest checks/ --submission=COPY --isolate`` on the copy in a judging process of its own
(trusted code only, no bytecode written, forked from the batch's warm start, see
:mod:`~infralens.grading.judges`) whose learner code runs in the sandbox of
:mod:`~infralens.grading.sandbox`, and reads its JSON report back once that process and its workers
are gone. Each submission has a wall-clock budget: its judge stops calling learner code when the
budget is used up, and the grader kills a judge that outlives it. A submission that breaks
everything still gets one result — zero points and the reason — and the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sysconfig
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from infralens.grading.intake import Refused, grader_inodes, readable, take_in
from infralens.grading.judges import Judges, modules_to_preload
from infralens.grading.text import safe_text
from infralens.sessions import PLUGIN_ARGS, own_session_env

JUDGE_GRACE_SECONDS = 120  # collecting the checks and importing the references, beyond the learner's budget


@dataclass(frozen=True)
class GradeOptions:
    labs: tuple[str, ...] = ()
    seed: int = 0
    check_timeout: float = 60.0
    call_timeout: float = 10.0
    memory_mib: int = 4096
    jobs: int = 1
    budget: float = 900.0
    isolation: str = "sandbox"


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


def isolation_record(options: GradeOptions) -> str:
    """How learner code is confined under ``options``, in the words every output records."""
    if options.isolation == "sandbox":
        return "sandbox: learner code ran in bubblewrap (no network, its own PID namespace, a read-only view, resource limits)"
    from infralens.grading import sandbox

    user = "an unprivileged uid of its own" if os.geteuid() == 0 and sandbox.usable_by_others(*sandbox.interpreter_paths()) else "the grader's own user"
    return f"NO SANDBOX (--no-sandbox): learner code ran with process limits only, as {user}; these grades are not proof against a hostile student"


def judge_args(repo_root: Path, submission: Path, options: GradeOptions, report: Path, collect_only: bool = False) -> list[str]:
    """The ``pytest`` arguments of one judging process (see :mod:`infralens.grading.judges`).

    The judges' plugins are imported before each judge starts, so pytest cannot rewrite their
    asserts; it says so once per judge unless told that this is expected.
    """
    args = [
        str(repo_root / "checks"), "--rootdir", str(repo_root), "-c", str(repo_root / "pyproject.toml"),
        "-p", "no:cacheprovider", *PLUGIN_ARGS, "-p", "infralens.grading.judging", "-q", "--no-header",
        "-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
        f"--submission={submission}", "--isolate", f"--isolation={options.isolation}", f"--budget={options.budget:g}",
        f"--seed={options.seed}", f"--infralens-report={report}",
        f"--timeout={options.check_timeout:g}", f"--call-timeout={options.call_timeout:g}", f"--memory-limit={options.memory_mib}",
    ]
    for lab in options.labs:
        args.append(f"--lab={lab}")
    if collect_only:
        args += ["--collect-only", "--assert=plain"]  # collected, never run: no need to rewrite the checks' asserts
    return args


def judges_for(repo_root: Path) -> Judges:
    """The forkserver of a batch: judges with plugin autoloading off and no bytecode written."""
    env = {**own_session_env(os.environ), "PYTHONDONTWRITEBYTECODE": "1"}
    return Judges(repo_root, env, modules_to_preload(repo_root))


def catalogue(repo_root: Path, options: GradeOptions, judges: Judges) -> list[dict]:
    """Every selected check with its lab, exercise, points and visibility (what full marks are)."""
    with tempfile.TemporaryDirectory(prefix="infralens-catalogue-") as scratch:
        report = Path(scratch) / "report.json"
        code, output = judges.run(judge_args(repo_root, repo_root / "solutions", options, report, collect_only=True), Path(scratch) / "judge.log", JUDGE_GRACE_SECONDS)
        if not report.is_file():
            raise RuntimeError(f"could not collect the checks (exit {code}): {output.strip()[-2000:]}")
        checks = json.loads(report.read_text(encoding="utf-8"))["collected"]
    if not checks:
        raise RuntimeError("no checks selected: check --labs")
    return checks


def grade_one(repo_root: Path, submission: Path, options: GradeOptions, scratch: Path, judges: Judges, protected: frozenset = frozenset()) -> SubmissionResult:
    """Take in and judge one submission in a judge of its own; never raises for anything the submission does."""
    started = time.monotonic()
    display = readable(os.path.abspath(submission))
    result = SubmissionResult(display, options.seed)
    copy = scratch / "submission"
    try:
        original = take_in(submission, copy, repo_root, protected)
    except Refused as refusal:
        result.error = f"refused: {refusal}"
    except OSError as error:
        result.error = f"refused: could not read the submission: {readable(error.strerror or str(error))}"
    else:
        report = scratch / "report.json"
        code, output = judges.run(judge_args(repo_root, copy, options, report), scratch / "judge.log", options.budget + JUDGE_GRACE_SECONDS)
        if code is None:
            result.error = f"grading took longer than {options.budget + JUDGE_GRACE_SECONDS:g} s (the submission's budget and the judge's own time) and was stopped"
        elif report.is_file():
            rows = json.loads(report.read_text(encoding="utf-8"))["checks"]
            result.checks = [{key: safe_text(_as_submitted(value, copy, original)) if type(value) is str else value for key, value in row.items()} for row in rows]
        else:
            reason = _as_submitted(output.strip(), copy, original).splitlines()
            result.error = f"could not be graded (exit {code}): {safe_text(reason[-1]) if reason else 'no output'}"
    result.seconds = time.monotonic() - started
    return result


def _as_submitted(text: str, copy: Path, original: Path) -> str:
    """``text`` with the scratch copy's paths shown as the submission's own."""
    return text.replace(str(copy / "exercises"), readable(original)).replace(str(copy), readable(original))


GRADER_FILES = ("checks", "solutions", "infralens", "exercises", "tests", "pyproject.toml", "conftest.py")


class GraderTampered(RuntimeError):
    """The grader's own files changed while submissions were being graded; ``results`` holds what was graded."""

    def __init__(self, message: str, checks: list[dict], results: list[SubmissionResult]):
        super().__init__(message)
        self.checks, self.results = checks, results


def grader_digest(repo_root: Path) -> str:
    """SHA-256 over the files that decide grades or ship to students — checks, references, tooling
    and starters with their bytecode caches, the project's tests — and the interpreter's ``.pth`` files."""
    digest = hashlib.sha256()
    paths: list[Path] = []
    for name in GRADER_FILES:
        top = repo_root / name
        paths += [top] if top.is_file() else sorted(top.rglob("*"))
    for folder in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        paths += sorted(Path(folder).glob("*.pth"))
    for path in paths:
        if path.is_file() and not (path.is_relative_to(repo_root / "tests") and "__pycache__" in path.parts):  # the judge never imports tests/
            digest.update(os.fsencode(path) + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def grade(
    repo_root: Path,
    submissions: list[Path],
    options: GradeOptions,
    on_done: Callable[[int, int, SubmissionResult], None] | None = None,
) -> tuple[list[dict], list[SubmissionResult]]:
    """Grade every submission (``options.jobs`` at a time); results come back in submission order.

    Learner code cannot write the grader's files from the sandbox, so the fingerprint of those
    files (:func:`grader_digest`, before the batch and after every submission) is a second line
    of defence. A change voids the grades of the submissions that were running, leaves the rest
    ungraded and raises :class:`GraderTampered`, which carries every result, so the reports are
    still written.
    """
    repo_root = Path(repo_root).resolve()
    with judges_for(repo_root) as judges:
        return _grade_with(repo_root, submissions, options, judges, on_done)


def _grade_with(repo_root: Path, submissions: list[Path], options: GradeOptions, judges: Judges, on_done: Callable[[int, int, SubmissionResult], None] | None) -> tuple[list[dict], list[SubmissionResult]]:
    checks = catalogue(repo_root, options, judges)
    fingerprint = grader_digest(repo_root)
    protected = grader_inodes(repo_root)
    results: list[SubmissionResult | None] = [None] * len(submissions)
    finished = 0
    tampered: str | None = None
    with tempfile.TemporaryDirectory(prefix="infralens-grade-") as scratch_root, ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:

        def one(index: int, path: Path) -> SubmissionResult:
            scratch = Path(scratch_root) / f"{index:05d}"
            scratch.mkdir(mode=0o700)
            try:
                return grade_one(repo_root, path, options, scratch, judges, protected)
            finally:
                shutil.rmtree(scratch)

        futures = {pool.submit(one, index, path): index for index, path in enumerate(submissions)}
        void: set[int] = set()
        for future in as_completed(futures):
            if future.cancelled():
                continue
            index = futures[future]
            results[index] = future.result()
            finished += 1
            if tampered is None and grader_digest(repo_root) != fingerprint:
                void = {i for f, i in futures.items() if f is future or f.running()}
                tampered = (
                    f"the grader's files ({', '.join(GRADER_FILES)}) changed while grading {', '.join(readable(submissions[i]) for i in sorted(void))}; "
                    "grading stopped. Restore them (git status, git checkout) and grade again, those submissions alone first"
                )
                for pending in futures:
                    pending.cancel()
            if index in void:
                results[index] = SubmissionResult(results[index].path, options.seed, [], "void: the grader's files changed while this submission was graded")
            if on_done is not None:
                on_done(finished, len(submissions), results[index])
    if tampered is not None:
        ungraded = "not graded: grading stopped because the grader's files changed"
        final = [r if r is not None else SubmissionResult(readable(os.path.abspath(p)), options.seed, [], ungraded) for r, p in zip(results, submissions)]
        raise GraderTampered(tampered, checks, final)
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
