"""Run one lab's checks against many trees in a single pytest session.

Starting Python, importing torch and collecting a lab's checks cost far more than running them
(a lab's checks run in well under a second; a fresh ``pytest`` costs seconds). A *sweep* collects
a lab once and then runs its checks against each target in turn — the starter, the reference,
every mutant, generated adversarial trees — switching the tree the ``lab`` fixture loads and the
seed hidden checks draw from between targets. Each target's modules load under their own
package name (see :class:`infralens.loader.LabCode`), so targets never share learner state.

Used by ``infralens mutants`` and by the repository's invariant tests.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from infralens.progress import PASSED, SKIPPED


@dataclass(frozen=True)
class Target:
    """One tree to run the lab's checks against.

    ``code_root`` holds the ``labNN_*`` folder. Public checks run once (their inputs are fixed);
    hidden checks run once per seed in ``seeds``. With ``until_caught``, public checks stop at
    the first failure: enough to know that a mutant is caught, at a fraction of the cost.
    """

    name: str
    code_root: Path
    seeds: tuple[int, ...] = (0,)
    until_caught: bool = False


@dataclass
class TargetRun:
    """What the checks said about one target: the plugin's JSON rows, public ones and hidden ones per seed."""

    name: str
    public: list[dict] = field(default_factory=list)
    hidden: dict[int, list[dict]] = field(default_factory=dict)

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
        return {"name": self.name, "public": self.public, "hidden": {str(seed): rows for seed, rows in self.hidden.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "TargetRun":
        return cls(data["name"], data["public"], {int(seed): rows for seed, rows in data["hidden"].items()})


class _Sweep:
    """The plugin that replaces pytest's run loop: every collected check, against every target."""

    def __init__(self, targets: list[Target]):
        self.targets = targets
        self.runs: list[TargetRun] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        kata = session.config.pluginmanager.get_plugin("infralens-session")
        public = [item for item in session.items if not _is_hidden(item)]
        hidden = [item for item in session.items if _is_hidden(item)]
        for target in self.targets:
            run = TargetRun(target.name)
            kata.retarget(target.code_root, str(target.code_root), target.seeds[0])
            for item in public:
                runtestprotocol(item, log=False, nextitem=None)
                if target.until_caught and kata.records[item.nodeid].outcome not in (PASSED, SKIPPED):
                    break
            run.public = [record.to_json() for record in kata.records.values()]
            for seed in target.seeds:
                kata.retarget(target.code_root, str(target.code_root), seed)
                for item in hidden:
                    runtestprotocol(item, log=False, nextitem=None)
                run.hidden[seed] = [record.to_json() for record in kata.records.values()]
            self.runs.append(run)
        return True


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
        args = [
            str(repo_root / "checks" / lab_folder),
            "--rootdir", str(repo_root), "-c", str(repo_root / "pyproject.toml"),
            "-p", "no:terminal", "-p", "no:cacheprovider",
            f"--submission={targets[0].code_root}", f"--infralens-report={report}",
        ]
        exit_code = int(pytest.main(args, plugins=[plugin]))
    if len(plugin.runs) != len(targets):
        raise RuntimeError(
            f"the checks of {lab_folder} could not be collected (pytest exit code {exit_code}); "
            f"run `pytest checks/{lab_folder} --solutions` to see why"
        )
    return plugin.runs


def main(argv: list[str] | None = None) -> int:
    """``python -m infralens.sweep REPO LAB TARGETS.json OUT.json``: a sweep in its own process.

    ``TARGETS.json`` is a list of ``{"name", "code_root", "seeds", "until_caught"}``; ``OUT.json``
    receives the list of :class:`TargetRun` as JSON.
    """
    import sys

    repo, lab_folder, targets_path, out_path = (argv if argv is not None else sys.argv[1:])
    targets = [
        Target(t["name"], Path(t["code_root"]), tuple(t.get("seeds", (0,))), bool(t.get("until_caught", False)))
        for t in json.loads(Path(targets_path).read_text(encoding="utf-8"))
    ]
    runs = sweep(Path(repo), lab_folder, targets)
    Path(out_path).write_text(json.dumps([run.to_json() for run in runs]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
