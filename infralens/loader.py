"""The lab seam: load a lab's modules from a tree of learner code, never by package name.

Checks never ``import`` learner code. They receive a :class:`LabCode` from the ``lab`` fixture
(and hidden checks the reference as ``oracle``), and read modules off it by attribute::

    def test_workload_rejects_negative_batch(lab):
        plan = lab.quantization_plan          # exercises/lab10_quantization_plan/quantization_plan.py

Which tree ``lab`` reads is chosen once per run: ``exercises/`` (default), ``solutions/``
(``--solutions``) or a submission (``--submission PATH``), see :func:`code_root_of_submission`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from infralens.labs import LAB_FOLDER


class LabCodeMissing(Exception):
    """A lab folder or module that a check needs is not in the tree being checked."""


class LabCodeBroken(Exception):
    """A learner module exists but cannot be imported (syntax error, failing import, ...).

    The message starts with the file and line to fix (``exercises/lab02_kv_cache/kv_cache.py:88``),
    also kept as ``where``; the message is all that crosses from an isolated worker, so ``where``
    is read back from it there.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.where = message.split(" ", 1)[0]


def code_root_of_submission(path: Path) -> Path:
    """The folder holding ``labNN_*`` folders for a submission.

    ``path`` is either a repository root holding ``exercises/`` (a student's clone) or a bare
    folder of ``labNN_*`` folders. Anything else raises ``ValueError`` saying what was found.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--submission {path}: no such folder")
    if (path / "exercises").is_dir():
        return path / "exercises"
    if any(child.is_dir() and LAB_FOLDER.match(child.name) for child in path.iterdir()):
        return path
    raise ValueError(
        f"--submission {path}: expected a repository root holding exercises/ or a folder of "
        "labNN_* folders (for example lab10_quantization_plan/), found neither"
    )


class LabCode:
    """The modules of one lab in one tree; ``code.quantization_plan`` loads ``<root>/<lab>/quantization_plan.py``.

    Modules are imported once, as submodules of a private package whose name is unique to the
    tree, so ``exercises/`` and ``solutions/`` (and several submissions) never share
    ``sys.modules`` entries, and a lab may import its own helper modules relatively. They are
    compiled from their source on every import (:class:`SourceOnlyLoader`), never read from
    bytecode a run before wrote.
    """

    def __init__(self, root: Path, lab_folder: str, display_root: str):
        self._root = Path(root)
        self._lab_folder = lab_folder
        self._display_root = display_root
        self._package = f"_infralens_{_tree_key(str(root))}_{lab_folder}"

    @property
    def folder(self) -> Path:
        return self._root / self._lab_folder

    def display_path(self, module: str) -> str:
        """``exercises/lab10_quantization_plan/quantization_plan.py``: how learners see the file."""
        return f"{self._display_root}/{self._lab_folder}/{module}.py"

    def __getattr__(self, module: str) -> ModuleType:
        if module.startswith("_"):
            raise AttributeError(module)
        loaded = self.__dict__[module] = self.module(module)  # later reads skip this method
        return loaded

    def module(self, name: str) -> ModuleType:
        """Import ``<root>/<lab>/<name>.py`` (cached); missing or broken files raise a learner-facing error."""
        qualified = f"{self._package}.{name}"
        if qualified in sys.modules:
            return sys.modules[qualified]
        if not self.folder.is_dir():
            raise LabCodeMissing(f"{self._display_root}/{self._lab_folder}/ is missing: this lab's folder is not in the tree being checked")
        source = self.folder / f"{name}.py"
        if not source.is_file():
            raise LabCodeMissing(f"{self.display_path(name)} is missing: the checks of this lab need that file")
        stamp = (qualified, source.stat().st_mtime_ns)
        if stamp in _BROKEN:  # every check of the lab asks again: import (and fail) once per version of the file
            raise LabCodeBroken(_BROKEN[stamp])
        self._ensure_package()
        try:
            return importlib.import_module(qualified)
        except Exception as error:  # any failure to import learner code becomes one clear message
            sys.modules.pop(qualified, None)
            _BROKEN[stamp] = self._explain_broken(name, source, error)
            raise LabCodeBroken(_BROKEN[stamp]) from error

    def _explain_broken(self, name: str, source: Path, error: Exception) -> str:
        """``<file>:<line> has a syntax error: ...``: the learner's file and line, never a check's."""
        needs = f"every check of {self._lab_folder[:5]} needs this file"
        if isinstance(error, SyntaxError) and Path(error.filename or "").resolve() == source.resolve():
            code = f" `{error.text.strip()[:80]}`" if error.text and error.text.strip() else ""
            return f"{self.display_path(name)}:{error.lineno} has a syntax error: {error.msg}{code}; it could not be imported, and {needs}"
        line = _innermost_line_in(error.__traceback__, source)
        where = f"{self.display_path(name)}:{line}" if line else self.display_path(name)
        text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        return f"{where} could not be imported: {type(error).__name__}: {text}; {needs}"

    def _ensure_package(self) -> None:
        if self._package in sys.modules:
            return
        spec = importlib.util.spec_from_loader(self._package, loader=None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        folder = str(self.folder.absolute())  # absolute: importlib.invalidate_caches() drops relative entries
        package.__path__ = [folder]
        # Every module of the package, a helper the lab imports relatively included, is found in
        # the folder by this finder: .py sources only, through the loader that ignores bytecode.
        sys.path_importer_cache[folder] = importlib.machinery.FileFinder(folder, (SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES))
        sys.modules[self._package] = package


class SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module from its ``.py`` source on every import; never reads or writes bytecode.

    Python trusts a cached ``.pyc`` whose source has the same size and the same modification
    time in whole seconds. A learner who turns ``a - b`` into ``a + b`` within a second of the
    run that cached it would be checked against the code they had just replaced.
    """

    def get_code(self, fullname: str):
        return self.source_to_code(self.get_data(self.path), self.path)


@functools.lru_cache(maxsize=1024)
def _tree_key(root: str) -> str:
    """12 hex digits that name the tree at ``root`` (resolved, so two spellings of one folder agree)."""
    return hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]


_BROKEN: dict[tuple[str, int], str] = {}  # (module, mtime) -> why it does not import, for this process


def _innermost_line_in(traceback, source: Path) -> int | None:
    """The line of ``source`` where an import failed: the innermost traceback entry in that file."""
    line, source = None, source.resolve()
    while traceback is not None:
        if Path(traceback.tb_frame.f_code.co_filename).resolve() == source:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
