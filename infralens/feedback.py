"""Turn a failed check into the few lines a learner needs: what is wrong, with the numbers, and where.

Pytest's tracebacks point into the checks; a learner needs the check's message and, when their
own code raised, the line of *their* file that did. :func:`classify` makes that decision once,
for the terminal and for the JSON report alike, and caps it (:func:`cap`): a message never runs to
pages, whatever the learner's code printed or returned.
"""

from __future__ import annotations

import functools
import linecache
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infralens.loader import LabCodeBroken, LabCodeMissing

NOT_STARTED = "not_started"
FAILED = "failed"
MESSAGE_CHARS = 1500
MESSAGE_LINES = 20
RAISED_CHARS = 600
RAISED_LINES = 8


@dataclass(frozen=True)
class Feedback:
    """What the learner is told about one failed check.

    ``outcome`` is ``"not_started"`` when the learner's starter still raises
    ``NotImplementedError`` (then ``function`` names it), ``"failed"`` otherwise. ``broken`` is
    set when a learner module does not import: its ``file:line``, the thing to fix.
    """

    outcome: str
    message: str
    function: str | None = None
    broken: str = ""


def cap(text: str, chars: int = MESSAGE_CHARS, lines: int = MESSAGE_LINES) -> str:
    """``text`` cut to ``lines`` lines and ``chars`` characters, ending with how much was cut."""
    kept = text.splitlines()
    cut_lines = max(0, len(kept) - lines)
    short = "\n".join(kept[:lines])
    cut_chars = max(0, len(short) - chars)
    short = short[:chars]
    if not cut_lines and not cut_chars:
        return text
    cut = ", ".join(part for part in (f"{cut_lines} more line{'s' if cut_lines != 1 else ''}" if cut_lines else "", f"{cut_chars:,} more characters" if cut_chars else "") if part)
    return f"{short}… ({cut} cut)"


def classify(excinfo: pytest.ExceptionInfo[BaseException], code_root: Path, display_root: str, check_file: Path) -> Feedback:
    """Explain ``excinfo`` raised while a check ran learner code living under ``code_root``, capped.

    Learner code that ran in another process (isolated grading) reports its frames on the
    exception as ``learner_frames``: ``[(function, file, line, source), ...]``, innermost last.
    """
    verdict = _explain(excinfo, code_root, display_root, check_file)
    return Feedback(verdict.outcome, cap(verdict.message), verdict.function, verdict.broken)


def _explain(excinfo: pytest.ExceptionInfo[BaseException], code_root: Path, display_root: str, check_file: Path) -> Feedback:
    error = excinfo.value
    remote = sys.modules.get("infralens.grading.remote")  # loaded only by --isolate; its errors cannot occur without it
    process_error = remote.LearnerProcessError if remote is not None else ()
    frame = _learner_frame(excinfo, code_root, display_root)

    if isinstance(error, NotImplementedError) and frame is not None:
        function, place, _source = frame
        return Feedback(NOT_STARTED, f"`{function}` is not started: replace its `raise NotImplementedError` at {place}", function)
    if isinstance(error, LabCodeBroken):
        return Feedback(FAILED, str(error), broken=error.where)
    if isinstance(error, (LabCodeMissing, process_error)) and frame is None:
        return Feedback(FAILED, str(error) + _check_location(excinfo, check_file))
    if isinstance(error, AssertionError):
        return Feedback(FAILED, _assertion_text(error) + _check_location(excinfo, check_file))
    if isinstance(error, pytest.fail.Exception):
        return Feedback(FAILED, str(error.msg if hasattr(error, "msg") else error) + _check_location(excinfo, check_file))
    raised = str(error) if isinstance(error, process_error) else f"{type(error).__name__}: {error}"
    raised = cap(raised, RAISED_CHARS, RAISED_LINES)  # room left for where it was raised
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
    root = str(code_root)
    found = None
    for code, line in _frames(excinfo):
        relative = _relative_to(code.co_filename, root)
        if relative is not None:
            found = (getattr(code, "co_qualname", code.co_name), f"{display_root}/{relative}:{line}", linecache.getline(code.co_filename, line).strip())
    return found


def _assertion_text(error: AssertionError) -> str:
    """The check's own message, without pytest's ``assert ...`` introspection when a message exists."""
    text = str(error)
    message, _, _introspection = text.partition("\nassert ")
    return message.strip() or text.strip() or "assertion failed"


def _frames(excinfo: pytest.ExceptionInfo[BaseException]):
    """``(code, line)`` of every frame of the traceback, outermost first (raw: cheap even for hundreds of failures)."""
    traceback = excinfo.tb
    while traceback is not None:
        yield traceback.tb_frame.f_code, traceback.tb_lineno
        traceback = traceback.tb_next


@functools.lru_cache(maxsize=1024)
def _resolved(filename: str) -> Path:
    return Path(filename).resolve()


@functools.lru_cache(maxsize=4096)
def _relative_to(filename: str, root: str) -> str | None:
    """``filename`` relative to ``root`` (both resolved), POSIX-style; None when it lies outside."""
    path, resolved_root = _resolved(filename), _resolved(root)
    return path.relative_to(resolved_root).as_posix() if path.is_relative_to(resolved_root) else None


def _check_location(excinfo: pytest.ExceptionInfo[BaseException], check_file: Path) -> str:
    check = _resolved(str(check_file))
    lines = [line for code, line in _frames(excinfo) if _resolved(code.co_filename) == check]
    if not lines:
        return ""
    return f"\n  (check at {check_file.parent.parent.name}/{check_file.parent.name}/{check_file.name}:{lines[-1]})"
