"""The sweep runs a mutant only against the checks that can see its change, and never skips one that can."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import pytest
from _pytest.runner import runtestprotocol

import infralens.sweep
from conftest import run_python, write
from infralens.cases import Cases
from infralens.loader import LabCode
from infralens.mutants import Mutant, baseline_target, mutant_target
from infralens.plugin import InfraLensSession
from infralens.recording import TreeRecorder
from infralens.sweep import Target, TargetRun, changed_lines, sweep

SOURCE = textwrap.dedent('''
    import functools

    LIMIT = 3


    @functools.wraps(print)
    def decorated(a: int = 1) -> int:
        """Doc."""
        return a


    def outer(a: int) -> int:
        def inner(b: int) -> int:
            return b + 1
        return inner(a)


    def one_liner(a: int) -> int: return a
''').lstrip()


@pytest.mark.parametrize(("find", "expected"), [
    ("LIMIT = 3", (3, 3, False)),  # module level: every check sees it
    ("@functools.wraps(print)", (6, 6, False)),  # a decorator runs at import
    ("def decorated(a: int = 1)", (7, 7, False)),  # a default is evaluated at import
    ('"""Doc."""\n    return a', (8, 9, True)),  # a body: only callers of decorated see it
    ("return b + 1", (14, 14, True)),  # a nested body
    ("        return b + 1\n    return inner(a)", (14, 15, True)),  # two lines of one body
    ("return a\n", (18, 18, False)),  # a one-line def: body and signature share the line
])
def test_changed_lines_say_whether_a_change_is_inside_one_function_body(find, expected):
    start = SOURCE.index(find) if find != "return a\n" else SOURCE.rindex(find)
    assert changed_lines(SOURCE, start, start + len(find)) == expected


MODULE_WITH_IMPORT_TIME_CALL = '''
"""Demo lab: add two numbers."""


def _offset() -> int:
    return 0


OFFSET = _offset()


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b + OFFSET


def double(a: int) -> int:
    """Return 2a."""
    return 2 * a
'''


def _sweep(kata_repo, tmp_path, mutants: list[Mutant], mutant_seeds: tuple[int, ...] = (1, 2)) -> dict[str, TargetRun]:
    """Sweep the demo lab: the reference under seeds 1 and 2, recording calls, then each mutant."""
    solutions = kata_repo / "solutions"
    targets = [baseline_target(solutions / "lab99_demo", tmp_path / "reference", "reference", seeds=(1, 2))]
    targets += [mutant_target(solutions / "lab99_demo", m, tmp_path / m.name, "reference", seeds=mutant_seeds) for m in mutants]
    (tmp_path / "targets.json").write_text(json.dumps([t.to_json() for t in targets]), encoding="utf-8")
    done = run_python("-m", "infralens.sweep", str(kata_repo), "lab99_demo", str(tmp_path / "targets.json"), str(tmp_path / "runs.json"), cwd=kata_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    return {run.name: run for run in map(TargetRun.from_json, json.loads((tmp_path / "runs.json").read_text(encoding="utf-8")))}


def _failing(run: TargetRun) -> set[str]:
    rows = run.public + [row for rows in run.hidden.values() for row in rows]
    return {row["nodeid"].split("::")[1] for row in rows if row["outcome"] != "passed"}


@pytest.mark.slow
def test_a_mutant_runs_only_the_checks_that_call_the_changed_function(kata_repo, tmp_path):
    runs = _sweep(kata_repo, tmp_path, [
        Mutant("add-body", "demo.py", "", "return a + b", "return a - b"),
        Mutant("double-body", "demo.py", "", "return 2 * a", "return 3 * a"),
    ])
    assert runs["reference"].unaffected == []
    assert [row.split("::")[1] for row in runs["add-body"].unaffected] == ["test_double"]
    assert _failing(runs["add-body"]) == {"test_add_small_numbers", "test_add_matches_reference"}
    assert sorted(row.split("::")[1] for row in runs["double-body"].unaffected) == ["test_add_matches_reference", "test_add_small_numbers"]
    assert _failing(runs["double-body"]) == {"test_double"}


@pytest.mark.slow
def test_what_only_the_oracle_calls_never_makes_a_check_see_a_change(kata_repo, tmp_path):
    hidden = kata_repo / "checks/lab99_demo/test_hidden_demo.py"
    hidden.write_text(hidden.read_text(encoding="utf-8").replace("oracle.demo.add(a, b)", "oracle.demo.add(a, b) + 0 * oracle.demo.double(a)"), encoding="utf-8")
    runs = _sweep(kata_repo, tmp_path, [Mutant("double-body", "demo.py", "", "return 2 * a", "return 3 * a")])
    assert sorted(row.split("::")[1] for row in runs["double-body"].unaffected) == ["test_add_matches_reference", "test_add_small_numbers"], (
        "the reference's own `double` runs for the oracle only: the mutant's `double` is never called by that check"
    )
    assert _failing(runs["double-body"]) == {"test_double"}


@pytest.mark.slow
def test_a_change_that_import_time_code_runs_reaches_every_check(kata_repo, tmp_path):
    write(kata_repo / "solutions/lab99_demo/demo.py", MODULE_WITH_IMPORT_TIME_CALL)
    runs = _sweep(kata_repo, tmp_path, [
        Mutant("offset-body", "demo.py", "", "    return 0", "    return 1"),
        Mutant("module-level", "demo.py", "", "OFFSET = _offset()", "OFFSET = _offset() + 1"),
    ])
    for name in ("offset-body", "module-level"):
        assert runs[name].unaffected == [], f"{name}: every check must run"
        assert _failing(runs[name]) == {"test_add_small_numbers", "test_add_matches_reference"}


@pytest.mark.slow
def test_seeds_the_baseline_never_ran_run_every_check(kata_repo, tmp_path):
    runs = _sweep(kata_repo, tmp_path, [Mutant("add-body", "demo.py", "", "return a + b", "return a - b")], mutant_seeds=(1, 3))
    assert runs["add-body"].unaffected == [], "seed 3's hidden checks may call what seeds 1 and 2 never did"


def test_a_recorded_tree_names_each_call_keeps_docstrings_writes_no_bytecode_and_sets_import_calls_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # a plain import here would leave a .pyc
    tree = tmp_path / "tree"
    write(tree / "lab99_demo/demo.py", SOURCE + "\n\nVALUE = outer(1)\n")
    write(tmp_path / "outside/lab99_demo/demo.py", SOURCE)
    recorder = TreeRecorder(tree)
    with recorder.installed():
        code = LabCode(tree, "lab99_demo", "exercises")
        with recorder.check() as importing:
            demo = code.demo
        with recorder.check() as called:
            assert demo.decorated(4) == 4 and demo.one_liner(2) == 2
        elsewhere = LabCode(tmp_path / "outside", "lab99_demo", "exercises").demo
        with recorder.check() as outside:
            elsewhere.outer(1)
    file = "lab99_demo/demo.py"
    assert recorder.at_import == {(file, 12, 15), (file, 13, 14)}, "outer and inner ran while the module was imported"
    assert importing == set(), "what import runs is the module's, not the check's"
    assert called == {(file, 6, 9), (file, 18, 18)}, "a decorated function's span starts at its decorator"
    assert outside == set() and not hasattr(elsewhere, "__infralens_called__"), "another tree's modules are left as they are"
    assert demo.decorated.__code__.co_consts[0] == "Doc.", "the record goes after the docstring, which stays the function's"
    assert not list(tree.rglob("*.pyc")), "a recorded tree is compiled in memory only"


VARIED_CHECKS = '''
import pytest


@pytest.mark.check("add")
@pytest.mark.parametrize(("a", "b"), [(2, 3), (-1, 1)])
def test_add_parametrized(lab, a, b):
    assert lab.demo.add(a, b) == a + b, f"add({a}, {b}) is wrong"


@pytest.mark.check("add")
def test_add_fails_through_pytest_fail(lab):
    if lab.demo.add(1, 1) != 2:
        pytest.fail("add(1, 1) is not 2", pytrace=False)


@pytest.mark.check("add")
def test_add_raises_a_base_exception(lab):
    if lab.demo.add(1, 1) != 2:
        raise SystemExit(3)


@pytest.mark.check("double")
def test_double_then_skip(lab, seed):
    lab.demo.double(seed)
    pytest.skip("nothing more to check")


@pytest.mark.check("double")
def test_double_with_tmp_path(lab, tmp_path):
    assert lab.demo.double(2) == 4


@pytest.mark.check("double")
@pytest.mark.skipif(True, reason="a mark that acts at setup")
def test_double_skipped_by_a_mark(lab):
    assert lab.demo.double(2) == 4


@pytest.mark.check("add")
def test_add_asks_for_the_oracle_in_a_public_check(lab, oracle):
    assert lab.demo.add(1, 2) == oracle.demo.add(1, 2)


@pytest.mark.check("add")
def test_add_over_cases(lab, cases):
    for a, b in cases([(0, 0)], [(4, 5)]):
        assert lab.demo.add(a, b) == a + b, f"add({a}, {b}) is wrong"
'''
THROUGH_PROTOCOL = {"test_double_with_tmp_path", "test_double_skipped_by_a_mark", "test_add_asks_for_the_oracle_in_a_public_check"}


def _varied_targets(kata_repo, into) -> list[Target]:
    solutions = kata_repo / "solutions/lab99_demo"
    return [
        Target("starter", kata_repo / "exercises", (1,)),
        baseline_target(solutions, into / "reference", "reference", seeds=(1, 2)),
        # every public check, not only until the first failure: each way of failing runs
        dataclasses.replace(mutant_target(solutions, Mutant("add-body", "demo.py", "", "return a + b", "return a - b"), into / "add-body", "reference", seeds=(1, 2)), until_caught=False),
    ]


def test_a_check_called_directly_gets_the_verdict_pytests_protocol_gives_it(kata_repo, tmp_path, monkeypatch):
    write(kata_repo / "checks/lab99_demo/test_varied.py", VARIED_CHECKS)
    through_protocol = []
    monkeypatch.setattr(infralens.sweep, "runtestprotocol", lambda item, **kwargs: through_protocol.append(item.name) or runtestprotocol(item, **kwargs))
    direct = [run.to_json() for run in sweep(kata_repo, "lab99_demo", _varied_targets(kata_repo, tmp_path / "direct"))]
    assert set(through_protocol) == THROUGH_PROTOCOL, "only checks that need more than the plugin's fixtures and their parameters go through pytest's protocol"
    monkeypatch.setattr(InfraLensSession, "fixture_values", lambda self, item: None)  # every check through pytest's protocol
    protocol = [run.to_json() for run in sweep(kata_repo, "lab99_demo", _varied_targets(kata_repo, tmp_path / "protocol"))]
    assert direct == protocol
    outcomes = {row["nodeid"].split("::")[1]: row["outcome"] for row in direct[1]["public"]}
    assert outcomes == {
        "test_add_small_numbers": "passed", "test_double": "passed", "test_add_parametrized[2-3]": "passed", "test_add_parametrized[-1-1]": "passed",
        "test_add_fails_through_pytest_fail": "passed", "test_add_raises_a_base_exception": "passed", "test_double_then_skip": "skipped",
        "test_double_with_tmp_path": "passed", "test_double_skipped_by_a_mark": "skipped", "test_add_asks_for_the_oracle_in_a_public_check": "error",
        "test_add_over_cases": "passed",
    }, "the reference: every outcome a check can have"
    assert {row["outcome"] for row in direct[0]["public"]} == {"not_started", "skipped", "error"}, direct[0]["public"]
    mutant = {row["nodeid"].split("::")[1]: row["outcome"] for row in direct[2]["public"]}
    assert mutant == {
        "test_add_small_numbers": "failed", "test_add_parametrized[2-3]": "failed", "test_add_parametrized[-1-1]": "failed",
        "test_add_fails_through_pytest_fail": "failed", "test_add_raises_a_base_exception": "failed", "test_add_over_cases": "failed",
    }, "the checks that call `add`, each failing its own way"


EDGES_THEN_RANDOMS = '''
import pytest

RUNS = []


@pytest.mark.check("add")
def test_add_on_edges_then_random_inputs(lab, oracle, rng, cases):
    RUNS.append(None)
    edges = [(0, 0), (2, 3), (-1, 1)]
    randoms = [(rng.randint(100, 1000), rng.randint(100, 1000)) for _ in range(5)]
    for count, (a, b) in enumerate(cases(edges, randoms), 1):
        got, expected = lab.demo.add(a, b), oracle.demo.add(a, b)
        assert got == expected, f"add({a}, {b}) returned {got}, expected {expected} (case {count} of run {len(RUNS)})"


@pytest.mark.check("add")
def test_add_counts_the_valid_edge_cases_under_every_seed(lab, oracle, rng, cases):
    for a, b in cases([(1, 2)], [(None, rng.randint(0, 9))]):  # only the edge case is a valid input
        if a is not None:
            assert lab.demo.add(a, b) == oracle.demo.add(a, b)
        cases.count_valid(a is not None)
    cases.require_valid()
'''


def test_edge_cases_run_under_the_first_seed_and_their_verdict_holds_for_every_seed(kata_repo, tmp_path):
    (kata_repo / "checks/lab99_demo/test_hidden_demo.py").write_text(EDGES_THEN_RANDOMS, encoding="utf-8")
    solutions, seeds = kata_repo / "solutions/lab99_demo", (1, 2, 3)
    targets = [baseline_target(solutions, tmp_path / "reference", "reference", seeds=seeds)] + [
        mutant_target(solutions, Mutant(name, "demo.py", "", "return a + b", wrong), tmp_path / name, "reference", seeds=seeds)
        for name, wrong in (("wrong-on-an-edge", "return a + b if a else 1"), ("wrong-on-random-inputs", "return a + b if a < 100 else 0"))
    ]
    runs = {run.name: run for run in sweep(kata_repo, "lab99_demo", targets)}

    def messages(name: str) -> list[str]:
        return [row["message"] for seed in seeds for row in runs[name].hidden[seed] if row["nodeid"].endswith("test_add_on_edges_then_random_inputs")]

    assert {row["outcome"] for seed in seeds for row in runs["reference"].hidden[seed]} == {"passed"}, (
        "the reference passes every check under every seed, the valid edge case counted under the later seeds too"
    )
    on_edge = messages("wrong-on-an-edge")
    assert "(case 1 of run " in on_edge[0] and on_edge == on_edge[:1] * 3, f"failed on an edge under seed 1: the same verdict, not run again: {on_edge}"
    on_random = messages("wrong-on-random-inputs")
    assert "(case 4 of run " in on_random[0], f"seed 1 runs the three edge cases first: {on_random[0]}"
    assert all("(case 1 of run " in message for message in on_random[1:]) and len(set(on_random)) == 3, (
        f"later seeds run only their own random cases, each in a run of its own: {on_random}"
    )


def test_cases_yield_edges_then_randoms_once_and_note_how_far_the_check_got():
    cases = Cases()
    iterator = cases(["edge 1", "edge 2"], ["random"])
    assert (cases.entered, cases.edges_done) == (True, False)
    assert [next(iterator), next(iterator)] == ["edge 1", "edge 2"] and not cases.edges_done, "the last edge case has not finished yet"
    assert list(iterator) == ["random"] and cases.edges_done
    with pytest.raises(RuntimeError, match="iterate it once"):
        cases([], [])
    skipping = Cases(valid_edges=2)
    assert list(skipping(["edge"], ["random"])) == ["random"] and skipping.valid == 2, "a sweep's later seed: the edges' valid cases still count"
    for answered in (True, False):
        cases.count_valid(answered)
    assert (cases.valid, cases.valid_edges) == (1, 0), "only the random case was counted, after the edges"
    with pytest.raises(pytest.fail.Exception, match="no valid input was accepted"):
        Cases().require_valid()
