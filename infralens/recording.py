"""Which functions of one tree each check calls, recorded by the tree's own code.

The sweep (:mod:`infralens.sweep`) runs a mutant's checks only where they can see its change, so it
needs to know which functions of the reference each check calls. A profiler hook sees every Python
call — pytest's, torch's, the check's own — and nearly doubled the cost of running the reference;
instead, a recorded tree is compiled with one extra statement at the top of each function body,
which adds that function's span ``(file, first_line, last_line)`` to a set (``file`` relative to
the tree, the span from its first decorator to its last line). Calls made while a module of the
tree is being imported land in :attr:`TreeRecorder.at_import` instead: what they compute is shared
by every later check.

Only modules loaded from the tree while its recorder is installed are compiled this way; nothing is
written to disk, and no other tree — the oracle's included — is touched.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

CALLED = "__infralens_called__"  # the global each recorded function calls first

Span = tuple[str, int, int]


class TreeRecorder(importlib.abc.MetaPathFinder):
    """Records the calls into the functions of the tree at ``code_root`` (a folder of ``labNN_*`` folders).

    ``with recorder.installed(): ...`` compiles the tree's modules imported meanwhile with their
    records; then ``with recorder.check() as called: ...`` collects the spans one check called.
    """

    def __init__(self, code_root: Path):
        self.code_root = Path(code_root).resolve()
        self.at_import: set[Span] = set()
        self._called: set[Span] = set()  # one set for the tree's lifetime: its `add` is what the functions call

    @contextmanager
    def installed(self) -> Iterator["TreeRecorder"]:
        sys.meta_path.insert(0, self)
        try:
            yield self
        finally:
            sys.meta_path.remove(self)

    @contextmanager
    def check(self) -> Iterator[set[Span]]:
        """The spans called inside the block, in the set yielded (filled when the block ends)."""
        called: set[Span] = set()
        self._called.clear()
        try:
            yield called
        finally:
            called.update(self._called)
            self._called.clear()

    def find_spec(self, fullname: str, path, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """A spec with the recording loader for a module file of the tree; None for anything else."""
        for folder in path or ():
            source = Path(folder).resolve() / f"{fullname.rpartition('.')[2]}.py"
            if source.is_relative_to(self.code_root) and source.is_file():
                loader = _RecordingLoader(fullname, str(source), self, source.relative_to(self.code_root).as_posix())
                return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None

    @contextmanager
    def _importing(self) -> Iterator[None]:
        """Calls made meanwhile go to :attr:`at_import`, not to the running check."""
        outside = set(self._called)
        self._called.clear()
        try:
            yield
        finally:
            self.at_import.update(self._called)
            self._called.clear()
            self._called.update(outside)


class _RecordingLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module of the recorded tree with a record at the top of each function; never caches bytecode."""

    def __init__(self, fullname: str, path: str, recorder: TreeRecorder, relative: str):
        super().__init__(fullname, path)
        self._recorder, self._relative = recorder, relative

    def get_code(self, fullname: str):
        tree = ast.parse(self.get_data(self.path), self.path)
        tree = ast.fix_missing_locations(_AddRecords(self._relative).visit(tree))
        return compile(tree, self.path, "exec", dont_inherit=True)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__[CALLED] = self._recorder._called.add
        with self._recorder._importing():
            super().exec_module(module)


class _AddRecords(ast.NodeTransformer):
    """Puts ``__infralens_called__((file, first, last))`` first in every function body (after its docstring)."""

    def __init__(self, relative: str):
        self.relative = relative

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
        record = ast.Expr(ast.Call(ast.Name(CALLED, ast.Load()), [ast.Constant((self.relative, first, node.end_lineno))], []))
        ast.copy_location(record, node.body[0])
        documented = isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)
        node.body.insert(1 if documented else 0, record)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef
