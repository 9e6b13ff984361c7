"""Reading a lab's starter and solution as syntax trees, for the repository's invariant tests.

An *exercise* is a function (or method, or property) of the starter whose body, after its
docstring, is a single ``raise NotImplementedError(...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Top-level functions and the methods of top-level classes, by qualified name (``Workload.__post_init__``)."""
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = item
    return found


def body_without_docstring(function: ast.FunctionDef) -> list[ast.stmt]:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def is_exercise(function: ast.FunctionDef) -> bool:
    body = body_without_docstring(function)
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    raised = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def exercises(tree: ast.Module) -> list[str]:
    return [name for name, function in functions(tree).items() if is_exercise(function)]


def top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def normalized(tree: ast.Module, exercise_names: set[str], keep_private: set[str]) -> list[str]:
    """The module as comparable text: no module docstring, exercise bodies reduced to their
    docstrings, private top-level definitions dropped unless named in ``keep_private``."""
    statements = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]:
            continue
        names = top_level_names(ast.Module(body=[node], type_ignores=[]))
        if names and all(n.startswith("_") and n not in keep_private for n in names):
            continue
        node = _strip_exercise_bodies(node, exercise_names)
        statements.append(ast.unparse(node))
    return statements


def _strip_exercise_bodies(node: ast.stmt, exercise_names: set[str]) -> ast.stmt:
    import copy

    node = copy.deepcopy(node)
    targets = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in exercise_names:
        targets.append(node)
    if isinstance(node, ast.ClassDef):
        targets += [item for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and f"{node.name}.{item.name}" in exercise_names]
    for function in targets:
        docstring = function.body[: len(function.body) - len(body_without_docstring(function))]
        function.body = docstring or [ast.Pass()]
    return node


ADVERSARIAL_BODIES = {
    # Validation checks must not pay a function that refuses everything.
    "rejects-everything": "raise ValueError('rejects every input')",
    # Tensor comparisons must check shape before values: an empty tensor broadcasts to "equal".
    "empty-tensors": "return __import__('torch').empty(0)",
}


def adversarial_module(starter: Path, body: str) -> str:
    """The starter's source with every exercise's body replaced by ``body`` (one statement)."""
    source = starter.read_text(encoding="utf-8").splitlines(keepends=True)
    tree = parse(starter)
    replaced = []
    for function in functions(tree).values():
        if is_exercise(function):
            statement = body_without_docstring(function)[0]
            replaced.append((statement.lineno, statement.end_lineno, statement.col_offset))
    for first, last, column in sorted(replaced, reverse=True):
        source[first - 1 : last] = [" " * column + body + "\n"]
    return "".join(source)


def write_adversarial_tree(exercises_lab: Path, body: str, into: Path) -> Path:
    """A copy of one lab's starter folder under ``into`` whose exercises all run ``body``; returns ``into``."""
    target = into / exercises_lab.name
    target.mkdir(parents=True)
    for starter in exercises_lab.glob("*.py"):
        (target / starter.name).write_text(adversarial_module(starter, body), encoding="utf-8")
    return into
