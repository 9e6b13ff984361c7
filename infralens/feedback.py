"""Turn a failed check into the few lines a learner needs: what is wrong, with the numbers, and where.

Pytest's tracebacks point into the checks; a learner needs the check's message and, when their
own code raised, the line of *their* file that did. :func:`classify` makes that decision once,
for the terminal and for the JSON report alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infralens.loader import LabCodeBroken, LabCodeMissing

NOT_STARTED = "not_started"
FAILED = "failed"


@dataclass(frozen=True)
class Feedback:
    """What the learner is told about one failed check.

    ``outcome`` is ``"not_started"`` when the learner's starter still raises
    ``NotImplementedError`` (then ``function`` names it), ``"failed"`` otherwise.
    """

    outcome: str
    message: str
    function: str | None = None


def classify(excinfo: pytest.ExceptionInfo[BaseException], code_root: Path, display_root: str, check_file: Path) -> Feedback:
    """Explain ``excinfo`` raised while a check ran learner code living under ``code_root``."""
    error = excinfo.value
    learner_frame = _innermost_frame_under(excinfo, code_root)

    if isinstance(error, NotImplementedError) and learner_frame is not None:
        function = _function_name(learner_frame)
        place = _frame_text(learner_frame, code_root, display_root, with_source=False)
        return Feedback(NOT_STARTED, f"`{function}` is not started: replace its `raise NotImplementedError` at {place}", function)
    if isinstance(error, (LabCodeMissing, LabCodeBroken)):
        return Feedback(FAILED, str(error))
    if isinstance(error, AssertionError):
        return Feedback(FAILED, _assertion_text(error) + _check_location(excinfo, check_file))
    if isinstance(error, pytest.fail.Exception):
        return Feedback(FAILED, str(error.msg if hasattr(error, "msg") else error) + _check_location(excinfo, check_file))
    raised = f"{type(error).__name__}: {error}"
    if learner_frame is not None:
        where = _frame_text(learner_frame, code_root, display_root, with_source=True)
        return Feedback(FAILED, f"your `{_function_name(learner_frame)}` raised {raised}\n  at {where}")
    return Feedback(FAILED, f"{raised}{_check_location(excinfo, check_file)}")


def _assertion_text(error: AssertionError) -> str:
    """The check's own message, without pytest's ``assert ...`` introspection when a message exists."""
    text = str(error)
    message, _, _introspection = text.partition("\nassert ")
    return message.strip() or text.strip() or "assertion failed"


def _innermost_frame_under(excinfo: pytest.ExceptionInfo[BaseException], root: Path):
    root = root.resolve()
    found = None
    for entry in excinfo.traceback:
        try:
            Path(entry.path).resolve().relative_to(root)
        except (ValueError, TypeError):
            continue
        found = entry
    return found


def _function_name(entry) -> str:
    code = entry.frame.code.raw
    return getattr(code, "co_qualname", code.co_name)


def _frame_text(entry, root: Path, display_root: str, with_source: bool) -> str:
    relative = Path(entry.path).resolve().relative_to(root.resolve()).as_posix()
    place = f"{display_root}/{relative}:{entry.lineno + 1}"
    source = str(entry.statement).strip() if with_source else ""
    return f"{place}  `{source}`" if source else place


def _check_location(excinfo: pytest.ExceptionInfo[BaseException], check_file: Path) -> str:
    for entry in reversed(excinfo.traceback):
        if Path(entry.path).resolve() == check_file.resolve():
            return f"\n  (check at {check_file.parent.parent.name}/{check_file.parent.name}/{check_file.name}:{entry.lineno + 1})"
    return ""
