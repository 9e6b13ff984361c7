"""Lab 08's speed checks through the real grading path: `infralens grade`, the judge, the sandboxed
worker and its pipe.

The reference solution, graded as a submission, earns every point the grader counts (the GPU
checks count toward no total under isolation). The same solution with a Python loop over output
rows, which also patches the clocks and the timing module in its own process, loses the two speed
checks and nothing else. That one submission proves both halves: the checks catch the loop through
the sandbox's pipe (were they blind to it, it would earn their points), and the forgery cannot
reach the judge's clock (were it able to, the loop would time as free). The same loops without the
forgery are mutants of Lab 08 (tests/mutants/lab08_kernels.toml), caught in the invariant sweep.
The batch grades a scratch checkout holding Lab 08 alone, so other tests writing bytecode into
this checkout cannot trip the grader's fingerprint.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO, run_python
from infralens.grading.sandbox import availability

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.xdist_group("lab08-grading"),  # one worker grades the batch the module's tests read
    pytest.mark.skipif(not availability().available, reason=f"needs the bubblewrap sandbox: {availability().reason}"),
]

LAB = "lab08_kernels"
SPEED_CHECKS = {"test_int8_weight_only_is_not_pathologically_slower_than_dequantize_then_matmul", "test_int4_is_not_pathologically_slower_than_dequantize_then_matmul"}

LOOPS = {  # the solution's matmuls, one output channel at a time
    '''    y = F.linear(x2d, qweight.float()) * scale.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)''': '''    y = torch.empty(x2d.shape[0], out_features)
    for n in range(out_features):
        y[:, n] = (x2d @ qweight[n].float()) * scale[n].float()
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)''',
    '''    y = F.linear(x.reshape(-1, in_features).float(), weight.reshape(out_features, in_features))''': '''    x2d = x.reshape(-1, in_features).float()
    y = torch.stack([x2d @ row for row in weight.reshape(out_features, in_features)], dim=1)''',
}

FORGERY = '''
import time as _time

_time.perf_counter = lambda: 0.0  # every clock this process can reach reads zero
_time.process_time = lambda: 0.0
_time.monotonic = lambda: 0.0
try:
    import infralens.timing as _timing

    _timing.compare = lambda *args, **kwargs: None  # and the timing module here is replaced
except ImportError:
    pass
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab08-grading")
    root = base / "repo"
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(REPO / name, root / name) if root.is_dir() else (root.mkdir(), shutil.copy(REPO / name, root / name))
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "infralens", root / "infralens", ignore=ignore)
    for tree in ("checks", "solutions", "exercises"):
        shutil.copytree(REPO / tree / LAB, root / tree / LAB, ignore=ignore)
    solution = (REPO / "solutions" / LAB / "kernels.py").read_text(encoding="utf-8")
    slow = solution
    for fast, loop in LOOPS.items():
        assert slow.count(fast) == 1, "the reference solution changed: update LOOPS"
        slow = slow.replace(fast, loop)
    forged = slow.replace("\nimport torch\n", "\nimport torch\n" + FORGERY, 1)
    for name, source in (("solved", solution), ("slow-and-forging", forged)):
        (base / "class" / name / LAB).mkdir(parents=True)
        (base / "class" / name / LAB / "kernels.py").write_text(source, encoding="utf-8")
    report = base / "grades.json"
    done = run_python("-m", "infralens", "--root", str(root), "grade", "solved", "slow-and-forging", "--jobs", "1", "--seed", "8",
                      "--json", str(report), cwd=base / "class")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    return {submission["path"].rsplit("/", 1)[1]: submission for submission in data["submissions"]}


def _outcomes(submission: dict) -> dict[str, tuple[str, str]]:
    return {check["nodeid"].split("::")[1].split("[")[0]: (check["outcome"], check["message"]) for check in submission["checks"]
            if check["outcome"] != "skipped" or "gpu" not in check["nodeid"]}


def test_the_solution_graded_through_the_sandbox_earns_every_counted_point(graded):
    solved = graded["solved"]
    assert solved["total"] == solved["max_points"] > 0, json.dumps(solved["checks"], indent=1)[:3000]
    speed = {name: outcome for name, (outcome, _message) in _outcomes(solved).items() if name in SPEED_CHECKS}
    assert speed == dict.fromkeys(SPEED_CHECKS, "passed")


def test_a_python_loop_over_rows_loses_the_speed_checks_and_only_them_even_when_it_forges_its_clocks(graded):
    submission, solved = graded["slow-and-forging"], graded["solved"]
    failing = {check: message for check, (outcome, message) in _outcomes(submission).items() if outcome != "passed"}
    assert set(failing) == SPEED_CHECKS, f"slow-and-forging: {failing}"
    for message in failing.values():
        assert "the naive dequantize-then-matmul path measured in the same run (allowed: 8×)" in message, message
    assert submission["total"] == solved["total"] - 4, "the two speed checks are worth 2 points each"
