"""Progressive hints, kept as data next to each lab in ``exercises/labNN_slug/hints.toml``.

The file lists the lab's exercises in the order a learner meets them; each has three or more
hints that escalate: a question that points at the idea, then the approach, then the near-answer::

    [[exercise]]
    name = "saved_memory"          # a function or class of the starter
    file = "quantization_plan.py"  # the starter module it lives in
    hints = ["A question?", "The approach.", "Almost the answer."]

``infralens hint LAB`` shows the next unseen level for the first unsolved exercise and remembers,
per checkout, which levels were shown (``.infralens/hints.json``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

HINTS_FILE = "hints.toml"
MIN_LEVELS = 3


class HintsError(ValueError):
    """A hints file that does not follow the format above; the message names the file and the entry."""


@dataclass(frozen=True)
class ExerciseHints:
    """The hints for one exercise of a lab, from the gentlest to the most revealing."""

    name: str
    file: str
    hints: tuple[str, ...]


def load_hints(lab_dir: Path) -> list[ExerciseHints]:
    """Read and validate ``lab_dir/hints.toml``; the list keeps the file's (learning) order."""
    path = Path(lab_dir) / HINTS_FILE
    if not path.is_file():
        raise HintsError(f"{path} is missing: every lab keeps its hints there")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise HintsError(f"{path} is not valid TOML: {error}") from error
    entries = data.get("exercise")
    if not isinstance(entries, list) or not entries:
        raise HintsError(f"{path} has no [[exercise]] tables")
    exercises = []
    for index, entry in enumerate(entries, start=1):
        name, file, hints = entry.get("name"), entry.get("file"), entry.get("hints")
        where = f"{path}, exercise #{index} ({name or 'unnamed'})"
        if not isinstance(name, str) or not name:
            raise HintsError(f"{where}: `name` must be the starter's function or class name")
        if not isinstance(file, str) or not file.endswith(".py"):
            raise HintsError(f"{where}: `file` must name the starter module, like \"quantization_plan.py\"")
        if not isinstance(hints, list) or len(hints) < MIN_LEVELS or not all(isinstance(h, str) and h.strip() for h in hints):
            raise HintsError(f"{where}: `hints` must hold at least {MIN_LEVELS} non-empty strings (question, approach, near-answer)")
        if not hints[0].rstrip().endswith("?"):
            raise HintsError(f"{where}: the first hint must be a question (end with '?'), got {hints[0][:60]!r}")
        exercises.append(ExerciseHints(name, file, tuple(h.strip() for h in hints)))
    names = [exercise.name for exercise in exercises]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise HintsError(f"{path}: exercises listed twice: {', '.join(duplicated)}")
    return exercises


class HintLedger:
    """Which hint levels a learner has already seen, stored as JSON in one file of their checkout."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict[str, int]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}  # a damaged ledger only costs the learner their place in the hint sequence
        return {key: value for key, value in data.items() if isinstance(value, int)}

    def seen(self, lab_folder: str, exercise: str) -> int:
        """How many levels of this exercise were shown (0 when none)."""
        return self._read().get(f"{lab_folder}:{exercise}", 0)

    def record(self, lab_folder: str, exercise: str, level: int) -> None:
        data = self._read()
        key = f"{lab_folder}:{exercise}"
        data[key] = max(level, data.get(key, 0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
