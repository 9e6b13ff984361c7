"""Run one lab's checks against many trees in a single pytest session.

Starting Python, importing torch and collecting a lab's checks cost far more than running them
(a lab's checks run in well under a second; a fresh ``pytest`` costs seconds). A *sweep* collects
a lab once and then runs its checks against each target in turn — the starter, the reference,
every mutant, generated adversarial trees — switching the tree the ``lab`` fixture loads and the
seed hidden checks draw from between targets. Each target's modules load under their own
package name (see :class:`infralens.loader.LabCode`), so targets never share learner state.

A target that differs from another by a few known lines (a mutant of the reference) runs only
the checks that can see the difference: the sweep records which functions of the reference each
check calls (:mod:`infralens.recording`), and a check that never called a function holding the
changed lines runs exactly the reference's code on the changed tree too, so its verdict is the
reference's. A change outside every function body (module level, a signature, a class body) runs
every check.

A hidden check that iterates its inputs through the ``cases`` fixture runs its edge cases under the
first seed only: they do the same under every seed (see :mod:`infralens.cases`). Under the later
seeds it runs just its random cases, or, if an edge case failed, keeps the first seed's verdict.

Used by ``infralens mutants`` and by the repository's invariant tests.
"""

from __future__ import annotations

import ast
import functools
import json
import sys
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _pytest.runner import runtestprotocol

from infralens.calls import disarm_call_timer
from infralens.progress import PASSED, SKIPPED, CheckRecord
from infralens.recording import TreeRecorder
from infralens.sessions import PLUGIN_ARGS, imported_plugins, own_session

if TYPE_CHECKING:
    from infralens.plugin import InfraLensSession


@dataclass(frozen=True)
class Change:
    """Lines ``first_line..last_line`` (1-based, inclusive) of ``file`` (relative to the code root,
    e.g. ``lab05_activation_quant/activation_quant.py``) differ from the target named ``baseline``.

    ``in_function`` is True when the lines lie inside one function's body (see
    :func:`changed_lines`); only then can checks be skipped.
    """

    baseline: str
    file: str
    first_line: int
    last_line: int
    in_function: bool


@dataclass(frozen=True)
class Target:
    """One tree to run the lab's checks against.

    ``code_root`` holds the ``labNN_*`` folder. Public checks run once (their inputs are fixed);
    hidden checks run once per seed in ``seeds``. With ``until_caught``, public checks stop at
    the first failure: enough to know that a mutant is caught, at a fraction of the cost.
    ``record_calls`` records which functions of the tree each check calls, for later targets
    whose ``change`` names this one as baseline.
    """

    name: str
    code_root: Path
    seeds: tuple[int, ...] = (0,)
    until_caught: bool = False
    record_calls: bool = False
    change: Change | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "code_root": str(self.code_root)}

    @classmethod
    def from_json(cls, data: dict) -> "Target":
        change = Change(**data["change"]) if data.get("change") else None
        return cls(
            data["name"], Path(data["code_root"]), tuple(data.get("seeds", (0,))),
            bool(data.get("until_caught", False)), bool(data.get("record_calls", False)), change,
        )


def changed_lines(source: str, start: int, end: int) -> tuple[int, int, bool]:
    """``(first_line, last_line, in_function)`` of the characters ``source[start:end]``.

    ``in_function`` is True when those lines lie inside the body of a ``def`` (at any depth)
    that starts below its signature: then only code that calls that function runs them. A change
    on a signature or decorator (defaults and annotations are evaluated at import), in a one-line
    ``def``, or at module or class level is not in a function.
    """
    first = source.count("\n", 0, start) + 1
    last = first + source.count("\n", start, max(start, end - 1))
    inside = any(def_line < body_start <= first and last <= end_line for def_line, body_start, end_line in _function_bodies(source))
    return first, last, inside


@functools.lru_cache(maxsize=64)
def _function_bodies(source: str) -> tuple[tuple[int, int, int], ...]:
    """``(def line, first body line, last line)`` of every function in ``source``, parsed once per
    source: every mutant of a solution module asks about the same text."""
    return tuple(
        (node.lineno, node.body[0].lineno, node.end_lineno)
        for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )


@dataclass
class TargetRun:
    """What the checks said about one target: the plugin's JSON rows, public ones and hidden ones per seed."""

    name: str
    public: list[dict] = field(default_factory=list)
    hidden: dict[int, list[dict]] = field(default_factory=dict)
    # Checks not run because they never call the changed lines (their verdict is the baseline's).
    unaffected: list[str] = field(default_factory=list)

    @property
    def checks(self) -> list[dict]:
        """Public rows and the hidden rows of the first seed: one verdict per check."""
        first = next(iter(self.hidden.values()), [])
        return self.public + first

    def failing(self, rows: list[dict] | None = None) -> list[dict]:
        return [row for row in (self.checks if rows is None else rows) if row["outcome"] not in (PASSED, SKIPPED)]

    def points(self) -> int:
        return sum(row["points"] for row in self.checks if row["outcome"] == PASSED)

    def hidden_verdicts(self) -> dict[int, frozenset[str]]:
        """``{seed: node ids of the hidden checks that did not pass}``."""
        return {seed: frozenset(row["nodeid"] for row in self.failing(rows)) for seed, rows in self.hidden.items()}

    def to_json(self) -> dict:
        hidden = {str(seed): rows for seed, rows in self.hidden.items()}
        return {"name": self.name, "public": self.public, "hidden": hidden, "unaffected": self.unaffected}

    @classmethod
    def from_json(cls, data: dict) -> "TargetRun":
        hidden = {int(seed): rows for seed, rows in data["hidden"].items()}
        return cls(data["name"], data["public"], hidden, list(data.get("unaffected", [])))


class _Sweep:
    """The plugin that replaces pytest's run loop: every collected check, against every target."""

    def __init__(self, targets: list[Target]):
        self.targets = targets
        self.runs: list[TargetRun] = []
        self.kata: InfraLensSession | None = None  # the plugin's state of the run, once it starts
        # {target name: {check node id: spans of the target's functions it called}}
        self.calls: dict[str, dict[str, set[tuple[str, int, int]]]] = {}
        # {target name: spans of the functions that ran while its modules were imported}
        self.at_import: dict[str, set[tuple[str, int, int]]] = {}
        # {target name: the seeds its hidden checks' calls were recorded under}
        self.recorded_seeds: dict[str, set[int]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        # Checks run without pytest_runtest_protocol (see _run_check), past pytest's per-test warning
        # capture: a warning a mutant's arithmetic raises would otherwise reach whoever called the sweep.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._run_every_target(session)
        return True

    def _run_every_target(self, session: pytest.Session) -> None:
        self.kata = session.config.pluginmanager.get_plugin("infralens-session")
        for target in self.targets:
            recorder = TreeRecorder(target.code_root) if target.record_calls else None
            with recorder.installed() if recorder else nullcontext():
                self.runs.append(self._run_target(session, target, recorder))
            if recorder:
                self.recorded_seeds[target.name] = set(target.seeds)
                self.at_import[target.name] = recorder.at_import

    def _run_target(self, session: pytest.Session, target: Target, recorder: TreeRecorder | None) -> TargetRun:
        kata = self.kata
        run = TargetRun(target.name)
        items = self._affected(target, session.items)
        kept = {item.nodeid for item in items}
        run.unaffected = [item.nodeid for item in session.items if item.nodeid not in kept]
        public = [item for item in items if not _is_hidden(item)]
        hidden = [item for item in items if _is_hidden(item)]
        kata.retarget(target.code_root, str(target.code_root), target.seeds[0])
        for item in public:
            self._run(target, item, recorder)
            if target.until_caught and kata.records[item.nodeid].outcome not in (PASSED, SKIPPED):
                break
        run.public = [record.to_json() for record in kata.records.values()]
        edges: dict[str, int | CheckRecord] = {}
        for index, seed in enumerate(target.seeds):
            kata.retarget(target.code_root, str(target.code_root), seed)
            for item in hidden:
                self._run_hidden(target, item, recorder, edges, first_seed=index == 0)
            run.hidden[seed] = [record.to_json() for record in kata.records.values()]
        return run

    def _run_hidden(self, target: Target, item: pytest.Item, recorder: TreeRecorder | None, edges: dict[str, int | CheckRecord], first_seed: bool) -> None:
        """Run a hidden check under the current seed, using what its edge cases did under the first.

        ``edges`` maps a check that got through its edge cases under the first seed to the number of
        valid ones (later seeds run only its random cases), and one that failed on an edge case to
        its record (later seeds keep that verdict); a check not in it runs in full.
        """
        kata = self.kata
        seen = edges.get(item.nodeid)
        if isinstance(seen, CheckRecord):
            kata.records[item.nodeid] = seen
            return
        kata.valid_edges, kata.last_cases = seen, None
        try:
            self._run(target, item, recorder)
        finally:
            kata.valid_edges = None
        cases, record = kata.last_cases, kata.records.get(item.nodeid)
        if not first_seed or cases is None or record is None:
            return
        if cases.edges_done:
            edges[item.nodeid] = cases.valid_edges
        elif cases.entered and record.outcome not in (PASSED, SKIPPED):
            edges[item.nodeid] = record

    def _run(self, target: Target, item: pytest.Item, recorder: TreeRecorder | None) -> None:
        if recorder is None:
            self._run_check(item)
            return
        with recorder.check() as called:
            self._run_check(item)
        self.calls.setdefault(target.name, {}).setdefault(item.nodeid, set()).update(called)

    def _run_check(self, item: pytest.Item) -> None:
        """Run one check and let the plugin record its verdict.

        A check that needs only the plugin's fixtures and its parameters is called directly: its
        arguments come from :meth:`~infralens.plugin.InfraLensSession.fixture_values`, its verdict
        from the same ``pytest_runtest_makereport`` hooks a pytest run calls, and the ``lab``
        fixture's teardown follows. pytest's setup and teardown phases (fixture bookkeeping, a
        report each) cost about a millisecond per check, more than most checks themselves, over
        thousands of runs. Any other check runs through pytest's protocol.
        """
        arguments = self.kata.fixture_values(item)
        if arguments is None:
            runtestprotocol(item, log=False, nextitem=None)
            return
        try:
            call = pytest.CallInfo.from_call(lambda: item.obj(**arguments), when="call", reraise=(pytest.exit.Exception, KeyboardInterrupt))
        finally:
            if "lab" in arguments:
                disarm_call_timer()
        item.ihook.pytest_runtest_makereport(item=item, call=call)

    def _affected(self, target: Target, items: list[pytest.Item]) -> list[pytest.Item]:
        """The checks that can see ``target.change``: every check, unless the change lies in a
        function body, the baseline recorded every check's calls under every seed this target
        draws (a hidden check's calls depend on its seed) and no import ran the change; then the
        checks that called a function holding the changed lines.

        Sound for labs whose checks share no state through the lab's code (no caches, no
        module globals written by a call): a skipped check runs the baseline's code exactly.
        """
        change = target.change
        calls = self.calls.get(change.baseline) if change else None
        recorded = change is not None and set(target.seeds) <= self.recorded_seeds.get(change.baseline, set())
        if change is None or not change.in_function or calls is None or not recorded or any(item.nodeid not in calls for item in items):
            return list(items)

        def touches(spans: set[tuple[str, int, int]]) -> bool:
            return any(file == change.file and first <= change.last_line and change.first_line <= last for file, first, last in spans)

        if touches(self.at_import.get(change.baseline, set())):
            return list(items)
        return [item for item in items if touches(calls[item.nodeid])]


def _is_hidden(item: pytest.Item) -> bool:
    return item.path.name.startswith("test_hidden_")


def sweep(repo_root: Path, lab_folder: str, targets: list[Target]) -> list[TargetRun]:
    """Collect ``checks/<lab_folder>`` of ``repo_root`` once and run it against every target, in order.

    Raises ``RuntimeError`` when the checks cannot be collected (pytest's exit code and the
    command to see why are in the message).
    """
    if not targets:
        return []
    repo_root = Path(repo_root).resolve()
    plugin = _Sweep(targets)
    with tempfile.TemporaryDirectory(prefix="infralens-sweep-") as scratch:
        report = Path(scratch) / "collected.json"
        # No output capture: the sweep reads outcomes from the plugin, never captured text, and
        # capturing around every phase of thousands of check runs cost a tenth of their overhead.
        args = [
            str(repo_root / "checks" / lab_folder),
            "--rootdir", str(repo_root), "-c", str(repo_root / "pyproject.toml"),
            "-p", "no:terminal", "-p", "no:cacheprovider", "--capture=no", *PLUGIN_ARGS,
            f"--submission={targets[0].code_root}", f"--infralens-report={report}",
        ]
        # pytest imports each conftest.py as the module `conftest`, dropping the one before it:
        # a caller that is itself a pytest session gets its own back.
        callers_conftest = sys.modules.get("conftest")
        try:
            with own_session():
                exit_code = int(pytest.main(args, plugins=[plugin, *imported_plugins(args)]))
        finally:
            if callers_conftest is not None:
                sys.modules["conftest"] = callers_conftest
    if len(plugin.runs) != len(targets):
        raise RuntimeError(
            f"the checks of {lab_folder} could not be collected (pytest exit code {exit_code}); "
            f"run `pytest checks/{lab_folder} --solutions` to see why"
        )
    return plugin.runs


def main(argv: list[str] | None = None) -> int:
    """``python -m infralens.sweep REPO LAB TARGETS.json OUT.json``: a sweep in its own process.

    ``TARGETS.json`` is a list of :meth:`Target.to_json`; ``OUT.json`` receives the list of
    :class:`TargetRun` as JSON.
    """
    repo, lab_folder, targets_path, out_path = (argv if argv is not None else sys.argv[1:])
    targets = [Target.from_json(data) for data in json.loads(Path(targets_path).read_text(encoding="utf-8"))]
    runs = sweep(Path(repo), lab_folder, targets)
    Path(out_path).write_text(json.dumps([run.to_json() for run in runs]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
