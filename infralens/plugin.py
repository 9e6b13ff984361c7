"""The pytest plugin behind every run: options, check markers, the lab fixtures, learner feedback, progress.

Loaded by the repository's root ``conftest.py``. What it adds to pytest:

* which tree the checks read: ``exercises/`` (default), ``--solutions``, ``--submission PATH``;
* ``--lab LAB`` to focus labs (``--lab 10``, ``--lab lab10,lab02``): other labs are not even collected;
  run from inside ``exercises/labNN_*`` (or given such a folder or starter as the path), pytest
  runs that lab's checks;
* ``--seed N`` for the inputs of hidden checks (random by default, always printed);
* ``--infralens-report PATH``: every check's result as JSON (what ``infralens progress`` reads);
  a learner run also keeps its results in ``.infralens/last-run.json`` for ``infralens hint``;
* ``--call-limit SECONDS`` (ini ``infralens_call_limit``): the time one call into learner code
  may take, and the learner's functions' documented return types, enforced by :mod:`infralens.calls`;
* the ``check(exercise, points=1)`` marker every check carries, and ``gpu`` for CUDA-only checks
  (skipped without CUDA, and under ``--isolate``, where they count toward no total);
* fixtures ``lab`` (the code under test), ``oracle`` (the reference, hidden checks only), ``seed``, ``rng``,
  and ``cases`` (a hidden check's edge cases, then its random ones: :mod:`infralens.cases`);
* compact, capped failure messages, "not started" instead of tracebacks, a module that does not
  import reported once per lab, and the progress table (honest about runs narrowed by
  ``--exercise``, ``-k``, ``-x``, ``--deselect`` or a node id).
"""

from __future__ import annotations

import gc
import inspect
import json
import random
import secrets
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infralens import feedback
from infralens.calls import CallGuard, ContractLab, disarm_call_timer
from infralens.cases import Cases
from infralens.hints import HintsError, load_hints
from infralens.labs import Lab, checks_for, discover_labs, lab_of_path, resolve_lab
from infralens.loader import LabCode, code_root_of_submission
from infralens.runner import record_last_run
from infralens.watchdog import install as install_watchdog

if TYPE_CHECKING:
    from infralens.grading.remote import RemoteLabCode, Worker
from infralens.progress import ERROR, FAILED, NOT_STARTED, PASSED, SKIPPED, CheckRecord, render_table, summarize_lab

HIDDEN_PREFIX = "test_hidden_"
OWN_FIXTURES = ("lab", "oracle", "seed", "rng", "cases")
DIRECT_MARKS = ("check", "parametrize")  # marks that do nothing at a check's setup: see fixture_values
HELP_SOLUTIONS = "check solutions/ (the references) instead of exercises/"
HELP_SUBMISSION = "check another tree: a repository root holding exercises/, or a folder of labNN_* folders"
HELP_LAB = "only run these labs (repeatable or comma-separated): 10, lab10 or lab10_quantization_plan"
HELP_EXERCISE = "only the checks of these exercises (repeatable or comma-separated), e.g. --exercise saved_memory"
HELP_SEED = "seed for the random inputs of hidden checks (default: a fresh random seed, printed in the header)"
HELP_REPORT = "write every check's result to this JSON file"
HELP_ISOLATE = "run learner code in a separate, limited worker process (what grading uses); checks are judged here"
HELP_CALL_TIMEOUT = "with --isolate: seconds one call into learner code may take (default 10)"
HELP_CALL_LIMIT = (
    "seconds one call from a check into your code may take before it fails, naming the line it was on "
    "(default: the ini option infralens_call_limit, 5; 0 turns it off and leaves pytest-timeout's per-check limit)"
)
HELP_CALL_LIMIT_INI = "default for --call-limit: seconds one call into learner code may take"
DEFAULT_CALL_LIMIT = "5"
HELP_MEMORY = "with --isolate: address-space limit of the learner's process in MiB (default 4096)"
CHECK_MARKER = "check(exercise, points=1): the starter function or class this check grades, and the points it is worth"
GPU_MARKER = "gpu: needs a CUDA device; skipped with a reason where torch sees none, and under --isolate"
GPU_ISOLATED = (
    "a GPU check runs learner code on this process's GPU; under --isolate that code runs in a worker that receives "
    "CPU tensors (and a sandboxed one has no GPU at all), so the check is skipped and counts toward no total"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infralens", "InfraLens Katas")
    group.addoption("--solutions", action="store_true", default=False, help=HELP_SOLUTIONS)
    group.addoption("--submission", metavar="PATH", default=None, help=HELP_SUBMISSION)
    group.addoption("--lab", metavar="LAB", action="append", default=[], help=HELP_LAB)
    group.addoption("--exercise", metavar="NAME", action="append", default=[], help=HELP_EXERCISE)
    group.addoption("--seed", metavar="N", type=int, default=None, help=HELP_SEED)
    group.addoption("--infralens-report", metavar="PATH", default=None, help=HELP_REPORT)
    group.addoption("--isolate", action="store_true", default=False, help=HELP_ISOLATE)
    group.addoption("--call-timeout", metavar="SECONDS", type=float, default=10.0, help=HELP_CALL_TIMEOUT)
    group.addoption("--call-limit", metavar="SECONDS", type=float, default=None, help=HELP_CALL_LIMIT)
    parser.addini("infralens_call_limit", HELP_CALL_LIMIT_INI, default=DEFAULT_CALL_LIMIT)
    group.addoption("--memory-limit", metavar="MIB", type=int, default=4096, help=HELP_MEMORY)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CHECK_MARKER)
    config.addinivalue_line("markers", GPU_MARKER)
    chosen = [f"--{name}" for name in ("solutions", "submission", "lab", "exercise", "seed", "infralens_report", "isolate") if config.getoption(name) not in (None, False, [])]
    if not (Path(config.rootpath) / "checks").is_dir():
        # Installed as a pytest plugin, this module is loaded by every pytest run in the
        # environment: outside a kata checkout it stays out of the way.
        submission = config.getoption("submission")
        if submission and (Path(config.invocation_params.dir) / "checks").is_dir():
            # pytest looks for its settings before plugins parse options, so in
            # `--submission PATH` it took PATH for a test path and settled outside the checkout.
            raise pytest.UsageError(
                f"pytest read {submission} as a test path and looked for its settings there. "
                f"Write the option with '=': pytest --submission={submission}"
            )
        if chosen:
            raise pytest.UsageError(f"{', '.join(chosen)}: {config.rootpath} is not an InfraLens Katas checkout (no checks/ folder); run pytest from your clone")
        return
    if config.getoption("solutions") and config.getoption("submission"):
        raise pytest.UsageError("--solutions and --submission both choose the code under test: give one of them")
    config.pluginmanager.register(InfraLensSession(config), "infralens-session")
    install_watchdog(config)  # pytest-timeout's per-check limit, from one thread instead of one per check


@dataclass(eq=False)  # a pytest plugin must hash by identity
class InfraLensSession:
    """Per-run state: the trees, the seed, the labs, and the records the progress table is built from."""

    config: pytest.Config
    repo_root: Path = field(init=False)
    code_root: Path = field(init=False)
    code_display_root: str = field(init=False)
    seed: int = field(init=False)
    focus: list[Lab] = field(init=False)
    exercises: set[str] = field(init=False)
    records: dict[str, CheckRecord] = field(init=False, default_factory=dict)
    worker: Worker | None = field(init=False, default=None)
    remote_labs: dict[str, RemoteLabCode] = field(init=False, default_factory=dict)
    collected: list[dict] = field(init=False, default_factory=list)
    guard: CallGuard = field(init=False)
    lab_checks: dict[str, int] = field(init=False, default_factory=dict)  # checks each lab has, counted before any deselection
    partial_labs: set[str] = field(init=False, default_factory=set)  # labs collected from a file or node id: their total is unknown
    explained: set[tuple[str, str]] = field(init=False, default_factory=set)  # (lab, file:line) of modules that do not import, reported once
    started: float = field(init=False, default=0.0)
    # A sweep's memory of edge cases across seeds (see infralens.cases): None, or the valid edge
    # cases of the next check when its `cases` skips its edges; and the `cases` the last check was handed.
    valid_edges: int | None = field(init=False, default=None)
    last_cases: Cases | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.repo_root = Path(self.config.rootpath)
        submission = self.config.getoption("submission")
        if submission:
            try:
                self.code_root = code_root_of_submission(Path(submission))
            except ValueError as error:
                raise pytest.UsageError(str(error)) from None
            self.code_display_root = str(self.code_root)
        else:
            tree = "solutions" if self.config.getoption("solutions") else "exercises"
            self.code_root = self.repo_root / tree
            self.code_display_root = tree
            if not self.code_root.is_dir():
                raise pytest.UsageError(f"{self.code_root} does not exist: this checkout has no {tree}/ folder")
        seed = self.config.getoption("seed")
        self.seed = seed if seed is not None else secrets.randbelow(2**31)
        labs = discover_labs(self.repo_root) if (self.repo_root / "checks").is_dir() else []
        self.exercises = {name.strip() for names in self.config.getoption("exercise") for name in names.split(",") if name.strip()}
        try:
            self.focus = [resolve_lab(name, labs) for names in self.config.getoption("lab") for name in names.split(",") if name.strip()]
        except ValueError as error:
            raise pytest.UsageError(f"--lab: {error}") from None
        self._aim_at_checks(labs)
        self.guard = self._call_guard()

    def _call_guard(self) -> CallGuard:
        """Contracts from this checkout's starters, limits from the options, for the tree under test."""
        return CallGuard(self._call_limit(), self.repo_root / "exercises", self.code_root, self.code_display_root, self.config.getoption("call_timeout"))

    def _call_limit(self) -> float:
        given = self.config.getoption("call_limit")
        if given is None:
            try:
                given = float(self.config.getini("infralens_call_limit"))
            except ValueError:
                raise pytest.UsageError(f"infralens_call_limit must be a number of seconds, got {self.config.getini('infralens_call_limit')!r}") from None
        if given < 0:
            raise pytest.UsageError(f"--call-limit must be 0 (off) or a positive number of seconds, got {given:g}")
        return given

    def _aim_at_checks(self, labs: list[Lab]) -> None:
        """Run the checks of what the learner points at: a lab folder or starter under ``exercises/``
        (or ``solutions/``) given as a path, or pytest started from inside one, means that lab's checks.

        Also notes the labs collected from a file or node id, whose full number of checks is unknown.
        """
        invocation = Path(self.config.invocation_params.dir)
        from_folder = self.config.args_source != pytest.Config.ArgsSource.ARGS
        if from_folder and self.focus:
            self.config.args = [str(self.repo_root / "checks")]  # --lab decides; the folder started from does not narrow it
        aimed = []
        for arg in self.config.args:
            path_text, separator, _rest = arg.partition("::")
            path = (invocation / path_text).resolve()
            checks = checks_for(path, self.repo_root)
            if checks is not None:
                if separator or not checks.is_dir():
                    where = "inside a lab folder" if from_folder else arg
                    known = ", ".join(lab.short for lab in labs) or "none"
                    raise pytest.UsageError(f"{where}: no checks for {path} here; the labs are {known}. Run pytest from the repository root, or give --lab N")
                aimed.append(str(checks))
                continue
            aimed.append(arg)
            lab = lab_of_path(path, self.repo_root)
            if lab is not None and (separator or path.is_file()):
                self.partial_labs.add(lab.folder)
        self.config.args = aimed

    # --- collection -------------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        mode = "the references" if self.config.getoption("solutions") else "your code"
        lines = [f"infralens: checking {mode} in {self.code_display_root}/ · hidden-check seed {self.seed} (rerun with --seed {self.seed})"]
        if self.guard.unavailable and not self.config.getoption("isolate"):
            lines.append(f"infralens: no per-call time limit here ({self.guard.unavailable}); pytest-timeout's per-check limit is the only one")
        return lines

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        """With ``--lab``, the other labs' folders are not collected at all (not imported, then deselected)."""
        if not self.focus or collection_path.parent != self.repo_root / "checks":
            return None
        lab = lab_of_path(collection_path, self.repo_root)
        return True if lab is not None and lab not in self.focus else None

    @pytest.hookimpl(tryfirst=True)  # count each lab's checks before -k, --deselect or --exercise narrow the run
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        selected, deselected = [], []
        for item in items:
            lab = lab_of_path(item.path, self.repo_root)
            if lab is None:
                selected.append(item)
                continue
            self.lab_checks[lab.folder] = self.lab_checks.get(lab.folder, 0) + 1
            marker = item.get_closest_marker("check")
            if marker is None:
                raise pytest.UsageError(f"{item.nodeid} has no @pytest.mark.check(exercise, points=...) marker: every check must say what it grades")
            exercise, points = _check_marker_args(item, marker)
            item.stash[CHECK_KEY] = info = CheckInfo(lab, exercise, points, item.path.name.startswith(HIDDEN_PREFIX))
            if (self.focus and lab not in self.focus) or (self.exercises and exercise not in self.exercises):
                deselected.append(item)
                continue
            gpu = item.get_closest_marker("gpu") is not None
            if gpu and self.config.getoption("isolate"):
                # Not in `collected`: a check no isolated run can pass counts toward no one's total.
                item.add_marker(pytest.mark.skip(reason=GPU_ISOLATED))
            else:
                self.collected.append({"nodeid": item.nodeid, "lab": lab.folder, "exercise": exercise, "points": points, "hidden": info.hidden})
                if gpu and not _cuda_available():
                    item.add_marker(pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False here"))
            selected.append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.started = time.time()
        if self.config.getoption("isolate") and not self.config.getoption("collectonly"):
            self._worker().start()  # the learner's Python and torch start up while checks are collected

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        """Run the checks the cheap way: torch on one thread, and the collector past what imports built.

        Checks use tiny tensors, for which torch's thread pool costs far more than it saves (and
        contends with everything else on a busy machine). ``gc.freeze()`` leaves the objects of
        torch and the other imports out of every later collection, pytest's five at the very end
        included, so they stay frozen (they live as long as the process anyway).
        """
        torch = sys.modules.get("torch")  # the checks imported it; a run that did not needs no setting
        threads = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(1)
        gc.freeze()
        try:
            return (yield)
        finally:
            if torch is not None:
                torch.set_num_threads(threads)  # an in-process caller (infralens progress) gets its setting back

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.config.getoption("isolate"):
            return
        # Import the references before any learner process exists, so nothing it does on disk
        # can change the oracle a hidden check compares with.
        solutions = self.repo_root / "solutions"
        for lab in {item.stash[CHECK_KEY].lab for item in session.items if CHECK_KEY in item.stash and item.stash[CHECK_KEY].hidden}:
            oracle = LabCode(solutions, lab.folder, "solutions")
            for module in sorted((solutions / lab.folder).glob("*.py")):
                oracle.module(module.stem)

    # --- fixtures' helpers --------------------------------------------------------------------

    def lab_code(self, item: pytest.Item) -> ContractLab:
        """The code under test, seen through its contracts: time-limited calls, documented return types."""
        info = item.stash[CHECK_KEY]
        if not self.config.getoption("isolate"):
            return self.guard.lab(LabCode(self.code_root, info.lab.folder, self.code_display_root), info.lab.folder)
        if info.lab.folder not in self.remote_labs:
            from infralens.grading.remote import RemoteLabCode

            self.remote_labs[info.lab.folder] = RemoteLabCode(self._worker(), info.lab.folder)
        return self.guard.lab(self.remote_labs[info.lab.folder], info.lab.folder)

    def _worker(self) -> Worker:
        from infralens.grading.remote import Worker, worker_preload  # only --isolate pays for the worker machinery

        if self.worker is None:
            memory = self.config.getoption("memory_limit") << 20
            preload = worker_preload(self.repo_root, self.code_root)  # a lab without torch starts its worker without it
            self.worker = Worker(self.code_root, self.code_display_root, self.config.getoption("call_timeout"), memory, preload=preload)
        return self.worker

    def oracle_code(self, item: pytest.Item) -> LabCode:
        info = item.stash[CHECK_KEY]
        if not info.hidden:
            pytest.fail(f"{item.nodeid}: only hidden checks (files named {HIDDEN_PREFIX}*.py) may use the oracle fixture", pytrace=False)
        solutions = self.repo_root / "solutions"
        if not solutions.is_dir():
            pytest.fail("hidden checks need solutions/, which this checkout does not have", pytrace=False)
        return LabCode(solutions, info.lab.folder, "solutions")

    def item_seed(self, item: pytest.Item) -> int:
        """Public checks: a fixed seed per check (stable feedback). Hidden checks: mixed with the run's seed."""
        stable = zlib.crc32(item.nodeid.encode())
        info = item.stash.get(CHECK_KEY, None)
        return stable ^ self.seed if info is not None and info.hidden else stable

    def fixture_values(self, item: pytest.Item) -> dict[str, object] | None:
        """The arguments of a check's test function, made as the ``lab``, ``oracle``, ``seed``,
        ``rng`` and ``cases`` fixtures make them, for a sweep that calls checks without pytest's per-test protocol.

        None where only that protocol sets the check up faithfully: a function that is not a plain
        check, one that needs any other fixture or an indirect parameter, one that carries a mark
        besides ``check`` and ``parametrize`` (``skipif``, ``timeout``, ...), an ``--isolate`` run,
        or a fixture that fails (pytest reports that as a setup error).
        """
        fixtures = getattr(item, "_fixtureinfo", None)
        if CHECK_KEY not in item.stash or fixtures is None or self.config.getoption("isolate") or inspect.iscoroutinefunction(item.obj):
            return None
        params = getattr(getattr(item, "callspec", None), "params", {})
        own = set(fixtures.names_closure) - set(params) - {"request"}
        if not own <= set(OWN_FIXTURES) or "request" in fixtures.argnames or any(mark.name not in DIRECT_MARKS for mark in item.iter_markers()):
            return None
        defined_in = {name: fixtures.name2fixturedefs[name][-1].func.__module__ for name in [*own, *params]}
        if any(defined_in[name] != __name__ for name in own) or any(defined_in[name] != pytest.Function.__module__ for name in params):
            return None  # a fixture of the same name defined closer to the check, or an indirect parameter
        values: dict[str, object] = dict(params)
        try:
            if "lab" in own:
                values["lab"] = self.lab_code(item)
            if "oracle" in own:
                values["oracle"] = self.oracle_code(item)
            if own & {"seed", "rng"}:
                values["seed"] = self.item_seed(item)
                values["rng"] = random.Random(values["seed"])
            if "cases" in own:
                values["cases"] = self.cases()
        except pytest.fail.Exception:
            return None
        return {name: values[name] for name in fixtures.argnames}

    def cases(self) -> Cases:
        """A check's ``cases``, kept as :attr:`last_cases` for a sweep to read how far the check got."""
        self.last_cases = Cases(self.valid_edges)
        return self.last_cases

    def retarget(self, code_root: Path, display_root: str, seed: int) -> None:
        """Point the ``lab`` fixture at another tree and seed, and forget the results so far.

        For a sweep (:mod:`infralens.sweep`), which runs the same collected checks against many
        trees in one session. Every piece of per-tree state is reset here.
        """
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        self.remote_labs.clear()
        self.code_root, self.code_display_root, self.seed = Path(code_root), display_root, seed
        self.records.clear()
        self.explained.clear()
        self.guard = self._call_guard()

    # --- reporting ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True, specname="pytest_runtest_makereport")  # pytest only registers pytest_* names
    def pytest_compact_failure_report(self, item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport | None:
        """A failed check's report, built from the learner-facing message alone.

        Skipping pytest's own traceback rendering matters: it costs tens of milliseconds per
        failure, and an untouched starter fails every check. With ``--tb`` given, pytest's
        default report is kept and only the verdict is attached (see the wrapper below).
        """
        error = call.excinfo.value if call.excinfo is not None else None
        if CHECK_KEY not in item.stash or not self._compact() or not isinstance(error, (Exception, pytest.fail.Exception)):
            return None
        verdict = item.stash[VERDICT_KEY] = self._verdict(item, call)
        sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
        keywords = {name: 1 for name in item.keywords}
        report = pytest.TestReport(
            item.nodeid, item.location, keywords, "failed", verdict.message, call.when, sections, call.duration, call.start, call.stop, item.user_properties
        )
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """Record every check's outcome, and mark the report "not started" or "blocked" where that is why it failed.

        The mark is a plain string (``report.infralens_status``): reports travel between processes
        under pytest-xdist, and only data survives that.
        """
        report = yield
        info = item.stash.get(CHECK_KEY, None)
        if info is None:
            return report
        verdict = item.stash.get(VERDICT_KEY, None)  # made by the compact report above, for this phase
        if verdict is not None:
            del item.stash[VERDICT_KEY]
        elif report.failed and call.excinfo is not None:
            verdict = self._verdict(item, call)
        if verdict is not None and report.failed:
            report.infralens_status = "not started" if verdict.outcome == NOT_STARTED else "blocked" if isinstance(verdict, Blocked) else ""
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.records[item.nodeid] = CheckRecord(
                nodeid=item.nodeid,
                lab=info.lab.folder,
                exercise=info.exercise,
                points=info.points,
                hidden=info.hidden,
                outcome=_outcome(report),
                message=verdict.message if verdict else "",
                function=(verdict.function or "") if verdict else "",
                broken=verdict.broken if verdict else "",
            )
        return report

    def _verdict(self, item: pytest.Item, call: pytest.CallInfo) -> feedback.Feedback:
        """The learner's message for a failed check; a module that does not import is explained once per lab."""
        verdict = feedback.classify(call.excinfo, self.code_root, self.code_display_root, item.path)
        if not verdict.broken:
            return verdict
        lab = item.stash[CHECK_KEY].lab
        if (lab.folder, verdict.broken) not in self.explained:
            self.explained.add((lab.folder, verdict.broken))
            return verdict
        return Blocked(feedback.FAILED, f"{verdict.broken} does not import (explained at the first failing check of {lab.short})", broken=verdict.broken)

    def pytest_report_teststatus(self, report: pytest.TestReport):
        status = getattr(report, "infralens_status", "")
        if status == "not started":
            return "not started", "N", ("NOT STARTED", {"yellow": True})
        if status == "blocked":
            # Counted as failed (the exit code says so) but not listed again under FAILURES.
            return "blocked", "B", ("BLOCKED", {"red": True})
        return None

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.records:
            return
        terminalreporter.section("InfraLens", sep="=", bold=True)
        rows = self.progress()
        # A lab not begun at all is summed up by its "next" line; list functions only mid-lab.
        begun = {row.lab for row in rows if row.status != "not started"}
        not_started = {key: value for key, value in self._not_started_by_function().items() if key[0] in begun}
        if not_started:
            terminalreporter.write_line("Not started yet (no traceback for work not begun):")
            for (lab, _function), (count, message) in not_started.items():
                terminalreporter.write_line(f"  {lab[:5]}  {message} ({count} check{'s' if count != 1 else ''} waiting)")
            terminalreporter.write_line("")
        terminalreporter.write_line(render_table(rows, self.code_display_root))
        if self._compact() and any(r.outcome in (FAILED, ERROR) for r in self.records.values()):
            terminalreporter.write_line("\nfull tracebacks: add --tb=long")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker is not None:
            self.worker.close()
        if self._is_learner_run() and self.records:
            record_last_run(self.repo_root, self.started, {row.lab: row.complete for row in self.progress()}, [r.to_json() for r in self.records.values()])
        path = self.config.getoption("infralens_report")
        if not path:
            return
        report = {
            "code_root": str(self.code_root),
            "seed": self.seed,
            "checks": [record.to_json() for record in self.records.values()],
            "collected": self.collected,
            "labs": [row.__dict__ for row in self.progress()],
        }
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def progress(self):
        by_lab: dict[str, list[CheckRecord]] = {}
        for record in self.records.values():
            by_lab.setdefault(record.lab, []).append(record)
        rows = []
        for lab_folder in sorted(by_lab):
            try:
                order = [(e.name, e.file) for e in load_hints(self.repo_root / "exercises" / lab_folder)]
            except HintsError:
                order = []  # the progress table still works; the repository's tests report the bad hints file
            lab_checks = None if lab_folder in self.partial_labs else self.lab_checks.get(lab_folder)
            rows.append(summarize_lab(lab_folder, by_lab[lab_folder], order, self.code_display_root, lab_checks))
        return rows

    def _is_learner_run(self) -> bool:
        """A run of this checkout's own exercises/ in the main process (not a solutions, submission or xdist-worker run)."""
        learner_tree = not self.config.getoption("solutions") and not self.config.getoption("submission")
        return learner_tree and not hasattr(self.config, "workerinput") and not self.config.getoption("collectonly")

    def _not_started_by_function(self) -> dict[tuple[str, str], tuple[int, str]]:
        """``{(lab, function): (checks waiting, the first of their messages)}`` in the order met."""
        waiting: dict[tuple[str, str], tuple[int, str]] = {}
        for record in self.records.values():
            if record.outcome == NOT_STARTED:
                key = (record.lab, record.function or record.exercise)
                count, message = waiting.get(key, (0, record.message))
                waiting[key] = (count + 1, message)
        return waiting

    def _compact(self) -> bool:
        """Learner-facing messages unless the user asked pytest for a traceback style."""
        return self.config.getoption("tbstyle", "auto") in ("auto", None)


@dataclass(frozen=True)
class CheckInfo:
    lab: Lab
    exercise: str
    points: int
    hidden: bool


CHECK_KEY = pytest.StashKey[CheckInfo]()
VERDICT_KEY = pytest.StashKey[feedback.Feedback]()


@dataclass(frozen=True)
class Blocked(feedback.Feedback):
    """A check that fails only because a module of its lab does not import, explained at an earlier check."""


def _check_marker_args(item: pytest.Item, marker: pytest.Mark) -> tuple[str, int]:
    kwargs = dict(marker.kwargs)
    args = list(marker.args)
    exercise = kwargs.pop("exercise", args.pop(0) if args else None)
    points = kwargs.pop("points", args.pop(0) if args else 1)
    if args or kwargs or not isinstance(exercise, str) or not exercise:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.check(\"exercise_name\", points=N), got {marker.args} {marker.kwargs}")
    if not isinstance(points, int) or isinstance(points, bool) or points < 1:
        raise pytest.UsageError(f"{item.nodeid}: points must be a positive integer, got {points!r}")
    return exercise, points


def _outcome(report: pytest.TestReport) -> str:
    if report.passed:
        return PASSED
    if report.skipped:
        return SKIPPED
    if getattr(report, "infralens_status", "") == "not started":
        return NOT_STARTED
    return FAILED if report.when == "call" else ERROR


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _session(request: pytest.FixtureRequest) -> InfraLensSession:
    session = request.config.pluginmanager.get_plugin("infralens-session")
    if session is None:
        pytest.fail(f"the {request.fixturename!r} fixture only works in an InfraLens Katas checkout (a folder with checks/)", pytrace=False)
    return session


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[ContractLab]:
    """The code under test for this check's lab: ``lab.quantization_plan`` is the learner's module."""
    yield _session(request).lab_code(request.node)
    disarm_call_timer()


@pytest.fixture
def oracle(request: pytest.FixtureRequest) -> LabCode:
    """The reference solution of this check's lab; only hidden checks may ask for it."""
    return _session(request).oracle_code(request.node)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This check's seed: fixed for public checks, drawn from the run's ``--seed`` for hidden ones."""
    return _session(request).item_seed(request.node)


@pytest.fixture
def rng(seed: int) -> random.Random:
    """A ``random.Random`` seeded with :func:`seed`, for random shapes, models and workloads."""
    return random.Random(seed)


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Cases:
    """``for case in cases(edges, randoms)``: a hidden check's fixed edge cases, then its random ones (:mod:`infralens.cases`)."""
    return _session(request).cases()
