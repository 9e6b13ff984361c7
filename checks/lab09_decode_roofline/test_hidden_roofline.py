"""Hidden checks for Lab 09: the learner against the reference, first on fixed edge cases, then on
fresh random models, GPUs and workloads.

The fixed cases (every real preset the lab models, per-layer windows, the ridge tie, bools, zero
context, window boundaries, bad sizes) run under every seed, so a verdict never depends on the
seed; the random ones come from the run's seed (printed in the header, ``--seed`` to replay).
Outputs are compared as data with their types: FLOPs an ``int``, other figures numbers (never a
``bool``), ``bound`` a ``str``. On invalid input both sides must raise ``ValueError``; every check
also holds valid cases, so a function that rejects everything fails it.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from infralens.checking import bounded, model_summary, outcome, random_dense_model, summarize
from infralens.models import ModelConfig, preset

check = pytest.mark.check
CASES = 80
# Same tolerance as the public checks: a few products and divisions of exact integers agree to
# ~1e-15 relative in any order; 1e-9 is far below any real mistake.
REL = 1e-9
NAN, INF = float("nan"), float("inf")


def _same(actual, expected) -> bool:
    """Equal outcomes with equal types: ints exactly and as ``int``, floats within REL (an int is accepted, a bool never), tuples field by field."""
    if isinstance(expected, tuple):
        return isinstance(actual, tuple) and len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected))
    if type(expected) is float:
        return type(actual) in (int, float) and math.isclose(actual, expected, rel_tol=REL)
    return type(actual) is type(expected) and actual == expected


def _shown(value) -> str:
    return summarize(value, 300)


def _qwen2_window() -> ModelConfig:
    """Qwen2.5-7B with its window switched on from layer 14: half its layers slide."""
    config = {
        "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
        "intermediate_size": 18944, "vocab_size": 152064, "sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 14,
    }
    return dataclasses.replace(ModelConfig.from_hf_config(config, name="qwen2-window-from-14"), published_parameters=7_615_616_512)


def _fixed_models() -> list[ModelConfig]:
    """Every kind of model the lab meets: full attention, windows on every layer, on some layers, odd sizes, no total, an MoE model."""
    odd = ModelConfig("odd", "llama", 3, 35, 5, 1, 7, 50, 97, published_parameters=12_345, sliding_window=64,
                      layer_types=("sliding_attention", "full_attention", "sliding_attention"))
    return [
        preset("llama-3-8b"), preset("qwen2.5-7b"), preset("mistral-7b-v0.1"), preset("gemma-2-9b"), preset("phi-3-mini-4k"), preset("gpt2"),
        _qwen2_window(), odd,
        ModelConfig("ridge", "llama", 2, 256, 2, 2, 128, 512, 100, published_parameters=2_902_523_904),
        ModelConfig("no-total", "llama", 2, 64, 4, 2, 16, 128, 100),
        preset("mixtral-8x7b"),
    ]


# (batch, context_tokens, bytes_per_weight, kv_bytes_per_element): valid edge cases, then one bad field each
FIXED_WORKLOADS = [
    (1, 0, 2, 2), (1, 1, 2, 2), (8, 8192, 2, 2), (207, 64, 2, 2), (3, 63, 0.5, 1), (3, 64, 0.515625, 1.015625), (3, 65, 1, 0.5),
    (2, 4095, 2, 2), (2, 4096, 2, 2), (2, 4097, 2, 2), (64, 32768, 0.5, 1), (1, 131072, 2, 2.0), (5, 2047, 1.0625, 2),
    (True, 128, 2, 2), (1, True, 2, 2), (1, False, 2, 2), (0, 128, 2, 2), (-1, 128, 2, 2), (2.0, 128, 2, 2), (1, -1, 2, 2), (1, 10.5, 2, 2),
    (1, 128, 0, 2), (1, 128, -0.5, 2), (1, 128, NAN, 2), (1, 128, INF, 2), (1, 128, True, 2), (1, 128, 2, 0), (1, 128, 2, NAN),
]
FIXED_GPUS = [("h200", "bf16"), ("h200", "fp8"), ("h100-sxm", "int8"), ("a100-80gb", "bf16"), ("a100-80gb", "int8"),
              ("a100-80gb", "fp8"), ("b200", "bf16"), ("h200", "fp16"), ("H200", "bf16")]


def _random_model(rng):
    """A random dense decoder; one in ten has no parameter total, one in ten is a model type the lab does not model,
    and windows slide on every layer, on none, or on some."""
    published = None if rng.random() < 0.1 else rng.randint(10**6, 10**11)
    model_type = "mixtral" if rng.random() < 0.1 else "llama"
    model = random_dense_model(rng, published_parameters=published, model_type=model_type, sliding_window=rng.choice([None, None, 64, 4096]))
    if model.sliding_window is not None and rng.random() < 0.5:
        kinds = tuple(rng.choice(["sliding_attention", "full_attention"]) for _ in range(model.num_hidden_layers))
        model = dataclasses.replace(model, layer_types=kinds if "sliding_attention" in kinds else ("sliding_attention",) + kinds[1:])
    return model


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
        workload[field] = rng.choice([[0, -1, True, 2.0], [-7, 2.5, False, True], [0, -1.0, NAN, True], [0, INF, -2]][field])
    return tuple(workload)


def _random_gpu(rng):
    """A GPU and compute format from the table; now and then an unknown one (fp8 on the A100 also fails)."""
    return rng.choice(["a100-80gb", "h100-sxm", "h200"] * 6 + ["b200"]), rng.choice(["bf16", "fp8", "int8"] * 6 + ["fp16"])


def _fail(call: str, actual, expected) -> str:
    return bounded(f"{call}: got {_shown(actual)}, expected {_shown(expected)}", 900)


@check("peak_flops", points=1)
def test_peak_flops_matches_reference(lab, oracle, rng):
    rf, ref = lab.roofline, oracle.roofline
    cases = FIXED_GPUS + [("h200", None), (None, "bf16"), ("h100-sxm", True)] + [_random_gpu(rng) for _ in range(CASES // 4)]
    for gpu, compute in cases:
        expected = outcome(lambda: float(ref.peak_flops(gpu, compute)))
        actual = outcome(lambda: rf.peak_flops(gpu, compute))
        assert _same(actual, expected), _fail(f"peak_flops({gpu!r}, {compute!r})", actual, expected)


def _step_bytes_edges():
    return [(model, workload) for model in _fixed_models() for workload in FIXED_WORKLOADS]


def _step_bytes_randoms(rng):
    return [(_random_model(rng), _random_workload(rng)) for _ in range(CASES)]


@check("step_bytes", points=2)
def test_step_bytes_matches_reference(lab, oracle, rng, cases):
    rf, ref = lab.roofline, oracle.roofline
    for model, workload in cases(_step_bytes_edges(), _step_bytes_randoms(rng)):
        expected = outcome(lambda: (lambda r: (float(r.weights), float(r.kv_cache)))(ref.step_bytes(model, *workload)))
        actual = outcome(lambda: (lambda r: (r.weights, r.kv_cache))(rf.step_bytes(model, *workload)))
        assert _same(actual, expected), _fail(
            f"step_bytes({model_summary(model)}, batch={workload[0]!r}, context_tokens={workload[1]!r}, bytes_per_weight={workload[2]!r}, "
            f"kv_bytes_per_element={workload[3]!r}) as (weights, kv_cache)", actual, expected)


@check("step_flops", points=2)
def test_step_flops_matches_reference(lab, oracle, rng, cases):
    rf, ref = lab.roofline, oracle.roofline
    for model, (batch, context, _, _) in cases(_step_bytes_edges(), _step_bytes_randoms(rng)):
        expected = outcome(lambda: ref.step_flops(model, batch, context))
        actual = outcome(lambda: rf.step_flops(model, batch, context))
        assert _same(actual, expected), _fail(f"step_flops({model_summary(model)}, batch={batch!r}, context_tokens={context!r})", actual, expected)


FIELDS = ("weight_bytes", "kv_bytes", "flops", "memory_s", "compute_s", "step_s", "bound", "tokens_per_s_per_sequence", "tokens_per_s")


def _as_data(bound, floats=False):
    """A StepBound as a tuple; the reference's numbers (except the int FLOPs) become floats, the learner's stay as they are."""
    values = tuple(getattr(bound, field) for field in FIELDS)
    return tuple(float(v) if floats and field not in ("flops", "bound") else v for field, v in zip(FIELDS, values))


def _step_bound_edges():
    models = _fixed_models()
    fixed = [(model, workload, gpu) for model in models for workload in FIXED_WORKLOADS[:13] for gpu in FIXED_GPUS[:3]]
    fixed += [(models[0], workload, gpu) for workload in FIXED_WORKLOADS[13:] for gpu in FIXED_GPUS[:1]]
    fixed += [(models[0], (1, 0, 2, 2), gpu) for gpu in FIXED_GPUS[3:]]
    fixed += [(models[8], (207, 64, 2, 2), ("h200", "bf16")), (models[0], (206, 0, 2, 2), ("h200", "bf16")), (models[0], (207, 0, 2, 2), ("h200", "bf16"))]
    # compute-bound in bf16, memory-bound once quantized: the speedup then depends on every attention FLOP
    mqa_window = ModelConfig("mqa-window", "llama", 8, 4096, 32, 1, 128, 14336, 32000, published_parameters=8_000_000_000, sliding_window=64)
    fixed += [(models[0], (512, 128, 2, 2), ("h200", "fp8")), (mqa_window, (512, 4096, 4, 2), ("h200", "fp8")), (mqa_window, (512, 4096, 2, 2), ("h200", "bf16"))]
    return fixed


def _step_bound_randoms(rng):
    return [(_random_model(rng), _random_workload(rng), _random_gpu(rng)) for _ in range(CASES)]


@check("step_bound", points=3)
def test_step_bound_matches_reference(lab, oracle, rng, cases):
    rf, ref = lab.roofline, oracle.roofline
    for model, workload, (gpu, compute) in cases(_step_bound_edges(), _step_bound_randoms(rng)):
        expected = outcome(lambda: _as_data(ref.step_bound(model, gpu, *workload, compute), floats=True))
        actual = outcome(lambda: _as_data(rf.step_bound(model, gpu, *workload, compute)))
        assert _same(actual, expected), bounded(
            f"step_bound({model_summary(model)}, {gpu!r}, batch={workload[0]!r}, context_tokens={workload[1]!r}, bytes_per_weight={workload[2]!r}, "
            f"kv_bytes_per_element={workload[3]!r}, compute={compute!r}):\n  fields   {FIELDS}\n  got      {_shown(actual)}\n  expected {_shown(expected)}",
            1200,
        )


@check("kv_crossover_tokens", points=1)
def test_kv_crossover_matches_reference(lab, oracle, rng, cases):
    rf, ref = lab.roofline, oracle.roofline
    for model, (_, _, bytes_per_weight, kv_bytes) in cases(_step_bytes_edges(), _step_bytes_randoms(rng)):
        expected = outcome(lambda: float(ref.kv_crossover_tokens(model, bytes_per_weight, kv_bytes)))
        actual = outcome(lambda: rf.kv_crossover_tokens(model, bytes_per_weight, kv_bytes))
        assert _same(actual, expected), _fail(
            f"kv_crossover_tokens({model_summary(model)}, bytes_per_weight={bytes_per_weight!r}, kv_bytes_per_element={kv_bytes!r})", actual, expected)


@check("quantization_speedup", points=2)
def test_quantization_speedup_matches_reference(lab, oracle, rng, cases):
    rf, ref = lab.roofline, oracle.roofline
    for model, workload, (gpu, compute) in cases(_step_bound_edges(), _step_bound_randoms(rng)):
        expected = outcome(lambda: float(ref.quantization_speedup(model, gpu, *workload, compute)))
        actual = outcome(lambda: rf.quantization_speedup(model, gpu, *workload, compute))
        assert _same(actual, expected), _fail(
            f"quantization_speedup({model_summary(model)}, {gpu!r}, batch={workload[0]!r}, context_tokens={workload[1]!r}, "
            f"bytes_per_weight={workload[2]!r}, kv_bytes_per_element={workload[3]!r}, compute={compute!r})", actual, expected)
