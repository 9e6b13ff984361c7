"""The trusted measuring tools that speed and memory checks use: infralens.timing and infralens.allocations."""

from __future__ import annotations

import sys
import time

import pytest
import torch
import torch.nn.functional as F

from conftest import run_python
from infralens.allocations import record_allocations
from infralens.timing import compare, peak_memory_bandwidth, time_calls


def test_every_input_is_timed_once_after_untimed_warmup_calls():
    seen = []
    timing, results = time_calls(lambda a: seen.append(a) or a * 2, [(1,), (2,), (3,)], warmup=2)
    assert seen == [1, 1, 1, 2, 3], "two warm-up calls on the first input, then each input once"
    assert results == [2, 4, 6] and len(timing.seconds) == 3 and timing.clock == "wall"


def test_the_cpu_clock_is_not_inflated_by_waiting_and_the_wall_clock_is():
    wall, _ = time_calls(lambda: time.sleep(0.05), [()] * 3)
    cpu, _ = time_calls(lambda: time.sleep(0.05), [()] * 3, clock="cpu")
    assert wall.median >= 0.045 and cpu.median < 0.02, (wall, cpu)


def test_compare_interleaves_baseline_and_candidate_on_the_same_inputs():
    order = []
    comparison = compare(lambda a: order.append(("candidate", a)) or -a, lambda a: order.append(("baseline", a)), [(1,), (2,)], warmup=1)
    assert order == [("baseline", 1), ("candidate", 1), ("baseline", 1), ("candidate", 1), ("baseline", 2), ("candidate", 2)]
    assert comparison.results == [-1, -2]
    assert (comparison.candidate.clock, comparison.baseline.clock) == ("wall", "cpu")
    assert comparison.ratio == comparison.candidate.median / comparison.baseline.median


def test_compare_stops_once_the_candidate_is_surely_too_slow_and_not_before():
    calls = []
    slow = compare(lambda: calls.append("candidate") or time.sleep(0.05), lambda: None, [()] * 7, warmup=2, stop_above=8)
    assert len(calls) == 2 + 4 and len(slow.candidate.seconds) == len(slow.baseline.seconds) == len(slow.results) == 4, slow
    assert slow.ratio > 8, "4 of 7 calls decide the median: 50 ms each against a CPU clock that an empty function barely moves"
    fast = compare(lambda: None, lambda: time.sleep(0.01), [()] * 7, candidate_clock="cpu", baseline_clock="wall", stop_above=8)
    assert len(fast.candidate.seconds) == 7 and fast.ratio < 8, fast


@pytest.mark.parametrize(("kwargs", "message"), [({"clock": "tsc"}, "clock='tsc'"), ({"inputs": []}, "no inputs to time")])
def test_bad_timing_requests_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        time_calls(lambda: None, kwargs.get("inputs", [()]), clock=kwargs.get("clock", "wall"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_the_cuda_clock_and_peak_bandwidth_need_a_cuda_device():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        time_calls(lambda: None, [()], clock="cuda")
    assert peak_memory_bandwidth() is None


def test_new_storages_are_recorded_views_and_no_op_casts_are_not():
    x, w = torch.randn(3, 8), torch.randint(-127, 128, (4, 8), dtype=torch.int8)

    def naive() -> torch.Tensor:
        weight = w.to(torch.float32) * x.new_ones(4).unsqueeze(1)  # a copy, a view, a product
        return F.linear(x.to(torch.float32), weight)  # a no-op cast, a transposed view, the output

    y, allocations = record_allocations(naive)
    ops = [(record.op, record.shape, record.nbytes) for record in allocations.records]
    assert ops == [("_to_copy", (4, 8), 128), ("new_ones", (4,), 16), ("mul", (4, 8), 128), ("mm", (3, 4), 48)], ops
    assert allocations.largest.nbytes == 128 and allocations.total_bytes == 320 and allocations.peak_bytes is None
    assert torch.equal(y, F.linear(x, w.float()))


def test_recording_does_not_import_torchdynamo():
    """Entering a dispatch mode would import TorchDynamo (seconds) unless the recorder opts out.

    Seen in this process while nothing here has imported TorchDynamo (so far, nothing in this
    suite does); once something has, only a fresh Python process can tell.
    """
    if "torch._dynamo" in sys.modules:
        done = run_python("-c", "import sys, torch; from infralens.allocations import record_allocations; "
                          "record_allocations(lambda: torch.ones(2) + 1); print('torch._dynamo' in sys.modules)")
        assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr
        return
    record_allocations(lambda: torch.ones(2) + 1)
    imported = "torch._dynamo" in sys.modules
    assert not imported, "recording allocations imported TorchDynamo"
