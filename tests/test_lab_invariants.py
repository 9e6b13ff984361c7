"""Invariants every lab keeps, discovered from checks/: its checks fail on the starter and pass on
the solution (under a fresh seed and under fixed ones), catch every mutant with a public check and
give it a seed-independent hidden verdict, pay nothing for rejecting everything or for empty
tensors; starter and solution share one API, the starter is a real exercise, the lab has a
reading guide and hints, and no edge case a check hands to ``cases`` reads the seed.

The runs of a lab's checks come from one pytest session per lab (``conftest.sweep_lab``). Its run
on the solution draws a fresh seed first; under ``-m "not slow"``, which skips the sweep, the run
under a fresh seed is a small session of its own (``conftest.solution_under_a_fresh_seed``). A
lab's tests share an xdist group so that its sweep runs once, before its quick tests. These runs
are how the project's test command checks every check on the solution: in this process, not as
thousands of items crossing to the xdist controller.
"""

from __future__ import annotations

import ast

import pytest

import lab_sources
from conftest import LABS, REPO, SEEDS, solution_under_a_fresh_seed, sweep_lab
from infralens.hints import load_hints
from infralens.mutants import judge_mutant

README_HEADINGS = [
    "## Concept goal",
    "## Mental model",
    "## What each block of the starter does",
    "## What to notice",
    "## Common misunderstandings",
    "## How to explain it in an interview",
    "## Further reading",
]
MIN_MUTANTS = 15
# The first test of a lab pays for its whole sweep: allow it far more than one check's time limit.
SWEPT_LABS = [pytest.param(lab, marks=[pytest.mark.slow, pytest.mark.xdist_group(lab), pytest.mark.timeout(1200)]) for lab in LABS]


def _listing(rows: list[dict], limit: int = 8) -> str:
    shown = "\n".join(f"  {row['nodeid']}: {row['message'].splitlines()[0][:200] if row['message'] else row['outcome']}" for row in rows[:limit])
    return shown + (f"\n  ... and {len(rows) - limit} more" if len(rows) > limit else "")


def test_labs_are_discovered():
    assert "lab10_quantization_plan" in LABS, f"labs found under checks/: {LABS}"


@pytest.mark.parametrize("lab_folder", SWEPT_LABS)
def test_every_check_fails_on_the_untouched_starter(lab_folder, tmp_path_factory):
    run = sweep_lab(lab_folder, tmp_path_factory).runs["starter"]
    assert run.checks, f"{lab_folder} has no checks"
    passed = [row for row in run.checks if row["outcome"] == "passed"]
    assert not passed, f"these checks of {lab_folder} pass on the untouched starter, so they cannot tell solved from unsolved:\n{_listing(passed)}"
    errors = [row for row in run.checks if row["outcome"] == "error"]
    assert not errors, f"checks of {lab_folder} errored in setup on the starter:\n{_listing(errors)}"


@pytest.mark.parametrize("lab_folder", [pytest.param(lab, marks=pytest.mark.xdist_group(lab)) for lab in LABS])
def test_every_check_passes_on_the_solution_under_a_fresh_seed(lab_folder):
    """A new seed every run, so the hidden checks' random inputs keep exploring; quick enough for ``-m "not slow"``."""
    seed, run = solution_under_a_fresh_seed(lab_folder)
    assert run.checks, f"{lab_folder} has no checks"
    failing = run.failing()
    rerun = f"python -m pytest --solutions --lab {lab_folder[3:5]} --seed {seed}"
    assert not failing, f"checks of {lab_folder} fail on the reference solution under seed {seed} (rerun: {rerun}):\n{_listing(failing)}"


@pytest.mark.parametrize("lab_folder", SWEPT_LABS)
def test_every_check_passes_on_the_solution_under_every_seed(lab_folder, tmp_path_factory):
    run = sweep_lab(lab_folder, tmp_path_factory).runs["solution"]
    failing = run.failing(run.public + [row for rows in run.hidden.values() for row in rows])
    assert not failing, f"checks of {lab_folder} fail on the reference solution (hidden checks under seeds {list(run.hidden)}):\n{_listing(failing)}"


@pytest.mark.parametrize("body", sorted(lab_sources.ADVERSARIAL_BODIES))
@pytest.mark.parametrize("lab_folder", SWEPT_LABS)
def test_no_points_for_nothing(lab_folder, body, tmp_path_factory):
    """Every exercise answering `raise ValueError` (or `return torch.empty(0)`) earns 0 points, under every seed."""
    run = sweep_lab(lab_folder, tmp_path_factory).runs[body]
    rows = run.public + [row for rows in run.hidden.values() for row in rows]
    paid = [row for row in rows if row["outcome"] == "passed"]
    assert not paid, (
        f"a {lab_folder} whose every exercise does `{lab_sources.ADVERSARIAL_BODIES[body]}` earns points from these checks "
        f"(gate validation checks with expect_correct; compare shape and dtype before values):\n{_listing(paid)}"
    )


@pytest.mark.parametrize("lab_folder", SWEPT_LABS)
def test_mutants_are_caught_by_public_checks_with_seed_independent_hidden_verdicts(lab_folder, tmp_path_factory):
    lab_sweep = sweep_lab(lab_folder, tmp_path_factory)
    assert len(lab_sweep.mutants) >= MIN_MUTANTS, f"tests/mutants/{lab_folder}.toml: at least {MIN_MUTANTS} plausible learner mistakes per lab, found {len(lab_sweep.mutants)}"
    results = [judge_mutant(lab_folder, mutant, lab_sweep.runs[f"mutant:{mutant.name}"]) for mutant in lab_sweep.mutants]
    survivors = [f"  {r.mutant.name}: {r.detail}" for r in results if not r.caught]
    assert not survivors, f"these mutants of {lab_folder} survive the checks:\n" + "\n".join(survivors)
    hidden_only = [f"  {r.mutant.name} ({r.mutant.why})" for r in results if not r.caught_by_public]
    assert not hidden_only, "only hidden checks catch these mutants, so a student release would miss them:\n" + "\n".join(hidden_only)
    unstable = [f"  {r.mutant.name}" for r in results if not r.hidden_stable]
    assert not unstable, f"the hidden checks of {lab_folder} give these mutants a different verdict under seeds {SEEDS}:\n" + "\n".join(unstable)


def _modules(lab_folder: str):
    solutions = sorted((REPO / "solutions" / lab_folder).glob("*.py"))
    assert solutions, f"solutions/{lab_folder}/ holds no module"
    for solution in solutions:
        starter = REPO / "exercises" / lab_folder / solution.name
        assert starter.is_file(), f"solutions/{lab_folder}/{solution.name} has no starter at exercises/{lab_folder}/{solution.name}"
        yield starter, solution


@pytest.mark.parametrize("lab_folder", LABS)
def test_starter_and_solution_share_one_api_and_the_given_code(lab_folder):
    for starter_path, solution_path in _modules(lab_folder):
        starter, solution = lab_sources.parse(starter_path), lab_sources.parse(solution_path)
        exercises = set(lab_sources.exercises(starter))
        assert exercises, f"{starter_path.name} has no exercise (a function whose body is `raise NotImplementedError(...)`)"
        keep = {n for n in lab_sources.top_level_names(starter) if n.startswith("_")}
        a = lab_sources.normalized(starter, exercises, keep)
        b = lab_sources.normalized(solution, exercises, keep)
        for index, (mine, theirs) in enumerate(zip(a, b)):
            assert mine == theirs, (
                f"{lab_folder}/{starter_path.name}: statement #{index + 1} differs between starter and solution "
                f"(signatures, docstrings and given code must be identical):\n--- starter\n{mine[:1500]}\n--- solution\n{theirs[:1500]}"
            )
        assert len(a) == len(b), f"{lab_folder}/{starter_path.name}: starter has {len(a)} public statements, solution {len(b)}"
        implemented = lab_sources.functions(solution)
        still_open = [name for name in exercises if lab_sources.is_exercise(implemented[name])]
        assert not still_open, f"solutions/{lab_folder}/{solution_path.name} leaves exercises unimplemented: {still_open}"


@pytest.mark.parametrize("lab_folder", LABS)
def test_starter_is_a_real_exercise_with_todos_signatures_and_docstrings(lab_folder):
    for starter_path, _solution in _modules(lab_folder):
        source = starter_path.read_text(encoding="utf-8")
        tree = lab_sources.parse(starter_path)
        assert ast.get_docstring(tree), f"{starter_path.name} needs a module docstring saying what and why"
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        for name, function in lab_sources.functions(tree).items():
            if name.split(".")[-1].startswith("_") and not name.endswith("__post_init__"):
                continue
            owner = classes.get(name.split(".")[0]) if "." in name else None
            documented = ast.get_docstring(function) or (name.endswith("__post_init__") and owner is not None and ast.get_docstring(owner))
            assert documented, f"{starter_path.name}: `{name}` needs a docstring (the spec of what done means)"
            arguments = [a for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs if a.arg not in ("self", "cls")]
            unannotated = [a.arg for a in arguments if a.annotation is None]
            assert not unannotated and function.returns is not None, f"{starter_path.name}: `{name}` needs full type annotations (missing: {unannotated or ['return']})"
            if lab_sources.is_exercise(function):
                lines = source.splitlines()[function.lineno - 1 : function.end_lineno]
                assert any("# TODO" in line for line in lines), f"{starter_path.name}: exercise `{name}` needs a `# TODO:` saying what to do"


@pytest.mark.parametrize("lab_folder", LABS)
def test_no_solution_code_in_exercises(lab_folder):
    solution_files = {p.name for p in (REPO / "solutions" / lab_folder).glob("*.py")}
    for starter in (REPO / "exercises" / lab_folder).glob("*.py"):
        assert starter.name in solution_files, f"exercises/{lab_folder}/{starter.name} has no reference in solutions/"
        tree = lab_sources.parse(starter)
        solution = lab_sources.parse(REPO / "solutions" / lab_folder / starter.name)
        private = {n for n in lab_sources.top_level_names(solution) if n.startswith("_")} - {n for n in lab_sources.top_level_names(tree) if n.startswith("_")}
        leaked = private & {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert not leaked, f"exercises/{lab_folder}/{starter.name} uses the solution's private helpers {sorted(leaked)}"


@pytest.mark.parametrize("lab_folder", LABS)
def test_reading_guide_follows_the_infralens_structure(lab_folder):
    readme = REPO / "exercises" / lab_folder / "README.md"
    assert readme.is_file(), f"{lab_folder} needs a reading guide at exercises/{lab_folder}/README.md"
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# Lab {lab_folder[3:5]} — "), f"{readme}: the first line must be '# Lab {lab_folder[3:5]} — Title'"
    positions = [text.find(f"\n{heading}\n") for heading in README_HEADINGS]
    missing = [h for h, p in zip(README_HEADINGS, positions) if p < 0]
    assert not missing, f"{readme} lacks the sections {missing}"
    assert positions == sorted(positions), f"{readme}: sections must come in the order {README_HEADINGS}"
    assert f"pytest --lab {lab_folder[3:5]}" in text and f"infralens hint lab{lab_folder[3:5]}" in text, f"{readme}: say how to run the checks and get a hint"


@pytest.mark.parametrize("lab_folder", SWEPT_LABS)
def test_hints_cover_every_exercise_the_checks_grade(lab_folder, tmp_path_factory):
    hints = load_hints(REPO / "exercises" / lab_folder)
    graded = {row["exercise"] for row in sweep_lab(lab_folder, tmp_path_factory).runs["solution"].checks}
    listed = {h.name for h in hints}
    assert graded <= listed, f"exercises graded by checks but without hints in exercises/{lab_folder}/hints.toml: {sorted(graded - listed)}"
    assert listed <= graded, f"hints for exercises that no check grades: {sorted(listed - graded)}"
    for hint in hints:
        starter = REPO / "exercises" / lab_folder / hint.file
        assert starter.is_file(), f"hints.toml: `{hint.name}` names {hint.file}, which is not in exercises/{lab_folder}/"
        names = lab_sources.top_level_names(lab_sources.parse(starter)) | set(lab_sources.functions(lab_sources.parse(starter)))
        assert hint.name in names, f"hints.toml: `{hint.name}` is not a function or class of {hint.file}"


@pytest.mark.parametrize("lab_folder", LABS)
def test_public_checks_hold_no_oracle(lab_folder):
    for check_file in (REPO / "checks" / lab_folder).glob("test_*.py"):
        if check_file.name.startswith("test_hidden_"):
            continue
        tree = lab_sources.parse(check_file)
        uses = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and any(a.arg == "oracle" for a in node.args.args)]
        assert not uses, f"{check_file.name}: public checks may not use the reference (oracle): {uses}"
        imports = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and ("solutions" in ast.unparse(node) or "exercises" in ast.unparse(node))]
        assert not imports, f"{check_file.name}: checks reach learner code through the lab fixture only, found {imports}"


def _is_loop_over_cases(node: ast.AST) -> bool:
    return isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) and node.iter.func.id == "cases"


def _names(nodes: list[ast.AST], context: type) -> set[str]:
    return {node.id for part in nodes for node in ast.walk(part) if isinstance(node, ast.Name) and isinstance(node.ctx, context)}


@pytest.mark.parametrize("lab_folder", LABS)
def test_edge_cases_never_depend_on_the_seed(lab_folder):
    """A sweep runs a check's edge cases under the first seed only (infralens.cases). So the edges
    passed to ``cases`` and the loop's body read neither ``rng`` nor ``seed``, the loop visits every
    case, and what follows the loop reads nothing the loop computed (count valid cases with
    ``cases.count_valid``): under a later seed the loop sees only the random cases."""
    for check_file in sorted((REPO / "checks" / lab_folder).glob("test_*.py")):
        tree = lab_sources.parse(check_file)
        checks = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        top_level = {id(statement) for check in checks for statement in check.body if _is_loop_over_cases(statement)}
        for loop in (node for node in ast.walk(tree) if _is_loop_over_cases(node)):
            where = f"{check_file.name}:{loop.lineno}"
            assert id(loop) in top_level, f"{where}: loop over cases(...) at the top level of the check"
            assert len(loop.iter.args) == 2 and not loop.iter.keywords, f"{where}: call it as cases(edges, randoms)"
            seeded = _names([loop.iter.args[0], *loop.body], ast.Load) & {"rng", "seed"}
            assert not seeded, f"{where}: the edge cases or the loop's body read {sorted(seeded)}; draw random inputs into `randoms` only"
            assert not any(isinstance(node, ast.Break) for part in loop.body for node in ast.walk(part)), f"{where}: a loop over cases(...) visits every case (no break)"
        for check in checks:
            for index, statement in enumerate(check.body):
                if _is_loop_over_cases(statement):
                    carried = _names([statement.target, *statement.body], ast.Store) & _names(check.body[index + 1 :], ast.Load)
                    assert not carried, f"{check_file.name}:{statement.lineno}: after the loop the check reads {sorted(carried)}, which the loop computed"
