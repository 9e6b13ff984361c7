"""Hidden checks for Lab 09: the learner against the reference on fresh random models, GPUs and workloads.

Inputs come from the run's seed (printed in the header, ``--seed`` to replay). Outputs are
compared as data: numbers and strings, never object identity. Some inputs are invalid (a bad
workload, an unknown GPU, a model without a parameter total), and then both sides must raise ``ValueError``.
"""

from __future__ import annotations

import math

import pytest

from infralens.checking import outcome, random_dense_model

check = pytest.mark.check
CASES = 80
# Same tolerance as the public checks: a few products and divisions of exact integers agree to
# ~1e-15 relative in any order; 1e-9 is far below any real mistake.
REL = 1e-9


def _same(actual, expected) -> bool:
    """Equal outcomes; numbers within REL, tuples field by field, strings and ints exactly."""
    if isinstance(expected, tuple):
        return isinstance(actual, tuple) and len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, float):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and math.isclose(actual, expected, rel_tol=REL)
    return actual == expected


def _random_model(rng):
    """A random dense decoder; one in ten has no parameter total, one in ten is a model type the lab does not model."""
    published = None if rng.random() < 0.1 else rng.randint(10**6, 10**11)
    model_type = "mixtral" if rng.random() < 0.1 else "llama"
    return random_dense_model(rng, published_parameters=published, model_type=model_type, sliding_window=rng.choice([None, None, 64, 4096]))


def _random_workload(rng):
    """(batch, context_tokens, bytes_per_weight, kv_bytes_per_element); one in five has one invalid field."""
    workload = [
        rng.choice([1, 2, 8, 64, 512, rng.randint(1, 1000)]),
        rng.choice([0, 1, 63, 64, 65, 4096, rng.randint(0, 131072)]),
        rng.choice([2, 1, 0.5, 0.515625, 1.0625]),
        rng.choice([2, 1, 0.5, 1.015625]),
    ]
    if rng.random() < 0.2:
        field = rng.randrange(4)
        workload[field] = rng.choice([[0, -1, True, 2.0], [-7, 2.5, False], [0, -1.0, float("nan")], [0, float("inf"), -2]][field])
    return tuple(workload)


def _random_gpu(ref, rng):
    """A GPU and compute format from the table; now and then an unknown one (fp8 on the A100 also fails)."""
    return rng.choice(sorted(ref.GPUS) * 6 + ["b200"]), rng.choice(list(ref.COMPUTE_FORMATS) * 6 + ["fp16"])


@check("peak_flops", points=1)
def test_peak_flops_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES // 4):
        gpu, compute = _random_gpu(ref, rng)
        expected = outcome(lambda: float(ref.peak_flops(gpu, compute)))
        actual = outcome(lambda: rf.peak_flops(gpu, compute))
        assert _same(actual, expected), f"peak_flops({gpu!r}, {compute!r}): got {actual}, expected {expected}"


@check("step_bytes", points=2)
def test_step_bytes_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES):
        model, workload = _random_model(rng), _random_workload(rng)
        expected = outcome(lambda: (lambda r: (float(r.weights), float(r.kv_cache)))(ref.step_bytes(model, *workload)))
        actual = outcome(lambda: (lambda r: (r.weights, r.kv_cache))(rf.step_bytes(model, *workload)))
        assert _same(actual, expected), (
            f"step_bytes({model}, batch={workload[0]!r}, context_tokens={workload[1]!r}, bytes_per_weight={workload[2]!r}, "
            f"kv_bytes_per_element={workload[3]!r}): got (weights, kv_cache) {actual}, expected {expected}"
        )


@check("step_flops", points=2)
def test_step_flops_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES):
        model, (batch, context, _, _) = _random_model(rng), _random_workload(rng)
        expected = outcome(lambda: ref.step_flops(model, batch, context))
        actual = outcome(lambda: rf.step_flops(model, batch, context))
        assert _same(actual, expected), f"step_flops({model}, batch={batch!r}, context_tokens={context!r}): got {actual}, expected {expected}"


FIELDS = ("weight_bytes", "kv_bytes", "flops", "memory_s", "compute_s", "step_s", "bound", "tokens_per_s_per_sequence", "tokens_per_s")


def _as_data(bound, floats=False):
    values = tuple(getattr(bound, field) for field in FIELDS)
    return tuple(float(v) if floats and isinstance(v, (int, float)) and not isinstance(v, bool) and field != "flops" else v for field, v in zip(FIELDS, values))


@check("step_bound", points=3)
def test_step_bound_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES):
        model, workload = _random_model(rng), _random_workload(rng)
        gpu, compute = _random_gpu(ref, rng)
        expected = outcome(lambda: _as_data(ref.step_bound(model, gpu, *workload, compute), floats=True))
        actual = outcome(lambda: _as_data(rf.step_bound(model, gpu, *workload, compute)))
        assert _same(actual, expected), (
            f"step_bound({model.name}, {gpu!r}, batch={workload[0]!r}, context_tokens={workload[1]!r}, bytes_per_weight={workload[2]!r}, "
            f"kv_bytes_per_element={workload[3]!r}, compute={compute!r}):\n  fields   {FIELDS}\n  got      {actual}\n  expected {expected}"
        )


@check("kv_crossover_tokens", points=1)
def test_kv_crossover_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES):
        model, (_, _, bytes_per_weight, kv_bytes) = _random_model(rng), _random_workload(rng)
        expected = outcome(lambda: float(ref.kv_crossover_tokens(model, bytes_per_weight, kv_bytes)))
        actual = outcome(lambda: rf.kv_crossover_tokens(model, bytes_per_weight, kv_bytes))
        assert _same(actual, expected), (
            f"kv_crossover_tokens({model}, bytes_per_weight={bytes_per_weight!r}, kv_bytes_per_element={kv_bytes!r}): got {actual}, expected {expected}"
        )


@check("quantization_speedup", points=2)
def test_quantization_speedup_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    for _ in range(CASES):
        model, workload = _random_model(rng), _random_workload(rng)
        gpu, compute = _random_gpu(ref, rng)
        expected = outcome(lambda: float(ref.quantization_speedup(model, gpu, *workload, compute)))
        actual = outcome(lambda: rf.quantization_speedup(model, gpu, *workload, compute))
        assert _same(actual, expected), (
            f"quantization_speedup({model.name}, {gpu!r}, batch={workload[0]!r}, context_tokens={workload[1]!r}, "
            f"bytes_per_weight={workload[2]!r}, kv_bytes_per_element={workload[3]!r}, compute={compute!r}): got {actual}, expected {expected}"
        )
