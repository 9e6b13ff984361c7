"""Taking in a submission: a bounded, link-free copy of its lab folders that the grader owns.

The judge never reads a submission where the student left it. :func:`take_in` copies the lab
folders (``exercises/labNN_*`` of a repository, or the ``labNN_*`` folders of a bare folder) into a
grader-owned scratch tree and refuses, with a reason the teacher and student can act on:

* symbolic links to folders, and links to files outside the submission (``exercises ->
  ../source/solutions`` or a module linked to the grader's reference);
* hard links to the grader's own checks or references;
* more than :attr:`IntakeLimits.files` files, a file over :attr:`IntakeLimits.file_bytes`, or more
  than :attr:`IntakeLimits.total_bytes` in all (sizes as the files claim them, so a sparse 2 GiB
  file is refused before a byte is copied); pipes, sockets and devices;
* a submission inside the grader's checkout.

File names that are not UTF-8 are copied as they are and shown readably (``\\xff``) in reasons.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from infralens.labs import LAB_FOLDER

SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache"}
MAX_DEPTH = 12


class Refused(ValueError):
    """A submission that cannot be taken in; the message is its feedback."""


@dataclass(frozen=True)
class IntakeLimits:
    files: int = 1000
    file_bytes: int = 16 << 20
    total_bytes: int = 64 << 20


def readable(path: os.PathLike | str) -> str:
    """A path as text that can always be printed and written: undecodable bytes become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def grader_inodes(repo_root: Path) -> frozenset[tuple[int, int]]:
    """``(device, inode)`` of every file of the grader's checks and references (to refuse hard links to them)."""
    found = set()
    for folder in ("checks", "solutions"):
        for path in (Path(repo_root) / folder).rglob("*"):
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def take_in(submission: Path, into: Path, repo_root: Path, protected: frozenset[tuple[int, int]] = frozenset(), limits: IntakeLimits = IntakeLimits()) -> Path:
    """Copy ``submission``'s lab folders to ``into/exercises`` (``into`` must not exist); return the
    folder they were copied from (the submission's ``exercises/``, or the submission itself).

    Raises :class:`Refused` saying what was wrong and how to fix it.
    """
    base = Path(os.path.abspath(submission))
    if not base.is_dir():
        raise Refused(f"{readable(base)} is not a folder")
    base = base.resolve()
    checkout = Path(repo_root).resolve()
    if base == checkout or checkout in base.parents:
        raise Refused(f"{readable(base)} is inside the grader's checkout ({readable(checkout)}): grade students' own copies")
    copier = _Copier(base, protected, limits)
    code = base / "exercises"
    if os.path.lexists(code):
        if code.is_symlink() or not code.is_dir():
            raise Refused("exercises is a symbolic link or not a folder: submit the exercises/ folder itself")
    else:
        code = base
    labs = sorted((entry for entry in os.scandir(code) if LAB_FOLDER.match(entry.name)), key=lambda entry: entry.name)
    if not labs:
        raise Refused("expected a repository root holding exercises/ or a folder of labNN_* folders (for example lab10_quantization_plan/), found neither")
    target = Path(into) / "exercises"
    target.mkdir(parents=True, mode=0o755)
    for entry in labs:
        copier.copy(Path(entry.path), target / entry.name, depth=0)
    return code


class _Copier:
    def __init__(self, base: Path, protected: frozenset[tuple[int, int]], limits: IntakeLimits):
        self.base, self.protected, self.limits = base, protected, limits
        self.files = self.bytes = 0

    def where(self, path: Path) -> str:
        return readable(path.relative_to(self.base))

    def copy(self, source: Path, target: Path, depth: int) -> None:
        info = source.lstat()
        if stat.S_ISLNK(info.st_mode):
            resolved = source.resolve()
            if not resolved.is_relative_to(self.base) or not resolved.is_file():
                raise Refused(f"{self.where(source)} is a symbolic link to a folder or to something outside the submission: submit the file itself")
            info = resolved.stat()
            source = resolved
        if stat.S_ISDIR(info.st_mode):
            if depth >= MAX_DEPTH:
                raise Refused(f"{self.where(source)} is nested more than {MAX_DEPTH} folders deep")
            target.mkdir(mode=0o755)
            for entry in sorted(os.scandir(source), key=lambda e: e.name):
                if entry.name not in SKIPPED:
                    self.copy(Path(entry.path), target / entry.name, depth + 1)
            return
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{self.where(source)} is not a regular file (a pipe, socket or device): remove it")
        if (info.st_dev, info.st_ino) in self.protected:
            raise Refused(f"{self.where(source)} is a hard link to one of the grader's own files: submit your own code")
        self.files += 1
        self.bytes += info.st_size
        if self.files > self.limits.files:
            raise Refused(f"more than {self.limits.files} files in the lab folders: remove generated files")
        if info.st_size > self.limits.file_bytes:
            raise Refused(f"{self.where(source)} is {info.st_size:,} bytes; a file may be at most {self.limits.file_bytes:,}: remove it")
        if self.bytes > self.limits.total_bytes:
            raise Refused(f"the lab folders hold more than {self.limits.total_bytes:,} bytes: remove large files")
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with open(descriptor, "rb") as reading, open(target, "xb") as writing:
            writing.write(reading.read(info.st_size))
        os.chmod(target, 0o644)
