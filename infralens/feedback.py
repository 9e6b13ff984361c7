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
from infralens.grading.remote import LearnerProcessError

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
    """Explain ``excinfo`` raised while a check ran learner code living under ``code_root``.

    Learner code that ran in another process (isolated grading) reports its frames on the
    exception as ``learner_frames``: ``[(function, file, line, source), ...]``, innermost last.
    """
    error = excinfo.value
    frame = _learner_frame(excinfo, code_root, display_root)

    if isinstance(error, NotImplementedError) and frame is not None:
        function, place, _source = frame
        return Feedback(NOT_STARTED, f"`{function}` is not started: replace its `raise NotImplementedError` at {place}", function)
    if isinstance(error, (LabCodeMissing, LabCodeBroken, LearnerProcessError)) and frame is None:
        return Feedback(FAILED, str(error) + _check_location(excinfo, check_file))
    if isinstance(error, AssertionError):
        return Feedback(FAILED, _assertion_text(error) + _check_location(excinfo, check_file))
    if isinstance(error, pytest.fail.Exception):
        return Feedback(FAILED, str(error.msg if hasattr(error, "msg") else error) + _check_location(excinfo, check_file))
    raised = str(error) if isinstance(error, LearnerProcessError) else f"{type(error).__name__}: {error}"
    if frame is not None:
        function, place, source = frame
        who = "importing your module" if function == "<module>" else f"your `{function}`"
        return Feedback(FAILED, f"{who} raised {raised}\n  at {place}" + (f"  `{source}`" if source else ""))
    return Feedback(FAILED, f"{raised}{_check_location(excinfo, check_file)}")


def _learner_frame(excinfo: pytest.ExceptionInfo[BaseException], code_root: Path, display_root: str) -> tuple[str, str, str] | None:
    """``(function, "file:line", source)`` of the innermost learner frame, or None."""
    remote = getattr(excinfo.value, "learner_frames", None)
    if remote:
        function, file, line, source = remote[-1]
        return function, f"{file}:{line}", source.strip()
    entry = _innermost_frame_under(excinfo, code_root)
    if entry is None:
        return None
    code = entry.frame.code.raw
    relative = Path(entry.path).resolve().relative_to(code_root.resolve()).as_posix()
    return getattr(code, "co_qualname", code.co_name), f"{display_root}/{relative}:{entry.lineno + 1}", str(entry.statement).strip()


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


def _check_location(excinfo: pytest.ExceptionInfo[BaseException], check_file: Path) -> str:
    for entry in reversed(excinfo.traceback):
        if Path(entry.path).resolve() == check_file.resolve():
            return f"\n  (check at {check_file.parent.parent.name}/{check_file.parent.name}/{check_file.name}:{entry.lineno + 1})"
    return ""
