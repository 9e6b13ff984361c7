"""Timing calls for speed checks and benchmarks: warm-up, fresh inputs per call, medians, a stated clock.

Given, trusted tooling. A speed check runs in the checking process and times the learner's
function from there: when graded, the learner's code runs in a sandboxed worker and each call
crosses a pipe, so nothing the learner's code does in its own process (patching ``time``,
replacing this module there) reaches the clock read here. Three clocks:

* ``"wall"``: ``time.perf_counter`` around each call, everything the call costs, the pipe to a
  grading worker included. The learner's calls are timed with it.
* ``"cpu"``: ``time.process_time`` around each call, this process's own CPU time. A baseline
  that this process computes is timed with it, so load from another process (a worker busy
  while the baseline runs) cannot make the baseline look slow.
* ``"cuda"``: CUDA events recorded on the current stream around each call, then synchronized:
  the GPU's own timeline, ``torch.cuda.Event.elapsed_time``.

Every call gets its own arguments (``inputs[i]``): an answer cached from an earlier call cannot
stand in for work. Warm-up calls (lazy initialisation, first-touch allocations, compilation)
run first on ``inputs[0]`` and are not timed. The median of the timed calls is the figure; the
garbage collector is off while timing. :func:`compare` interleaves a candidate with a baseline,
call by call, so drifting machine load moves both alike (what ``torch.utils.benchmark`` leaves
to the caller).
"""

from __future__ import annotations

import gc
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

CLOCKS = ("wall", "cpu", "cuda")


@dataclass(frozen=True)
class Timing:
    """The seconds of each timed call, in order, and the clock that measured them."""

    seconds: tuple[float, ...]
    clock: str

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms (median of {len(self.seconds)}, {self.clock} clock)"


@dataclass(frozen=True)
class Comparison:
    """A candidate timed against a baseline on the same inputs; ``ratio`` = candidate / baseline medians."""

    candidate: Timing
    baseline: Timing
    results: list  # the candidate's result for each input, for the caller to verify

    @property
    def ratio(self) -> float:
        return self.candidate.median / self.baseline.median


def time_calls(fn: Callable[..., Any], inputs: Sequence[tuple], *, clock: str = "wall", warmup: int = 1) -> tuple[Timing, list]:
    """Time ``fn(*args)`` once per ``args`` in ``inputs``; return the :class:`Timing` and every result.

    ``warmup`` untimed calls on ``inputs[0]`` come first. Raises ``ValueError`` for an unknown
    clock, no inputs, or the CUDA clock without a CUDA device.
    """
    _check(clock, inputs)
    for _ in range(warmup):
        fn(*inputs[0])
    seconds, results = [], []
    with _collector_off():
        for args in inputs:
            elapsed, result = _timed(fn, args, clock)
            seconds.append(elapsed)
            results.append(result)
    return Timing(tuple(seconds), clock), results


def compare(
    candidate: Callable[..., Any],
    baseline: Callable[..., Any],
    inputs: Sequence[tuple],
    *,
    candidate_clock: str = "wall",
    baseline_clock: str = "cpu",
    warmup: int = 1,
    stop_above: float | None = None,
) -> Comparison:
    """Time ``baseline`` then ``candidate`` on each of ``inputs`` in turn, after ``warmup`` untimed calls of each.

    Defaults fit a speed check on CPU: the candidate (the learner's function, possibly across a
    pipe) by the wall clock, the baseline (trusted code in this process) by this process's CPU time.

    With ``stop_above``, timing stops as soon as the ratio of medians is sure to exceed it whatever
    the remaining calls take: more than half of the inputs' candidate calls each took over
    ``stop_above`` times the longest of as many of the fastest baseline calls. A pathologically
    slow candidate then costs a little over half its calls; the verdict of a check that compares the
    ratio with ``stop_above`` is the same, and the medians are those of the calls timed.
    """
    _check(candidate_clock, inputs)
    _check(baseline_clock, inputs)
    for _ in range(warmup):
        baseline(*inputs[0])
        candidate(*inputs[0])
    decisive = len(inputs) // 2 + 1  # that many values at or above (below) a bound put the median there too
    mine, theirs, results = [], [], []
    with _collector_off():
        for args in inputs:
            theirs.append(_timed(baseline, args, baseline_clock)[0])
            elapsed, result = _timed(candidate, args, candidate_clock)
            mine.append(elapsed)
            results.append(result)
            if stop_above is not None and len(mine) >= decisive and sorted(mine)[-decisive] > stop_above * sorted(theirs)[decisive - 1]:
                break
    return Comparison(Timing(tuple(mine), candidate_clock), Timing(tuple(theirs), baseline_clock), results)


def _check(clock: str, inputs: Sequence[tuple]) -> None:
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: expected one of {CLOCKS}")
    if not inputs:
        raise ValueError("no inputs to time: give at least one tuple of arguments")
    if clock == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("the cuda clock needs a CUDA device; torch.cuda.is_available() is False here")


def _timed(fn: Callable[..., Any], args: tuple, clock: str) -> tuple[float, Any]:
    if clock == "cuda":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn(*args)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, result
    read = time.perf_counter if clock == "wall" else time.process_time
    began = read()
    result = fn(*args)
    return read() - began, result


@contextmanager
def _collector_off() -> Iterator[None]:
    """``gc`` disabled inside the block (a collection in the middle of a timed call is noise), restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def peak_memory_bandwidth(device: int | None = None) -> float | None:
    """The theoretical peak memory bandwidth of a CUDA device in bytes per second, or None when unknown.

    From the device's own figures: ``2 × memory clock × bus width`` (double data rate), e.g. an
    H100 SXM's 2,619 MHz × 5,120 bits gives 3.35 TB/s. None without CUDA or where PyTorch does not
    report the memory clock.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(torch.cuda.current_device() if device is None else device)
    clock_khz, bus_bits = getattr(properties, "memory_clock_rate", 0), getattr(properties, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else None
