"""The contract between checks and learner code: documented return types and the per-call time limit."""

from __future__ import annotations

import ast
import json
import signal
import time

import numpy as np
import pytest
import torch

from conftest import write
from infralens.calls import CallGuard, ContractError, return_type

LOOPING_DOUBLE = '''
def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def double(a: int) -> int:
    """Return 2a."""
    n = a
    while n != 2 * a - 1:
        n += 2
    return n
'''

CHECKS_CALLING_DOUBLE_TWICE = '''
import pytest


@pytest.mark.check("add", points=2)
def test_add_small_numbers(lab):
    assert lab.demo.add(2, 3) == 5


@pytest.mark.check("double")
def test_double(lab):
    assert lab.demo.double(4) == 8


@pytest.mark.check("double")
def test_double_again(lab):
    assert lab.demo.double(5) == 10
'''


def annotation(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


@pytest.mark.parametrize(
    ("written", "good", "bad"),
    [
        ("int", [0, 65536, -3], [65536.0, True, np.int64(3), "3", None]),
        ("float", [0.5, 3, float("nan")], [True, "1.0", None, np.float32(0.5)]),
        ("bool", [True, False], [0, 1, np.bool_(True)]),
        ("str", ["per-channel"], [b"x", 1]),
        ("None", [None], [0, ""]),
        ("torch.Tensor", [torch.zeros(2)], [np.zeros(2), [0.0]]),
        ("int | None", [None, 4], [4.0]),
        ("Optional[int]", [None, 4], [4.0]),
        ("tuple[int, int]", [(-8, 7)], [(-8.0, 7), [-8, 7], (1, 2, 3)]),
        ("tuple[int, ...]", [(), (1, 2, 3)], [(1, 2.0)]),
        ("tuple[torch.Tensor, torch.Tensor | None]", [(torch.ones(1), None)], [(torch.ones(1), 0)]),
        ("list[int]", [[], [1.5]], [(1,)]),
        ("dict[str, int]", [{}], [[("a", 1)]]),
        ("'int'", [1], [1.0]),
    ],
)
def test_documented_return_types_are_strict(written, good, bad):
    check = return_type(annotation(written))
    assert check is not None
    for value in good:
        assert check.problem(value) is None, f"{value!r} should satisfy {written}"
    for value in bad:
        assert check.problem(value) is not None, f"{value!r} should not satisfy {written}"


@pytest.mark.parametrize("written", ["ParameterBreakdown", "Any", "np.ndarray", "list[int] | QuantizedWeight", "Callable[[int], int]"])
def test_other_annotations_are_not_checked(written):
    assert return_type(annotation(written)) is None


def test_the_starters_annotations_are_the_spec_not_the_learners(tmp_path):
    write(tmp_path / "exercises/lab99_demo/demo.py", '''
        from torch import Tensor

        def total(x) -> int:
            ...

        def rows(x) -> tuple[Tensor, int]:
            ...

        class Plan:
            ...
    ''')
    write(tmp_path / "code/lab99_demo/demo.py", '''
        import torch

        def total(x) -> float:
            return float(x)

        def rows(x):
            return torch.ones(x), x * 1.0

        class Plan:
            def __init__(self, bits):
                self.bits = bits
    ''')
    from infralens.loader import LabCode

    guard = CallGuard(5, tmp_path / "exercises", tmp_path / "code", "code")
    code = LabCode(tmp_path / "code", "lab99_demo", "code")
    demo = guard.lab(code, "lab99_demo").demo
    with pytest.raises(ContractError, match=r"^total returned float 3.0; its documented return type is int: stay in integer arithmetic"):
        demo.total(3)
    code.demo.total = lambda x: int(x)  # wrappers are kept within a check, yet a name the learner rebinds is wrapped anew
    assert demo.total(3) == 3
    with pytest.raises(ContractError, match=r"^total returned str '3'"):
        code.demo.total = str
        demo.total(3)
    with pytest.raises(ContractError, match=r"^rows returned float 2.0 as item 1; its documented return type is tuple\[Tensor, int\]"):
        demo.rows(2)
    plan = demo.Plan(4)
    assert plan.bits == 4 and isinstance(plan, demo.Plan) and demo.Plan.__name__ == "Plan"
    assert demo.total.__name__ == "total"


@pytest.mark.slow
@pytest.mark.waits  # five real limits of 0.5 s
def test_each_call_gets_its_whole_limit_from_a_timer_set_only_when_needed_and_cleared_after_the_check(tmp_path):
    """Calls do not set the timer each time. One left by an earlier call may fire during a later
    call, which then runs on to its own limit; one that would fire too late (a longer limit), or
    that learner code cleared, is set again; a call past its limit is always stopped."""
    write(tmp_path / "exercises/lab99_demo/demo.py", """
        def spin(seconds: float) -> int:
            ...

        def clear_the_timer() -> int:
            ...
    """)
    write(tmp_path / "code/lab99_demo/demo.py", """
        import signal
        import time

        def spin(seconds: float) -> int:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.01)
            return 0

        def clear_the_timer() -> int:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return 0
    """)
    from infralens.calls import CallTimedOut, disarm_call_timer
    from infralens.loader import LabCode

    def demo(limit: float):
        return CallGuard(limit, tmp_path / "exercises", tmp_path / "code", "code").lab(LabCode(tmp_path / "code", "lab99_demo", "code"), "lab99_demo").demo

    def stopped_within_its_limit(module, limit: float) -> None:
        start = time.monotonic()
        with pytest.raises(CallTimedOut, match=rf"your `spin` did not return within {limit:g} s \(called with \(30,\)\)"):
            module.spin(30)
        assert limit - 0.1 < time.monotonic() - start < 20, "stopped at its limit: not before, and not never (loose: cores may be busy)"

    quick = demo(0.5)
    for _ in range(1000):
        quick.spin(0)  # the first call sets the timer to fire 0.5 s from now; the others leave it alone
    time.sleep(0.4)
    assert quick.spin(0.25) == 0, "the timer of the first call fires 0.1 s into this one, which has 0.4 s left"
    stopped_within_its_limit(quick, 0.5)
    disarm_call_timer()  # as at the end of a check
    demo(60.0).spin(0)  # a longer limit (another guard) leaves a timer 60 s away
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 50
    stopped_within_its_limit(demo(0.5), 0.5)
    quick.clear_the_timer()
    stopped_within_its_limit(demo(0.5), 0.5)
    disarm_call_timer()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0), "no timer outlives the check"


def test_a_float_for_an_int_fails_the_check_with_the_function_and_the_type(kata_repo, pytester, tmp_path):
    write(kata_repo / "exercises/lab99_demo/demo.py", LOOPING_DOUBLE.replace("return a + b", "return (a + b) * 1.0"))
    report = tmp_path / "report.json"
    result = pytester.runpytest_inprocess(f"--infralens-report={report}", "-k", "add")
    out = result.stdout.str()
    assert result.ret == 1
    assert "add returned float 5.0; its documented return type is int" in out
    outcomes = {c["nodeid"].split("::")[1]: c["outcome"] for c in json.loads(report.read_text())["checks"]}
    assert outcomes == {"test_add_small_numbers": "failed", "test_add_matches_reference": "failed"}, "a ContractError is a failure"


def test_a_looping_function_costs_one_limit_and_names_its_line(kata_repo, pytester, tmp_path):
    write(kata_repo / "exercises/lab99_demo/demo.py", LOOPING_DOUBLE)
    write(kata_repo / "checks/lab99_demo/test_demo.py", CHECKS_CALLING_DOUBLE_TWICE)
    report = tmp_path / "report.json"
    start = time.monotonic()
    result = pytester.runpytest_inprocess("--call-limit=1", f"--infralens-report={report}")
    elapsed = time.monotonic() - start
    out = result.stdout.str()
    assert result.ret == 1, out
    # The backstop (pytest-timeout, 120 s per check) never fires: one 1 s limit, then the other
    # call fails at once. The bound is loose on purpose: the suite runs with every core busy.
    assert elapsed < 60, f"took {elapsed:.0f} s"
    first = "your `double` did not return within 1 s (called with (4,)); it was at exercises/lab99_demo/demo.py:10 `n += 2` — an infinite loop, or far too slow?"
    alternative = first.replace(":10 `n += 2`", ":9 `while n != 2 * a - 1:`")
    assert first in out or alternative in out, out
    assert "(it ran out of time earlier in this run, so `double` is not called again)" in out
    assert "Timeout" not in out and "(calling `function`)" not in out
    rows = {c["nodeid"].split("::")[1]: c for c in json.loads(report.read_text())["checks"]}
    assert rows["test_add_small_numbers"]["outcome"] == "passed"
    assert rows["test_double"]["outcome"] == rows["test_double_again"]["outcome"] == "failed"


def test_the_call_limit_is_an_ini_option_with_a_command_line_twin(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", LOOPING_DOUBLE)
    with (kata_repo / "pyproject.toml").open("a") as config:
        config.write("infralens_call_limit = 1\n")
    result = pytester.runpytest_inprocess("-k", "test_double")
    assert "did not return within 1 s" in result.stdout.str()
    helped = pytester.runpytest_inprocess("--help").stdout.str()
    assert "--call-limit=SECONDS" in helped and "infralens_call_limit" in helped
    refused = pytester.runpytest_inprocess("--call-limit=-1")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR and "--call-limit must be 0 (off) or a positive number of seconds, got -1" in refused.stderr.str()


@pytest.mark.waits  # a worker's 2 s call limit
def test_isolated_runs_keep_the_contract_and_word_time_outs_the_same_way(kata_repo, pytester):
    write(kata_repo / "exercises/lab99_demo/demo.py", LOOPING_DOUBLE.replace("return a + b", "return (a + b) * 1.0"))
    result = pytester.runpytest_inprocess("--isolate", "--call-timeout=2")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "add returned float 5.0; its documented return type is int" in out
    assert "your `double` did not return within 2 s (called with (4,)); it was at exercises/lab99_demo/demo.py:" in out
    assert "(calling `" not in out
